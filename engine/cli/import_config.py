"""``recovery import-config``: the original system's recovery_config.yml as this
engine's recovery.yml and runbooks (engine.runbooks.import_original maps; this writes
the files and validates them as ``recovery validate`` does)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from engine.cli.common import CliError, command
from engine.cli.exits import FAILED, OK, USAGE
from engine.cli.output import err, out
from engine.context import EngineContext

IMPORT_HELP = """\
Read the original recovery system's recovery_config.yml (recovery.max_attempts_per_hour,
cooldown_seconds, components with priority, strategies and timeout_seconds, alerting,
degraded_modes) and write the equivalent recovery.yml and runbooks to --out: the
runbooks of the current configuration (--config), adapted, and a recovery.yml that
uses them with the current playbooks and inventory. Prints each setting mapped, what
to do by hand, and every key or strategy it could not map ("could not map: ..."); then
validates the written set as `recovery validate` does.

exit codes: 0 written and valid (whatever could not map is listed), 1 the written set
does not validate (each problem printed), 2 the file cannot be read or is not of the
original's shape, or --out already holds a recovery.yml or one of the runbooks it
writes (--force replaces them).
"""
HEADER = ("# Written by `recovery import-config` from {source}.\n"
          "# Review it, then `recovery validate --config` this file.\n")


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "import-config", parents,
                help="the original system's recovery_config.yml as recovery.yml + runbooks",
                description=IMPORT_HELP)
    p.add_argument("file", metavar="FILE", help="the original's recovery_config.yml")
    p.add_argument("--out", metavar="DIR", default="imported",
                   help="where to write recovery.yml and runbooks/ (default: ./imported)")
    p.add_argument("--force", action="store_true", help="replace files already in --out")
    p.set_defaults(func=cmd_import_config, housekeeping=False)  # reads the store not at all


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: {what} is not valid YAML: {exc}") from None


def cmd_import_config(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.runbooks.import_original import OriginalConfigError, import_original
    from engine.runbooks.loader import RUNBOOK_SUFFIXES

    source = Path(args.file)
    original = _read_yaml(source, "the original configuration")
    config = ctx.config
    runbook_files = sorted(p for p in config.runbooks_dir.iterdir()
                           if p.suffix in RUNBOOK_SUFFIXES)
    runbooks = {}
    for path in runbook_files:
        rb = _read_yaml(path, "a runbook") or {}
        runbooks[str(rb.get("name") or path.stem)] = rb
    base = (_read_yaml(config.path, "the configuration") or {}) if config.path else {}
    try:
        done = import_original(original, runbooks, base)
    except OriginalConfigError as exc:
        raise CliError(f"{source}: {exc}") from None

    target = Path(args.out)
    files = [target / "recovery.yml",
             *(target / "runbooks" / f"{name}.yml" for name in done.runbooks)]
    there = [str(f) for f in files if f.exists() or f.is_symlink()]
    if there and not args.force:
        raise CliError(f"{', '.join(there)} exist{'s' if len(there) == 1 else ''}: "
                       "--force replaces them", USAGE)
    (target / "runbooks").mkdir(parents=True, exist_ok=True)
    recovery = dict(done.recovery)
    recovery.update(runbooks="runbooks", playbooks=str(config.playbooks_dir),
                    inventory=str(config.inventory_path))
    text = HEADER.format(source=source.name) + _dump(recovery)
    for key, value in done.commented.items():
        text += (f"# {key} (this version does not know it yet; uncomment it under "
                 f"`{key.split('.')[0]}:` once it does):\n"
                 + "".join(f"#   {line}\n" for line in _dump(value).splitlines()))
    (target / "recovery.yml").write_text(text, encoding="utf-8")
    for name, rb in done.runbooks.items():
        (target / "runbooks" / f"{name}.yml").write_text(
            HEADER.format(source=f"{source.name} and the runbook {name}") + _dump(rb),
            encoding="utf-8")
    for line in done.mapped:
        out(f"mapped: {line}")
    for line in done.notes:
        out(f"to do: {line}")
    for line in done.unmapped:
        out(f"could not map: {line}")
    out(f"wrote {target / 'recovery.yml'} and {len(done.runbooks)} runbooks in "
        f"{target / 'runbooks'}")
    return _validate(target / "recovery.yml", ctx)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _validate(path: Path, ctx: EngineContext) -> int:
    """The written set, checked as `recovery validate --config PATH` would."""
    from engine.config import ConfigError, load_config
    from engine.runbooks.loaded_set import SetPaths
    from engine.runbooks.validation import validate_set

    try:
        config = load_config(path, environ={})
    except ConfigError as exc:
        err(f"the written recovery.yml does not load: {exc}")
        return FAILED
    found = validate_set(SetPaths.of(config), known_actions=ctx.registry.names(),
                         degraded_modes=config.degraded_modes, redactor=ctx.redactor)
    for line in found.errors:
        err(line)
    out(f"{found.summary}: {'valid' if not found.errors else 'INVALID'}")
    return FAILED if found.errors else OK
