"""Per-host outcomes from runner's stats alone (engine.executors.host_outcomes): the
cases a real play rarely shows (tests/integration/test_ansible_executor.py runs them)."""

from __future__ import annotations

from engine.executors.host_outcomes import host_outcomes, status_of
from engine.lifecycle import RunStatus

STATS = {"ok": {"a": 2, "b": 1, "r": 1}, "changed": {"a": 1}, "failures": {"c": 1},
         "dark": {"d": 1}, "skipped": {"b": 3, "e": 2}, "rescued": {"r": 1},
         "processed": {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "r": 1, "z": 1}}


def outcomes(hosts: str, stats=STATS, failed=None, unreachable=None, **kw):
    got = host_outcomes(hosts.split(","), stats, failed or {}, unreachable or {}, **kw)
    return [(e["host"], e["outcome"], e["reason"]) for e in got]


def test_stats_decide_each_host_and_a_host_without_a_result_is_failed() -> None:
    assert outcomes("a,b,c,d,e,r,z,nowhere") == [
        ("a", "changed", ""), ("b", "ok", ""), ("c", "failed", "no result from the play"),
        ("d", "unreachable", "unreachable"), ("e", "skipped", ""),
        ("r", "ok", ""),                      # its failure was rescued
        ("z", "failed", "no result from the play"),
        ("nowhere", "failed", "no result from the play")]


def test_an_unreachable_event_wins_over_ok_stats_and_no_stats_means_no_host_is_ok() -> None:
    assert outcomes("a", unreachable={"a": "task 'x': refused"}) == [
        ("a", "unreachable", "task 'x': refused")]
    assert outcomes("a,c", stats=None, failed={"c": "task 'y': boom"},
                    no_result="timed out after 2s") == [
        ("a", "failed", "timed out after 2s"), ("c", "failed", "task 'y': boom")]


def test_the_run_status_of_its_hosts() -> None:
    def status(*kinds: str) -> RunStatus:
        return status_of([{"host": str(i), "outcome": k, "reason": ""}
                          for i, k in enumerate(kinds)])

    assert status("ok", "changed", "skipped") == RunStatus.SUCCEEDED
    assert status("ok", "unreachable") == RunStatus.PARTIAL
    assert status("failed", "unreachable", "not_started") == RunStatus.FAILED
    assert status() == RunStatus.FAILED
