"""msgid above 10,000 claims in one second (issue 17): unique, well-formed, never a failed claim.

msgid = fixmedins_code + China-time second + 4 digits of a sequence (mod 10,000). Once more
than 10,000 msgids are handed out in one second the 4 digits come round again; before the fix
two rows then got the same msgid and ux_mir_msgid failed the whole claim. Now such a row takes
the next second whose msgid with its digits is free. These drains cross 10,000 rows within one
second on purpose (a claim of 10,000 rows and the next one at once, then back-to-back claims), on SQLite and
the real PostgreSQL, and check every msgid the way the sandbox centre does.
"""
from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import FIXMEDINS, claim, msgid_ok, raw  # noqa: E402

from mi_worker.gateway.envelope import is_valid_msgid  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def seed(db, n: int) -> None:
    """n runnable rows in one statement (no psn_no: nothing but the msgid in the way)."""
    if db.dialect.name == "sqlite":
        raw(db, f"""
            WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
            INSERT INTO medical_insurance_requests (interface_code, input_data, status,
                                                    deadline_at, request_time, next_attempt_at)
            SELECT '1101', '{{}}', 'PENDING', strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day'),
                   strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 second'),
                   strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 second')
            FROM s""")
    elif db.dialect.name == "postgresql":
        raw(db, f"""
            INSERT INTO medical_insurance_requests (interface_code, input_data, status,
                                                    deadline_at, request_time, next_attempt_at)
            SELECT '1101', '{{}}', 'PENDING', now() + interval '1 day',
                   now() - interval '1 second', now() - interval '1 second'
            FROM generate_series(1, {n})""")
    else:
        pytest.skip("seeding written for SQLite and PostgreSQL (the T-SQL is parsed statically)")


def check(msgids) -> Counter:
    """Every msgid well-formed (the sandbox's check and a real China time near now) and
    unique; returns how many msgids each 4-digit tail has (> 1 means the digits came round)."""
    assert all(is_valid_msgid(m, FIXMEDINS) and msgid_ok(m) for m in msgids)
    dup = [m for m, k in Counter(msgids).items() if k > 1]
    assert not dup, f"{len(dup)} msgids handed out twice, e.g. {dup[:3]}"
    return Counter(m[26:] for m in msgids)


def stored_msgids(db):
    return [r["msgid"] for r in raw(db, "SELECT msgid FROM medical_insurance_requests "
                                        "WHERE msgid IS NOT NULL")]


def test_a_12000_row_drain_in_two_claims_crosses_the_4_digits_and_stays_unique(db):
    seed(db, 12000)
    t0 = dt.datetime.now(dt.timezone.utc)
    first = claim(db, 12000)
    assert len(first) == 10000, "a claim takes at most 10,000 rows (its own digits are distinct)"
    rows = first + claim(db, 12000)
    elapsed = (dt.datetime.now(dt.timezone.utc) - t0).total_seconds()
    assert len(rows) == 12000, "the second claim failed or came back short"
    tails = check([r["msgid"] for r in rows])
    assert len(tails) == 10000 and max(tails.values()) >= 2  # the digits did come round
    # a repeated tail moved to a later second (the claims took well under a minute)
    stamps = {r["msgid"][12:26] for r in rows}
    assert len(stamps) >= 2 and elapsed < 60
    assert sorted(stored_msgids(db)) == sorted(r["msgid"] for r in rows)


def test_back_to_back_claims_past_10000_in_a_second_never_fail(db):
    seed(db, 14000)
    got = []
    t0 = dt.datetime.now(dt.timezone.utc)
    while len(got) < 14000:
        rows = claim(db, 3500)
        assert rows, f"a claim came back empty after {len(got)} rows (a msgid collision?)"
        got.extend(r["msgid"] for r in rows)
    span = (dt.datetime.now(dt.timezone.utc) - t0).total_seconds()
    tails = check(got)
    assert len(got) == 14000 and max(tails.values()) >= 2
    # the rows after the first 10,000 share their second with earlier ones (or are ahead)
    per_second = Counter(m[12:26] for m in got)
    assert sum(per_second.values()) == 14000 and span < 120


def test_resend_and_sign_in_msgids_skip_a_taken_second(db):
    seed(db, 10500)
    rows = claim(db, 10000) + claim(db, 500)
    assert len(rows) == 10500
    taken = set(stored_msgids(db))
    fresh = [db.run_one("next_msgid", fixmedins_code=FIXMEDINS)["msgid"] for _ in range(30)]
    for r in rows[:30]:
        row = db.run_one("assign_new_msgid", request_id=r["request_id"],
                         claim_token=r["claim_token"], fixmedins_code=FIXMEDINS)
        fresh.append(row["msgid"])
    check(fresh)
    assert not taken & set(fresh[:30]), "a sign-in msgid repeats a request's msgid"
    check(stored_msgids(db))
