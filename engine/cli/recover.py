"""``recovery recover``: run a runbook by hand, in the foreground, and wait for the attempt.

Also the pieces ``approve --now`` shares: printing each run as it goes, turning the
incident's end state into an exit code, and Ctrl-C / SIGTERM handling (the running step
is asked to stop, the incident is canceled so no further step starts, exit 1).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from engine.cli.common import CliError, command, loaded_set_note, operator, runbook
from engine.cli.exits import FAILED, OK, PARKED, REFUSED, USAGE, worst
from engine.cli.output import err, out, span, when
from engine.context import EngineContext
from engine.lifecycle import IncidentState, RunStatus
from engine.records import Incident, RunRecord

if TYPE_CHECKING:
    from engine.cli.progress import ProgressWatcher

HELP = """\
Run a runbook by hand and wait for the whole attempt, printing each run as it goes,
and each task of a playbook on each host as it happens (`TASK name  host  outcome`; on
a terminal, under a live status per running playbook).

PATTERN is an inventory host, alias or Ansible --limit pattern (a group, web-*,
a:!b, a:&b, g[0:2]); it is resolved to hosts before anything runs, and every host it
names is remediated, each its own incident: their playbook steps run together as one
rollout (batches by the step's serial, verify after each batch, a stop at
max_fail_percentage), under the fleet limits of recovery.yml. A host of a
group whose verify already passes is left alone (recorded `skipped`, reason healthy)
unless --include-healthy. A target that names nothing, or a pattern with a term that
matches nothing, is refused and recorded. --force passes the kill switch and the
cooldown (never a lock or an approval) for this command's attempt only: a deferred
retry, an alert or a probe later never inherits it; the run record says so. --check
runs every step in check mode (playbooks under ansible --check, python actions asked
for their plan): no incident, no lock, no cooldown counted; the runs are recorded as
check-mode runs.

exit codes: 0 recovered (verified), 1 failed (exhausted, canceled, interrupted, or
ended degraded: degraded is not a verified recovery), 2 usage or configuration error,
3 a step waits for approval (`recovery approve RUN_ID`), 4 refused or deferred by a
gate (kill switch, cooldown, lock, observe mode, unknown target, or an attempt already
under way elsewhere). With several hosts the worst wins: 1 over 4 over 3 over 0.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "recover", parents, help="run a runbook by hand (foreground)",
                description=HELP)
    p.add_argument("--component", "-c", required=True, metavar="C",
                   help="component or runbook name")
    p.add_argument("--strategy", "-s", metavar="S", help="run this one strategy only")
    p.add_argument("--target", "-t", default="localhost", metavar="PATTERN",
                   help="inventory host, alias or pattern (default: localhost)")
    p.add_argument("--include-healthy", action="store_true",
                   help="with a group: act on hosts whose verify already passes too")
    p.add_argument("--check", action="store_true", help="dry run: change nothing")
    p.add_argument("--diff", action="store_true", help="with --check: show playbook diffs")
    p.add_argument("--force", action="store_true",
                   help="pass the kill switch and the cooldown (recorded)")
    p.set_defaults(func=cmd_recover)


# -- printing runs as they go ------------------------------------------------------------------

def run_line(run: RunRecord) -> str:
    if run.status == RunStatus.RUNNING:
        tail = "started" + (" in check mode" if run.check_mode else "")
        if run.forced:
            tail += " (--force passed a gate; recorded)"
    else:
        took = f" ({span(run.duration)})" if run.duration is not None and run.status in (
            RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.SKIPPED,
            RunStatus.CANCELED) else ""
        tail = f"{run.reason}{took}"
    stamp = when(run.finished_at if run.status.is_final and run.finished_at else
                 run.started_at or time.time())
    return (f"{stamp}  {run.target:<14} {run.strategy:<20} {run.status.value:<17} "
            f"{run.id}  {tail}").rstrip()


class Foreground:
    """Prints runs, and each task of their playbooks as it happens (engine.cli.progress);
    on the first SIGINT/SIGTERM asks the running step to stop and cancels the incident
    (so no further step starts); a second signal aborts at once."""

    def __init__(self, ctx: EngineContext, who: str, *, check: bool = False) -> None:
        self.ctx, self.who, self.check = ctx, who, check
        self.interrupted = False
        self.incident_ids: list[str] = []   # the incidents this command drives
        self.last_running: RunRecord | None = None
        self._canceled: set[str] = set()
        self._saved: dict[int, Any] = {}
        self.progress: ProgressWatcher | None = None

    def __enter__(self) -> Foreground:
        from engine.cli.progress import ProgressWatcher, display_for_stdout

        self.progress = ProgressWatcher(self.ctx.artifacts_dir, self.ctx.running,
                                        display_for_stdout())
        self.progress.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only flags and events here: the store may be mid-transaction on this thread.
        if self.interrupted or self.check:
            self.interrupted = True
            raise KeyboardInterrupt
        self.interrupted = True
        for event in list(self.ctx.running.values()):
            event.set()
        err(f"{signal.Signals(signum).name}: stopping the running step and canceling the "
            "incident (send again to abort at once)")

    def on_run(self, run: RunRecord) -> None:
        if self.progress is not None:
            if run.status == RunStatus.RUNNING:
                self.progress.follow(run.id)
            else:          # its last task lines before the line that says it ended
                self.progress.finish(run.id)
        out(run_line(run))
        self.last_running = run if run.status == RunStatus.RUNNING else None
        if self.interrupted:
            self.cancel_incident()

    def cancel_incident(self) -> None:
        """After a signal: cancel what is left of the attempts (outside any transaction)."""
        from engine.orchestration.approvals import DecisionError, cancel

        for ident in list(self.incident_ids):
            if ident in self._canceled:
                continue
            self._canceled.add(ident)
            try:
                said = cancel(self.ctx, ident, by=self.who)
            except DecisionError as exc:
                said = str(exc)
            err(f"interrupted: {said}")

    def mark_interrupted(self) -> None:
        """A check-mode run cut short by Ctrl-C: say so in its record."""
        run = self.last_running
        if run is not None:
            self.ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED,
                                      finished_at=time.time(),
                                      reason=f"interrupted by {self.who}")


# -- exit code from the incident ------------------------------------------------------------

def outcome(ctx: EngineContext, incident: Incident, approve_hint: str = "") -> tuple[int, str]:
    """The exit code an incident's state means for the operator who ran it, with words."""
    state, reason = incident.state, incident.reason
    head = f"incident {incident.id} ({incident.runbook} on {incident.target})"
    if state == IncidentState.RECOVERED:
        return OK, f"{head}: recovered: {reason}"
    if state == IncidentState.DEGRADED:  # features switched off: not a verified recovery
        return FAILED, f"{head}: degraded, not recovered: {reason}"
    if state == IncidentState.FAILED:
        return FAILED, f"{head}: failed: {reason}"
    if state == IncidentState.REMEDIATING:
        parked = ctx.store.query_runs(incident_id=incident.id,
                                      status=RunStatus.PENDING_APPROVAL.value, limit=1)
        if parked:
            run = parked[0]
            return PARKED, (f"{head}: run {run.id} ({run.strategy}) waits for approval: "
                            f"{run.reason}\n  approve with: recovery{approve_hint} approve "
                            f"{run.id}   (add --now to run it here; --reject to say no)")
        return REFUSED, f"{head}: still remediating elsewhere: {reason}"
    if state == IncidentState.OPEN:
        retry = (" (a running service retries it by itself; or run this again after "
                 f"{when(incident.next_try_at)})") if incident.next_try_at else ""
        return REFUSED, f"{head}: deferred: {reason}{retry}"
    if state == IncidentState.CANCELED:
        if reason.startswith("refused"):
            return REFUSED, f"{head}: {reason}"
        return FAILED, f"{head}: canceled: {reason}"
    # RESOLVED: the alert resolved meanwhile; a resolve is no proof of health.
    return FAILED, f"{head}: {state.value}, not verified: {reason}"


def approve_hint(args: argparse.Namespace) -> str:
    """`--config X` to repeat in the printed approve command, when one was given."""
    config = getattr(args, "config", None)
    return f" --config {config}" if config else ""


# -- the command ------------------------------------------------------------------------------

def cmd_recover(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.inventory import UnknownTarget
    from engine.orchestration.fanout import wait_fanned_out
    from engine.orchestration.triggers import TriggerRequest, record_refusal

    who = operator(args)
    if args.diff and not args.check:
        raise CliError("--diff needs --check")
    rb = runbook(ctx, args.component)
    if args.strategy and rb.strategy(args.strategy) is None:
        names = ", ".join(s.name for s in rb.strategies)
        raise CliError(f"runbook {rb.name} has no strategy {args.strategy!r} (it has: {names})")
    try:
        expansion = ctx.inventory.expand(args.target)
    except UnknownTarget as exc:
        reason = f"unknown target: {exc.reason}"
        if args.check:
            err(f"refused: {reason}")
            return REFUSED
        run_id = record_refusal(ctx, rb, TriggerRequest(
            runbook=rb.name, target=args.target, trigger="manual", requested_by=who,
            strategy=args.strategy, force=args.force), reason)
        err(f"refused: {reason} (recorded as run {run_id})")
        return REFUSED
    what = f"{rb.name}" + (f" strategy {args.strategy}" if args.strategy else "")
    mode = " in check mode" if args.check else ""
    forced = " with --force" if args.force else ""
    hosts = expansion.names
    group = "" if expansion.exact else f"{args.target}: "
    out(f"recover {what} on {group}{', '.join(hosts)}{mode}{forced}, as {who}")
    if (note := loaded_set_note(ctx)) is not None:   # it runs the files, not the service's
        err(note)
    prechecked = not expansion.exact and not args.include_healthy
    if args.check:
        return _check(ctx, args, rb, hosts, who, prechecked)
    codes: list[int] = []
    with Foreground(ctx, who) as fg:
        opened: list[Incident] = []
        for host in hosts:
            if fg.interrupted:
                err(f"{host}: not started (interrupted)")
                codes.append(FAILED)
                continue
            if prechecked and _left_alone(ctx, args, rb, host, who, fg.on_run):
                codes.append(OK)
                continue
            incident = _open(ctx, args, fg, rb.name, host, who)
            if isinstance(incident, int):
                codes.append(incident)
            else:
                opened.append(incident)
        codes.extend(_drive_all(ctx, args, fg, opened))
        if not wait_fanned_out(ctx.config.playbook_timeout + 120):
            err("incidents a group step opened are still under way: see `recovery "
                "incidents --open`")
        if fg.interrupted:
            codes.append(FAILED)
    return worst(codes)


def _drive_all(ctx: EngineContext, args: argparse.Namespace, fg: Foreground,
               incidents: list[Incident]) -> list[int]:
    """Advance the incidents together, so that their playbook steps meet in one rollout
    (engine.orchestration.rollout); one alone runs here, on this thread."""
    if len(incidents) <= 1:
        return [_drive(ctx, args, fg, i) for i in incidents]
    codes: dict[str, int] = {}

    def drive(incident: Incident) -> None:
        try:
            codes[incident.id] = _drive(ctx, args, fg, incident)
        except Exception as exc:  # noqa: BLE001 - one host's engine error is its own
            err(f"{incident.target}: engine error: {exc}")
            codes[incident.id] = FAILED

    threads = [threading.Thread(target=drive, args=(i,), daemon=True,
                                name=f"recover-{i.target}") for i in incidents]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():     # joined in slices: a signal reaches the main thread
            thread.join(0.2)
    return [codes.get(i.id, FAILED) for i in incidents]


def _open(ctx: EngineContext, args: argparse.Namespace, fg: Foreground, name: str, host: str,
          who: str) -> Incident | int:
    """The host's incident, opened or taken over for this command; else the exit code."""
    from engine.orchestration.triggers import TriggerRequest, open_incident

    opened = open_incident(ctx, TriggerRequest(
        runbook=name, target=host, trigger="manual", requested_by=who,
        strategy=args.strategy, force=args.force))
    if opened.refusal:
        err(f"{host}: refused: {opened.refusal}")
        return REFUSED if opened.refused_run else USAGE
    incident = opened.incident
    assert incident is not None
    if not opened.claimed:
        err(f"{host}: incident {incident.id} is {incident.state.value} and its attempt is under "
            f"way elsewhere ({incident.reason}); not started here — follow it with "
            "`recovery incidents --open` and `recovery history`")
        return REFUSED
    out(f"{host}: incident {incident.id} {'opened' if opened.created else 'taken over'}")
    fg.incident_ids.append(incident.id)
    return incident


def _drive(ctx: EngineContext, args: argparse.Namespace, fg: Foreground,
           incident: Incident) -> int:
    """Carry the incident's attempt as far as it goes here; the exit code it means."""
    from engine.orchestration.attempt import advance

    if fg.interrupted:
        fg.cancel_incident()
    incident = advance(ctx, incident.id, on_run=fg.on_run)
    if fg.interrupted:
        fg.cancel_incident()
        incident = ctx.store.get_incident(incident.id) or incident
    code, words = outcome(ctx, incident, approve_hint(args))
    if args.force and incident.state == IncidentState.OPEN:
        words += ("\n  --force was for this run only: the service's retry is not forced "
                  "(run this again with --force to pass the kill switch and the cooldown)")
    (out if code in (OK, PARKED) else err)(words)
    return FAILED if fg.interrupted else code


def _left_alone(ctx: EngineContext, args: argparse.Namespace, rb: Any, host: str, who: str,
                on_run: Any, *, record: bool = True) -> bool:
    """A host of a group whose step's verify already passes: recorded skipped (healthy),
    not touched. Its check runs before any gate: asking changes nothing."""
    from engine.orchestration.precheck import check_health, first_step, record_healthy

    step = first_step(rb, args.strategy)
    health = check_health(ctx, rb, step, host) if step is not None else None
    if health is None or not health.healthy:
        return False
    if record:
        record_healthy(ctx, rb, step, host, health, requested_by=who, on_run=on_run)
    else:
        out(f"{host}: healthy, would be left alone ({health.summary})")
    return True


def _say_effects(ctx: EngineContext, rb: Any, host: str, strategy: str | None) -> None:
    """Before a check run: what each described playbook step would run on ``host``."""
    from engine.orchestration.planner import step_effects

    for step in rb.strategies:
        if strategy in (None, step.name) and step.playbook:
            for effect in step_effects(ctx, rb, step, {}, [host]):
                said = effect["text"] if effect.get("refused") else f"would run {effect['text']}"
                out(f"{host}: {step.name}: {said}")


def _check(ctx: EngineContext, args: argparse.Namespace, rb: Any, hosts: list[str],
           who: str, prechecked: bool) -> int:
    from engine.orchestration.planner import check_runs

    failed = 0
    with Foreground(ctx, who, check=True) as fg:
        try:
            for host in hosts:
                if prechecked and _left_alone(ctx, args, rb, host, who, None, record=False):
                    continue
                _say_effects(ctx, rb, host, args.strategy)
                runs = check_runs(ctx, rb, host, strategy=args.strategy, diff=args.diff,
                                  requested_by=who, on_run=fg.on_run)
                failed += sum(r.status in (RunStatus.FAILED, RunStatus.PARTIAL)
                              for r in runs)
        except KeyboardInterrupt:
            fg.mark_interrupted()
            err("interrupted")
            return FAILED
    out(f"check mode: {'no step failed' if not failed else f'{failed} step(s) failed'}; "
        "nothing was changed")
    return FAILED if failed else OK
