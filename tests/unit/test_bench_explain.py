"""bench/explain.py: the growth check accepts a claim that reads PENDING rows only, by the
partial index or by an Index Cond on status, and rejects one that would read the history."""
from bench.explain import candidate_scan

SCAN = "            ->  Index Scan using {} on medical_insurance_requests r (actual time=0.1..0.2 rows=16 loops=1)"


def test_partial_index_is_pending_only() -> None:
    assert candidate_scan(["LockRows", SCAN.format("ix_mir_claim"), "  Filter: (x)"]) == \
        ("ix_mir_claim", True)


def test_status_index_with_pending_condition_is_pending_only() -> None:
    lines = [SCAN.format("ix_mir_status_id"),
             "                  Index Cond: ((status)::text = 'PENDING'::text)"]
    assert candidate_scan(lines) == ("ix_mir_status_id", True)


def test_an_index_walked_without_the_condition_reads_history() -> None:
    lines = [SCAN.format("medical_insurance_requests_pkey"),
             "                  Filter: ((status)::text = 'PENDING'::text)"]
    assert candidate_scan(lines) == ("medical_insurance_requests_pkey", False)


def test_a_seq_scan_is_not_a_seek() -> None:
    assert candidate_scan(["Seq Scan on medical_insurance_requests r (actual rows=16)"]) == \
        (None, False)
