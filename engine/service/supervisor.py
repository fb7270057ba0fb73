"""``recovery serve``: one parent process that starts, watches and stops the service.

The process model::

    recovery serve                 the parent (``Service``): runs no request and no step;
    │                              it starts its children, restarts one that dies, and
    │                              stops them in order on SIGTERM/SIGINT; on SIGHUP it
    │                              runs ``recovery reload`` (a child of its own, below)
    ├── gunicorn master            ``webhook:create_app()`` on gthread workers
    │   └── http workers           pre-forked; gunicorn may recycle one at any moment
    └── engine worker × N          ``python -m engine.service.worker_process``: ``Worker.run_once``
                                   every ``poll_interval`` (engine.service.worker_process)

Steps run in the engine worker processes only: a request worker that gunicorn recycles
(timeout, crash) must never take a half-run playbook with it. The children share
nothing but the store.

Each child is a process group of its own, so Ctrl-C at a terminal reaches the parent
alone, which then stops the children in order: gunicorn first gets SIGTERM (it stops
accepting, finishes the requests in flight within ``graceful_timeout``), the engine
workers get SIGTERM (they claim nothing new, let running steps finish within
``shutdown_grace`` and mark the rest ``interrupted``). The parent waits for them,
bounded, kills what is left, and removes the private data dirs their interrupted steps
left (engine.executors.private_dirs; it sweeps at start-up too). Children never outlive
the parent: each gets SIGTERM when it dies (``PR_SET_PDEATHSIG``; the engine workers also
watch their parent's pid, gunicorn's workers watch theirs).

gunicorn reads a ``gunicorn.conf.py`` in the working directory, as it always does (to
tune what is not set here); the flags given here (bind, workers, TLS, timeouts) win over it.
``GUNICORN_CMD_ARGS`` is not passed on: nothing changes the bind behind the TLS check.
(gunicorn is given ``--config engine/service/gunicorn_conf.py``, which reads that file itself and
adds the ``child_exit`` hook of the metrics.)

Reload: SIGHUP never stops the service. The parent runs ``python -m engine reload`` (one
at a time; a SIGHUP during one runs another after it), which validates the runbooks,
playbooks and inventory on disk and, only when all are valid, records them in force in
the store (engine.runbooks.loaded_set); every child switches to them by itself before its next
claim or request. A refused set leaves the old one in force; the reasons are in the log.
The children are process groups of their own, so a SIGHUP to the service (or a closed
terminal) reaches the parent alone; an engine worker ignores one sent to it directly, and
gunicorn's master, sent one directly, restarts its http workers (which load the set in
force).

Metrics: each http worker counts the webhook's answers (``webhook.request_metrics``) in
prometheus_client's multiprocess mode, so whichever worker answers ``/metrics`` shows the
sum of all. ``PROMETHEUS_MULTIPROC_DIR`` is set for gunicorn alone (the engine workers
count nothing there) to ``RECOVERY_HOME/metrics/serve-<pid of this parent>``: created 0700
and empty at every start; a folder left by a service that died without cleaning up is
removed at the next start, that of a service still running on the same home is left
alone; a clean stop removes its own.

What it cannot do: restart a child that keeps dying at once forever (after
``MAX_QUICK_DEATHS`` quick deaths in a row the service stops, exit 1, with the reason),
or serve TLS without a certificate (a non-loopback bind is refused without ``webhook.tls``
or ``webhook.behind_tls_proxy``).
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from engine.config import Config
from engine.durations import parse_duration
from engine.liveness import alive_since
from engine.replica import replica_of
from engine.service.log_format import ACCESS_LOG_ENV, FORMAT_ENV, REPLICA_ENV
from engine.service.store_wait import StoreWait

log = logging.getLogger(__name__)

DEFAULT_BIND = "127.0.0.1:9797"
HTTP_THREADS = 8                  # gthread threads per http worker
RESTART_BACKOFF_MAX = 30.0        # seconds between restarts of a child that keeps dying
STABLE_AFTER = 60.0               # a child that lived this long died "unexpectedly", not "at once"
QUICK_DEATH = 10.0                # ... and one that lived less died "at once"
MAX_QUICK_DEATHS = 5              # in a row: the service gives up (exit 1)
SHUTDOWN_MARGIN = 10.0            # beyond the grace: then what is left is killed
POLL = 0.2
METRICS_DIR = "metrics"           # under RECOVERY_HOME: one folder per running service
MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


def root_warning(euid: int) -> str | None:
    """What a service run as root says at its start (None for any other user): why its
    own protections mean nothing then, and the way out."""
    if euid != 0:
        return None
    return ("running as root (uid 0): the permissions this service relies on "
            "(RECOVERY_HOME 0700; its database, token files and artifacts 0600) keep other "
            "users out but never root, so every process running as root can read its "
            "tokens and approve steps through its store; and every playbook and python "
            "action runs with root's powers whether it needs them or not. Run it as a "
            "dedicated user (a systemd unit: docs/operations.md, \"Running as a dedicated "
            "user\"); a playbook that needs root asks for it with `become`")


def earlier_private_dirs_warning(dirs: list[Path], shown: int = 20) -> str | None:
    """What a start says of the private data dirs an earlier version left (None when
    there are none; engine.executors.private_dirs.earlier_version_dirs): which, why they
    matter, and what to do."""
    if not dirs:
        return None
    listed = ", ".join(str(d) for d in dirs[:shown])
    more = f" and {len(dirs) - shown} more" if len(dirs) > shown else ""
    return (f"{len(dirs)} private data dir(s) left by an earlier version (named without "
            f"a pid, so never removed by the sweep): {listed}{more}. They may hold a "
            "run's secrets in clear (extravars, unredacted output): remove them by hand "
            "once no run of that version is under way (`rm -rf -- DIR`; "
            "docs/operations.md, \"After a crash, a full disk or a deleted database\")")


def open_metrics_warning(url: str) -> str:
    """What a start says when ``/metrics`` needs no credential (``webhook.metrics_auth:
    false``, which the shipped recovery.yml of earlier versions spelled): what it
    shows, to whom, and how to close it."""
    return (f"/metrics is open (webhook.metrics_auth: false in recovery.yml): whoever "
            f"reaches {url} reads the inventory host names, components and degraded modes "
            "it lists. To close it, remove `metrics_auth: false` and restart: /metrics then "
            "needs a metrics token (the start generates RECOVERY_HOME/metrics.token, or "
            "`recovery token add prometheus --role metrics`), which Prometheus sends "
            "(docs/operations.md, \"Credentials and roles\")")


class ServiceError(ValueError):
    """A setting that keeps the service from starting (exit code 2), with the reason."""


@dataclass(frozen=True)
class ServiceSettings:
    """What ``recovery serve`` runs, from its flags and ``recovery.yml``'s ``webhook:``.

    ``webhook:`` keys: ``bind`` (127.0.0.1:9797), ``http_workers`` (2), ``workers`` (engine
    worker processes, 1), ``shutdown_grace`` (30s: running steps may finish), ``graceful_timeout``
    (10s: requests in flight may finish), ``request_timeout`` (30s: gunicorn recycles a request
    worker silent that long), ``access_log`` (false: to stderr when true), ``tls: {certfile,
    keyfile}`` (paths relative to recovery.yml), ``behind_tls_proxy`` (a proxy terminates TLS).
    """

    host: str
    port: int
    http_workers: int = 2
    workers: int = 1
    shutdown_grace: float = 30.0
    graceful_timeout: float = 10.0
    request_timeout: float = 30.0
    access_log: bool = False
    certfile: Path | None = None
    keyfile: Path | None = None
    behind_tls_proxy: bool = False

    @property
    def bind(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.bind}"

    @classmethod
    def from_config(cls, config: Config, *, bind: str | None = None,
                    workers: int | None = None, http_workers: int | None = None
                    ) -> ServiceSettings:
        hook = config.webhook
        host, port = parse_bind(bind or str(hook.get("bind") or DEFAULT_BIND))
        certfile, keyfile = _tls_files(config)
        proxied = hook.get("behind_tls_proxy") is True
        if not is_loopback(host) and certfile is None and not proxied:
            raise ServiceError(
                f"refusing to serve on {host}:{port} without TLS: the webhook can restart "
                "production services, and its tokens would cross the network in clear. "
                "Bind to loopback (127.0.0.1), or set webhook.tls {certfile, keyfile}, or "
                "webhook.behind_tls_proxy: true when a proxy terminates TLS in front of it")
        return cls(
            host=host, port=port,
            http_workers=http_workers or _count(hook, "http_workers", 2),
            workers=workers or _count(hook, "workers", 1),
            shutdown_grace=shutdown_grace(config),
            graceful_timeout=_seconds(hook, "graceful_timeout", 10),
            request_timeout=_seconds(hook, "request_timeout", 30),
            access_log=hook.get("access_log") is True,
            certfile=certfile, keyfile=keyfile, behind_tls_proxy=proxied)


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ServiceError with the reason."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ServiceError(f"--bind {text!r}: expected HOST:PORT (e.g. {DEFAULT_BIND})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ServiceError(f"--bind {text!r}: write an IPv6 address in brackets ([::1]:9797)")
    try:
        port = int(port_text)
    except ValueError:
        raise ServiceError(f"--bind {text!r}: the port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ServiceError(f"--bind {text!r}: the port must be between 1 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    """Only what certainly stays on this machine: a loopback address or ``localhost``.
    Any other name counts as off loopback (it may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_files(config: Config) -> tuple[Path | None, Path | None]:
    tls = config.webhook.get("tls")
    if not tls:
        return None, None
    if not isinstance(tls, dict) or not tls.get("certfile") or not tls.get("keyfile"):
        raise ServiceError("webhook.tls: give {certfile: PATH, keyfile: PATH} (or set "
                           "webhook.behind_tls_proxy: true when a proxy terminates TLS)")
    files = []
    for key in ("certfile", "keyfile"):
        path = Path(str(tls[key]))
        path = path if path.is_absolute() else config.base_dir / path
        if not path.is_file():
            raise ServiceError(f"webhook.tls.{key}: {path} is not a file")
        files.append(path)
    return files[0], files[1]


def shutdown_grace(config: Config) -> float:
    """How long running steps may finish once the service is asked to stop."""
    return _seconds(config.webhook, "shutdown_grace", 30)


def _count(hook: dict, key: str, default: int) -> int:
    value = hook.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ServiceError(f"webhook.{key}: {value!r} is not a whole number of at least 1")
    return value


def _seconds(hook: dict, key: str, default: float) -> float:
    try:
        return parse_duration(hook.get(key, default))
    except ValueError as exc:
        raise ServiceError(f"webhook.{key}: {exc}") from None


# -- the metrics folder of the http workers ------------------------------------------------


def metrics_dir(home: Path, pid: int) -> Path:
    """The ``PROMETHEUS_MULTIPROC_DIR`` of the service whose parent is ``pid``."""
    return home / METRICS_DIR / f"serve-{pid}"


def prepare_metrics_dir(home: Path, pid: int) -> Path:
    """``metrics_dir(home, pid)``, created empty (0700, as ``RECOVERY_HOME/metrics``), and
    every other folder there removed unless its service is still running."""
    root = home / METRICS_DIR
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        root.unlink()                       # not ours to follow: our 0700 home holds it
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    mine = metrics_dir(home, pid)
    for entry in root.iterdir():
        if entry != mine and _service_running(entry):
            continue
        _remove(entry)
    mine.mkdir(mode=0o700)
    os.chmod(mine, 0o700)
    return mine


def remove_metrics_dir(path: Path) -> None:
    _remove(path)


def sweep_private_dirs() -> None:
    """At start-up, before any child runs a step, and once the children are gone: the
    private data dirs (secrets in clear) of runs whose process died, a previous start's
    killed workers included, are read for their runs' records and removed, and so are
    Ansible's temp dirs of dead processes (engine.executors.private_dirs)."""
    from engine.executors import private_dirs

    try:
        private_dirs.sweep()
    except Exception:  # noqa: BLE001 - the workers sweep again; the start goes on
        log.exception("could not sweep the private data dirs of dead runs")


def _service_running(entry: Path) -> bool:
    """Is the service that made ``entry`` (``serve-<pid>``) running? A pid reused since
    then belongs to a process started after the folder last changed."""
    prefix, _, pid = entry.name.partition("-")
    if prefix != "serve" or not pid.isdigit() or entry.is_symlink() or not entry.is_dir():
        return False
    try:
        return alive_since(int(pid), entry.stat().st_ctime)
    except OSError:
        return False


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("metrics: cannot remove %s: %s", path, exc)


# -- children ------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1
try:  # loaded here, in the parent: nothing but one call is done between fork and exec
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
except (OSError, AttributeError):
    _prctl = None


def _die_with(parent: int):
    """For ``preexec_fn``: SIGTERM this child when its parent dies (Linux), and never
    start at all if the parent is already gone."""
    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    """One process the service keeps running, restarted with a bounded backoff."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    quick_deaths: int = 0

    def start(self) -> None:
        # stdout to our stderr: the parent's stdout carries the first-start banner only.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=sys.stderr,
            process_group=0, preexec_fn=_die_with(os.getpid()))
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        """The child and whatever it started in its group (gunicorn's workers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Service:
    """The parent of ``recovery serve``. ``run()`` returns the exit code: 0 after a
    requested stop, 1 when a child cannot be kept running."""

    def __init__(self, config: Config, settings: ServiceSettings, *,
                 log_level: str = "INFO", log_format: str = "text",
                 store_wait: StoreWait | None = None) -> None:
        self.config = config
        self.settings = settings
        # Started while the store was down: the start-up checks that need it, asked once
        # it answers (engine.service.store_wait); refused then, the service stops (exit 2).
        self.store_wait = store_wait
        env = dict(os.environ)
        env.pop("GUNICORN_CMD_ARGS", None)  # nothing may change the bind behind our back
        env.update({
            "RECOVERY_CONFIG": str(config.path),
            "RECOVERY_HOME": str(config.home),
            "RECOVERY_SERVICE_PID": str(os.getpid()),
            "RECOVERY_LOG_LEVEL": log_level,
            FORMAT_ENV: log_format,               # engine.service.log_format
            REPLICA_ENV: replica_of(config),
            ACCESS_LOG_ENV: "1" if settings.access_log else "0",
            "PYTHONUNBUFFERED": "1",
        })
        engine_env = {k: v for k, v in env.items() if k not in MULTIPROC_ENV}
        self.metrics_dir = metrics_dir(config.home, os.getpid())
        http_env = {**engine_env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self.engine_env = engine_env
        self.http = Child("http server (gunicorn)", self._gunicorn_argv(log_level), http_env)
        self.workers = [Child(f"engine worker {i + 1}",
                              [sys.executable, "-m", "engine.service.worker_process"], engine_env)
                        for i in range(settings.workers)]
        self.signals = 0
        self.failure: str | None = None
        self.failure_code = 1
        self.http_up = False
        self.hangups = 0                  # SIGHUPs received; each asks for a reload
        self.reloads = 0                  # ... and how many of them a reload has served
        self.reloader: subprocess.Popen | None = None
        # json logs: the reload's report is captured and said line by line as log lines
        self.log_format = log_format
        self.reload_output: IO[bytes] | None = None

    @property
    def children(self) -> list[Child]:
        return [self.http, *self.workers]

    def _gunicorn_argv(self, log_level: str) -> list[str]:
        s = self.settings
        argv = [sys.executable, "-m", "gunicorn",
                "--bind", s.bind,
                "--worker-class", "gthread", "--threads", str(HTTP_THREADS),
                "--workers", str(s.http_workers),
                "--graceful-timeout", str(max(1, round(s.graceful_timeout))),
                "--timeout", str(max(1, round(s.request_timeout))),
                "--no-control-socket",              # its default path is shared by all
                "--config", str(GUNICORN_CONF),     # ./gunicorn.conf.py + child_exit
                "--error-logfile", "-",
                "--log-level", "debug" if log_level == "DEBUG" else "info"]
        if os.path.isdir("/dev/shm"):
            argv += ["--worker-tmp-dir", "/dev/shm"]  # worker heartbeats off the disk
        if s.access_log:
            argv += ["--access-logfile", "-"]       # our stdout: the parent's stderr
        if s.certfile is not None and s.keyfile is not None:
            argv += ["--certfile", str(s.certfile), "--keyfile", str(s.keyfile)]
        return argv + ["webhook:create_app()"]

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> int:
        saved = {sig: signal.signal(sig, self._on_signal)
                 for sig in (signal.SIGTERM, signal.SIGINT)}
        saved[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            prepare_metrics_dir(self.config.home, os.getpid())
            sweep_private_dirs()
            if self.store_wait is not None:
                self.store_wait.start()
            for child in self.children:
                if self.signals:
                    break
                child.start()
            log.info("started %s (pid %s) and %d engine worker(s) (pids %s)", self.http.name,
                     self.http.pid, len(self.workers),
                     ", ".join(str(w.pid) for w in self.workers))
            while not self.signals and self.failure is None:
                self._refuse_if_store_refused()
                self._supervise(time.monotonic())
                self._reload_if_asked()
                time.sleep(POLL)
        finally:
            if self.store_wait is not None:
                self.store_wait.stop()
            self._stop_reloader()
            self._shutdown()
            remove_metrics_dir(self.metrics_dir)
            sweep_private_dirs()   # what steps interrupted past the grace left behind
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        if self.failure is not None:
            log.error("recovery serve stopped: %s", self.failure)
            return self.failure_code
        log.info("recovery serve stopped")
        return 0

    def _refuse_if_store_refused(self) -> None:
        """A store that came up after the start with settings that would lose state (or
        half-migrated): the service stops, exit 2, as a start on it would have."""
        if self.store_wait is not None and self.store_wait.refused is not None:
            self.failure = f"the store refused at its first answer: {self.store_wait.refused}"
            self.failure_code = 2

    def _on_signal(self, signum: int, frame: object) -> None:
        # Flags only: the loop and the shutdown act on them.
        self.signals += 1
        if self.signals == 1:
            log.info("%s: stopping (the HTTP server first; running steps may finish "
                        "within %gs; send again to cut the grace short)",
                        signal.Signals(signum).name, self.settings.shutdown_grace)

    def _on_hangup(self, signum: int, frame: object) -> None:
        self.hangups += 1   # a flag only: the loop starts the reload

    def _reload_if_asked(self) -> None:
        """Run ``recovery reload`` for the SIGHUPs received, one at a time, never waiting
        for it here: the loop keeps supervising the children meanwhile."""
        if self.reloader is not None:
            code = self.reloader.poll()
            if code is None:
                return
            self._say_reload_output()
            if code == 0:
                log.info("SIGHUP: reload done (its report is above)")
            else:
                log.error("SIGHUP: reload refused or failed (exit %d): the set in force "
                          "stays (the reasons are above)", code)
            self.reloader = None
        if self.hangups == self.reloads:
            return
        self.reloads = self.hangups
        log.info("SIGHUP: validating the runbooks, playbooks and inventory (recovery reload)")
        self.reload_output = tempfile.TemporaryFile() if self.log_format == "json" else None
        self.reloader = subprocess.Popen(
            [sys.executable, "-m", "engine", "reload",
             "--as", f"SIGHUP to recovery serve (pid {os.getpid()})"],
            env=self.engine_env, stdin=subprocess.DEVNULL,
            stdout=self.reload_output or sys.stderr,
            stderr=subprocess.STDOUT if self.reload_output else None,
            process_group=0, preexec_fn=_die_with(os.getpid()))

    def _say_reload_output(self) -> None:
        """The captured report of a finished reload, one log line per line (json logs)."""
        if self.reload_output is None:
            return
        with self.reload_output as output:
            output.seek(0)
            for line in output.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.info("reload: %s", line)
        self.reload_output = None

    def _stop_reloader(self) -> None:
        """Stopping: a reload under way is abandoned (it records nothing until its end)."""
        if self.reloader is not None and self.reloader.poll() is None:
            self.reloader.terminate()
            try:
                self.reloader.wait(5)
            except subprocess.TimeoutExpired:
                self.reloader.kill()
                self.reloader.wait(5)
        self._say_reload_output()

    def _supervise(self, now: float) -> None:
        for child in self.children:
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    log.warning("restarting %s", child.name)
                    child.start()
                continue
            code = child.proc.poll()
            if code is None:
                continue
            lived = now - child.started_at
            why = f"{child.name} (pid {child.proc.pid}) {describe_exit(code)} after {lived:.1f}s"
            child.proc = None
            if child is self.http and not self.http_up:
                self.failure = (f"the HTTP server did not start: {why} (its log is above; "
                                f"is {self.settings.bind} free?)")
                return
            child.quick_deaths = child.quick_deaths + 1 if lived < QUICK_DEATH else (
                1 if lived < STABLE_AFTER else 0)
            if child.quick_deaths >= MAX_QUICK_DEATHS:
                self.failure = f"{why}, {child.quick_deaths} times in a row: giving up"
                return
            delay = min(RESTART_BACKOFF_MAX, 2.0 ** max(0, child.quick_deaths - 1))
            log.warning("%s; restarting it in %gs", why, delay)
            child.restart_at = now + delay
        if not self.http_up and self.http.alive() and self._answers():
            self.http_up = True
            log.info("serving %s (gunicorn pid %s, %d http workers x %d threads); "
                        "%d engine worker process(es); replica %s", self.settings.url,
                        self.http.pid, self.settings.http_workers, HTTP_THREADS,
                        len(self.workers), replica_of(self.config))

    def _answers(self) -> bool:
        """Our gunicorn listens on the port (not merely: something answers there)."""
        try:
            sockets = psutil.Process(self.http.pid).net_connections(kind="inet")
        except (psutil.Error, TypeError):
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and
                   c.laddr.port == self.settings.port for c in sockets)

    def _shutdown(self) -> None:
        """Stop taking requests, then let the workers finish (bounded), then kill the rest."""
        self.http.signal(signal.SIGTERM)            # graceful: stop accepting, finish requests
        for worker in self.workers:
            worker.signal(signal.SIGTERM)           # claim nothing new, finish or interrupt
        s = self.settings
        deadline = time.monotonic() + max(s.shutdown_grace, s.graceful_timeout) + SHUTDOWN_MARGIN
        seen = self.signals
        while any(c.alive() for c in self.children) and time.monotonic() < deadline:
            if self.signals > max(seen, 1):
                seen = self.signals                 # asked again: cut the graces short
                log.warning("stopping now: the HTTP server at once, running steps "
                            "interrupted")
                self.http.signal(signal.SIGQUIT)
                for worker in self.workers:
                    worker.signal(signal.SIGTERM)
            time.sleep(0.05)
        for child in self.children:
            if child.alive():
                log.error("%s (pid %s) still running %.0fs after SIGTERM: killed", child.name,
                          child.pid, max(s.shutdown_grace, s.graceful_timeout) + SHUTDOWN_MARGIN)
                child.kill_group()
            if child.proc is not None:
                try:
                    child.proc.wait(5)
                except subprocess.TimeoutExpired:
                    log.error("%s (pid %s) did not die", child.name, child.pid)
