"""The interface catalogue: explicit kinds, the 2601 set, cancel pairs, unknown codes."""
from __future__ import annotations

import pytest

from mi_worker.gateway import catalog


@pytest.mark.parametrize("code", ["2101", "2206", "2206A", "2303"])
def test_trials_are_not_state_changing(code):
    assert catalog.lookup(code).kind == catalog.TRIAL
    assert not catalog.is_state_changing(code)
    assert catalog.is_retry_safe(code)


@pytest.mark.parametrize("code", [
    "2102", "2103", "2201", "2202", "2203", "2203A", "2204", "2205", "2207", "2207A", "2208",
    "2301", "2302", "2304", "2305", "2401", "2402", "2403", "2404", "2405", "2501", "2507",
    "2601", "3301", "3302", "3401", "3401A", "3403", "3501", "3504A", "3507", "4101", "4101A",
    "4201", "4301", "4401", "4701", "9101"])
def test_state_changing(code):
    assert catalog.is_state_changing(code)
    assert not catalog.is_retry_safe(code)


@pytest.mark.parametrize("code,kind", [
    ("1101", "query"), ("1201", "query"), ("1301", "query"), ("1319", "query"),
    ("1901", "query"), ("2001", "query"), ("3101", "query"), ("4104", "query"),
    ("5203", "query"), ("5304", "query"), ("5402", "query"), ("9102", "query"),
    ("9001", "session"), ("9002", "session"), ("3201", "reconcile"), ("3202", "reconcile"),
    ("3211", "reconcile"), ("3212", "reconcile")])
def test_retry_safe_kinds(code, kind):
    assert catalog.kind(code) == kind
    assert catalog.is_retry_safe(code)


def test_reversible_set_is_exact():
    reversible = {i.code for i in catalog.all_interfaces() if i.reversible_by_2601}
    assert reversible == {"2102", "2103", "2207", "2207A", "2208", "2304", "2305", "2401"}
    assert catalog.reversible("2207a")
    assert not catalog.reversible("2201")
    assert not catalog.reversible("2601")


@pytest.mark.parametrize("code,cancel", [
    ("2201", "2202"), ("2204", "2205"), ("2207", "2208"), ("2207A", "2208"), ("2301", "2302"),
    ("2304", "2305"), ("2401", "2404"), ("2402", "2405"), ("3301", "3302"), ("2501", "2502"),
    ("2503", "2504"), ("2505", "2506"), ("3401", "3403"), ("2102", "2103")])
def test_cancel_pairs(code, cancel):
    assert catalog.lookup(code).cancel_code == cancel


def test_unknown_codes_are_state_changing():
    for code in ("2999", "90100", "7777B"):
        it = catalog.lookup(code)
        assert it.kind == catalog.STATE and not it.known
        assert catalog.is_state_changing(code)
        assert not catalog.reversible(code)
        assert "不确定" in catalog.doubt_advice(code)


def test_codes_with_suffix_and_five_digits():
    assert catalog.is_valid_code("2207A")
    assert catalog.is_valid_code("90100")
    assert catalog.lookup(" 2207a ").code == "2207A"
    assert not catalog.is_valid_code("22")


def test_names():
    assert catalog.name("1101") == "人员信息获取"
    assert catalog.name("2601") == "冲正交易"
    assert catalog.name("3201") == "医药机构费用结算对总账"
    assert catalog.name("9001") == "签到"
    assert catalog.name("9002") == "签退"
    assert catalog.name("9101") == "文件上传"
    assert catalog.name("9102") == "文件下载"
    for it in catalog.all_interfaces():
        assert it.name and it.kind in catalog.KINDS


def test_doubt_advice():
    advice = catalog.doubt_advice("2201")
    assert "5201" in advice and "2202" in advice and "cancel with 2202" in advice
    advice = catalog.doubt_advice("2207")
    assert "2601" in advice and "2208" in advice and "5203" in advice
    assert "safe to send again" in catalog.doubt_advice("1101")


def test_every_check_query_and_cancel_code_is_in_the_table():
    codes = {i.code for i in catalog.all_interfaces()}
    for it in catalog.all_interfaces():
        for ref in (it.cancel_code, it.check_query):
            assert ref is None or ref in codes, (it.code, ref)
