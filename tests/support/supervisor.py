"""A real ``supervisord`` (PyPI ``supervisor``) for tests whose playbooks stop, start or
restart a program: ChromaDB's server around a snapshot rollback, a process that
``process_restart`` restarts. Its own folder, socket and logs; every wait bounded; the
programs it started are stopped with it (``stopasgroup``/``killasgroup``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
START = 30.0     # bound on supervisord answering, seconds


@dataclass
class Program:
    """One ``[program:x]`` section."""

    command: list[str]
    directory: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    startsecs: int = 1
    stopwaitsecs: int = 10


def _quote(word: str) -> str:
    """supervisord splits ``command`` with shlex: quote each word."""
    import shlex

    return shlex.quote(word)


class Supervisor:
    """``supervisord -c root/supervisord.conf`` in the foreground of a child process."""

    def __init__(self, root: Path, programs: Mapping[str, Program],
                 launcher: Sequence[str] = ()) -> None:
        self.root = root
        # what supervisord is started under, e.g. `ip netns exec NS` (a test host's network)
        self.launcher = list(launcher)
        self.programs = dict(programs)
        self.conf = root / "supervisord.conf"
        self.socket = root / "supervisor.sock"
        self.proc: subprocess.Popen | None = None

    def config_text(self) -> str:
        lines = [
            "[unix_http_server]", f"file={self.socket}", "chmod=0700", "",
            "[supervisord]", f"logfile={self.root / 'supervisord.log'}",
            f"pidfile={self.root / 'supervisord.pid'}", f"childlogdir={self.root}",
            "nodaemon=true", "loglevel=info", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]", f"serverurl=unix://{self.socket}", "",
        ]
        for name, program in self.programs.items():
            lines += [f"[program:{name}]",
                      "command=" + " ".join(_quote(w) for w in program.command),
                      "autostart=true", "autorestart=false",
                      f"startsecs={program.startsecs}", f"stopwaitsecs={program.stopwaitsecs}",
                      "stopasgroup=true", "killasgroup=true",
                      f"stdout_logfile={self.root / (name + '.out')}",
                      f"stderr_logfile={self.root / (name + '.err')}"]
            if program.directory is not None:
                lines.append(f"directory={program.directory}")
            if program.environment:
                pairs = ",".join(f'{k}="{v}"' for k, v in program.environment.items())
                lines.append(f"environment={pairs}")
            lines.append("")
        return "\n".join(lines)

    def start(self, timeout: float = START) -> Supervisor:
        self.root.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text())
        self.proc = subprocess.Popen([*self.launcher, str(BIN / "supervisord"), "-c",
                                      str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if self.socket.exists() and self.ctl("pid").returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"supervisord did not answer within {timeout}s: {self.log_tail()}")

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """``supervisorctl -c conf ARGS`` (what a playbook runs, with ``argv``)."""
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=timeout)

    def pid(self, name: str) -> int | None:
        """The program's pid while it runs, else None."""
        out = self.ctl("pid", name).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def wait_running(self, name: str, timeout: float = START) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.ctl("status", name).stdout
            if "RUNNING" in status:
                pid = self.pid(name)
                if pid:
                    return pid
            time.sleep(0.1)
        raise RuntimeError(f"{name} not RUNNING within {timeout}s: "
                           f"{self.ctl('status', name).stdout.strip()}")

    def log_tail(self, name: str | None = None, size: int = 3000) -> str:
        path = self.root / (f"{name}.err" if name else "supervisord.log")
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """Shut supervisord down (it stops its programs first); killed if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
