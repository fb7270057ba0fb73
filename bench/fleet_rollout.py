"""One remediation over SSH test hosts as a group rollout, and a burst of alerts fused into
one, against ``ansible-playbook`` by hand: wall time and peak memory.

Each host of the fleet (tests/support/fleet.py: a network namespace with its own sshd)
runs a ``redis-server`` under its own ``supervisord``; the remediation is the shipped
``playbooks/process_restart.yml`` (supervisorctl status, pid, restart, status, pid, an
assert: a new pid on every host), verified by the engine's ``redis.ping`` on the host's
own address.

* group: for each fleet size (1, 4, 10, 50 by default), ``recovery recover -c RB -t
  GROUP --include-healthy`` (a subprocess, a fresh RECOVERY_HOME each time) with the
  step as one batch at forks 5 and 10, ``serial: 1`` and ``serial: 25%`` (forks 5),
  against ``ansible-playbook process_restart.yml --limit GROUP --forks F`` by hand (for
  the serial cases: the same playbook with Ansible's own ``serial:`` in the play, one
  process). The engine's time includes its start-up, the precheck-free group expansion,
  the records and each host's verify; the hand's has no verify.
* burst: ``recovery serve`` (1 engine worker, 1 http worker), one notification of 10
  alerts for 10 hosts, timed from the POST until every incident is recovered: fused
  (``fleet.coalesce_window: 1s``: one rollout), ``coalesce_window: 0s`` (no waiting for
  others: steps that meet anyway still share a run), and ``apart`` (each step's extravars
  name its host, so ten separate Ansible runs whatever the timing); and one alert for one
  host (the single-host remediation the fused run is held to). A fresh service and home
  each time; the service tree's RSS before the POST is printed as "idle".

Peak memory is the sum of the RSS of the measured process and all its descendants
(psutil, sampled every 50 ms; shared pages of forked processes counted in each, as the
peer's figure was): for ``recover`` and ``ansible-playbook`` the command's tree, for the
service the whole ``recovery serve`` tree. The fleet's own processes (sshd sessions,
modules running on the hosts, supervisord, redis) are in the hosts' namespaces and not
children of either, and are not counted for either.

Needs root, ``ip``, ``/usr/sbin/sshd``, ``redis-server`` and supervisor (the venv's).
Every wait is bounded; the fleet and the services are torn down whatever happens.

    .venv/bin/python bench/fleet_rollout.py group [--sizes 1,4,10,50] [-n 1]
    .venv/bin/python bench/fleet_rollout.py burst [-n 3] [--bursts single,fused,apart]
    .venv/bin/python bench/fleet_rollout.py --quick    # group on 1 and 4 hosts, burst once
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.executors.ansible import ansible_playbook_binary  # noqa: E402
from tests.support.alerts import alert_payload  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402
from tests.support.service import (  # noqa: E402
    Served,
    free_port,
    post_alerts,
    service_env,
    store_rows,
)
from tests.support.supervisor import BIN, Program, Supervisor  # noqa: E402

PLAYBOOK = ROOT / "playbooks" / "process_restart.yml"
RUN_BOUND = 900.0        # s: one recover or ansible-playbook run, at most
BURST_BOUND = 300.0      # s: a burst recovered, at most
SAMPLE = 0.05            # s between memory samples

# The runbook of the group runs; {extra} is the variant's serial or forks.
RUNBOOK = """\
name: {name}
component: {name}
strategies:
  - name: process_restart
    playbook: process_restart.yml
    timeout: 10m
{extra}
cooldown: {{max_attempts: 1000, window: 1h, after_failure: 1s}}
verify: {{action: redis.ping, initial_delay: 0s, interval: 0.2s, deadline: 20s}}
"""
VARIANTS = {                       # runbook -> (its step's extra lines, forks)
    "one_batch_f5": ("", 5),
    "one_batch_f10": ("", 10),
    "serial_1": ("    serial: 1\n", 5),
    "serial_25": ('    serial: "25%"\n', 5),
}
HAND = {"one_batch_f5": (None, 5), "one_batch_f10": (None, 10), "serial_1": ("1", 5),
        "serial_25": ('"25%"', 5)}

BURST_RUNBOOK = """\
name: burst
component: burst
match:
  - alertname="test-alert"
target: "{{ labels.instance }}"
strategies:
  - name: process_restart
    playbook: process_restart.yml
    timeout: 10m
cooldown: {max_attempts: 1000, window: 1h, after_failure: 1s}
verify: {action: redis.ping, initial_delay: 0s, interval: 0.2s, deadline: 20s}
"""


class PeakRSS:
    """The highest sum of RSS (and of PSS: shared pages split among their sharers) over a
    process and its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self.peak_pss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = pss = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for p in procs:
                try:
                    full = p.memory_full_info()
                except psutil.Error:
                    continue
                total += full.rss
                pss += full.pss
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, pss)
            self.samples += 1
            self._stop.wait(SAMPLE)

    @property
    def mb(self) -> float:
        return self.peak / 2**20

    @property
    def pss_mb(self) -> float:
        return self.peak_pss / 2**20


def timed_tree(argv: list[str], env: dict[str, str], cwd: Path | None = None
               ) -> tuple[float, PeakRSS, str]:
    """Run ``argv`` (bounded); its wall time, the peak memory of its tree, its output.
    A failure raises with the tail of its output."""
    began = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    with PeakRSS(proc.pid) as rss:
        try:
            out, _ = proc.communicate(timeout=RUN_BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate(timeout=10)
            raise RuntimeError(f"{argv[:6]} did not finish in {RUN_BOUND:g}s") from None
    took = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{out[-3000:]}")
    return took, rss, out


# -- the site: fleet, supervised redis per host, inventory -----------------------------------

class Site:
    """The fleet with a supervised redis-server on each host, and its inventory."""

    def __init__(self, root: Path, size: int, groups: dict[str, list[str]]) -> None:
        self.root = root
        self.fleet = Fleet(root / "fleet", size)
        self.supervisors: dict[str, Supervisor] = {}
        self.groups = groups
        self.inventory = root / "inventory" / "hosts.yml"

    def start(self) -> Site:
        self.fleet.start()
        host_vars = {}
        for host in self.fleet:           # started together, then waited for each
            self.supervisors[host.name] = host.supervise({"redis": Program(
                command=host.redis_argv(), startsecs=0)})
        for host in self.fleet:
            supervisor = self.supervisors[host.name]
            supervisor.wait_running("redis")
            host_vars[host.name] = {
                "program": "redis", "service_manager": "supervisor",
                "supervisor_config": str(supervisor.conf),
                "supervisorctl_bin": str(BIN / "supervisorctl"),
                "redis_url": f"redis://{host.address}:6379/0"}
        self.fleet.write_inventory(self.inventory, groups=self.groups, host_vars=host_vars,
                                   local=False)
        return self

    def stop(self) -> None:
        for supervisor in self.supervisors.values():
            try:
                supervisor.stop()
            except Exception as exc:  # noqa: BLE001 - the fleet goes whatever happens
                print(f"  (a supervisord did not stop cleanly: {exc})")
        self.fleet.stop()
        left = self.fleet.leftovers()
        if left:
            print(f"  LEFT OVER after stop: {left}")

    def pids(self) -> dict[str, int | None]:
        return {name: sup.pid("redis") for name, sup in self.supervisors.items()}

    def config(self, folder: Path, fleet: str, extra: str = "") -> Path:
        """A recovery.yml for a fresh home under ``folder``."""
        (folder / "rb").mkdir(parents=True, exist_ok=True)
        config = folder / "recovery.yml"
        config.write_text(textwrap.dedent(f"""\
            home: {folder / 'home'}
            runbooks: {folder / 'rb'}
            playbooks: {ROOT / 'playbooks'}
            inventory: {self.inventory}
            fleet: {fleet}
            """) + extra)
        return config


def engine_env(config: Path) -> dict[str, str]:
    env = service_env(config)
    for name in ("RECOVERY_HOME", "RECOVERY_STATE_URL"):
        env.pop(name, None)
    return env


# -- group -----------------------------------------------------------------------------------

def hand_playbook(folder: Path, serial: str | None) -> Path:
    """process_restart.yml, with Ansible's own ``serial:`` in its play when given."""
    if serial is None:
        return PLAYBOOK
    text = PLAYBOOK.read_text().replace("  hosts: all\n", f"  hosts: all\n  serial: {serial}\n",
                                        1)
    name = serial.strip('%"')
    path = folder / f"process_restart_serial_{name}.yml"
    path.write_text(text)
    return path


def product_run(site: Site, folder: Path, variant: str, group: str, size: int
                ) -> tuple[float, PeakRSS]:
    extra, forks = VARIANTS[variant]
    config = site.config(folder, f"{{forks: {forks}, coalesce_window: 1s, max_in_flight: "
                         f"{max(10, size)}, group_share: 100%, group_window: 10m}}")
    (folder / "rb" / f"{variant}.yml").write_text(RUNBOOK.format(name=variant, extra=extra))
    before = site.pids()
    took, rss, out = timed_tree([sys.executable, "-m", "engine", "--config", str(config),
                                "recover", "-c", variant, "-t", group, "--include-healthy"],
                               engine_env(config))
    moved = [h for h in site.groups[group] if site.pids()[h] in (None, before[h])]
    if moved:
        raise RuntimeError(f"{variant} on {group}: no new pid on {moved}:\n{out[-2000:]}")
    return took, rss


def hand_run(site: Site, folder: Path, variant: str, group: str) -> tuple[float, PeakRSS]:
    serial, forks = HAND[variant]
    playbook = hand_playbook(folder, serial)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    took, rss, _ = timed_tree([ansible_playbook_binary(), "-i", str(site.inventory),
                              str(playbook), "--limit", group, "--forks", str(forks)], env)
    return took, rss


def group_bench(tmp: Path, sizes: list[int], n: int, variants: list[str],
                serial_one_max: int) -> None:
    biggest = max(sizes)
    groups = {f"g{s}": [f"h{i}" for i in range(1, s + 1)] for s in sizes}
    site = Site(tmp / "group", biggest, groups)
    print(f"fleet of {biggest} hosts, each a supervised redis-server: ", end="", flush=True)
    began = time.monotonic()
    try:
        site.start()
        print(f"up in {time.monotonic() - began:.1f}s (sshd {site.fleet.started_in:.1f}s)")
        # warm-up: every host's shared SSH connection opened (ControlPersist 60s), once
        hand_run(site, tmp, "one_batch_f10", f"g{biggest}")
        print(f"\n{'hosts':>5}  {'variant':<16} {'kind':<8} {'wall':>8} {'peak RSS':>9} {'PSS':>9}"
              f"   load")
        runs = 0
        for size in sizes:
            group = f"g{size}"
            for variant in variants:
                if variant == "serial_1" and size > serial_one_max:
                    print(f"{size:>5}  {variant:<16} (skipped: more than "
                          f"--serial-one-max {serial_one_max} hosts)")
                    continue
                if size == 1 and variant != "one_batch_f5":
                    continue                  # one host: every variant is the same run
                figures: dict[str, list[tuple[float, PeakRSS, float]]] = {"recover": [],
                                                                          "by hand": []}
                for _ in range(n):        # interleaved: the machine's load hits both alike
                    runs += 1
                    for kind, run in (("recover", product_run), ("by hand", hand_run)):
                        load = os.getloadavg()[0]
                        took, rss = (run(site, tmp / f"r{runs}", variant, group, size)
                                     if run is product_run else run(site, tmp, variant, group))
                        figures[kind].append((took, rss, load))
                        # each run as it ends: an interrupted bench keeps what it measured
                        print(f"       ({kind}: {took:.1f}s, {rss.mb:.0f}MB RSS, "
                              f"{rss.pss_mb:.0f}MB PSS, load {load:.2f})", flush=True)
                for kind, values in figures.items():
                    walls = [w for w, _, _ in values]
                    each = (f"  (runs: {', '.join(f'{w:.1f}' for w in walls)})"
                            if n > 1 else "")
                    print(f"{size:>5}  {variant:<16} {kind:<8} "
                          f"{statistics.median(walls):7.1f}s "
                          f"{max(m.mb for _, m, _ in values):7.0f}MB "
                          f"{max(m.pss_mb for _, m, _ in values):7.0f}MB"
                          f"   {max(x for _, _, x in values):.2f}{each}", flush=True)
    finally:
        site.stop()


# -- burst -----------------------------------------------------------------------------------

@dataclass
class Burst:
    """One burst through a fresh service: its figures."""

    wall: float
    rss: PeakRSS
    idle_mb: float                 # the service tree's RSS before the POST
    batches: list[int]             # hosts per batch run (none: every step ran alone)
    first_play: float              # s from the POST to the first Ansible run's start
    last_play: float               # s from the POST to the last Ansible run's end


def burst_once(site: Site, folder: Path, window: str, hosts: list[str],
               apart: bool = False) -> Burst:
    """A fresh ``recovery serve``; one notification of an alert per host in ``hosts``;
    seconds from the POST to every incident recovered, and the service tree's peak memory.
    ``apart``: each step's extravars name its host, so no two steps can share a run."""
    config = site.config(folder, f"{{forks: 5, coalesce_window: {window}, max_in_flight: 20, "
                         "group_share: 100%, group_window: 10m}",
                         "webhook: {workers: 1, http_workers: 1, shutdown_grace: 5s, "
                         "graceful_timeout: 2s}\n")
    runbook = BURST_RUNBOOK
    if apart:
        runbook = runbook.replace("    timeout: 10m\n", "    timeout: 10m\n    extravars: "
                                  '{bench_apart: "{{ labels.instance }}"}\n')
    (folder / "rb" / "burst.yml").write_text(runbook)
    served = Served(service_env(config), folder / "home", free_port())
    before = site.pids()
    try:
        served.start()
        served.wait_ready(60)
        time.sleep(1)                              # settled: every worker up
        with PeakRSS(served.proc.pid) as idle:
            time.sleep(0.3)
        payload = alert_payload(folder, *hosts)
        with PeakRSS(served.proc.pid) as rss:
            began, posted_at = time.monotonic(), time.time()
            accepted = post_alerts(served, payload)["accepted"]
            if accepted != len(hosts):
                raise RuntimeError(f"accepted {accepted} of {len(hosts)} alerts")
            done = wait(lambda: _all_recovered(served, hosts), BURST_BOUND)
            took = time.monotonic() - began
        if not done:
            raise RuntimeError(f"not all recovered in {BURST_BOUND:g}s: "
                               f"{_states(served)}\n{served.stderr()[-3000:]}")
        batches = store_rows(served.home, "SELECT target FROM runs WHERE incident_id IS NULL")
        # the Ansible runs: the batch runs, or each step's own when it ran alone
        # (a step's own run starts before its rollout gathers: when every step joined a
        # batch, the batch runs say when Ansible ran)
        fused = sum(len(b["target"].split(",")) for b in batches) == len(hosts)
        plays = store_rows(served.home, "SELECT MIN(started_at), MAX(finished_at) FROM runs"
                           + (" WHERE incident_id IS NULL" if fused else ""))
    finally:
        served.terminate()
    moved = [h for h in hosts if site.pids()[h] in (None, before[h])]
    if moved:
        raise RuntimeError(f"burst ({window}): no new pid on {moved}")
    result = Burst(took, rss, idle.mb, [len(b["target"].split(",")) for b in batches],
                   plays[0][0] - posted_at, plays[0][1] - posted_at)
    print(f"    {len(hosts):>2} alert(s), coalesce_window {window}{' apart' if apart else ''}:"
          f" {took:6.1f}s, peak {rss.mb:5.0f}MB RSS {rss.pss_mb:5.0f}MB PSS (idle "
          f"{idle.mb:.0f}MB RSS), batch runs: {result.batches or 'none'}; Ansible from "
          f"+{result.first_play:.1f}s to +{result.last_play:.1f}s"
          f"   load {os.getloadavg()[0]:.2f}", flush=True)
    return result


def _states(served: Served) -> dict[str, str]:
    return {r["target"]: r["state"] for r in store_rows(
        served.home, "SELECT target, state FROM incidents")}


def _all_recovered(served: Served, hosts: list[str]) -> bool:
    states = _states(served)
    return sorted(states) == sorted(hosts) and set(states.values()) == {"recovered"}


def wait(predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


BURSTS = {   # kind -> (coalesce_window, hosts, apart)
    "single": ("1s", 1, False),       # one alert for one host: a single-host remediation
    "fused": ("1s", 10, False),       # one rollout
    "window 0s": ("0s", 10, False),   # coalesce_window 0s: no waiting for others
    "apart": ("1s", 10, True),        # ten separate Ansible runs, whatever the timing
}


def burst_bench(tmp: Path, n: int, kinds: list[str]) -> None:
    hosts = [f"h{i}" for i in range(1, 11)]
    site = Site(tmp / "burst", 10, {"all10": hosts})
    print("fleet of 10 hosts, each a supervised redis-server: ", end="", flush=True)
    try:
        site.start()
        print("up")
        results: dict[str, list[Burst]] = {kind: [] for kind in kinds}
        runs = 0
        for _ in range(n):        # interleaved, so that the machine's load hits each alike
            for kind in kinds:
                window, count, apart = BURSTS[kind]
                runs += 1
                results[kind].append(burst_once(site, tmp / f"b{runs}", window,
                                                hosts[:count], apart))
        print(f"\nburst ({n} run(s) each)   wall median (min-max)   peak RSS   peak PSS"
              "   idle RSS")
        for kind, values in results.items():
            walls = [b.wall for b in values]
            print(f"  {kind:<10} {statistics.median(walls):6.1f}s ({min(walls):5.1f}-"
                  f"{max(walls):5.1f})   {max(b.rss.mb for b in values):6.0f}MB   "
                  f"{max(b.rss.pss_mb for b in values):6.0f}MB   "
                  f"{max(b.idle_mb for b in values):6.0f}MB")
        if "single" in results and "fused" in results:
            single = statistics.median(b.wall for b in results["single"])
            fused = statistics.median(b.wall for b in results["fused"])
            peak = max(b.rss.mb for b in results["fused"])
            print(f"  fused / single: {fused / single:.2f}x (target <= 2x: "
                  f"{'MET' if fused <= 2 * single else 'MISSED'}); fused peak RSS {peak:.0f}MB "
                  f"vs the peer's parallel 1,483MB / 6 = 247MB: "
                  f"{'MET' if peak <= 1483 / 6 else 'MISSED'}")
    finally:
        site.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=["group", "burst", "all"], default="all")
    parser.add_argument("--sizes", default="1,4,10,50", help="fleet sizes (default 1,4,10,50)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"group variants (default {','.join(VARIANTS)})")
    parser.add_argument("--serial-one-max", type=int, default=10,
                        help="largest group run with serial: 1 (default 10: at 50 hosts it "
                             "is 50 Ansible runs in a row)")
    parser.add_argument("--bursts", default=",".join(BURSTS),
                        help=f"burst kinds (default {','.join(BURSTS)})")
    parser.add_argument("-n", type=int, default=1, help="runs of each kind (default 1)")
    parser.add_argument("--quick", action="store_true", help="1 and 4 hosts, one burst")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    # SIGTERM (a timeout, a CI's cancel) unwinds like ^C: the fleet is torn down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [1, 4] if args.quick else [int(s) for s in args.sizes.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}: {', '.join(VARIANTS)}")
    print(f"machine: {os.cpu_count()} cpu, load average {os.getloadavg()[0]:.2f} at start; "
          f"playbook {PLAYBOOK.name}, verify redis.ping per host")
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        if args.what in ("group", "all"):
            group_bench(Path(tmp), sizes, args.n, variants, args.serial_one_max)
        if args.what in ("burst", "all"):
            print()
            burst_bench(Path(tmp), 1 if args.quick else args.n,
                        [k for k in args.bursts.split(",") if k in BURSTS])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
