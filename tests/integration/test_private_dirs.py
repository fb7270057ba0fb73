"""No secret outlives a killed run: ansible-runner's private data dir of every playbook
run (the extravars file with the secrets in clear, runner's unredacted stdout and job
events, its ``command`` file) and the module files Ansible leaves in its remote_tmp are
removed once the process that ran the step is dead, at the next start of any engine
process or by a live one's periodic sweep, after what the run's record needs was copied
from them, redacted.

A private data dir is ``recovery-<run id>-<pid>`` in a folder every engine process on
this machine shares (``/dev/shm``) and sweeps: the tests of a real service give it a
folder of its own under ``/dev/shm`` (``RECOVERY_PRIVATE_ROOT``), so that only their
own processes sweep it, and look for their own secret, a random value no one else has.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from engine.artifacts import RunArtifacts, runner_event
from engine.executors.ansible import AnsibleExecutor
from engine.executors.private_dirs import PRIVATE_ROOT_ENV, RUN_MARKER, make_private_dir, sweep
from engine.lifecycle import RunStatus
from engine.security.redaction import Redactor
from tests.support.paths import TEST_PLAYBOOKS
from tests.support.processes import dead_pid
from tests.support.service import Served, Store, hand_to_workers, wait_for

PLAYBOOKS = TEST_PLAYBOOKS


def secret_runbook(env, secret: str) -> None:
    """A playbook step with a secret extravar; one attempt per hour, so the step killed
    is not started again while the test looks for copies of the secret."""
    env.playbook("secret_sleep.yml", (PLAYBOOKS / "secret_sleep.yml").read_text())
    env.runbook("secretive", f"""
        strategies:
          - name: use_secret
            playbook: secret_sleep.yml
            extravars: {{db_password: "{secret}", seconds: "600"}}
        cooldown: {{max_attempts: 1, window: 1h, after_failure: 0s}}
    """)


def copies_of(secret: str, *roots: Path, besides: tuple[Path, ...] = ()) -> list[Path]:
    """Files under ``roots`` that hold ``secret`` (grep: fast on all of /tmp), except those
    under ``besides`` (where the operator wrote it: the runbook, and the service's copy of
    the set in force)."""
    found = subprocess.run(["grep", "-rlsF", "--", secret, *map(str, roots)],
                           capture_output=True, text=True, timeout=120, check=False)
    hits = [Path(line) for line in found.stdout.splitlines() if line]
    return [p for p in hits if not any(p.is_relative_to(b) for b in besides)]


def kill_tree(top: psutil.Process) -> None:
    """SIGKILL to a process and all it started, at once (for a service: the parent,
    gunicorn, the engine workers, the playbook's processes down to the module's sleep)."""
    try:
        everything = [top, *top.children(recursive=True)]
    except psutil.Error:
        return
    for p in everything:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(everything, timeout=10)


def module_sleeps(top: psutil.Process) -> bool:
    """The playbook's module runs: its ``sleep`` is among ``top``'s descendants."""
    try:
        return any(p.name() == "sleep" for p in top.children(recursive=True))
    except psutil.Error:
        return False


@dataclass
class Secretive:
    """A running service with the secret runbook, and where to look for its secret: the
    machine's shared memory and tmp dirs, Ansible's folder, the service's home and logs."""

    served: Served
    secret: str
    private_root: Path         # where its processes (and theirs alone) make private dirs
    roots: tuple[Path, ...]
    besides: tuple[Path, ...]
    run_ids: list[str] = field(default_factory=list)

    def private_dirs(self) -> list[Path]:
        """The private data dirs of its runs (noted by ``note_runs``)."""
        return [p for run_id in self.run_ids
                for p in self.private_root.glob(f"recovery-{run_id}-*")]

    def copies(self) -> list[Path]:
        return copies_of(self.secret, *self.roots, besides=self.besides)

    def note_runs(self) -> list[str]:
        """The ids of the runs of the secret runbook so far (read-only, from the store)."""
        store = Store(self.served.home)
        try:
            self.run_ids = [r["id"] for r in store.rows(
                "SELECT id FROM runs WHERE runbook = ?", "secretive")]
        finally:
            store.close()
        return self.run_ids

    def cleaned_up(self) -> bool:
        return not self.private_dirs() and not self.copies()


@pytest.fixture
def secretive(serve, engine_env, tmp_path, monkeypatch) -> Iterator[Secretive]:
    """A service (and the CLI the test starts) making private dirs in a folder of their
    own under /dev/shm: no other engine process on the machine sweeps it, so what a kill
    left there stays until one of the test's own processes sweeps it. (Its name does not
    start with ``recovery-``: no sweeper of /dev/shm takes it for a private dir.)"""
    secret = f"pw-{secrets.token_hex(12)}"
    secret_runbook(engine_env, secret)
    root = Path("/dev/shm") / f"pytest-private-{secrets.token_hex(6)}"
    monkeypatch.setenv(PRIVATE_ROOT_ENV, str(root))     # the service's env is this one's
    served = serve().start()
    found = Secretive(served, secret, root,
                      roots=(Path("/dev/shm"), Path(tempfile.gettempdir()),
                             Path.home() / ".ansible", served.home, tmp_path),
                      besides=(engine_env.root / "runbooks", served.home / "sets"))
    try:
        served.wait_ready()
        yield found
    finally:
        served.kill_all()
        # A failed test leaves no secret.
        subprocess.run(["rm", "-rf", "--", str(root)], check=False, timeout=30)
        for path in copies_of(secret, Path.home() / ".ansible"):
            path.unlink(missing_ok=True)


@pytest.mark.slow
def test_no_secret_is_left_on_the_machine_after_a_sigkill_and_a_restart(secretive):
    served = secretive.served
    hand_to_workers(served, "secretive", target="localhost")
    top = psutil.Process(served.proc.pid)
    assert wait_for(lambda: module_sleeps(top), 60), served.stderr()
    [run_id] = secretive.note_runs()
    kill_tree(top)
    served.proc.wait(5)

    # Nothing that sweeps the service's private root runs until the restart.
    [private] = secretive.private_dirs()
    left = secretive.copies()
    print("\nafter the kill, the secret is in:\n  " + "\n  ".join(map(str, left)))
    assert any(p.is_relative_to(private) for p in left)

    served.start()
    served.wait_ready()
    assert wait_for(secretive.cleaned_up, 30), (
        f"left after the restart: {secretive.private_dirs()} {secretive.copies()}\n"
        + served.stderr()[-2000:])

    # The run's record kept what it had, redacted: the password line, masked.
    artifacts = served.home / "artifacts" / run_id
    assert "password is ********" in (artifacts / "stdout").read_text()
    text = "\n".join(p.read_text() for p in (artifacts / "job_events").glob("*.json"))
    assert "private data dir" in text and "removed" in text


@pytest.mark.slow
def test_a_running_service_removes_what_a_killed_cli_run_left(secretive):
    """The CLI, applications and the service share the store: a `recovery recover` killed
    in the middle of its playbook is cleaned up by the service's workers (periodically),
    with no other engine process started meanwhile."""
    served = secretive.served
    cli = subprocess.Popen([sys.executable, "-m", "engine", "recover", "--component",
                            "secretive", "--target", "localhost"], env=served.environ(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    workers = served.engine_workers()
    try:
        top = psutil.Process(cli.pid)
        assert wait_for(lambda: module_sleeps(top), 60)
        secretive.note_runs()
        # The service's workers, the only other sweepers of this root, are paused while
        # the CLI is killed: what the kill left is seen before any sweep can take it.
        for worker in workers:
            worker.suspend()
        kill_tree(top)
        cli.wait(10)
        assert secretive.private_dirs()
        for worker in workers:
            worker.resume()
        assert wait_for(secretive.cleaned_up, 30), (secretive.private_dirs(),
                                                    secretive.copies())
        assert "private data dir" in served.stderr()
    finally:
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.resume()
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)


@pytest.mark.slow
def test_a_step_stopped_past_the_shutdown_grace_leaves_no_secret(secretive):
    """SIGTERM: the step outlives the grace, its worker process exits without its
    executor's cleanup; the service removes what the run left before it exits."""
    served = secretive.served
    hand_to_workers(served, "secretive", target="localhost")
    assert wait_for(lambda: module_sleeps(psutil.Process(served.proc.pid)), 60), \
        served.stderr()
    secretive.note_runs()
    rc, _ = served.stop()
    assert rc == 0, served.stderr()
    assert secretive.private_dirs() == []
    assert secretive.copies() == []


@pytest.mark.slow
def test_a_start_names_the_private_dirs_left_by_earlier_versions(serve, tmp_path,
                                                                  monkeypatch):
    """Dirs named the old way (``recovery-<run id>-<8 random characters>``, no pid) are
    never swept (whose they are cannot be told): `recovery serve` says so once at its
    start, naming them and what to do, instead of leaving them unnoticed."""
    root = tmp_path / "shm"
    monkeypatch.setenv(PRIVATE_ROOT_ENV, str(root))
    old = [root / "recovery-run-0123456789ab-cdef0123-k2x9_qzt", root / "recovery-syntax-a1b2c3d_"]
    current = root / f"recovery-run-0123456789ab-feed0123-{os.getpid()}"   # ours, alive
    for folder in (*old, current, root / "unrelated"):
        folder.mkdir(parents=True)
    served = serve().start()
    served.wait_ready()
    log = served.stderr()
    [line] = [ln for ln in log.splitlines() if "earlier version" in ln]
    assert all(str(folder) in line for folder in old), line
    assert str(current) not in line and "unrelated" not in line
    assert "remove them by hand" in line and "secrets" in line
    assert all(folder.exists() for folder in old)          # never removed by guess


def killed_run_dir(root: Path, artifacts_root: Path, secret: str, pid: int) -> tuple[str, Path]:
    """What a run killed in the middle leaves: its private data dir as the executor and
    runner made it (owner file, extravars, runner's command file and three job events,
    the secret in clear in them), and its record, which got the first event only."""
    run_id = f"run-{secrets.token_hex(6)}"
    record = RunArtifacts(artifacts_root, run_id).create()
    record.event("gates_passed", stdout="gates passed")
    private = make_private_dir(root, run_id, record.path)
    (private / "extravars.yml").write_text(
        f"!unsafe\ndb_password: {secret}\nrecovery_run_id: {run_id}\n")
    runner = private / "artifacts" / run_id
    (runner / "job_events").mkdir(parents=True)
    (runner / "command").write_text(json.dumps(
        {"command": ["ansible-playbook"], "env": {"GIVEN_API_KEY": f"key-{secret}"}}))
    events = [("playbook_on_start", ""),
              ("runner_on_ok", f'ok: [localhost] => {{\r\n    "msg": "password is {secret}"\r\n}}'),
              ("runner_on_start", f"key is key-{secret}")]
    for counter, (name, stdout) in enumerate(events, start=1):
        event = {"uuid": str(uuid.uuid4()), "counter": counter, "event": name,
                 "stdout": stdout, "event_data": {"res": {"msg": stdout}}}
        (runner / "job_events" / f"{counter}-{event['uuid']}.json").write_text(
            json.dumps(event))
        if counter == 1:
            record.write_raw_event(runner_event(event, 1))
    (runner / "stdout").write_text("\n".join(s for _, s in events))
    renamed = private.with_name(f"recovery-{run_id}-{pid}")   # made by that process
    private.rename(renamed)
    return run_id, renamed


def test_a_dead_process_dir_is_removed_after_its_run_got_what_it_lacked(tmp_path):
    secret = f"pw-{secrets.token_hex(8)}"
    root, artifacts_root = tmp_path / "shm", tmp_path / "artifacts"
    pid = dead_pid()
    run_id, private = killed_run_dir(root, artifacts_root, secret, pid)

    removed = sweep(root, redactor=Redactor())

    assert private in removed and not private.exists()
    record = RunArtifacts(artifacts_root, run_id)
    events = list(record.read_events())
    assert [e["event"] for e in events] == ["gates_passed", "playbook_on_start",
                                           "runner_on_ok", "runner_on_start",
                                           "private_data_dir_removed"]
    assert [e["counter"] for e in events] == [1, 2, 3, 4, 5]
    stdout = record.read_stdout()
    assert "password is ********" in stdout and "key is ********" in stdout
    assert f"(pid {pid}) stopped before the step ended" in stdout
    assert "after copying 2 event(s)" in stdout
    assert copies_of(secret, tmp_path) == []


def test_a_second_sweep_copies_nothing_twice(tmp_path):
    root, artifacts_root = tmp_path / "shm", tmp_path / "artifacts"
    run_id, private = killed_run_dir(root, artifacts_root, "pw-twice-1234", dead_pid())
    held = os.open(private, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)   # another sweeper is on it
        assert sweep(root, redactor=Redactor()) == []
        assert private.exists()
    finally:
        os.close(held)
    assert sweep(root, redactor=Redactor()) == [private]
    assert sweep(root, redactor=Redactor()) == []
    names = [e["event"] for e in RunArtifacts(artifacts_root, run_id).read_events()]
    assert names.count("runner_on_ok") == 1 and names.count("private_data_dir_removed") == 1


def test_the_dir_of_a_live_process_is_left_alone(tmp_path):
    root, artifacts_root = tmp_path / "shm", tmp_path / "artifacts"
    owner = subprocess.Popen(["sleep", "60"])
    try:
        _, private = killed_run_dir(root, artifacts_root, "pw-alive-1234", owner.pid)
        _, ours = killed_run_dir(root, artifacts_root, "pw-alive-5678", os.getpid())
        assert sweep(root, redactor=Redactor()) == []
        assert private.exists() and ours.exists()
    finally:
        owner.kill()
        owner.wait(10)
    assert sweep(root, redactor=Redactor()) == [private]   # once its owner is gone


def test_a_pid_reused_since_the_dir_was_made_is_not_its_owner(tmp_path):
    """Our own pid names the dir, but the dir is older than this process: the process
    that made it died and the pid went to us."""
    root, artifacts_root = tmp_path / "shm", tmp_path / "artifacts"
    _, private = killed_run_dir(root, artifacts_root, "pw-reused-1234", os.getpid())
    before_us = psutil.Process().create_time() - 3600
    os.utime(private, (before_us, before_us))
    assert sweep(root, redactor=Redactor()) == [private]


def test_the_leftover_processes_of_a_dead_run_are_killed(tmp_path):
    """A playbook whose engine process was killed alone goes on running (runner starts
    it in a session of its own): it carries its dir's name, and dies with the sweep."""
    root, artifacts_root = tmp_path / "shm", tmp_path / "artifacts"
    _, private = killed_run_dir(root, artifacts_root, "pw-orphan-1234", dead_pid())
    orphan = subprocess.Popen(["sleep", "60"], env={**os.environ, RUN_MARKER: private.name})
    try:
        assert sweep(root, redactor=Redactor()) == [private]
        assert orphan.wait(10) == -signal.SIGKILL
    finally:
        orphan.kill()
        orphan.wait(10)


def test_ansible_temp_dirs_of_dead_processes_are_removed(tmp_path, monkeypatch):
    remote_tmp = tmp_path / "ansible-tmp"
    remote_tmp.mkdir()
    monkeypatch.setenv("ANSIBLE_REMOTE_TEMP", str(remote_tmp))
    now = time.time()
    dead = remote_tmp / f"ansible-tmp-{now:.7f}-{dead_pid()}-12345"
    live = remote_tmp / f"ansible-tmp-{now:.7f}-{os.getpid()}-67890"
    reused = remote_tmp / f"ansible-tmp-{now - 86400:.7f}-{os.getpid()}-13579"
    other = remote_tmp / "ansible-local-1234abcd"
    for folder in (dead, live, reused, other):
        folder.mkdir()
        (folder / "AnsiballZ_command.py").write_text("args: pw-ansible-1234")
    removed = sweep(tmp_path / "shm", redactor=Redactor())
    assert sorted(removed) == sorted([dead, reused])
    assert live.exists() and other.exists()


def test_a_live_run_names_its_dir_after_itself_and_a_sweep_leaves_it_running(tmp_path):
    root = tmp_path / "shm"
    executor = AnsibleExecutor(PLAYBOOKS, PLAYBOOKS.parent / "inventory" / "hosts.yml",
                               redactor=Redactor(), tmp_root=root)
    record = RunArtifacts(tmp_path / "artifacts", f"run-{secrets.token_hex(6)}")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(executor.run(
        artifacts=record, playbook="sleep.yml", limit="localhost",
        extravars={"seconds": "2"})))
    worker.start()
    try:
        mine = root / f"recovery-{record.run_id}-{os.getpid()}"
        assert wait_for(mine.exists, 30)
        assert json.loads((mine / "owner.json").read_text()) == {
            "run_id": record.run_id, "artifacts": str(record.path)}
        assert sweep(root, redactor=Redactor()) == []
    finally:
        worker.join(60)
    assert result and result[0].status == RunStatus.SUCCEEDED, result
    assert list(root.iterdir()) == []
