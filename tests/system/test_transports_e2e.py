"""Each transport end to end: HIS contract → worker → signed request → sandbox centre → result.

On PostgreSQL through the procedure (CALL), on SQLite through `mi-worker call`'s code path,
for transports single, tif (x-tif SHA-256 headers) and csb (HMAC-SHA1 headers).
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import InProcessWorker, make_settings
from mi_worker.cli import main
from mi_worker.his_call import call
from mi_worker.sandbox.testing import running_sandbox

INPUT = json.dumps({"data": {"psn_no": "T0001", "insuplc_admdvs": "110000"}})


@pytest.mark.parametrize("transport", ["single", "tif", "csb"])
def test_call_through_each_transport(db_url, transport, tmp_path):
    with running_sandbox(transport=transport, secret="密钥-secret-1") as box:
        settings = make_settings(db_url, box)
        assert settings.gateway.transport == transport
        with InProcessWorker(settings) as w:
            if w.db.name == "sqlite":
                result = CliRunner().invoke(main, ["call", "1101", "--input", INPUT, "--json",
                                                   "--unmask"],
                                            env={"MI_WORKER_DATABASE_URL": db_url})
                assert result.exit_code == 0, result.output
                answer = json.loads(result.output.strip().splitlines()[-1])
                assert answer["error_code"] == 0
                body = json.loads(answer["result"])
            else:
                outcome = call(w.db, "1101", INPUT, timeout=20)
                assert outcome.error_code == 0, outcome
                body = json.loads(outcome.result)
        assert body["output"]["baseinfo"]["psn_no"] == "T0001"
        signed = [c for c in box.calls.calls("1101")]
        assert len(signed) == 1 and signed[0].http_status == 200


def test_wrong_secret_is_refused_with_a_clear_error(db_url):
    with running_sandbox(transport="tif", secret="right-secret") as box:
        settings = make_settings(db_url, box)
        settings.gateway.secret = "wrong-secret"
        with InProcessWorker(settings) as w:
            outcome = call(w.db, "1101", INPUT, timeout=20)
    assert outcome.error_code == -1004, outcome
    assert "gateway.secret" in outcome.error_message  # tells ops which key to fix
    assert box.calls.count("1101") == 0  # the refused sign-in stopped it before sending
