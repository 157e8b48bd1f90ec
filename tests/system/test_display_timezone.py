"""One clock for people (issue 11 §5): the database keeps UTC, people see display.timezone
with an explicit offset in CLI tables, JSON (ISO 8601) and log lines."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re

from click.testing import CliRunner

from conftest import InProcessWorker, make_settings, settings_toml
from mi_worker import logs
from mi_worker.cli import main
from mi_worker.display import ZoneFormatter, localize, zone
from mi_worker.his_call import call

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _utc(value) -> dt.datetime:
    """A row's time as the dialect hands it back (datetime or SQLite text), as aware UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace(" ", "T"))
    return value.replace(tzinfo=dt.timezone.utc)


def test_cli_json_and_tables_show_the_display_zone_with_offset(db_url, sandbox, tmp_path,
                                                                monkeypatch):
    settings = make_settings(db_url, sandbox)
    cfg = tmp_path / "tz.toml"
    cfg.write_text(settings_toml(settings), encoding="utf-8")
    monkeypatch.delenv("MI_WORKER_DISPLAY_TIMEZONE", raising=False)
    runner = CliRunner()
    with InProcessWorker(settings) as w:
        result = call(w.db, "1101", json.dumps({"data": {"psn_no": "P0001"}}), 20)
        assert result.error_code == 0, result
        stored = _utc(w.db.run_one("get_request", request_id=result.request_id)
                      ["request_time"])
        listed = runner.invoke(main, ["--config", str(cfg), "requests", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        shown = json.loads(listed.output[listed.output.index("["):])[0]["request_time"]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00$", shown), shown
        parsed = dt.datetime.fromisoformat(shown)
        assert parsed.utcoffset() == dt.timedelta(hours=8)
        assert abs((parsed - stored).total_seconds()) < 0.001  # same instant, other clock
        assert parsed.hour == (stored.hour + 8) % 24

        table = runner.invoke(main, ["--config", str(cfg), "requests", "list"])
        assert table.exit_code == 0
        assert stored.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S+08:00") in table.output

        show = runner.invoke(main, ["--config", str(cfg), "requests", "show",
                                    str(result.request_id), "--json"])
        doc = json.loads(show.output[show.output.index("{"):])
        for key in ("request_time", "claimed_at", "completed_at"):
            if doc.get(key):
                assert doc[key].endswith("+08:00"), (key, doc[key])

        status = runner.invoke(main, ["--config", str(cfg), "status", "--json"])
        beats = json.loads(status.output[status.output.index("{"):])["workers"]
        times = [v for r in beats for v in r.values()
                 if isinstance(v, str) and re.match(r"^\d{4}-\d\d-\d\dT", v)]
        assert times and all(t.endswith("+08:00") for t in times), beats

        monkeypatch.setenv("MI_WORKER_DISPLAY_TIMEZONE", "UTC")
        utc = runner.invoke(main, ["--config", str(cfg), "requests", "list", "--json"])
        shown_utc = json.loads(utc.output[utc.output.index("["):])[0]["request_time"]
        assert shown_utc.endswith("+00:00")
        assert dt.datetime.fromisoformat(shown_utc) == parsed


def test_log_lines_carry_the_display_zone(tmp_path):
    record = logging.LogRecord("mi_worker.x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = dt.datetime(2026, 12, 1, 21, 7, 49, tzinfo=dt.timezone.utc).timestamp()
    line = ZoneFormatter(logs.FORMAT, zone("Asia/Shanghai")).format(record)
    assert line.startswith("2026-12-02 05:07:49.000+08:00 INFO"), line
    log_file = tmp_path / "x.log"
    logs.setup("INFO", str(log_file), timezone="Asia/Shanghai")
    logging.getLogger("mi_worker.test").info("zone check")
    for h in logging.getLogger().handlers:
        h.flush()
    text = log_file.read_text(encoding="utf-8")
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+08:00 INFO", text), text
    logs.setup("WARNING")


def test_localize_leaves_json_documents_and_non_times_alone():
    tz = zone("Asia/Shanghai")
    data = {"request_time": "2026-12-01 21:07:49.123", "when": dt.datetime(2026, 12, 1, 21, 7),
            "response_data": '{"inf_time": "2026-12-02 05:07:49"}', "msgid": "H" * 30,
            "stmt_date": "2026-12-01", "n": 3}
    out = localize(data, tz)
    assert out["request_time"] == "2026-12-02 05:07:49+08:00"
    assert out["when"] == "2026-12-02 05:07:00+08:00"
    assert out["response_data"] == data["response_data"]
    assert out["stmt_date"] == "2026-12-01" and out["n"] == 3
    assert localize(data, tz, for_json=True)["request_time"] == "2026-12-02T05:07:49.123+08:00"


def test_unknown_zone_is_a_config_error_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[display]\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(cfg), "config", "check"])
    assert result.exit_code == 2
    assert "display.timezone" in result.output and "Traceback" not in result.output
