"""Run one playbook with ansible-runner and turn what happened into a ``StepResult``.

Every run gets a fresh private data dir (mode 0700, on tmpfs when ``/dev/shm`` is
writable) and a unique ``ident``: a reused dir carries ``env/`` files (extravars,
``--check``) into the next run and a reused ident mixes two runs' events. The private
dir holds runner's own artifacts, including the ``command`` file with the whole
child environment, and the extravars file; it is deleted once the run ends, whatever
the way it ends, and named ``recovery-<run id>-<pid>`` so that, if this process is
killed first, another one removes it (engine.executors.private_dirs). ``RECOVERY_HOME``
only ever receives redacted copies: each job event
as it arrives (so ``recovery show --follow`` sees a live run), then ``status`` and
``rc``. The ``command`` artifact is not copied; ``run.json`` records the command line
and working directory, never the environment.

Labels are data, never code. Ansible templates extravars again after we pass them, so
the engine writes its own extravars file, tagged ``!unsafe`` as a whole so that every
string in it, at any depth, stays text (ansible-runner's ``env/extravars`` loader would
drop the tag), and refuses keys that could change how or where Ansible connects
(``ansible_*``, ``become``, ``port`` ...). The limit is plain host names, never a pattern.

Secrets: the child gets our environment minus every secret-named variable
(``REDIS_PASSWORD``, ``RECOVERY_API_TOKEN`` ...) unless given on purpose in
``envvars``; whatever it prints still passes a redactor that knows the values of those
variables and of secret-named extravars (a copy: the caller's redactor is unchanged).

What this cannot do: it cannot undo what a playbook already changed when it times out
or is canceled (the process group is killed between two tasks or in the middle of
one); it cannot stop a playbook from printing a secret that the redactor does not
know; and it hashes only the top-level playbook file, not files it includes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ansible_runner.config.runner import RunnerConfig
from ansible_runner.runner import Runner

from engine import fault_injection
from engine.artifacts import RunArtifacts, runner_event
from engine.compat import skip_pty_close_pause
from engine.executors import StepResult
from engine.executors.host_outcomes import host_outcomes, status_of
from engine.executors.private_dirs import (
    RUN_MARKER,
    kill_marked_processes,
    make_private_dir,
    private_root,
)
from engine.lifecycle import HostOutcome, RunStatus
from engine.outages import describe, is_outage
from engine.security.redaction import Redactor, is_secret_name

log = logging.getLogger(__name__)

# Timeouts and cancels are only looked at once per pexpect timeout (5 s by default).
PEXPECT_TIMEOUT = 0.5
SYNTAX_CHECK_TIMEOUT = 120.0
MAX_REASON_MSG = 400

_PLAYBOOK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.ya?ml$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Extravars have the highest precedence in Ansible: any of these would let whoever
# controls a value choose how, where or as whom Ansible connects, or shadow a magic var.
FORBIDDEN_EXTRAVARS = frozenset({
    "connection", "remote_user", "user", "password", "port", "host", "hosts",
    "become", "become_user", "become_method", "become_pass", "become_password",
    "become_exe", "become_flags", "private_key_file", "ssh_common_args", "ssh_extra_args",
    "ssh_args", "ssh_executable", "sftp_extra_args", "scp_extra_args", "delegate_to",
    "environment", "remote_tmp",
    "hostvars", "groups", "group_names", "inventory_hostname", "inventory_hostname_short",
    "inventory_dir", "inventory_file", "playbook_dir", "role_path", "play_hosts", "omit",
    "recovery_run_id",
})

# Secret-looking names that carry a path, not a secret: ssh and vault need them.
_ENV_KEEP = frozenset({"SSH_AUTH_SOCK", "ANSIBLE_VAULT_PASSWORD_FILE"})

# Runner events the outcome is decided from (the rest only go to the artifacts).
_OUTCOME_EVENTS = frozenset({
    "runner_on_failed", "runner_on_unreachable", "playbook_on_stats",
    "playbook_on_no_hosts_matched", "verbose", "error",
})


class _UnsafeRoot(dict):  # type: ignore[type-arg]
    """The extravars mapping, dumped as ``!unsafe {...}``.

    The tag goes on the root, not on each string: ansible-core 2.19 constructs an
    ``!unsafe`` scalar by resolving its text again as if it were unquoted, so
    ``!unsafe '123'`` becomes an int, ``!unsafe 'yes'`` True, and ``!unsafe '*'`` or
    ``'='`` fail to parse. Under an ``!unsafe`` collection every string inside, keys
    included and at any depth, is constructed untrusted and keeps its quoted type.
    """


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_UnsafeRoot, lambda d, v: d.represent_mapping("!unsafe", dict(v)))


def check_extravars(extravars: Mapping[str, Any]) -> dict[str, Any]:
    """Plain data (str keys, lists, scalars) with no key that steers Ansible, or ValueError."""
    if not isinstance(extravars, Mapping):
        raise ValueError("extravars must be a mapping")
    clean: dict[str, Any] = {}
    for key, value in extravars.items():
        if not isinstance(key, str) or not _VAR_NAME.match(key):
            raise ValueError(f"extravar name {key!r} is not a valid variable name")
        low = key.lower()
        if low.startswith("ansible_") or low in FORBIDDEN_EXTRAVARS:
            raise ValueError(
                f"extravar {key!r} is refused: it would steer how Ansible connects or runs"
            )
        clean[key] = _plain(value, key)
    return clean


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"extravar {where}: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"extravar {where}: unsupported type {type(value).__name__}")


def render_extravars(extravars: Mapping[str, Any], run_id: str) -> str:
    """The YAML text of the extravars file: all of it ``!unsafe``, so no string templates."""
    data = _UnsafeRoot(check_extravars(extravars))
    data["recovery_run_id"] = run_id
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)


def check_limit(limit: str | Sequence[str]) -> str:
    """Resolved host names only: no patterns, groups of patterns, ``@file`` or exclusions.
    Each host once, in the order given (the order of the run's per-host outcomes)."""
    parts = limit.split(",") if isinstance(limit, str) else list(limit)
    names = list(dict.fromkeys(str(n).strip() for n in parts))
    if not names or any(not _HOST_NAME.match(n) or n in ("all", "ungrouped") for n in names):
        raise ValueError(
            f"limit {limit!r} must be resolved inventory host names, comma separated"
        )
    return ",".join(names)


def check_forks(forks: int | None) -> int | None:
    """None (Ansible's default) or a positive number of hosts acted on at once."""
    if forks is not None and (isinstance(forks, bool) or not isinstance(forks, int)
                              or forks < 1):
        raise ValueError(f"forks must be a positive whole number, not {forks!r}")
    return forks


def ansible_playbook_binary() -> str:
    """The ``ansible-playbook`` next to this interpreter (a venv need not be on PATH)."""
    local = Path(sys.executable).parent / "ansible-playbook"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("ansible-playbook") or "ansible-playbook"


def ansible_playbook_command() -> list[str]:
    """How to start ``ansible-playbook``: by its own Python with that Python's warnings
    off (``-W ignore``), so what the libraries it imports say about themselves
    (cryptography's "DSA is deprecated", through paramiko) never opens every run's
    output. Only the controller: the ``-W`` option is not inherited, so modules and the
    programs a playbook runs keep their own warnings, and Ansible's own ``[WARNING]``
    and ``[DEPRECATION WARNING]`` lines about the playbook are not Python warnings. A
    binary that is not a Python script is started as it is."""
    binary = ansible_playbook_binary()
    try:
        with open(binary, "rb") as fh:
            first = fh.readline(512).decode("utf-8", "replace")
    except OSError:
        return [binary]
    interpreter = shlex.split(first[2:]) if first.startswith("#!") else []
    if interpreter and Path(interpreter[-1]).name.startswith("python"):
        return [*interpreter, "-W", "ignore", binary]
    return [binary]


class AnsibleExecutor:
    """Runs playbooks from one folder against one inventory; one fresh runner per run."""

    def __init__(
        self,
        playbooks_dir: Path,
        inventory: Path,
        *,
        redactor: Redactor,
        tmp_root: Path | None = None,
        envvars: Mapping[str, str] | None = None,
    ) -> None:
        self.playbooks_dir = Path(os.path.realpath(playbooks_dir))
        self.inventory = Path(os.path.realpath(inventory))
        self.redactor = redactor
        self.tmp_root = Path(tmp_root) if tmp_root is not None else private_root()
        self.envvars = dict(envvars or {})

    # -- public ------------------------------------------------------------------------
    def resolve_playbook(self, playbook: str) -> Path:
        """The playbook's real path, only inside ``playbooks_dir``; ValueError otherwise."""
        if not isinstance(playbook, str) or not _PLAYBOOK_NAME.match(playbook):
            raise ValueError(f"playbook name {playbook!r} is not a plain .yml file name")
        path = Path(os.path.realpath(self.playbooks_dir / playbook))
        if not path.is_relative_to(self.playbooks_dir) or not path.is_file():
            raise ValueError(f"playbook {playbook!r} not found in {self.playbooks_dir}")
        return path

    def syntax_check(self, playbook: str) -> str | None:
        """``ansible-playbook --syntax-check``: None when the playbook parses, else the error."""
        path = self.resolve_playbook(playbook)
        private = make_private_dir(self.tmp_root, f"syntax-{secrets.token_hex(4)}")
        try:
            env = self._scrub_env({**os.environ, **self._base_env(private)})
            try:
                proc = subprocess.run(
                    [*ansible_playbook_command(), "--syntax-check", "-i",
                     str(self.inventory), str(path)],
                    cwd=self.playbooks_dir, env=env, capture_output=True, text=True,
                    timeout=SYNTAX_CHECK_TIMEOUT, check=False,
                )
            except subprocess.TimeoutExpired:
                return f"syntax check timed out after {SYNTAX_CHECK_TIMEOUT:g}s"
            if proc.returncode == 0:
                return None
            text = (proc.stderr.strip() + "\n" + proc.stdout.strip()).strip()
            return self.redactor.text(text) or f"syntax check failed (rc {proc.returncode})"
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def run(
        self,
        *,
        artifacts: RunArtifacts,
        playbook: str,
        limit: str,
        extravars: Mapping[str, Any],
        check: bool = False,
        diff: bool = False,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        forks: int | None = None,
    ) -> StepResult:
        """Run ``playbook`` on ``limit``; the outcome comes from runner stats and events.

        ``data["hosts"]`` holds each host's outcome, in the limit's order
        (engine.executors.host_outcomes); with several hosts the status is SUCCEEDED
        only when every host succeeded, FAILED when none did, else PARTIAL. ``forks``:
        how many hosts Ansible acts on at once (None: its default). ``data["facts"]``:
        what the playbook reported with ``set_stats`` under ``recovery_facts`` (the facts
        an approval's conditions test, engine.runbooks.approval_rules); ``data["pins"]``:
        what it reported under ``recovery_pins`` (engine.orchestration.step_facts).

        Raises ValueError before anything runs for a playbook outside the folder, a
        limit that is not plain host names, a refused extravar or a bad ``forks``.
        Everything else (parse errors, unreachable hosts, timeouts) is a ``StepResult``
        with a reason.
        """
        path = self.resolve_playbook(playbook)
        limit = check_limit(limit)
        forks = check_forks(forks)
        hosts = limit.split(",")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        run_id = artifacts.run_id
        extravars_text = render_extravars(extravars, run_id)  # validates before any I/O
        playbook_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

        redactor = self.redactor.copy()
        redactor.add(*(v for k, v in os.environ.items() if is_secret_name(k)))
        redactor.add_from_mapping(self.envvars)
        redactor.add_from_mapping(extravars)

        artifacts.create()
        record: dict[str, Any] = {
            "executor": "ansible",
            "playbook": playbook,
            "playbook_sha256": playbook_sha256,
            "limit": limit,
            "check": check,
            "diff": diff,
            "timeout": timeout,
            "forks": forks,
            "extravars": dict(extravars),
        }
        artifacts.write_run_json({"playbook_sha256": playbook_sha256,
                                  "ansible": redactor.data(record)})
        if cancel is not None and cancel.is_set():
            artifacts.set_status("canceled", 254)
            reason = "canceled before it started"
            return StepResult(status=RunStatus.CANCELED, reason=reason,
                              rc=254, data={"stats": {}, "playbook_sha256": playbook_sha256,
                                            "runner_status": "canceled", "limit": limit,
                                            "check": check,
                                            "hosts": host_outcomes(hosts, None, {}, {}, reason)})

        private = make_private_dir(self.tmp_root, run_id, artifacts.path)
        try:
            outcome = self._run_in(
                private, artifacts, redactor, path, limit, extravars_text,
                check=check, diff=diff, timeout=timeout, cancel=cancel, forks=forks,
            )
        except Exception as exc:  # a record without a status would look "running" forever
            log.exception("ansible run %s failed in the executor", run_id)
            why = f"executor error: {type(exc).__name__}: {exc}"
            outcome = (RunStatus.FAILED, why, -1, "failed", {}, [], "",
                       host_outcomes(hosts, None, {}, {}, why), {"facts": {}, "pins": {}})
        finally:
            shutil.rmtree(private, ignore_errors=True)
            if private.exists():
                log.error("could not delete private data dir %s", private)

        status, reason, rc, runner_status, stats, command, cwd, outcomes, reported = outcome
        reason = redactor.text(reason)
        outcomes = redactor.data(outcomes)
        record.update({"runner_status": runner_status, "rc": rc, "stats": stats,
                       "command": command, "cwd": cwd, "reason": reason})
        artifacts.write_run_json({"ansible": redactor.data(record)})
        artifacts.set_status(runner_status, rc)
        return StepResult(
            status=status, reason=reason, rc=rc,
            data={"stats": stats, "playbook_sha256": playbook_sha256,
                  "runner_status": runner_status, "limit": limit, "check": check,
                  "hosts": outcomes, "facts": redactor.data(reported["facts"]),
                  "pins": reported["pins"]},
        )

    # -- internals ---------------------------------------------------------------------
    def _base_env(self, private: Path) -> dict[str, str]:
        """Settings for every ansible process of a run.

        ANSIBLE_REMOTE_TEMP is left alone: it is a path on the managed host, and a path
        in our private dir would only leave stray folders on remote hosts. Our venv's
        bin folder goes at the end of PATH so local plays find the tools installed with
        the engine (supervisorctl) without shadowing the system's.
        """
        local_tmp = private / "tmp"
        local_tmp.mkdir(mode=0o700, exist_ok=True)
        path = self.envvars.get("PATH", os.environ.get("PATH", os.defpath))
        bindir = str(Path(sys.executable).parent)
        if bindir not in path.split(os.pathsep):
            path = f"{path}{os.pathsep}{bindir}" if path else bindir
        return {
            **self.envvars,
            "PATH": path,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(local_tmp),
        }

    def _scrub_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The child environment without the secrets of this process (REDIS_PASSWORD ...).

        A playbook that needs a secret gets it through the executor's ``envvars`` or
        an extravar, explicitly; runner would otherwise copy our whole environment
        into the child, its ``command`` artifact, and local modules.
        """
        return {
            k: v for k, v in env.items()
            if k in self.envvars or k in _ENV_KEEP or not is_secret_name(k)
        }

    def _run_in(
        self,
        private: Path,
        artifacts: RunArtifacts,
        redactor: Redactor,
        path: Path,
        limit: str,
        extravars_text: str,
        *,
        check: bool,
        diff: bool,
        timeout: float | None,
        cancel: threading.Event | None,
        forks: int | None,
    ) -> tuple[RunStatus, str, int, str, dict[str, Any], list[str], str, list[dict[str, str]]]:
        extravars_file = private / "extravars.yml"
        fd = os.open(extravars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(extravars_text)

        # runner 2.4.3 drops a ``settings=`` dict when env/settings is absent: write the file.
        (private / "env").mkdir(mode=0o700)
        (private / "env" / "settings").write_text(
            json.dumps({"pexpect_timeout": PEXPECT_TIMEOUT, "suppress_ansible_output": True})
        )

        args = ["-e", f"@{extravars_file}"]
        if check:
            args.append("--check")
        if diff:
            args.append("--diff")

        config = RunnerConfig(
            private_data_dir=str(private),
            project_dir=str(self.playbooks_dir),
            playbook=str(path),
            inventory=str(self.inventory),
            limit=limit,
            forks=forks,
            ident=artifacts.run_id,
            quiet=True,
            cmdline=shlex.join(args),
            envvars=self._base_env(private),
            suppress_env_files=True,
        )
        config.prepare()
        marker = private.name   # unique per run and process; the sweep finds it by name
        config.env = {**self._scrub_env(config.env), RUN_MARKER: marker}
        if config.command and config.command[0] == "ansible-playbook":
            config.command[:1] = ansible_playbook_command()

        watcher = _EventWatcher(artifacts, redactor)
        stopper = _Stopper(marker, cancel, timeout)
        skip_pty_close_pause()  # runner's last child.close() would pause 0.1 s: see compat
        # Always a cancel callback: without one, run() in the main thread replaces the
        # process' SIGTERM/SIGINT handlers. It also enforces the timeout (runner's own
        # counts whole seconds and would leave the task's processes running).
        runner = Runner(config, cancel_callback=stopper, event_handler=watcher)
        stopper.start()
        try:
            runner_status, rc = runner.run()
        except BaseException:  # an error or interrupt in runner: leave no process behind
            kill_marked_processes(RUN_MARKER, marker)
            raise
        if runner_status == "canceled" and stopper.timed_out:
            runner_status = "timeout"
        rc = int(rc) if rc is not None else -1
        status, reason, outcomes = decide_outcome(runner_status, rc, watcher, timeout,
                                                  limit.split(","))
        return (status, reason, rc, str(runner_status), watcher.stats or {},
                list(config.command), str(config.cwd), outcomes,
                {"facts": watcher.facts, "pins": watcher.pins})


class _Stopper:
    """Runner's ``cancel_callback``: asked every ``PEXPECT_TIMEOUT``, says stop on cancel
    or past the deadline, and first kills every process of the run (found by marker)."""

    def __init__(self, marker: str, cancel: threading.Event | None,
                 timeout: float | None) -> None:
        self.marker = marker
        self.cancel = cancel
        self.timeout = timeout
        self.deadline: float | None = None
        self.timed_out = False
        self.stopped = False

    def start(self) -> None:
        if self.timeout:
            self.deadline = time.monotonic() + self.timeout

    def __call__(self) -> bool:
        if self.stopped:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
        if not (self.timed_out or (self.cancel is not None and self.cancel.is_set())):
            return False
        self.stopped = True
        try:
            kill_marked_processes(RUN_MARKER, self.marker)
        except Exception:  # runner turns a raising callback into an escaping error
            log.exception("could not kill the processes of a stopped run")
        return True


class _EventWatcher:
    """The runner ``event_handler``: copies each event, redacted, and keeps what decides.

    It must return True (or runner stops writing its own job_events) and must never
    raise: an exception here escapes ``Runner.run()`` and leaves the child running.
    """

    def __init__(self, artifacts: RunArtifacts, redactor: Redactor) -> None:
        self.artifacts = artifacts
        self.redactor = redactor
        self.base = artifacts.counter  # after the engine's own events, never among them
        self.stats: dict[str, Any] | None = None
        # What the playbook reported for approval conditions: `set_stats` data under
        # `recovery_facts` (engine.runbooks.approval_rules), plain values only.
        self.facts: dict[str, Any] = {}
        # ... and ``recovery_pins``: what a run must use to stay within what was judged.
        self.pins: dict[str, Any] = {}
        self.failed: dict[str, tuple[str, str]] = {}     # host -> (task, msg), last one
        self.unreachable: dict[str, tuple[str, str]] = {}  # host -> (task, msg), last one
        self.no_hosts_matched = False
        self.lines: list[str] = []                       # text outside any task event
        self.unrecorded = 0                              # events that could not be kept

    def __call__(self, event: dict[str, Any]) -> bool:
        try:
            self.artifacts.write_raw_event(self.redactor.data(runner_event(event, self.base)))
            if event.get("event") in _OUTCOME_EVENTS:
                self._note(event)
        except Exception as exc:  # never let a bad event kill the run loop
            self._unrecorded(exc)
        if event.get("event") == "runner_on_ok":
            fault_injection.reached("in_playbook")   # test-only: a no-op unless armed
        return True

    def _unrecorded(self, exc: Exception) -> None:
        """Said once per run: a full disk fails every event after the first. A traceback
        only for what is not a storage outage (a bug)."""
        self.unrecorded += 1
        if self.unrecorded > 1:
            return
        if is_outage(exc):
            log.warning("run %s: an ansible event could not be recorded: %s (said once per "
                        "run, however many follow)", self.artifacts.run_id, describe(exc))
        else:
            log.exception("run %s: could not record an ansible event (said once per run)",
                          self.artifacts.run_id)

    def _note(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        data = event.get("event_data") or {}
        if name == "playbook_on_stats":
            self.stats = {k: dict(data.get(k) or {}) for k in
                          ("ok", "changed", "failures", "dark", "skipped", "ignored",
                           "rescued", "processed")}
            stats = data.get("artifact_data") or {}
            for key, kept in (("recovery_facts", self.facts), ("recovery_pins", self.pins)):
                if isinstance(stats.get(key), dict):
                    kept.update({str(k): v for k, v in stats[key].items()
                                 if isinstance(v, bool | int | float | str)})
        elif name == "runner_on_failed" and not data.get("ignore_errors"):
            host = str(data.get("host") or "?")
            self.failed[host] = (str(data.get("task") or "?"), _result_msg(data.get("res")))
        elif name == "runner_on_unreachable":
            host = str(data.get("host") or "?")
            self.unreachable[host] = (str(data.get("task") or "?"), _result_msg(data.get("res")))
        elif name == "playbook_on_no_hosts_matched":
            self.no_hosts_matched = True
        elif name in ("verbose", "error"):
            text = str(event.get("stdout") or "").strip()
            if text and len(self.lines) < 200:
                self.lines.append(text)

    def error_text(self) -> str:
        """The first error and the line after it (ansible's ``Origin: file:line``)."""
        lines = [line for text in self.lines for line in text.splitlines() if line.strip()]
        first = next((i for i, line in enumerate(lines) if "ERROR" in line), None)
        picked = lines[first:first + 2] if first is not None else lines[-3:]
        return _shorten(" ".join(" ".join(picked).split()))


def _result_msg(res: Any) -> str:
    """The words that say why a task failed; for a loop, those of its first failed item."""
    if not isinstance(res, Mapping):
        return ""
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
                label = item.get("_ansible_item_label", item.get("item", "?"))
                return _shorten(f"item {label}: {_result_msg(item)}")
    said = next((str(res[k]) for k in ("msg", "reason") if res.get(k)), "")
    # What the failed program said itself: a command's "non-zero return code" names no
    # cause, its stderr does ("Cannot connect to the Docker daemon ..."), so that comes
    # first (a listing that shortens the reason keeps it). Its last lines: that is where
    # a program (or a traceback) says what went wrong.
    output = next((str(res[k]) for k in ("stderr", "module_stderr") if res.get(k)), "")
    if not output and res.get("rc"):
        output = str(res.get("stdout") or "")
    said, output = " ".join(said.split()), _last_lines(output)
    rc = res.get("rc")
    if said and output and output not in said:
        return _shorten(f"{output} ({said}" + (f", rc {rc})" if rc else ")"))
    if said:
        return _shorten(said)
    if output:
        return _shorten(f"rc {rc}: {output}" if rc else output)
    if res.get("exception"):
        return _last_lines(str(res["exception"]))
    if "rc" in res:
        return f"rc {res['rc']}"
    return ""


def _last_lines(text: str, room: int = MAX_REASON_MSG // 2) -> str:
    """The last non-empty lines of ``text`` that fit in ``room``, on one line."""
    picked: list[str] = []
    for line in reversed([" ".join(x.split()) for x in text.splitlines() if x.strip()]):
        if picked and sum(len(p) + 1 for p in picked) + len(line) > room:
            break
        picked.insert(0, line)
    return _shorten(" ".join(picked))


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_REASON_MSG else text[: MAX_REASON_MSG - 3] + "..."


def decide_outcome(
    runner_status: str, rc: int, watcher: _EventWatcher, timeout: float | None,
    hosts: Sequence[str],
) -> tuple[RunStatus, str, list[dict[str, str]]]:
    """The run's status, its reason and each host's outcome (engine.executors.
    host_outcomes), from runner status, stats and events, never rc alone (rc 4 is
    unreachable AND parse error)."""
    failed = {h: _shorten(f"task {t!r}: {m}".rstrip(": ")) for h, (t, m) in watcher.failed.items()}
    unreachable = {h: _shorten(f"task {t!r}: {m}".rstrip(": "))
                   for h, (t, m) in watcher.unreachable.items()}
    status, reason = _run_outcome(runner_status, rc, watcher, timeout)
    if runner_status in ("canceled", "timeout"):   # stopped: no host is ok, whatever it did
        return status, reason, host_outcomes(hosts, None, failed, unreachable, reason)
    stats = watcher.stats
    finished = stats is not None and bool(stats.get("processed"))
    # a play that never finished (or never started): no host is ok, each says why
    outcomes = (host_outcomes(hosts, stats, failed, unreachable) if finished
                else host_outcomes(hosts, None, failed, unreachable, reason))
    reasons = []
    for entry in outcomes:
        host = entry["host"]
        if entry["outcome"] == HostOutcome.UNREACHABLE:
            msg = watcher.unreachable.get(host, ("", "unreachable"))[1]
            reasons.append(f"unreachable: {host}: {msg}".rstrip(": "))
        elif entry["outcome"] == HostOutcome.FAILED and host in watcher.failed:
            task, msg = watcher.failed[host]
            reasons.append(f"task {task!r} failed on {host}: {msg}".rstrip(": "))
        elif entry["outcome"] == HostOutcome.FAILED and finished:
            reasons.append(f"{host}: {entry['reason']}")
    if not reasons:
        return status, reason, outcomes
    said = "; ".join(reasons)
    if finished and status_of(outcomes) == RunStatus.PARTIAL:
        bad = sum(not HostOutcome(e["outcome"]).succeeded for e in outcomes)
        return RunStatus.PARTIAL, f"{bad} of {len(outcomes)} hosts failed: {said}", outcomes
    return RunStatus.FAILED, said, outcomes


def _run_outcome(
    runner_status: str, rc: int, watcher: _EventWatcher, timeout: float | None
) -> tuple[RunStatus, str]:
    """How the run ended when no host failed or was unreachable (else its hosts say)."""
    if runner_status == "canceled":
        return RunStatus.CANCELED, "canceled while the playbook was running"
    if runner_status == "timeout":
        return RunStatus.FAILED, f"timed out after {timeout or 0:g}s"
    stats = watcher.stats
    if stats is None:
        text = watcher.error_text()
        if watcher.no_hosts_matched or "no hosts to target" in text or "no hosts matched" in text:
            return RunStatus.FAILED, "no hosts matched"
        return RunStatus.FAILED, f"ansible-playbook failed (rc {rc}): {text or 'no output'}"
    if not stats.get("processed"):
        return RunStatus.FAILED, "no hosts matched"
    if runner_status == "successful" and rc == 0:
        hosts = sorted(stats["processed"])
        changed = sum(int(n) for n in (stats.get("changed") or {}).values())
        return RunStatus.SUCCEEDED, f"ok on {', '.join(hosts)} ({changed} changed)"
    text = watcher.error_text()
    return RunStatus.FAILED, f"ansible-playbook failed (rc {rc}): {text or 'no output'}"
