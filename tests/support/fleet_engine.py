"""The engine's side of a fleet test: a configuration (runbooks, the shipped playbooks, an
inventory of the fleet) in a folder of the test's, and ``recovery`` run against it in
this process. Used by the test modules that drive tests/support/fleet.py's hosts through
``recovery recover``."""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

from engine.cli import main
from tests.support.paths import ROOT


def write_engine_config(root: Path, inventory: Path, runbooks: Mapping[str, str]) -> Path:
    """recovery.yml in ``root``: home ``root/var``, ``runbooks`` (file name -> text,
    dedented) in ``root/rb``, the shipped playbooks, the tests' actions."""
    (root / "rb").mkdir()
    for name, text in runbooks.items():
        (root / "rb" / name).write_text(textwrap.dedent(text))
    config = root / "recovery.yml"
    config.write_text(textwrap.dedent(f"""\
        home: {root / 'var'}
        runbooks: {root / 'rb'}
        playbooks: {ROOT / 'playbooks'}
        inventory: {inventory}
        action_modules: [tests.support.engine_actions]
        lock: {{lease: 1s}}
        # What these tests check is what the playbooks do on each host over SSH, one
        # host after another of the redis group within minutes, not the blast radius
        # (tests/unit/test_fleet_gate.py): the whole group may be under remediation.
        fleet: {{group_share: 100%}}
        """))
    return config


@contextlib.contextmanager
def without_recovery_env() -> Iterator[None]:
    """No RECOVERY_CONFIG / _HOME / _STATE_URL of the caller's while the tests run."""
    saved = {k: os.environ.pop(k) for k in list(os.environ)
             if k in ("RECOVERY_CONFIG", "RECOVERY_HOME", "RECOVERY_STATE_URL")}
    try:
        yield
    finally:
        os.environ.update(saved)


def recovery(config: Path, *args: str) -> tuple[int, str]:
    """``recovery --config CONFIG ARGS`` in this process: exit code and output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["--config", str(config), *args])
    return code, out.getvalue()
