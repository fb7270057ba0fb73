"""A fleet of test hosts on this machine, reached over real SSH: each host is a network
namespace with its own address on a bridge and its own ``sshd`` (Debian openssh-server),
so Ansible connects to it exactly as it would to a remote machine, with a key this
module creates. A process started on a host (over SSH, or with ``Host.run``) lives in
that host's network: each host runs its own ``redis-server`` on its own address, its
own ``supervisord``. The hosts share this machine's files, so each has a folder of its
own (``Host.root``) for its sshd's files, its programs and its ``bin/``, which comes
first on the PATH of its SSH sessions (where a test puts a stand-in for a command); it is
also the HOME of those sessions, so Ansible's remote temp files stay per host and this
machine's own shell start-up files (slow ones, here) are not read.

    fleet = Fleet(tmp_path / "fleet", 4).start()      # or the module-scoped ``fleet`` fixture
    fleet.write_inventory(path, groups={"redis": ["h1", "h2"]}, host_vars={...})
    fleet["h2"].stop_sshd()                           # unreachable until start_sshd()
    fleet.stop()                                      # everything, even after a failure

Names carry a prefix unique to this process and fixture (``rf<pid><n>``), short enough
for the 15-character limit of interface names, and each fleet takes a /24 in
10.250.0.0/15 that no interface of this machine uses, so two test runs never collide.
Needs root and ``ip`` (iproute2) and ``/usr/sbin/sshd``: the tests that use it say
``@pytest.mark.requires("root", "ip", "sshd")``. Every wait is bounded.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

SSHD = Path("/usr/sbin/sshd")
START = 20.0          # bound on a host's sshd (or redis) answering, seconds
COMMAND = 30.0        # bound on one command run inside a host, seconds
# The PATH of an SSH session on a host, after the host's own bin/.
SESSION_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_fleets = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND,
                          check=check)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def _used_subnets() -> set[str]:
    """The /24s (as ``a.b.c``) of every IPv4 address on this machine's interfaces."""
    lines = _ip("-o", "-4", "addr", "show").stdout.splitlines()
    return {line.split()[3].rsplit(".", 1)[0] for line in lines if len(line.split()) > 3}


def _free_subnet() -> str:
    used = _used_subnets()
    for _ in range(200):
        subnet = f"10.{random.choice((250, 251))}.{random.randrange(256)}"
        if subnet not in used:
            return subnet
    raise RuntimeError("no free /24 in 10.250.0.0/15 for a test fleet")


def wait_port(address: str, port: int, timeout: float) -> bool:
    """True once a TCP connection to address:port succeeds within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class Host:
    """One test host: a network namespace, its address, its sshd and its folder."""

    name: str                 # its inventory name
    netns: str                # the namespace, and the name of its veth on the bridge
    address: str
    root: Path
    sshd: subprocess.Popen | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def bin(self) -> Path:
        """First on the PATH of this host's SSH sessions."""
        return self.root / "bin"

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's network (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, *argv: str, timeout: float = COMMAND,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside this host and wait for it (bounded)."""
        return subprocess.run(self.argv(*argv), capture_output=True, text=True,
                              timeout=timeout, check=check)

    def popen(self, *argv: str, **kw: Any) -> subprocess.Popen:
        """Start a long-running process inside this host; stopped with the fleet."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(self.argv(*argv), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    # -- sshd ----------------------------------------------------------------------------

    def sshd_config(self, authorized_keys: Path) -> Path:
        conf = self.root / "sshd_config"
        conf.write_text("\n".join([
            f"ListenAddress {self.address}:22",
            f"HostKey {self.root / 'ssh_host_ed25519_key'}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "MaxStartups 100:30:200",      # a fleet-wide run opens many sessions at once
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            # root's home here is the host's folder: a remote machine's own home
            # (Ansible's remote temp files), and not this machine's shell start-up files.
            f"SetEnv PATH={self.bin}:{SESSION_PATH} HOME={self.root}",
            "LogLevel ERROR",
            "",
        ]))
        return conf

    def start_sshd(self, timeout: float = START) -> None:
        """Start (or start again) this host's sshd and wait until it accepts connections."""
        if self.sshd is not None and self.sshd.poll() is None:
            return
        log = open(self.root / "sshd.log", "ab")          # noqa: SIM115 (the child keeps it)
        try:
            self.sshd = subprocess.Popen(
                self.argv(str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        if not wait_port(self.address, 22, timeout):
            self.stop_sshd()
            tail = (self.root / "sshd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"sshd of {self.name} ({self.address}) did not answer in "
                               f"{timeout:g}s: {tail}")

    def stop_sshd(self, timeout: float = 10.0) -> None:
        """Stop this host's sshd and close every SSH session open on it (a client's
        shared connection among them): the host is unreachable over SSH until
        ``start_sshd``. What those sessions started keeps running."""
        if self.sshd is not None:
            _terminate(self.sshd, timeout)
            self.sshd = None
        deadline = time.monotonic() + timeout
        while (sessions := [pid for pid in self.pids() if _comm(pid) == "sshd"]):
            for pid in sessions:
                _kill(pid, signal.SIGKILL)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"sshd sessions on {self.name} survive SIGKILL: {sessions}")
            time.sleep(0.05)

    # -- processes on the host -----------------------------------------------------------

    def start_redis(self, port: int = 6379, timeout: float = START) -> subprocess.Popen:
        """A ``redis-server`` on this host's address (and its own 127.0.0.1), no
        persistence, its files in ``root/redis-<port>``; returns once PING answers."""
        folder = self.root / f"redis-{port}"
        folder.mkdir(exist_ok=True)
        proc = self.popen(*self.redis_argv(port))
        if not wait_redis(self.address, port, timeout, proc):
            raise RuntimeError(f"redis-server on {self.name} {self.address}:{port} did not "
                               f"answer in {timeout:g}s")
        return proc

    def redis_argv(self, port: int = 6379) -> list[str]:
        """The command line of this host's redis-server (for a supervised one too)."""
        folder = self.root / f"redis-{port}"
        folder.mkdir(exist_ok=True)
        return [shutil.which("redis-server") or "redis-server", "--port", str(port),
                "--bind", f"{self.address} 127.0.0.1", "--dir", str(folder),
                "--logfile", "redis.log", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--protected-mode", "no"]

    def supervise(self, programs: Mapping[str, Any], timeout: float = START):
        """A ``supervisord`` inside this host running ``programs`` (name -> Program of
        tests/support/supervisor.py), its files in ``root/supervisor``; started and
        answering. Its socket is a file, so ``Supervisor.ctl`` works from outside too."""
        from tests.support.supervisor import Supervisor

        supervisor = Supervisor(self.root / "supervisor", programs,
                                launcher=self.argv()).start(timeout)
        if supervisor.proc is not None:
            self.procs.append(supervisor.proc)
        return supervisor

    def pids(self) -> list[int]:
        """Every process in this host's namespace (whoever started it, SSH included)."""
        out = _ip("netns", "pids", self.netns, check=False).stdout.split()
        return [int(pid) for pid in out if pid.isdigit()]

    def stop_processes(self, timeout: float = 10.0) -> None:
        """Everything running in this host: its own processes, those started over SSH."""
        for proc in self.procs:
            _terminate(proc, timeout)
        self.procs.clear()
        self.stop_sshd(timeout)
        deadline = time.monotonic() + timeout
        sig = signal.SIGTERM
        while (pids := self.pids()) and time.monotonic() < deadline + timeout:
            if time.monotonic() >= deadline:
                sig = signal.SIGKILL
            for pid in pids:
                _kill(pid, sig)
            time.sleep(0.1)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to its process group, SIGKILL after ``timeout``; reaped either way."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_redis(address: str, port: int, timeout: float,
               proc: subprocess.Popen | None = None) -> bool:
    """True once PING at address:port answers (LOADING counts as up) within ``timeout``."""
    import redis

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            client = redis.Redis(host=address, port=port, socket_timeout=0.5,
                                 socket_connect_timeout=0.5)
            if client.ping():
                return True
        except redis.exceptions.BusyLoadingError:
            return True
        except redis.RedisError:
            pass
        time.sleep(0.05)
    return False


class Fleet:
    """N hosts ``h1..hN`` on one bridge; ``start`` builds them, ``stop`` removes them."""

    def __init__(self, root: Path, size: int) -> None:
        if not 1 <= size <= 200:
            raise ValueError("a fleet has 1 to 200 hosts")
        self.root = Path(root)
        self.size = size
        # rf + pid + fleet number: unique per process and fixture; <= 10 characters so
        # that "<prefix>h<n>" stays within the 15 of an interface name.
        self.prefix = f"rf{_base36(os.getpid())}{_base36(next(_fleets))}"[:10]
        self.bridge = f"{self.prefix}br"
        self.subnet = ""
        self.key = self.root / "id_ed25519"
        self.hosts: dict[str, Host] = {}
        self.started_in: float | None = None      # seconds start() took
        self.stopped_in: float | None = None      # seconds stop() took

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts.values())

    @property
    def gateway(self) -> str:
        """The bridge's address: this machine, as the hosts see it."""
        return f"{self.subnet}.1"

    def start(self) -> Fleet:
        """Bridge, namespaces, veths, keys and one sshd per host; on any failure whatever
        was made is removed before the error is raised."""
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)     # sshd's privilege separation
        _keygen(self.key)
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.key.with_suffix(".pub").read_text())
        self.subnet = _free_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for n in range(1, self.size + 1):
            host = Host(name=f"h{n}", netns=f"{self.prefix}h{n}",
                        address=f"{self.subnet}.{10 + n}", root=self.root / f"h{n}")
            self.hosts[host.name] = host
            host.bin.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", host.netns)
            _ip("link", "add", host.netns, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)
            _ip("link", "set", host.netns, "master", self.bridge, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "route", "add", "default", "via", self.gateway)
            _keygen(host.root / "ssh_host_ed25519_key")
            host.sshd_config(authorized)
        for host in self:          # started together, then waited for
            host.start_sshd()

    def stop(self, timeout: float = 10.0) -> None:
        """Every process in every host, the namespaces (and their veths), the bridge.
        Safe to call twice and after a half-done start."""
        began = time.monotonic()
        for socket_path in self.root.glob("cp-*"):    # Ansible's shared SSH connections
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket_path}", "fleet"],
                           capture_output=True, timeout=COMMAND, check=False)
        for host in self:
            host.stop_processes(timeout)
            _ip("netns", "del", host.netns, check=False)
            _ip("link", "del", host.netns, check=False)    # gone with the namespace already
        _ip("link", "del", self.bridge, check=False)
        self.stopped_in = time.monotonic() - began

    def leftovers(self) -> list[str]:
        """Namespaces and interfaces of this fleet still present (none after ``stop``)."""
        names = set(_ip("netns", "list", check=False).stdout.split())
        names |= {line.split(":")[1].strip().split("@")[0]
                  for line in _ip("-o", "link", "show", check=False).stdout.splitlines()}
        return sorted(n for n in names if n.startswith(self.prefix))

    # -- Ansible -------------------------------------------------------------------------

    def connection_vars(self, host: Host) -> dict[str, Any]:
        """How Ansible reaches ``host``: its address, root with the fleet's key, the
        system Python; host keys not checked for this host only (inventory variables,
        never a global setting), SSH connections shared in the fleet's folder."""
        return {
            "ansible_host": host.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_args": (f"-o ControlMaster=auto -o ControlPersist=60s "
                                 f"-o ControlPath={self.root}/cp-%C"),
            "ansible_ssh_common_args": ("-o StrictHostKeyChecking=no "
                                        "-o UserKnownHostsFile=/dev/null "
                                        "-o LogLevel=ERROR -o ConnectTimeout=5"),
        }

    def inventory(self, groups: Mapping[str, Sequence[str]] | None = None,
                  host_vars: Mapping[str, Mapping[str, Any]] | None = None,
                  local: bool = True) -> dict[str, Any]:
        """An inventory of the fleet: every host under ``all`` with its connection vars
        and ``host_vars[name]``, and ``groups`` (name -> host names); with ``local``,
        ``localhost`` too (local connection), as the shipped inventory has it."""
        host_vars = host_vars or {}
        hosts: dict[str, Any] = {}
        if local:
            hosts["localhost"] = {"ansible_connection": "local",
                                  "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                                  **host_vars.get("localhost", {})}
        for host in self:
            hosts[host.name] = {**self.connection_vars(host), **host_vars.get(host.name, {})}
        children = {name: {"hosts": {member: {} for member in members}}
                    for name, members in (groups or {}).items()}
        return {"all": {"hosts": hosts, **({"children": children} if children else {})}}

    def write_inventory(self, path: Path, groups: Mapping[str, Sequence[str]] | None = None,
                        host_vars: Mapping[str, Mapping[str, Any]] | None = None,
                        local: bool = True) -> Path:
        """``inventory`` written as hosts.yml at ``path`` (for the engine or by hand)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.inventory(groups, host_vars, local),
                                       sort_keys=False))
        return path

    def ssh(self, host: Host, *argv: str, timeout: float = COMMAND) -> subprocess.CompletedProcess:
        """Run a command on ``host`` over SSH, as Ansible reaches it."""
        import shlex

        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "ConnectTimeout=5", f"root@{host.address}", shlex.join(argv)],
            capture_output=True, text=True, timeout=timeout)


def _keygen(path: Path) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "recovery-test",
                        "-f", str(path)], check=True, capture_output=True, timeout=COMMAND)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four hosts, started once per test module, torn down whatever happens. A test
    module that needs another size makes its own ``Fleet`` the same way."""
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), 4).start()
    try:
        yield fleet
    finally:
        fleet.stop()
