"""Scale-out on Redis, with real processes only: three ``recovery serve`` replicas on
loopback sharing one real ``redis-server`` (AOF on), behind a real Alertmanager pair
clustered with ``--cluster.peer`` that sends every notification to every replica
(tests/support/replicas.py). The replicas must behave as one service: one run per
incident whichever replica hears of it, every alert processed once, a killed replica's
work taken over, and a gate set through one replica holding on the others.

What ran is counted from outside the engine: the steps append a line per execution to
a trace file (tests/support/engine_actions.py), and the runs are read back with
``recovery history --json`` run as one replica (every replica shares the one store).
Lock lease 3 s (tests/support/engine_env.py), so a dead replica's lock and runs are
given up within seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.alertmanager import iso, iso_at
from tests.support.replicas import Replicas, replicas
from tests.support.service import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.requires("redis-server", "alertmanager")]


def traced(trace: Path) -> list[str]:
    """The targets the step ran on, one per execution."""
    return [line.split()[1] for line in trace.read_text().splitlines()] \
        if trace.exists() else []


def hosts_inventory(engine_env, hosts: list[str]) -> None:
    """An inventory of ``hosts`` (plus localhost and cache-1), all run locally."""
    lines = ["all:", "  hosts:"]
    for host in ["localhost", "cache-1", *hosts]:
        lines += [f"    {host}:", "      ansible_connection: local",
                  '      ansible_python_interpreter: "{{ ansible_playbook_python }}"']
    (engine_env.root / "inventory" / "hosts.yml").write_text("\n".join(lines) + "\n")


def touch_runbook(engine_env, name: str, alertname: str, tmp_path: Path, **extra: str) -> Path:
    """A runbook whose step touches ``<name>-done/<target>`` (its verify checks that file)
    and appends a line per execution to the trace it returns."""
    done, trace = tmp_path / f"{name}-done", tmp_path / f"{name}.trace"
    done.mkdir()
    more = "".join(f"\n        {key}: {value}" for key, value in extra.items())
    engine_env.runbook(name, f"""
        match: [alertname="{alertname}"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{dir: "{done}", trace: "{trace}"}}}}
        verify: {{action: test.file_exists, with: {{dir: "{done}"}}, interval: 0.1s,
                  deadline: 5s}}{more}
    """)
    return trace


def sleep_runbook(engine_env, name: str, alertname: str, tmp_path: Path,
                  seconds: float, verify: str = "") -> tuple[Path, Path]:
    """A runbook whose step sleeps ``seconds`` on its target, holding the target's lock
    (``verify``: its verify line; else one that always passes); (its trace, the file it
    writes its pid to when it starts)."""
    trace, started = tmp_path / f"{name}.trace", tmp_path / f"{name}.started"
    engine_env.runbook(name, f"""
        match: [alertname="{alertname}"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: wait, action: test.sleep,
              with: {{seconds: {seconds}, started: "{started}", trace: "{trace}"}}}}
        {verify}
    """)
    return trace, started


def firing(alertname: str, instance: str, started: float) -> dict:
    return {"status": "firing", "labels": {"alertname": alertname, "instance": instance,
                                           "severity": "critical"},
            "annotations": {}, "startsAt": iso_at(started),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.example",
            "fingerprint": f"{alertname}-{instance}".lower()}


def notification(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "recovery",
            "groupKey": "{}:{alertname=~\"Replica.*\"}", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example", "alerts": list(alerts)}


def posted(rs: Replicas, index: int, payload: dict) -> None:
    answer = rs.post(index, payload)
    assert answer.status_code == 200, answer.text


def engine_pid_of(rs: Replicas, pid: int) -> str | None:
    """The replica one of whose processes has ``pid``."""
    for replica in rs.replicas:
        if any(p.pid == pid for p in replica.children()):
            return replica.name
    return None


# -- 1. one firing alert, through the Alertmanager pair, one run ---------------------------

def test_one_firing_alert_through_the_pair_gives_one_run(engine_env, tmp_path):
    trace = touch_runbook(engine_env, "single", "ReplicaDown", tmp_path)
    labels = {"alertname": "ReplicaDown", "instance": "cache-1", "severity": "critical"}
    with replicas(engine_env, tmp_path) as rs:
        now = datetime.now(UTC)
        body = [{"labels": labels, "annotations": {}, "startsAt": iso(now),
                 "endsAt": iso(now + timedelta(seconds=300))}]
        for am in rs.ams:             # as Prometheus posts to an HA pair: to both
            httpx.post(f"{am.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()
        assert wait_for(lambda: traced(trace), 30), rs.errors()
        # Repeats every 2 s from both Alertmanagers to all three replicas meanwhile.
        time.sleep(6)
        rs.settle()
        runs = rs.runs("single", replica="r3")
        assert [(r["status"], r["target"]) for r in runs] == [("succeeded", "cache-1")], runs
        assert traced(trace) == ["cache-1"]
        incidents = [i for i in rs.cli_json("incidents", replica="r2")
                     if i["runbook"] == "single"]
        assert [i["state"] for i in incidents] == ["recovered"], incidents
        # Every replica seen, on one and the same set of runbooks: no warning.
        replicas_seen = rs.cli_json("status", replica="r2")["replicas"]
        assert sorted(line["replica"] for line in replicas_seen["seen"]) == ["r1", "r2", "r3"]
        assert len({line["set_sha256"] for line in replicas_seen["seen"]}) == 1
        assert not replicas_seen["warning"], replicas_seen


# -- 2. a storm spread over the replicas: every alert processed once ------------------------

@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_five_hundred_alerts_spread_over_the_replicas_give_five_hundred_runs(
        engine_env, tmp_path, backend):
    hosts = [f"node-{n:03d}" for n in range(500)]
    hosts_inventory(engine_env, hosts)
    trace = touch_runbook(engine_env, "storm", "ReplicaStorm", tmp_path)
    started = time.time()
    with replicas(engine_env, tmp_path, alertmanagers=0, backend=backend) as rs:
        # 50 notifications of 10 alerts, round-robin over the replicas; each notification
        # also goes to the next replica (an HA pair delivers everything twice).
        for i in range(50):
            payload = notification(*(firing("ReplicaStorm", host, started)
                                     for host in hosts[10 * i:10 * i + 10]))
            posted(rs, i, payload)
            posted(rs, i + 1, payload)
        assert wait_for(lambda: len(traced(trace)) >= 500, 200, every=1.0), \
            f"{len(traced(trace))} of 500 ran\n" + rs.errors()
        rs.settle()
        time.sleep(2)                  # a second execution would show by now
        counts = Counter(traced(trace))
        assert sorted(counts) == hosts
        assert [h for h, n in counts.items() if n > 1] == []
        runs = rs.runs("storm", replica="r2")
        assert len(runs) == 500, Counter(r["status"] for r in runs)
        assert {r["status"] for r in runs} == {"succeeded"}
        assert sorted(r["target"] for r in runs) == hosts
        print(f"\n500 alerts over 3 replicas: 500 runs by "
              f"{dict(Counter(r.get('replica') or '?' for r in runs))}")


# -- 3. a replica killed in the middle of a run --------------------------------------------

@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_replica_killed_mid_run_hands_its_work_to_the_others(engine_env, tmp_path,
                                                               backend):
    hosts = [f"node-{n:03d}" for n in range(150)]
    hosts_inventory(engine_env, hosts)
    trace = touch_runbook(engine_env, "storm", "ReplicaStorm", tmp_path)
    held_started = sleep_runbook(engine_env, "held", "ReplicaHeld", tmp_path, 20)[1]
    started = time.time()
    with replicas(engine_env, tmp_path, alertmanagers=0, backend=backend) as rs:
        posted(rs, 0, notification(firing("ReplicaHeld", "cache-1", started)))
        assert wait_for(held_started.exists, 30), rs.errors()
        victim = engine_pid_of(rs, int(held_started.read_text()))
        assert victim, "the step runs in no replica's process"
        victim_pids = {p.pid for p in rs[victim].children()}
        # A storm to every replica; the victim dies while it holds some of it.
        for i in range(15):
            posted(rs, i, notification(*(firing("ReplicaStorm", host, started)
                                         for host in hosts[10 * i:10 * i + 10])))
        def victim_claims() -> list[str]:
            store = rs.store()
            try:
                claims = store.intake_claims(time.time())
            finally:
                store.close()
            return [h for h, _ in claims if int(h.split(":")[1]) in victim_pids]
        # On Redis (the backend under test) a claim of the storm is seen every time; on
        # SQLite, the baseline, a worker holds a claim for milliseconds only: not waited
        # for long, or the held step ends before the kill (its 8 s did, on a loaded CI).
        held = wait_for(victim_claims, 20 if backend == "redis" else 2, every=0.01) or []
        assert held or backend == "sqlite", f"{victim} never held a claim on the storm"
        rs.kill(victim)
        killed_at = time.time()
        survivors = [r.name for r in rs.replicas if r.name != victim]

        # Its run: interrupted by a survivor; its lock expires; the incident goes on.
        def held_runs() -> list[dict]:
            return rs.runs("held", replica=survivors[0])
        assert wait_for(lambda: any(r["status"] == "interrupted" for r in held_runs()), 60,
                        every=0.5), f"{held_runs()}\n{rs.errors()}"
        fixed = tmp_path / "storm-done"            # the step's change: a file per host
        assert wait_for(lambda: len(list(fixed.iterdir())) == 150, 150, every=1.0), \
            f"{len(list(fixed.iterdir()))} of 150 fixed\n" + rs.errors()
        rs.settle()
        assert wait_for(lambda: all(r["status"] not in ("running", "queued")
                                    for r in held_runs()), 60, every=0.5), held_runs()
        runs = held_runs()
        [interrupted] = [r for r in runs if r["status"] == "interrupted"]
        others = [r for r in runs if r is not interrupted]
        # never two at once: every other run of the incident began after the kill
        assert all(r["started_at"] >= killed_at for r in others), runs
        lock = rs.lock("cache-1")
        assert lock is None or lock.expires_at < time.time() or lock.holder.split(":")[1] \
            not in {str(p) for p in victim_pids}, lock
        # The storm: every host fixed, none twice, whoever held its alert. A step the
        # kill cut short after its change but before its trace line is not run again:
        # its run is interrupted and its verify passes.
        assert sorted(f.name for f in fixed.iterdir()) == hosts
        counts = Counter(traced(trace))
        assert [h for h, n in counts.items() if n > 1] == []
        cut_short = {r["target"] for r in rs.runs("storm") if r["status"] == "interrupted"}
        assert set(hosts) - set(counts) <= cut_short, (sorted(set(hosts) - set(counts)),
                                                      cut_short)
        print(f"\nkilled {victim} holding {len(held)} claim(s); its run interrupted")


# -- 4. gates set through one replica hold on the others -----------------------------------

def test_a_cooldown_a_kill_switch_and_an_approval_hold_across_replicas(engine_env, tmp_path):
    hosts_inventory(engine_env, ["cache-2", "cache-3"])
    cool = touch_runbook(engine_env, "cool", "ReplicaCool", tmp_path,
                         cooldown="{max_attempts: 1, window: 1h}")
    switched = touch_runbook(engine_env, "switched", "ReplicaSwitched", tmp_path)
    careful_done = tmp_path / "careful-done"
    careful_done.mkdir()
    careful = tmp_path / "careful.trace"
    engine_env.runbook("careful", f"""
        match: [alertname="ReplicaCareful"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, approval: required,
              with: {{dir: "{careful_done}", trace: "{careful}"}}}}
    """)
    started = time.time()
    with replicas(engine_env, tmp_path, alertmanagers=0) as rs:
        # cooldown: one attempt an hour, spent through r1; a new episode on r2 waits
        posted(rs, 0, notification(firing("ReplicaCool", "cache-1", started)))
        assert wait_for(lambda: traced(cool) == ["cache-1"], 30), rs.errors()
        assert wait_for(lambda: [r["status"] for r in rs.runs("cool")] == ["succeeded"], 30)
        again = firing("ReplicaCool", "cache-1", started + 60)
        again["labels"]["check"] = "second"        # another alert of the same target
        again["fingerprint"] += "-second"
        posted(rs, 1, notification(again))

        # kill switch: switched off through r2, an alert to r3 is refused
        done = rs.cli("disable", "--target", "cache-2", "--for", "10m", "--as", "alice",
                      replica="r2")
        assert done.returncode == 0, done.stderr
        posted(rs, 2, notification(firing("ReplicaSwitched", "cache-2", started)))
        assert wait_for(lambda: [r["status"] for r in rs.runs("switched")] == ["refused"],
                        30), f"{rs.runs('switched')}\n{rs.errors()}"

        # approval: parked through r1's intake, approved through r3, runs once
        posted(rs, 0, notification(firing("ReplicaCareful", "cache-3", started)))
        pending = wait_for(lambda: rs.cli_json("pending", replica="r2"), 30)
        assert pending, rs.errors()
        [waiting] = pending
        done = rs.cli("approve", waiting["run_id"], "--as", "bob", replica="r3")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert wait_for(lambda: traced(careful) == ["cache-3"], 30), rs.errors()

        rs.settle()
        time.sleep(3)                                # several passes of every replica
        assert traced(cool) == ["cache-1"], "the cooldown did not hold on another replica"
        assert traced(switched) == [], "the kill switch did not hold on another replica"
        assert traced(careful) == ["cache-3"]
        cool_incidents = [i for i in rs.cli_json("incidents", replica="r3")
                          if i["runbook"] == "cool"]
        assert sorted(i["state"] for i in cool_incidents) == ["open", "recovered"], \
            cool_incidents                           # the second one deferred, not run


# -- 5. Redis restarted during a storm ------------------------------------------------------

def test_redis_restarted_during_a_storm_loses_nothing_acknowledged(engine_env, tmp_path):
    """The webhook answers 503 while Redis is down (Alertmanager sends again later, as
    the poster here does); once Redis is back (AOF on), every alert acknowledged before
    or after is processed once."""
    hosts = [f"node-{n:03d}" for n in range(200)]
    hosts_inventory(engine_env, hosts)
    trace = touch_runbook(engine_env, "storm", "ReplicaStorm", tmp_path)
    started = time.time()
    answers: Counter[int] = Counter()
    with replicas(engine_env, tmp_path, alertmanagers=0) as rs:
        assert rs.redis is not None

        def deliver(i: int, payload: dict) -> None:
            """Until a replica takes it (200), as Alertmanager retries; bounded."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    code = rs.post(i, payload).status_code
                except httpx.HTTPError:
                    code = 0
                answers[code] += 1
                if code == 200:
                    return
                i += 1                       # the next replica, a moment later
                time.sleep(0.2)
            raise AssertionError(f"never acknowledged: {dict(answers)}\n" + rs.errors())

        for i in range(20):                  # before the restart
            deliver(i, notification(*(firing("ReplicaStorm", host, started)
                                      for host in hosts[5 * i:5 * i + 5])))
        rs.redis.stop()                      # a clean shutdown: the AOF is complete
        for i in range(20, 25):              # while it is down: 503, then taken later
            payload = notification(*(firing("ReplicaStorm", host, started)
                                     for host in hosts[5 * i:5 * i + 5]))
            answer = rs.post(i, payload)
            answers[answer.status_code] += 1
            assert answer.status_code == 503, (answer.status_code, answer.text)
        rs.redis.start()
        for i in range(20, 40):              # the refused ones again, and the rest
            deliver(i, notification(*(firing("ReplicaStorm", host, started)
                                      for host in hosts[5 * i:5 * i + 5])))
        assert wait_for(lambda: len(set(traced(trace))) == 200, 150, every=1.0), \
            f"{len(set(traced(trace)))} of 200 ran\n" + rs.errors()
        rs.settle()
        time.sleep(2)
        counts = Counter(traced(trace))
        assert [h for h, n in counts.items() if n > 1] == []
        assert sorted(counts) == hosts
        print(f"\nanswers while Redis restarted: {dict(answers)}")


# -- 6. a replica stalled past its lease ----------------------------------------------------

def test_a_replica_stalled_past_its_lease_cannot_act_on_its_stale_lock(engine_env,
                                                                        tmp_path):
    """A replica SIGSTOPped in the middle of its step, past its lease: another replica
    gives its run up (``interrupted``), finds the target still failing its verify, takes
    the lock with a newer token and runs the step itself. The stalled one, resumed while
    that runs, does not go on acting on the host: its step is stopped, its run stays
    ``interrupted``."""
    never = tmp_path / "never-fixed"
    trace, began = sleep_runbook(
        engine_env, "stalled", "ReplicaStalled", tmp_path, 8,
        verify=f'verify: {{action: test.file_exists, with: {{path: "{never}"}}, '
               'interval: 0.1s, deadline: 0.3s}')

    def lines(pid: int) -> list[str]:
        return [line.split()[0] for line in trace.read_text().splitlines()
                if line.split()[2] == str(pid)]

    with replicas(engine_env, tmp_path, alertmanagers=0) as rs:
        posted(rs, 0, notification(firing("ReplicaStalled", "cache-1", time.time())))
        assert wait_for(began.exists, 30), rs.errors()
        pid = int(began.read_text())
        victim = engine_pid_of(rs, pid)
        assert victim, "the step runs in no replica's process"
        survivor = next(r.name for r in rs.replicas if r.name != victim)
        rs.pause(victim)
        try:
            # Past its lease: another replica gives its run up and runs the step itself.
            assert wait_for(lambda: began.read_text() != str(pid), 60, every=0.2), \
                f"{rs.runs('stalled', survivor)}\n{rs.errors()}"
            lock = rs.lock("cache-1")
            assert lock is not None and lock.holder.split(":")[1] != str(pid), lock
        finally:
            rs.resume(victim)
        other = int(began.read_text())
        assert wait_for(lambda: "sleep-end" in lines(other), 30), rs.errors()
        runs = rs.runs("stalled", survivor)
        assert runs[0]["status"] == "interrupted", runs
        assert "sleep-end" not in lines(pid), f"the stalled replica went on acting: {lines(pid)}"
