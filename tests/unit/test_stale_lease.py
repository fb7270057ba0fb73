"""Fencing end to end: two replicas (two engine contexts on one store, SQLite or Redis).
Replica A runs a step on cache-1 and stalls past its lease (its heartbeat and its action
stopped, as SIGSTOP stops a process); replica B takes the lock with a newer token and
acts on cache-1. When A wakes up, it never acts on cache-1 again while B holds it: its
step is canceled (its heartbeat noticed the lock taken) or its end is refused (its write
carried the stale token), and its run ends ``interrupted`` saying the lease was lost.
A's incident is left as it was for the workers: nothing B wrote is overwritten."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from engine.artifacts import RunArtifacts
from engine.gates.lock import LeaseKeeper
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.orchestration.attempt import advance
from engine.orchestration.rollout import Member, Rollout
from engine.orchestration.step import new_run, step_extravars
from engine.records import Incident, new_id
from engine.service.worker import Worker
from engine.store.base import Fence, StaleLease

WAIT = 15.0   # seconds: every wait below is bounded by this


class StallableKeeper(LeaseKeeper):
    """A lease keeper whose beats stop while ``stalled`` is set (a stopped process)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stalled = threading.Event()

    def beat_all(self) -> None:
        if not self.stalled.is_set():
            super().beat_all()

    def watch_all(self) -> None:           # SIGSTOP stops every thread of the process
        if not self.stalled.is_set():
            super().watch_all()


def _until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.requires(
    "redis-server"))])
def replicas(request, engine_env, tmp_path: Path):
    """Two engine contexts on one store, a 1 s lease, A's lease keeper stallable; runbooks
    ``act-a`` and ``act-b`` (their actions tagged a and b) and ``act`` (tagged by the
    replica that runs it, verified by the file ``released``), all on cache-1."""
    extra = {}
    if request.param == "redis":
        server = request.getfixturevalue("redis_store_server")
        extra["state_url"] = f'"{server.url}?prefix=stale-{uuid.uuid4().hex}:"'
    engine_env.write_config(lease="1s", **extra)
    for tag in ("a", "b"):
        engine_env.runbook(f"act-{tag}", f"""\
component: cache
strategies:
  - {{name: act, action: test.act_on_host,
     with: {{tag: {tag}, log: "{tmp_path / 'host.log'}", release: "{tmp_path / tag}",
             paused: "{tmp_path / 'paused'}"}}}}
""")
    engine_env.runbook("act", f"""\
component: cache
strategies:
  - {{name: act, action: test.act_on_host,
     with: {{log: "{tmp_path / 'host.log'}", release: "{tmp_path / 'released'}",
             paused: "{tmp_path / 'paused'}"}}}}
verify: {{action: test.file_exists, with: {{path: "{tmp_path / 'released'}"}},
          interval: 0.05s, deadline: 0.3s}}
""")
    a, b = engine_env.context(), engine_env.context()
    b.holder += ":replica-b"
    a.resources.register("replica", "a")
    b.resources.register("replica", "b")
    a.leases = StallableKeeper(a.store, a.config.lock_ttl)
    yield a, b
    a.store.close()
    b.store.close()


def _in_thread(run_incident, ctx, runbook: str) -> threading.Thread:
    thread = threading.Thread(target=run_incident, args=(ctx, runbook, "cache-1"),
                              daemon=True)
    thread.start()
    return thread


def _stall_a_and_let_b_act(replicas, run_incident, tmp_path: Path):
    """A acts, then stalls past its lease; B takes cache-1 and acts. A's lock's fence."""
    a, b = replicas
    log = tmp_path / "host.log"
    thread_a = _in_thread(run_incident, a, "act-a")
    _until(lambda: "a act" in _lines(log), "replica A to act on cache-1")
    held = a.store.get_lock("cache-1")
    (tmp_path / "paused").write_text("a")            # SIGSTOP: no act, no beat
    a.leases.stalled.set()
    _until(lambda: "a paused" in _lines(log), "replica A to stop")
    _until(lambda: b.store.get_lock("cache-1") is None, "A's lease to lapse")
    thread_b = _in_thread(run_incident, b, "act-b")
    _until(lambda: _lines(log).count("b act") >= 3, "replica B to act on cache-1")
    newer = b.store.get_lock("cache-1")
    assert newer.token > held.token and newer.holder == b.holder
    return thread_a, thread_b, Fence.of(held)


def _run_of(ctx, runbook: str):
    [run] = [r for r in ctx.store.query_runs(target="cache-1") if r.runbook == runbook]
    return run


def _check_the_end(replicas, tmp_path: Path, thread_a, thread_b, fence: Fence) -> None:
    a, b = replicas
    thread_a.join(WAIT)
    assert not thread_a.is_alive()
    run_a = _run_of(b, "act-a")
    assert run_a.status == RunStatus.INTERRUPTED
    assert "lease on cache-1 was lost" in run_a.reason
    assert "stopped acting on cache-1" in run_a.reason
    incident_a = b.store.get_incident(run_a.incident_id)
    assert incident_a.state == IncidentState.REMEDIATING     # left for the workers
    assert b.store.get_lock("cache-1").holder == b.holder     # B's lock untouched
    with pytest.raises(StaleLease):                           # and A still cannot write
        a.store.update_incident(incident_a.id, reason="late", fence=fence)

    (tmp_path / "b").write_text("release")
    thread_b.join(WAIT)
    assert not thread_b.is_alive()
    run_b = _run_of(b, "act-b")
    assert run_b.status == RunStatus.SUCCEEDED
    assert b.store.get_incident(run_b.incident_id).state == IncidentState.RECOVERED
    assert [att.outcome for att in b.store.attempts_since("act-b", "cache-1", 0)] == [
        AttemptOutcome.RECOVERED]

    # Never two at once: every act of A's came before B's first, none after.
    acts = [line for line in _lines(tmp_path / "host.log") if line.endswith(" act")]
    first_b = acts.index("b act")
    assert set(acts[:first_b]) == {"a act"} and set(acts[first_b:]) == {"b act"}


def test_a_stalled_replica_whose_heartbeat_finds_its_lock_taken_stops_acting(
        replicas, run_incident, tmp_path: Path) -> None:
    a, _b = replicas
    thread_a, thread_b, fence = _stall_a_and_let_b_act(replicas, run_incident, tmp_path)
    a.leases.stalled.clear()
    a.leases.beat_all()                   # SIGCONT: its first beat finds the lock taken
    (tmp_path / "paused").unlink()
    # Its action saw the cancel (the executor may have answered for it first).
    _until(lambda: "a canceled" in _lines(tmp_path / "host.log"), "A's action to stop")
    _check_the_end(replicas, tmp_path, thread_a, thread_b, fence)


def test_a_stalled_replica_that_never_beat_again_has_its_end_refused(
        replicas, run_incident, tmp_path: Path) -> None:
    thread_a, thread_b, fence = _stall_a_and_let_b_act(replicas, run_incident, tmp_path)
    (tmp_path / "a").write_text("release")   # its step ends at once, its heartbeat still out
    (tmp_path / "paused").unlink()
    _check_the_end(replicas, tmp_path, thread_a, thread_b, fence)
    assert "ended succeeded" in _run_of(replicas[1], "act-a").reason


def test_a_replica_that_stalled_so_long_that_another_took_over_its_incident_leaves_it(
        replicas, run_incident, tmp_path: Path) -> None:
    """Three leases without a heartbeat: B's worker marks A's run interrupted and hands its
    incident back; B takes the incident up, verifies, and runs the step again. A wakes up
    and writes nothing: the incident, its attempt and the lock stay B's."""
    a, b = replicas
    log = tmp_path / "host.log"
    thread_a = _in_thread(run_incident, a, "act")
    _until(lambda: "a act" in _lines(log), "replica A to act on cache-1")
    [run_a] = b.store.query_runs(target="cache-1")
    attempt_a = b.store.get_incident(run_a.incident_id).attempt_id
    (tmp_path / "paused").write_text("a")
    a.leases.stalled.set()
    _until(lambda: "a paused" in _lines(log), "replica A to stop")
    _until(lambda: b.store.get_lock("cache-1") is None, "A's lease to lapse")

    later = time.time() + 3 * b.config.lock_ttl + 1      # B's clock, three leases on
    assert Worker(b).mark_interrupted(later) >= 1
    assert b.store.get_run(run_a.id).status == RunStatus.INTERRUPTED
    claimed = b.store.claim_due_incident(later)
    assert claimed is not None and claimed.id == run_a.incident_id
    thread_b = threading.Thread(target=advance, args=(b, claimed.id), daemon=True)
    thread_b.start()
    _until(lambda: _lines(log).count("b act") >= 3, "replica B to act on cache-1")
    attempt_b = b.store.get_incident(claimed.id).attempt_id
    assert attempt_b not in (None, attempt_a)

    a.leases.stalled.clear()
    a.leases.beat_all()
    (tmp_path / "paused").unlink()
    thread_a.join(WAIT)
    assert not thread_a.is_alive()
    incident = b.store.get_incident(claimed.id)
    assert incident.state == IncidentState.REMEDIATING and incident.attempt_id == attempt_b
    assert b.store.get_run(run_a.id).reason == "the process running this step stopped"
    assert b.store.get_lock("cache-1").holder == b.holder

    (tmp_path / "released").write_text("go")
    thread_b.join(WAIT)
    assert not thread_b.is_alive()
    assert b.store.get_incident(claimed.id).state == IncidentState.RECOVERED
    outcomes = {att.id: att.outcome for att in b.store.attempts_since("act", "cache-1", 0)}
    assert outcomes == {attempt_a: AttemptOutcome.INTERRUPTED,
                        attempt_b: AttemptOutcome.RECOVERED}
    acts = [line for line in _lines(log) if line.endswith(" act")]
    first_b = acts.index("b act")
    assert set(acts[:first_b]) == {"a act"} and set(acts[first_b:]) == {"b act"}


def test_a_rollout_batch_does_not_play_a_host_whose_lease_was_taken(
        replicas, engine_env) -> None:
    """The lease is asked again before each batch: a member whose lock another holder took
    (its process stalled while it waited for its batch) is handed ``interrupted``, its host
    not started, and its batch plays without it (here: nothing left to play)."""
    a, _b = replicas
    engine_env.playbook("noop.yml", "- hosts: all\n  gather_facts: false\n  tasks: []\n")
    engine_env.runbook("play", """\
component: cache
strategies:
  - {name: play, playbook: noop.yml}
""")
    a.refresh()
    runbook = a.runbook("play")
    strategy = runbook.strategies[0]
    held = a.store.acquire_lock("cache-1", a.holder, 60)
    a.store.break_lock("cache-1")                    # lapsed, as far as anyone can tell
    a.store.acquire_lock("cache-1", "replica-b", 60)
    lease = a.leases.hold([held])
    incident = Incident(id=new_id("inc"), runbook="play", component="cache", target="cache-1",
                        state=IncidentState.REMEDIATING, opened_at=time.time())
    run = new_run(a, incident, runbook, strategy, RunStatus.RUNNING, time.time())
    member = Member(incident, runbook, strategy, run,
                    RunArtifacts(a.artifacts_dir, run.id, a.redactor), threading.Event(),
                    step_extravars(incident, runbook, strategy), lease)
    rollout = Rollout("key")
    rollout.add(member)
    try:
        rollout.play(a, a.files)
    finally:
        lease.release()
    assert member.played.is_set() and not member.begun
    assert member.outcome.status == RunStatus.INTERRUPTED
    assert "its lease on cache-1 was lost" in member.outcome.reason
    assert member.outcome.data["hosts"][0]["outcome"] == "not_started"


def test_a_replica_that_wakes_after_another_finished_its_incident_does_not_act_again(
        replicas, run_incident, tmp_path: Path) -> None:
    """As above, but B has finished the incident and released the lock before A wakes:
    no one holds cache-1, so A's renewal fails with no newer token to see. Its run was
    marked interrupted meanwhile: its first beat sees that and stops it (it went on
    acting, its end refused only afterwards)."""
    a, b = replicas
    log = tmp_path / "host.log"
    thread_a = _in_thread(run_incident, a, "act")
    _until(lambda: "a act" in _lines(log), "replica A to act on cache-1")
    [run_a] = b.store.query_runs(target="cache-1")
    (tmp_path / "paused").write_text("a")
    a.leases.stalled.set()
    _until(lambda: "a paused" in _lines(log), "replica A to stop")
    _until(lambda: b.store.get_lock("cache-1") is None, "A's lease to lapse")
    later = time.time() + 3 * b.config.lock_ttl + 1
    assert Worker(b).mark_interrupted(later) >= 1
    claimed = b.store.claim_due_incident(later)
    assert claimed is not None and claimed.id == run_a.incident_id
    (tmp_path / "released").write_text("go")
    advance(b, claimed.id)                                  # B fixes it, lets go
    assert b.store.get_incident(claimed.id).state == IncidentState.RECOVERED
    assert b.store.get_lock("cache-1") is None
    (tmp_path / "released").unlink()                        # A's action would go on
    before = len(_lines(log))

    a.leases.stalled.clear()
    a.leases.beat_all()                                     # SIGCONT
    (tmp_path / "paused").unlink()
    thread_a.join(WAIT)
    assert not thread_a.is_alive()
    after_b = _lines(log)[before:]
    assert "a act" not in after_b, after_b
    assert b.store.get_run(run_a.id).status == RunStatus.INTERRUPTED


class _StoreDownForRenewals:
    """The store as the lease keeper sees it, its renewals failing while ``down`` is set
    (an outage of the store, seen by the holder alone)."""

    def __init__(self, store) -> None:
        self.store, self.down = store, threading.Event()

    def renew_lock(self, *args, **kwargs):
        from engine.store.base import StoreUnavailable

        if self.down.is_set():
            raise StoreUnavailable("the store is unavailable (test)")
        return self.store.renew_lock(*args, **kwargs)

    def renew_locks(self, *args, **kwargs):
        from engine.store.base import StoreUnavailable

        if self.down.is_set():
            raise StoreUnavailable("the store is unavailable (test)")
        return self.store.renew_locks(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_step_whose_lease_lapses_in_a_store_outage_stops_acting_before_it_ends(
        replicas, run_incident, tmp_path: Path) -> None:
    """Redis does not answer A's renewals (A alone is cut off): before its lease ends,
    when another replica could take the lock, A stops acting, and its run says why. On
    SQLite an outage is every process's (a full disk): nobody can take the lock, and the
    step goes on to its end."""
    a, _b = replicas
    log = tmp_path / "host.log"
    view = _StoreDownForRenewals(a.store)
    a.leases = LeaseKeeper(view, a.config.lock_ttl)
    thread_a = _in_thread(run_incident, a, "act-a")
    _until(lambda: "a act" in _lines(log), "replica A to act on cache-1")
    view.down.set()
    if a.store.leases_lapse_apart:
        _until(lambda: "a canceled" in _lines(log), "A's action to stop")
    else:
        time.sleep(2 * a.config.lock_ttl)              # past its lease: still acting
        assert "a canceled" not in _lines(log)
        (tmp_path / "a").write_text("release")
    view.down.clear()
    thread_a.join(WAIT)
    assert not thread_a.is_alive()
    run_a = _run_of(a, "act-a")
    if a.store.leases_lapse_apart:
        assert run_a.status == RunStatus.INTERRUPTED, run_a
        assert "lapsed" in run_a.reason, run_a.reason
    else:
        assert run_a.status == RunStatus.SUCCEEDED, run_a


def test_a_lease_lapses_a_third_of_itself_before_the_store_would_free_its_lock():
    """Timed from when its last good renewal was sent (when the store counts from), by a
    watchdog that does no I/O: a renewal hung on a cut-off server cannot make it late."""
    from engine.gates.lock import LAPSE_AFTER, Lease

    class Store:
        leases_lapse_apart = True

    keeper = LeaseKeeper(Store(), 30.0)
    lost: list[str] = []
    lease = Lease(keeper, (object(),), on_lost=lost.append)   # one lock held
    lease.locks = (type("L", (), {"target": "cache-1"})(),)
    lease.renewed_at = time.monotonic() - LAPSE_AFTER * 30.0 + 1.0
    lease.lapse_if_due()
    assert lease.lapsed is None and lost == []                 # a second to go
    lease.renewed_at -= 2.0
    lease.lapse_if_due()
    assert lease.lapsed and lost == [lease.lapsed] and "cache-1" in lease.lapsed
    lease.acting = False                                       # a finished step keeps
    lease.lapsed, lost[:] = None, []                           # its result
    lease.lapse_if_due()
    assert lease.lapsed is None and lost == []
    assert LAPSE_AFTER * 30.0 <= 30.0 - 30.0 / 3               # the last third is margin
