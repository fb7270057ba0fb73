"""Load ``runbooks/*.yml`` into ``engine.runbooks.model.Runbook``, or say exactly what is wrong.

``recovery validate`` must reject a bad runbook with file, line and reason before it
ever runs (docs/runbooks.md), so every problem is a ``RunbookError`` whose str is
``<file>:<line>: <reason>``. Checks happen in three layers, first failure wins:

1. YAML: syntax, duplicate keys, non-string keys (``on:``/``yes:`` become booleans).
   Every node's start line is kept in a map from its JSON path, e.g.
   ``("strategies", 1, "playbook") -> 23``.
2. Shape: ``runbook_schema.json`` (JSON Schema 2020-12) through jsonschema; the best
   error's ``absolute_path`` is mapped to a line through that map.
3. Meaning: matchers (RE2), templates (sandbox), durations, one of action/playbook,
   unique strategy names, playbook names that resolve only inside playbooks/,
   extravars that cannot steer Ansible's connection, approval rules
   (engine.runbooks.approval_rules), and, when the caller knows them, action names and
   playbook files that exist, and the facts each reports for an approval's conditions.

File-level problems (a symlink out of the directory, an unreadable file) point at line 1.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from engine.durations import parse_duration
from engine.fleet_limits import FleetValueError, parse_fleet, parse_percent
from engine.runbooks.approval_rules import ApprovalFormError, FactCondition, parse_rule
from engine.runbooks.matchers import MatcherError, parse_matcher
from engine.runbooks.model import (
    DEPRECATED_PRIORITIES,
    Concurrency,
    Cooldown,
    DegradedModeSpec,
    Matcher,
    Mode,
    Priority,
    Probe,
    Runbook,
    Strategy,
    Verify,
)
from engine.runbooks.templating import TemplateError, compile_check

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).with_name("schema.json")).read_text(encoding="utf-8")
)
_VALIDATOR = Draft202012Validator(SCHEMA)
RUNBOOK_SUFFIXES = (".yml", ".yaml")
PLAYBOOK_SUFFIXES = (".yml", ".yaml")
# Extravars win over every other Ansible variable: these would let a runbook (or a
# value rendered from an alert) choose where and as whom a playbook connects, or
# shadow Ansible's own magic variables. `ansible_*` is refused as a prefix.
RESERVED_EXTRAVARS = frozenset({
    "connection", "remote_user", "remote_port", "port", "user", "password", "host",
    "hosts", "become", "become_user", "become_method", "become_flags", "become_exe",
    "become_pass", "become_password", "private_key_file", "ssh_args", "delegate_to",
    "environment", "vars", "hostvars", "groups", "group_names", "inventory_hostname",
    "inventory_hostname_short", "inventory_dir", "inventory_file", "playbook_dir",
    "play_hosts", "role_path", "omit",
})
_MAX_NODES = 100_000   # a runbook is small; alias bombs are not
# A playbook declares the facts its check mode reports (for approval conditions) in a
# play's vars: `recovery_reports: {snapshot_bytes: bytes}`.
PLAYBOOK_REPORTS_VAR = "recovery_reports"
_Path = tuple[str | int, ...]
# Action names, or action name -> the facts it reports in its plan (name -> kind).
KnownActions = Iterable[str] | Mapping[str, Mapping[str, str]]


class RunbookError(Exception):
    """A runbook that must not load: ``file``, 1-based ``line`` and ``reason``."""

    def __init__(self, file: str | os.PathLike[str], line: int, reason: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.file}:{line}: {reason}")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def load_runbook(
    path: str | os.PathLike[str],
    *,
    runbooks_dir: str | os.PathLike[str] | None = None,
    known_actions: KnownActions | None = None,
    playbooks_dir: str | os.PathLike[str] | None = None,
) -> Runbook:
    """One runbook file. It must resolve inside ``runbooks_dir`` (default: its folder)."""
    path = Path(path)
    real = _resolve_inside(path, Path(runbooks_dir) if runbooks_dir else path.parent)
    try:
        raw = real.read_bytes()
    except OSError as exc:
        raise RunbookError(path, 1, f"cannot read: {exc.strerror}") from None
    source = _Source(str(path), raw)
    actions = frozenset(known_actions) if known_actions is not None else None
    reports = ({name: dict(facts) for name, facts in known_actions.items()}
               if isinstance(known_actions, Mapping) else None)
    return _Builder(source, actions, Path(playbooks_dir) if playbooks_dir else None,
                    reports).build()


def playbook_reports(path: Path) -> dict[str, str] | None:
    """The facts a playbook declares its check mode reports (``recovery_reports`` in a
    play's vars); None when the file cannot be read (the loader says what is wrong)."""
    try:
        plays = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    declared: dict[str, str] = {}
    for play in plays if isinstance(plays, list) else []:
        found = (play.get("vars") or {}).get(PLAYBOOK_REPORTS_VAR) if isinstance(
            play, dict) and isinstance(play.get("vars") or {}, dict) else None
        if isinstance(found, dict):
            declared.update({str(k): str(v) for k, v in found.items()})
    return declared


def load_runbooks(
    directory: str | os.PathLike[str],
    *,
    known_actions: KnownActions | None = None,
    playbooks_dir: str | os.PathLike[str] | None = None,
) -> list[Runbook]:
    """Every ``*.yml``/``*.yaml`` in ``directory``, by file name; the first error raises."""
    runbooks, errors = check_runbooks(
        directory, known_actions=known_actions, playbooks_dir=playbooks_dir
    )
    if errors:
        raise errors[0]
    return runbooks


def check_runbooks(
    directory: str | os.PathLike[str],
    *,
    known_actions: KnownActions | None = None,
    playbooks_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[Runbook], list[RunbookError]]:
    """Load what loads and collect one error per bad file (for ``recovery validate``)."""
    directory = Path(directory)
    actions = (dict(known_actions) if isinstance(known_actions, Mapping) else
               frozenset(known_actions) if known_actions is not None else None)
    runbooks: list[Runbook] = []
    errors: list[RunbookError] = []
    first_file: dict[str, str] = {}
    for path in runbook_files(directory):
        try:
            runbook = load_runbook(
                path, runbooks_dir=directory, known_actions=actions, playbooks_dir=playbooks_dir
            )
        except RunbookError as exc:
            errors.append(exc)
            continue
        if runbook.name in first_file:
            errors.append(RunbookError(
                path, _name_line(path),
                f"runbook name {runbook.name!r} is already used by {first_file[runbook.name]}",
            ))
            continue
        first_file[runbook.name] = path.name
        runbooks.append(runbook)
    return runbooks, errors


def runbook_files(directory: Path) -> list[Path]:
    """Runbook files in a folder, sorted by name (hidden files are ignored)."""
    if not directory.is_dir():
        raise RunbookError(directory, 1, "runbooks directory does not exist")
    return sorted(
        (p for p in directory.iterdir()
         if p.name.endswith(RUNBOOK_SUFFIXES) and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _name_line(path: Path) -> int:
    try:
        return _Source(str(path), path.read_bytes()).line_of(("name",))
    except (OSError, RunbookError):
        return 1


def _resolve_inside(path: Path, root: Path) -> Path:
    """The real file behind ``path``, refused if it (or a symlink) leads out of ``root``."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real_root not in real.parents:
        raise RunbookError(
            path, 1, f"resolves to {real}, outside the runbooks directory {real_root} "
            "(runbooks resolve only inside it; symlinks out are refused)"
        )
    if not real.exists():
        raise RunbookError(path, 1, "no such file")
    if not real.is_file():
        raise RunbookError(path, 1, "not a regular file")
    return real


class _Source:
    """A runbook's bytes parsed to plain data, plus the line of every node."""

    def __init__(self, file: str, raw: bytes) -> None:
        self.file = file
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.lines: dict[_Path, int] = {}
        self._nodes = 0
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunbookError(file, raw.count(b"\n", 0, exc.start) + 1,
                               "file is not valid UTF-8") from None
        self.data = self._parse(text)

    def error(self, path: _Path, reason: str) -> RunbookError:
        return RunbookError(self.file, self.line_of(path), reason)

    def line_of(self, path: _Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def _parse(self, text: str) -> Any:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else self._build(loader, node, ())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise RunbookError(self.file, line, f"YAML syntax error: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise RunbookError(self.file, 1, f"YAML error: {exc}") from None
        finally:
            loader.dispose()

    def _build(self, loader: _Loader, node: yaml.Node, path: _Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        self._nodes += 1
        if self._nodes > _MAX_NODES or len(path) > 64:
            raise RunbookError(self.file, node.start_mark.line + 1,
                               "runbook too large or too deeply nested (YAML aliases?)")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self._build(loader, item, (*path, i)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def _mapping(self, loader: _Loader, node: yaml.MappingNode, path: _Path) -> dict[str, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise RunbookError(self.file, line, f"key {key!r} is not a string; quote it "
                                   "(YAML reads on/off/yes/no as booleans)")
            if key in seen:
                raise RunbookError(self.file, line,
                                   f"duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = line
        loader.flatten_mapping(node)   # `<<: *anchor` merges; own keys win
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise RunbookError(self.file, key_node.start_mark.line + 1,
                                   f"key {key!r} is not a string")
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self._build(loader, value_node, (*path, key))
        return result


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves dates as strings: runbook values are names, not timestamps."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _dotted(path: _Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "runbook"


class _Builder:
    """Turns validated data into a Runbook, checking what a schema cannot."""

    def __init__(self, source: _Source, known_actions: frozenset[str] | None,
                 playbooks_dir: Path | None,
                 reports: dict[str, dict[str, str]] | None = None) -> None:
        self.src = source
        self.known_actions = known_actions
        self.playbooks_dir = playbooks_dir
        self.reports = reports

    def build(self) -> Runbook:
        data = self.src.data
        if data is None:
            raise self.src.error((), "the file is empty; a runbook is a YAML mapping")
        self._check_schema(data)
        name = data["name"]
        component = data.get("component", name)
        target = data.get("target", Runbook.target)
        self._template(target, ("target",))
        verify = self._verify(data.get("verify"), ("verify",), None)
        return Runbook(
            name=name,
            component=component,
            path=self.src.file,
            sha256=self.src.sha256,
            priority=Priority[data.get("priority", "medium").upper()],
            mode=Mode(data.get("mode", "auto")),
            match=self._match(data.get("match", []), component,
                              data.get("match_component_label", True)),
            target=target,
            failure_types=dict(data.get("failure_types", {})),
            match_component_label=data.get("match_component_label", True),
            strategies=self._strategies(data["strategies"], verify),
            verify=verify,
            cooldown=self._cooldown(data.get("cooldown", {})),
            degraded_mode=(DegradedModeSpec(**data["degraded_mode"])
                           if "degraded_mode" in data else None),
            approval_timeout=self._duration(data, "approval_timeout", (),
                                            Runbook.approval_timeout, positive=True),
            description=data.get("description", ""),
            probe=self._probe(data.get("probe"), verify),
            fleet=self._fleet(data.get("fleet", {})),
            warnings=self._deprecations(data),
            concurrency=Concurrency(data.get("concurrency", Concurrency.PER_TARGET)),
        )

    def _deprecations(self, data: dict[str, Any]) -> tuple[str, ...]:
        """An older priority spelling still loads (as the priority it means), with a
        warning naming its replacement."""
        spelled = data.get("priority")
        if spelled not in DEPRECATED_PRIORITIES:
            return ()
        return (f"{self.src.file}:{self.src.line_of(('priority',))}: priority {spelled!r} "
                f"is deprecated: write {DEPRECATED_PRIORITIES[spelled]!r} (same rank)",)

    def _fleet(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The runbook's own fleet limits, parsed (engine.fleet_limits)."""
        try:
            return parse_fleet(raw)
        except FleetValueError as exc:
            path: _Path = ("fleet", exc.key)
            raise self.src.error(path, f"{_dotted(path)}: {exc.reason}") from None

    def _serial(self, raw: Any, path: _Path) -> tuple[int | str, ...] | None:
        """Batch sizes as Ansible's ``serial``: a host count, a share ("25%"), or a list of
        them; percentages written back as ``N%``."""
        if raw is None:
            return None
        items = raw if isinstance(raw, list) else [raw]
        sizes: list[int | str] = []
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(raw, list) else path
            if isinstance(item, int) and not isinstance(item, bool):
                if item < 1:
                    raise self.src.error(where, f"{_dotted(where)}: {item} hosts: a batch "
                                         "has at least 1 host")
                sizes.append(item)
                continue
            try:
                sizes.append(f"{parse_percent(item):g}%")
            except ValueError as exc:
                raise self.src.error(where, f"{_dotted(where)}: {exc}; a batch is a number "
                                     "of hosts or a percentage of them") from None
        return tuple(sizes)

    def _probe(self, raw: dict[str, Any] | None, verify: Verify | None) -> Probe | None:
        """A probe checks with its own action, else the runbook's verify action."""
        if raw is None:
            return None
        path: _Path = ("probe",)
        action = raw.get("action") or (verify.action if verify else None)
        if action is None:
            raise self.src.error(path, "probe: needs an `action` (or a runbook `verify`)")
        self._known_action(action, (*path, "action"))
        self._template(raw.get("with", {}), (*path, "with"))
        if "with" in raw:
            params = dict(raw["with"])
        else:
            params = dict(verify.params) if verify and verify.action == action else {}
        return Probe(targets=raw["targets"], action=action, params=params,
                     interval=self._duration(raw, "interval", path, Probe.interval,
                                             positive=True),
                     failure_type=raw.get("failure_type"),
                     line=self.src.line_of((*path, "targets")))

    def _check_schema(self, data: Any) -> None:
        error = best_match(_VALIDATOR.iter_errors(data))
        if error is None:
            return
        path: _Path = tuple(error.absolute_path)
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            allowed = error.schema.get("properties", {})
            extra = [k for k in error.instance if k not in allowed]
            if extra:   # point at the unknown key itself, and say what is allowed
                raise self.src.error((*path, extra[0]), f"{_dotted(path)}: unknown key "
                                     f"{extra[0]!r} (allowed: {', '.join(allowed)})")
        elif "propertyNames" in error.schema_path and isinstance(error.instance, str):
            path = (*path, error.instance)
        raise self.src.error(path, f"{_dotted(path)}: {message}")

    def _match(self, texts: list[str], component: str,
               by_component: bool) -> tuple[tuple[Matcher, ...], ...]:
        group: list[Matcher] = []
        for i, text in enumerate(texts):
            try:
                group.append(parse_matcher(text))
            except MatcherError as exc:
                raise self.src.error(("match", i), f"match[{i}]: {exc.reason}") from None
        groups = [tuple(group)] if group else []
        if by_component:
            groups.append((Matcher("component", "=", component),))
        return tuple(groups)

    def _strategies(self, items: list[dict[str, Any]],
                    verify: Verify | None) -> tuple[Strategy, ...]:
        strategies: list[Strategy] = []
        first_line: dict[str, int] = {}
        for i, item in enumerate(items):
            path: _Path = ("strategies", i)
            name = item["name"]
            if name in first_line:
                raise self.src.error((*path, "name"), f"duplicate strategy name {name!r} "
                                     f"(first at line {first_line[name]})")
            first_line[name] = self.src.line_of((*path, "name"))
            strategies.append(self._strategy(item, path, verify))
        return tuple(strategies)

    def _strategy(self, item: dict[str, Any], path: _Path, verify: Verify | None) -> Strategy:
        name = item["name"]
        action, playbook = item.get("action"), item.get("playbook")
        if action and playbook:
            raise self.src.error(path, f"strategy {name!r} has both `action` and `playbook`; "
                                 "a step is one or the other")
        if not action and not playbook:
            raise self.src.error(path, f"strategy {name!r} needs an `action` or a `playbook`")
        if action and "extravars" in item:
            raise self.src.error((*path, "extravars"), f"strategy {name!r}: `extravars` are "
                                 "for playbooks; an action takes `with`")
        if playbook and "with" in item:
            raise self.src.error((*path, "with"), f"strategy {name!r}: `with` is for actions; "
                                 "a playbook takes `extravars`")
        if action:
            self._known_action(action, (*path, "action"))
        else:
            self._playbook(playbook, (*path, "playbook"))
        if "target" in item:
            self._step_target(item["target"], (*path, "target"))
        extravars = item.get("extravars", {})
        self._extravar_keys(extravars, (*path, "extravars"))
        self._template(item.get("with", {}), (*path, "with"))
        self._template(extravars, (*path, "extravars"))
        required, approval_when, allow_self = self._approval(item, path)
        step_verify = self._verify(item.get("verify"), (*path, "verify"), verify)
        if step_verify is None and verify is None and not item.get("degrades", False):
            raise self.src.error(path, f"strategy {name!r} has no verify, and the runbook "
                                 "none: a step nobody checks cannot be called recovered "
                                 "(add `verify:` to the runbook or to the strategy)")
        return Strategy(
            name=name,
            action=action,
            playbook=playbook,
            params=dict(item.get("with", {})),
            extravars=dict(extravars),
            when=tuple(item.get("when", ())),
            approval=required,
            approval_when=approval_when,
            allow_self=allow_self,
            on_reject=item.get("on_reject", "stop"),
            verify=step_verify,
            timeout=self._duration(item, "timeout", path, Strategy.timeout, positive=True),
            degrades=item.get("degrades", False),
            idempotent=item.get("idempotent", True),
            target=item.get("target"),
            serial=self._serial(item.get("serial"), (*path, "serial")),
            max_fail_percentage=float(item.get("max_fail_percentage", 0)),
            line=self.src.line_of(path),
        )

    def _approval(self, item: dict[str, Any], path: _Path
                  ) -> tuple[bool, tuple[FactCondition, ...], bool | None]:
        """The step's approval rule, its conditions' facts checked against what its
        action or playbook declares it reports (when that is known here)."""
        if "approval" not in item:
            return False, (), None
        if item.get("action"):
            reports = self.reports.get(item["action"]) if self.reports is not None else None
        else:
            reports = self._playbook_reports(item["playbook"])
        try:
            return parse_rule(item["approval"], reports)
        except ApprovalFormError as exc:
            where = (*path, "approval", *exc.where)
            raise self.src.error(where, f"{_dotted(where)}: {exc.reason}") from None

    def _playbook_reports(self, name: str) -> dict[str, str] | None:
        """The facts a playbook declares it reports; None when its file is not at hand
        (no playbooks folder given)."""
        if self.playbooks_dir is None:
            return None
        return playbook_reports(self.playbooks_dir / name)

    def _verify(self, raw: dict[str, Any] | None, path: _Path,
                base: Verify | None) -> Verify | None:
        """A verify block; a strategy's override inherits what it does not say."""
        if raw is None:
            return None
        action = raw.get("action") or (base.action if base else None)
        if action is None:
            raise self.src.error(path, f"{_dotted(path)}: needs an `action` "
                                 "(none here and none at the runbook level)")
        self._known_action(action, (*path, "action"))
        self._template(raw.get("with", {}), (*path, "with"))
        start = base or Verify(action=action)
        if "with" in raw:
            params = dict(raw["with"])
        else:
            params = dict(start.params) if start.action == action else {}
        result = Verify(
            action=action,
            params=params,
            initial_delay=self._duration(raw, "initial_delay", path, start.initial_delay),
            interval=self._duration(raw, "interval", path, start.interval, positive=True),
            deadline=self._duration(raw, "deadline", path, start.deadline, positive=True),
            stable_for=self._duration(raw, "stable_for", path, start.stable_for),
        )
        if result.stable_for > result.deadline:
            raise self.src.error(path, f"{_dotted(path)}: stable_for ({result.stable_for:g}s) "
                                 f"is longer than the deadline ({result.deadline:g}s)")
        return result

    def _cooldown(self, raw: dict[str, Any]) -> Cooldown:
        default = Cooldown()
        return replace(
            default,
            max_attempts=raw.get("max_attempts", default.max_attempts),
            window=self._duration(raw, "window", ("cooldown",), default.window, positive=True),
            after_failure=self._duration(raw, "after_failure", ("cooldown",),
                                         default.after_failure),
        )

    def _duration(self, raw: Mapping[str, Any], key: str, path: _Path, default: float,
                  *, positive: bool = False) -> float:
        if key not in raw:
            return default
        try:
            seconds = parse_duration(raw[key])
        except ValueError as exc:
            raise self.src.error((*path, key), f"{_dotted((*path, key))}: {exc}") from None
        if positive and seconds <= 0:
            raise self.src.error((*path, key), f"{_dotted((*path, key))}: must be more than 0")
        return seconds

    def _template(self, value: Any, path: _Path) -> None:
        """Every string in ``value`` must compile in the sandbox."""
        if isinstance(value, str):
            try:
                compile_check(value)
            except TemplateError as exc:
                raise self.src.error(path, f"{_dotted(path)}: {exc.reason}") from None
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self._template(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._template(item, (*path, i))

    def _step_target(self, pattern: str, path: _Path) -> None:
        """A step's target is a fixed inventory pattern, resolved before anything runs:
        never a template (alert data must not choose hosts), never blank. Whether its
        groups exist is the inventory's to say (``recovery validate``)."""
        if "{{" in pattern or "{%" in pattern:
            raise self.src.error(path, f"{_dotted(path)}: {pattern!r} is a template; a step's "
                                 "target is an inventory group or pattern, written out "
                                 "(labels never choose hosts)")
        if not pattern.strip() or any(c.isspace() for c in pattern):
            raise self.src.error(path, f"{_dotted(path)}: {pattern!r} is not a host "
                                 "pattern (no blanks; join terms with ':')")

    def _extravar_keys(self, extravars: Mapping[str, Any], path: _Path) -> None:
        for key in extravars:
            lowered = key.lower()
            if lowered.startswith("ansible_") or lowered in RESERVED_EXTRAVARS:
                raise self.src.error((*path, key), f"extravars key {key!r} is refused: "
                                     "`ansible_*` and connection settings come only from "
                                     "the inventory")

    def _known_action(self, action: str, path: _Path) -> None:
        if self.known_actions is not None and action not in self.known_actions:
            raise self.src.error(path, f"unknown action {action!r}")

    def _playbook(self, name: str, path: _Path) -> None:
        if ("/" in name or "\\" in name or ".." in name or "\0" in name
                or name.startswith(".") or not name.endswith(PLAYBOOK_SUFFIXES)):
            raise self.src.error(path, f"playbook {name!r} must be a file name inside "
                                 "playbooks/ (no '/' or '..') ending in .yml or .yaml")
        if self.playbooks_dir is None:
            return
        root = Path(os.path.realpath(self.playbooks_dir))
        real = Path(os.path.realpath(root / name))
        if root not in real.parents:
            raise self.src.error(path, f"playbook {name!r} resolves to {real}, outside "
                                 f"{root} (symlinks out are refused)")
        if not real.is_file():
            raise self.src.error(path, f"playbook {name!r} not found in {root}")
