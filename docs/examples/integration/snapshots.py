"""Snapshots that roll back: the notes application keeps good snapshots of its data and,
when it finds the data corrupted, asks the engine to roll back to the newest good one.

    python snapshots.py take    # from cron: playbooks/snapshot_take.yml on this host
    python snapshots.py check   # the application's check: corrupted -> trigger `notes`

The rollback needs approval (it loses the writes since the snapshot): `check` prints
the command a person runs. The runbook is notes.yml, its verify notes_actions.py.
Environment: RECOVERY_CONFIG (recovery.yml), NOTES_TARGET (this host in the inventory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine import Recovery

TARGET = os.environ.get("NOTES_TARGET", "localhost")


def take(recovery: Recovery) -> int:
    """A good snapshot of the host's notes_persist_dir, as the runbooks doc's cron line."""
    config = recovery.context.config
    done = subprocess.run(
        ["ansible-playbook", "-i", str(config.inventory_path),
         str(config.playbooks_dir / "snapshot_take.yml"), "-l", TARGET,
         "-e", "snapshot_component=notes"], capture_output=True, text=True, timeout=600)
    print("snapshot taken" if done.returncode == 0 else f"snapshot failed:\n{done.stdout}")
    return done.returncode


def data_reads(folder: Path) -> bool:
    try:
        json.loads((folder / "notes.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def check(recovery: Recovery) -> int:
    folder = Path(recovery.context.inventory.get(TARGET).vars["notes_persist_dir"])
    if data_reads(folder):
        recovery.healthy("notes", target=TARGET)
        print("notes data: healthy")
        return 0
    incident = recovery.trigger("notes", failure_type="data_corruption",
                                target=TARGET).wait(timeout=60)
    if incident is None:
        print("recovery refused")
        return 1
    parked = [run for run in recovery.context.store.query_runs(incident_id=incident.id)
              if run.status.value == "pending_approval"]
    for run in parked:
        print(f"rollback waits for approval: recovery approve {run.id}")
    print(f"incident {incident.id}: {incident.state.value}")
    return 3 if parked else 1


def main() -> int:
    recovery = Recovery.from_config(os.environ.get("RECOVERY_CONFIG", "recovery.yml"))
    try:
        return take(recovery) if sys.argv[1:] == ["take"] else check(recovery)
    finally:
        recovery.close()


if __name__ == "__main__":
    sys.exit(main())
