"""The blast-radius limits (engine/gates/fleet.py): remediations in flight at once, and
the share of a group under remediation within a window, fleet-wide, on a real store.

Given a fleet of four `redis` hosts and the limits of recovery.yml, this step may start
or is deferred, with the reason, until room frees up; nothing passes them, --force
neither; a check-mode run or a plan only reports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.fleet_limits import FleetLimits
from engine.gates import Decision, GateChain, GateContext, Verdict
from engine.gates.fleet import SLOT_PREFIX, FleetGate
from engine.gates.lock import LockGate, release_all
from engine.inventory import Inventory
from engine.lifecycle import IncidentState, RunStatus
from engine.records import RunRecord, new_id
from engine.runbooks.model import Runbook, Strategy
from engine.store import Store, open_store

FLEET = """\
all:
  hosts:
    localhost: {ansible_connection: local}
  children:
    redis:
      hosts:
        redis-1: {ansible_connection: local}
        redis-2: {ansible_connection: local}
        redis-3: {ansible_connection: local}
        redis-4: {ansible_connection: local}
"""
STEP = Strategy(name="restart", action="test.ok")
BOOK = Runbook(name="redis", component="redis", path="redis.yml", sha256="-",
               strategies=(STEP,))
WINDOW = 600.0


# Every test that keeps state runs on each backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(FLEET)
    return Inventory(path)


def ask(store: Store, target: str, *, limits: FleetLimits = FleetLimits(),
        inventory: Inventory | None = None, now: float | None = None,
        **kw: object) -> tuple[Decision, list[Decision]]:
    """Ask the lock gate then the fleet gate, as the default chain does, for a new run."""
    chain = GateChain([LockGate(), FleetGate(limits)])
    ctx = GateContext(runbook=BOOK, strategy=STEP, target=target, store=store,
                      holder="test", run_id=new_id("run"), inventory=inventory,
                      now=time.time() if now is None else now, **kw)  # type: ignore[arg-type]
    return chain.decide(ctx)


def began(store: Store, target: str, at: float, status: RunStatus = RunStatus.SUCCEEDED,
          **kw: object) -> RunRecord:
    """A run of the step on ``target`` recorded as begun at ``at``."""
    run = RunRecord(id=new_id("run"), component="redis", runbook="redis", strategy="restart",
                    target=target, status=status, started_at=at, **kw)  # type: ignore[arg-type]
    store.add_run(run)
    return run


def end(store: Store, asked: list[Decision]) -> None:
    """The step ends: what every gate took for it is released (its lease does this)."""
    release_all(store, [lock for d in asked for lock in d.locks])


def held(decision: Decision) -> list[str]:
    return [lock.target for lock in decision.locks]


def slots(store: Store) -> list[str]:
    return sorted(lock.target for lock in store.list_locks()
                  if lock.target.startswith(SLOT_PREFIX))


def in_threads(url: str, work: Callable[[Store, Any], None], args: list[Any],
               barrier: threading.Barrier | None = None) -> None:
    """``work(store, arg)`` for each arg in a thread of its own, each with its own
    connection to the store at ``url``; every thread ends within a minute, without error."""
    errors: list[BaseException] = []

    def run(arg: Any) -> None:
        store = open_store(url)
        try:
            work(store, arg)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            if barrier is not None:
                barrier.abort()
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a deciding thread hung"
    assert not errors, errors


# --- remediations in flight -------------------------------------------------------------

def test_n_in_flight_defer_the_next_until_one_ends(store: Store) -> None:
    limits = FleetLimits(max_in_flight=2)
    first, _ = ask(store, "a", limits=limits)
    second, _ = ask(store, "b", limits=limits)
    assert first.verdict == second.verdict == Verdict.ALLOW
    assert "slot 1 of 2" in first.reason and "slot 2 of 2 (2 in flight)" in second.reason
    third, asked = ask(store, "c", limits=limits)
    assert third.verdict == Verdict.DEFER and third.gate == "fleet"
    assert "2 remediations in flight (max_in_flight 2)" in third.reason
    assert third.until is not None and 0 < third.until - time.time() <= 5
    # held back, it holds nothing: the lock the lock gate took on `c` is given back
    assert asked[0].verdict == Verdict.ALLOW and store.get_lock("c") is None
    assert slots(store) == [f"{SLOT_PREFIX}0", f"{SLOT_PREFIX}1"]
    # a step that ends releases what it held (its lease: attempt._run): room for the next
    release_all(store, first.locks)
    fourth, _ = ask(store, "c", limits=limits)
    assert fourth.verdict == Verdict.ALLOW and held(fourth) == [f"{SLOT_PREFIX}0"]


def test_a_runbook_limit_counts_every_slot_held(store: Store) -> None:
    """A runbook that allows 2 in flight sees the 3 that others hold, whatever slot
    numbers they took."""
    for target in ("a", "b", "c"):
        assert ask(store, target)[0].verdict == Verdict.ALLOW
    release_all(store, [lock for lock in store.list_locks() if lock.target.endswith(":0")])
    tight = Runbook(name="tight", component="redis", path="t.yml", sha256="-",
                    strategies=(STEP,), fleet={"max_in_flight": 2})
    ctx = GateContext(runbook=tight, strategy=STEP, target="d", store=store, holder="t",
                      run_id=new_id("run"))
    decision = FleetGate(FleetLimits(max_in_flight=10)).check(ctx)
    assert decision.verdict == Verdict.DEFER
    assert "2 remediations in flight (max_in_flight 2)" in decision.reason


def test_two_gates_deciding_at_once_never_exceed_max_in_flight(store_url: str) -> None:
    """Eight threads, each with its own connection to one store, take and give back slots
    in a loop; a shared count of holders never passes the limit."""
    open_store(store_url).close()
    limit, rounds, inside, peak, allowed = 3, 15, [0], [0], [0]
    guard = threading.Lock()

    def worker(store: Store, n: int) -> None:
        for i in range(rounds):
            decision, asked = ask(store, f"host-{n}-{i}",
                                  limits=FleetLimits(max_in_flight=limit))
            if decision.verdict != Verdict.ALLOW:
                continue
            with guard:
                inside[0] += 1
                allowed[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.005)
            with guard:
                inside[0] -= 1
            end(store, asked)

    in_threads(store_url, worker, list(range(8)))
    assert 0 < peak[0] <= limit
    assert allowed[0] >= limit


# --- the share of a group -----------------------------------------------------------------

def test_a_quarter_of_four_hosts_lets_one_in_and_defers_the_second(
        store: Store, inventory: Inventory) -> None:
    now = time.time()
    first, asked = ask(store, "redis-1", inventory=inventory, now=now)
    assert first.verdict == Verdict.ALLOW
    began(store, "redis-1", now, RunStatus.RUNNING)
    end(store, asked)   # ended: it still counts within the window
    second, asked = ask(store, "redis-2", inventory=inventory, now=now + 1)
    assert second.verdict == Verdict.DEFER and second.gate == "fleet"
    assert ("blast radius: 1 of 4 hosts of group redis under remediation within 600s "
            "(redis-1); group_share 25% allows 1") in second.reason
    assert second.until == pytest.approx(now + WINDOW)
    assert store.get_lock("redis-2") is None and slots(store) == []   # nothing kept
    # the host already counted may run again: it adds nothing to the share
    again, asked = ask(store, "redis-1", inventory=inventory, now=now + 2)
    assert again.verdict == Verdict.ALLOW
    end(store, asked)
    # the window's end lets the next host in
    later, _ = ask(store, "redis-2", inventory=inventory, now=now + WINDOW + 1)
    assert later.verdict == Verdict.ALLOW


def test_a_running_host_counts_by_its_lock_before_its_run_is_recorded(
        store: Store, inventory: Inventory) -> None:
    first, _ = ask(store, "redis-1", inventory=inventory)
    assert first.verdict == Verdict.ALLOW       # its lock held, no run row yet
    second, _ = ask(store, "redis-3", inventory=inventory)
    assert second.verdict == Verdict.DEFER and "(redis-1)" in second.reason


@pytest.mark.parametrize("status", [RunStatus.DEFERRED, RunStatus.REFUSED, RunStatus.SKIPPED,
                                    RunStatus.PENDING_APPROVAL])
def test_runs_that_never_began_do_not_count(store: Store, inventory: Inventory,
                                           status: RunStatus) -> None:
    began(store, "redis-1", time.time(), status)
    began(store, "redis-3", time.time(), RunStatus.SUCCEEDED, check_mode=True)
    assert ask(store, "redis-2", inventory=inventory)[0].verdict == Verdict.ALLOW


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.CANCELED,
                                    RunStatus.INTERRUPTED, RunStatus.RUNNING])
def test_runs_that_began_count_however_they_ended(store: Store, inventory: Inventory,
                                                 status: RunStatus) -> None:
    began(store, "redis-1", time.time(), status)
    assert ask(store, "redis-2", inventory=inventory)[0].verdict == Verdict.DEFER


def test_force_passes_no_fleet_limit(store: Store, inventory: Inventory) -> None:
    began(store, "redis-1", time.time())
    forced, _ = ask(store, "redis-2", inventory=inventory, forced=True, trigger="manual")
    assert forced.verdict == Verdict.DEFER and not forced.forced
    ask(store, "x", limits=FleetLimits(max_in_flight=1))
    forced, _ = ask(store, "y", limits=FleetLimits(max_in_flight=1), forced=True)
    assert forced.verdict == Verdict.DEFER and "max_in_flight 1" in forced.reason


def test_check_mode_only_reports_and_a_plan_says_it_would_wait(
        store: Store, inventory: Inventory) -> None:
    began(store, "redis-1", time.time())
    checked, asked = ask(store, "redis-2", inventory=inventory, check_mode=True)
    assert checked.verdict == Verdict.ALLOW
    fleet = asked[-1]
    assert fleet.gate == "fleet" and "blast radius" in fleet.reason
    assert "check mode: not held back" in fleet.reason
    planned, asked = ask(store, "redis-2", inventory=inventory, dry=True)
    assert planned.verdict == Verdict.DEFER and planned.gate == "fleet"
    assert store.list_locks() == []             # neither took a lock or a slot
    ask(store, "x", limits=FleetLimits(max_in_flight=1))
    checked, asked = ask(store, "y", limits=FleetLimits(max_in_flight=1), check_mode=True)
    assert checked.verdict == Verdict.ALLOW and "max_in_flight 1" in asked[-1].reason
    assert slots(store) == [f"{SLOT_PREFIX}0"]


def test_two_hosts_racing_for_the_last_room_of_a_group_never_both_pass(
        store_url: str, inventory: Inventory) -> None:
    """Four threads, one per host of the group, ask at once, again and again: each round
    exactly one host is let in (the first to take its lock), never two, never none."""
    open_store(store_url).close()
    barrier = threading.Barrier(4, timeout=20)
    passed: list[list[str]] = [[] for _ in range(5)]

    def worker(store: Store, host: str) -> None:
        for round_ in range(5):
            barrier.wait()
            decision, asked = ask(store, host, inventory=inventory)
            if decision.verdict == Verdict.ALLOW:
                passed[round_].append(host)
            barrier.wait()
            end(store, asked)
            barrier.wait()

    in_threads(store_url, worker, [f"redis-{n}" for n in range(1, 5)], barrier)
    assert all(len(hosts) == 1 for hosts in passed), passed


# --- through the engine: deferred with the reason, counted, started when room frees --------



def test_a_second_host_of_the_group_is_deferred_counted_and_started_later(
        engine_env, run_incident) -> None:
    from engine.reporting.metrics import render_text
    from engine.service.worker import Worker

    (engine_env.root / "inventory" / "hosts.yml").write_text(FLEET)
    engine_env.write_config(fleet="{group_share: 25%, group_window: 1s}")
    engine_env.runbook("cache", f"""
        strategies: [{{name: restart, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
    """)
    ctx = engine_env.context()
    assert run_incident(ctx, "cache", target="redis-1").incident.state == \
        IncidentState.RECOVERED
    deferred = run_incident(ctx, "cache", target="redis-2").incident
    assert deferred.state == IncidentState.OPEN
    assert "blast radius: 1 of 4 hosts of group redis" in deferred.reason
    [run] = ctx.store.query_runs(incident_id=deferred.id)
    assert run.status == RunStatus.DEFERRED and run.gate == "fleet"
    assert ctx.store.list_locks() == []
    assert 'infra_recovery_deferrals_total{component="cache",gate="fleet"} 1.0' in \
        render_text(ctx)
    # when the window has passed, a worker takes the incident up again and it runs
    assert deferred.next_try_at is not None and deferred.next_try_at - time.time() <= 1.1
    worker, deadline = Worker(ctx), time.time() + 5
    while time.time() < deadline:
        worker.run_once()
        if ctx.store.get_incident(deferred.id).state != IncidentState.OPEN:
            break
        time.sleep(0.1)
    assert ctx.store.get_incident(deferred.id).state == IncidentState.RECOVERED
    assert [line.split()[1] for line in engine_env.traced()] == ["redis-1", "redis-2"]
