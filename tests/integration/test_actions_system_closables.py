"""file_handle_cleanup in an application that embeds the engine and registered what it
can close when idle: a real process (a child, driven line by line over stdin) holding
40 spool files, a busy file, and two redis-py pools on our own redis-server (never the
machine's 6379), one idle and one with a connection checked out. Its soft open-file
limit is set so that it is over the warning threshold. What is open is read from
outside: /proc/PID/fd, and the server's CLIENT LIST (each pool names its connections)."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.support.redis_servers import RedisServer
from tests.support.system_env import install_system_runbook

pytestmark = pytest.mark.requires("redis-server")

APP = textwrap.dedent("""
    import json, os, resource, sys, time
    import psutil, redis
    from engine import Recovery

    open('/proc/self/comm', 'w').write('fd-app')
    config, port, spool_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    recovery = Recovery.from_config(config)

    def pool(name):
        made = redis.ConnectionPool(host='127.0.0.1', port=port, client_name=name)
        for conn in [made.get_connection() for _ in range(3)]:
            made.release(conn)
        return made

    def in_use(made):
        return made.get_connection_count()[1][0]

    spool = [open(os.path.join(spool_dir, f'part-{i}'), 'w') for i in range(40)]
    written = time.time() - 3600                      # last written an hour ago
    busy_file = open(os.path.join(spool_dir, 'busy'), 'w')
    idle_pool, busy_pool = pool('idle-pool'), pool('busy-pool')
    checked_out = busy_pool.get_connection()          # a request under way
    recovery.register_closable('spool', spool, close=lambda: [f.close() for f in spool],
                               last_used=lambda: written, idle_after=300)
    recovery.register_closable('idle-pool', idle_pool, close=idle_pool.disconnect,
                               idle=lambda: in_use(idle_pool) == 0)
    recovery.register_closable('busy-pool', busy_pool, close=busy_pool.disconnect,
                               idle=lambda: in_use(busy_pool) == 0)
    recovery.register_closable('busy-file', busy_file)
    writing = recovery.closables.using('busy-file')
    writing.__enter__()                               # the application is writing to it
    fds = psutil.Process().num_fds()
    resource.setrlimit(resource.RLIMIT_NOFILE, (2 * fds, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))                  # half used: over a 40% threshold

    def answer(**what):
        print(json.dumps(what), flush=True)

    answer(ready=True)
    for line in sys.stdin:
        command = line.strip()
        if command == 'check':
            [run] = recovery.check('system', strategy='file_handle_cleanup')
            answer(status=run.status.value, reason=run.reason, check_mode=run.check_mode)
        elif command == 'trigger':
            incident = recovery.trigger('system', 'file_handles_exhausted').wait(60)
            runs = recovery.context.store.query_runs(component='system', limit=None)
            runs = sorted(runs, key=lambda r: r.started_at)
            answer(state=incident.state.value, why=incident.reason,
                   reasons=[r.reason for r in runs if not r.check_mode])
        elif command == 'use':
            busy_file.write('still writing')
            busy_file.flush()
            checked_out.send_command('PING')
            answer(idle=redis.Redis(connection_pool=idle_pool).ping(),
                   busy=checked_out.read_response().decode())
        else:
            break
    recovery.close()
""")


class App:
    """The child application: one command a line, one JSON answer a line (bounded)."""

    def __init__(self, config: str, port: int, spool: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", APP, config, str(port), spool],
                                     env=env, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.ps = psutil.Process(self.proc.pid)

    def read(self, timeout: float = 90) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"no answer from the application in {timeout}s"
        line = self.proc.stdout.readline()
        assert line, f"the application exited: {self.proc.wait(10)}"
        return json.loads(line.decode() if isinstance(line, bytes) else line)

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def open_paths(self) -> list[str]:
        """What its descriptors point at, read from /proc as any outsider can."""
        folder = f"/proc/{self.proc.pid}/fd"
        paths = []
        for fd in os.listdir(folder):
            try:
                paths.append(os.readlink(f"{folder}/{fd}"))
            except FileNotFoundError:       # closed meanwhile
                continue
        return paths

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def pool_clients(server: RedisServer) -> dict[str, int]:
    """How many connections each named pool holds on the server."""
    counts: dict[str, int] = {}
    for client in server.client().client_list():
        if client["name"]:
            counts[client["name"]] = counts.get(client["name"], 0) + 1
    return counts


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def test_idle_closables_are_closed_busy_ones_kept_and_the_check_changes_nothing(
        engine_env, redis_server, tmp_path):
    install_system_runbook(engine_env.root, {"fd_watch_processes": ["fd-app"],
                                             "fd_warn_percent": 40,
                                             "fd_raise_processes": ["fd-app"]})
    spool = tmp_path / "spool"
    spool.mkdir()
    app = App(str(engine_env.config_path), redis_server.port, str(spool), engine_env.env())
    try:
        assert app.read() == {"ready": True}
        soft, hard = app.ps.rlimit(psutil.RLIMIT_NOFILE)
        before = app.open_paths()
        assert sum(p.startswith(f"{spool}/part-") for p in before) == 40
        assert len(before) >= 0.4 * soft              # about half its limit: over 40%
        assert pool_clients(redis_server) == {"idle-pool": 3, "busy-pool": 3}

        planned = app.ask("check")
        assert planned["check_mode"] and planned["status"] == "succeeded", planned
        reason = planned["reason"]
        assert re.search(r"would close spool \(unused for 36\d\ds\)", reason), reason
        assert "would close idle-pool (idle by its check)" in reason
        assert "left busy-pool open: busy by its check" in reason
        assert "left busy-file open: in use (1 inside using())" in reason
        assert (f"would raise fd-app (pid {app.proc.pid}) soft limit {soft} -> {hard} "
                "unless closing its idle closables brings it under 40%") in reason
        assert sorted(app.open_paths()) == sorted(before)          # nothing closed
        assert pool_clients(redis_server) == {"idle-pool": 3, "busy-pool": 3}
        assert app.ps.rlimit(psutil.RLIMIT_NOFILE) == (soft, hard)

        done = app.ask("trigger")
        assert done["state"] == "recovered", done
        [reason] = done["reasons"]
        freed = re.search(r"closed spool \(unused for 36\d\ds; (\d+) fd\(s\) freed\)", reason)
        assert freed and int(freed.group(1)) >= 40, reason
        assert "closed idle-pool (idle by its check; " in reason
        assert "left busy-pool open: busy by its check" in reason
        assert "left busy-file open: in use (1 inside using())" in reason
        assert "no process at 40% of its open-file limit: nothing to raise" in reason
        assert "verified by system.file_handles" in reason

        after = app.open_paths()
        assert not any(p.startswith(f"{spool}/part-") for p in after)   # really closed
        assert f"{spool}/busy" in after                                    # kept
        assert len(after) < 0.4 * soft < len(before)            # under the threshold now
        assert pool_clients(redis_server) == {"busy-pool": 3}        # idle pool's gone
        assert app.ps.rlimit(psutil.RLIMIT_NOFILE) == (soft, hard)  # no raise needed

        # what was kept still works; the closed pool connects again when next used
        assert app.ask("use") == {"idle": True, "busy": "PONG"}
        assert pool_clients(redis_server) == {"idle-pool": 1, "busy-pool": 3}
    finally:
        app.stop()


def test_when_closing_is_not_enough_the_soft_limit_is_raised_where_allowed(
        engine_env, redis_server, tmp_path):
    """A 5% threshold: after the idle ones are closed the application is still over it
    (the busy ones stay open). Not allowed a raise: the step fails and says so, having
    closed what was idle. Allowed (a new application, as the inventory is read at
    start): its soft limit goes to the hard one and the verify sees the headroom."""
    spool = tmp_path / "spool"
    spool.mkdir()
    watched = {"fd_watch_processes": ["fd-app"], "fd_warn_percent": 5}
    for allowed in (False, True):
        install_system_runbook(engine_env.root, {**watched, **(
            {"fd_raise_processes": ["fd-app"]} if allowed else {})})
        app = App(str(engine_env.config_path), redis_server.port, str(spool),
                  engine_env.env())
        try:
            assert app.read() == {"ready": True}
            soft, hard = app.ps.rlimit(psutil.RLIMIT_NOFILE)
            done = app.ask("trigger")
            reason = done["reasons"][-1]
            assert "closed spool (" in reason and "closed idle-pool (" in reason, reason
            assert not any(p.startswith(f"{spool}/part-") for p in app.open_paths())
            assert f"{spool}/busy" in app.open_paths()
            assert pool_clients(redis_server) == {"busy-pool": 3}
            if not allowed:
                assert done["state"] == "failed", done
                assert f"fd-app (pid {app.proc.pid}) " in reason
                assert "not in fd_raise_processes, report only" in reason
                assert app.ps.rlimit(psutil.RLIMIT_NOFILE) == (soft, hard)
            else:
                assert done["state"] == "recovered", done
                assert f"raised fd-app (pid {app.proc.pid}) soft limit {soft} -> {hard}" \
                    in reason
                assert "verified by system.file_handles" in reason
                assert app.ps.rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)
        finally:
            app.stop()
