"""The original recovery system's ``recovery_config.yml``, mapped onto this engine's
``recovery.yml`` and runbook settings (``recovery import-config``).

Pure: given the original's settings (parsed YAML), the shipped runbooks (parsed, by
name) and the ``recovery.yml`` to start from, returns the new ones and every line of
what was mapped, how, and what could not be. Nothing is dropped silently: a key or a
strategy without an equivalent is a ``could not map`` line. A file that is not of the
original's shape is an ``OriginalConfigError`` naming where.

What maps (docs/operations.md, "Moving from the original system"):
- ``recovery.max_attempts_per_hour`` -> each runbook's ``cooldown.max_attempts`` over a
  ``window: 1h``; ``recovery.cooldown_seconds`` -> ``cooldown.after_failure`` (either
  may also be given per component, which wins);
- ``recovery.enabled: false`` -> no file setting: a kill switch lives in the store, so
  it is a line saying to run ``recovery disable``;
- ``components.<name>`` -> the runbook of that component: ``priority``; ``strategies``
  (selection and order, by the runbooks' strategy names, a few under their original
  names: ``ORIGINAL_NAMES``); ``timeout_seconds`` -> each kept strategy's ``timeout``;
- ``alerting.alertmanager_url`` -> ``alertmanagers``; ``alerting.alert_on`` ->
  ``alertmanager.alert_on``;
- ``degraded_modes.<mode>`` (feature -> on/off) -> ``degraded_modes.<mode>.capabilities``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.config import SCHEMA as CONFIG_SCHEMA
from engine.runbooks.loader import SCHEMA as RUNBOOK_SCHEMA

# The original's strategy names that the shipped runbooks call otherwise, per component.
ORIGINAL_NAMES: dict[str, dict[str, str]] = {
    "chromadb": {"reconnect": "query_retry", "rebuild_index": "index_rebuild"},
    "redis": {"restart_container": "restart_service"},
    "system": {"memory_cleanup": "memory_gc"},
}
ALERT_ON = ("recovery", "cooldown", "degraded_mode", "exhaustion", "in_progress")
_RECOVERY_KEYS = {"enabled", "max_attempts_per_hour", "cooldown_seconds", "components"}
_COMPONENT_KEYS = {"priority", "strategies", "timeout_seconds", "max_attempts_per_hour",
                   "cooldown_seconds"}


class OriginalConfigError(ValueError):
    """Not the original's shape: ``where`` (a dotted key) is what is wrong."""


@dataclass
class Imported:
    recovery: dict[str, Any]                     # the new recovery.yml
    runbooks: dict[str, dict[str, Any]]          # runbook name -> its new settings
    mapped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)   # "could not map: ..." lines
    notes: list[str] = field(default_factory=list)      # what to do by hand
    commented: dict[str, Any] = field(default_factory=dict)  # keys this version lacks


def alert_on_known() -> bool:
    """Whether this version's recovery.yml accepts ``alertmanager.alert_on``."""
    props = CONFIG_SCHEMA["properties"]["alertmanager"].get("properties", {})
    return "alert_on" in props


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OriginalConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _seconds(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise OriginalConfigError(f"{where}: expected a number of seconds, got {value!r}")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OriginalConfigError(f"{where}: expected a whole number of at least 1, "
                                  f"got {value!r}")
    return value


def import_original(original: Any, runbooks: Mapping[str, Mapping[str, Any]],
                    base: Mapping[str, Any]) -> Imported:
    """``original``: the parsed recovery_config.yml; ``runbooks``: the runbooks to adapt
    (name -> parsed YAML); ``base``: the recovery.yml to start from (parsed)."""
    top = _mapping(original, "top level")
    if "recovery" not in top:
        raise OriginalConfigError("top level: no `recovery:` section (not the original "
                                  "system's recovery_config.yml)")
    done = Imported(recovery=copy.deepcopy(dict(base)),
                    runbooks={name: copy.deepcopy(dict(rb)) for name, rb in runbooks.items()})
    for key in top:
        if key not in ("recovery", "alerting", "degraded_modes"):
            done.unmapped.append(f"{key} (a top-level section this engine has no "
                                 "equivalent for)")
    _recovery(_mapping(top["recovery"], "recovery"), done)
    _alerting(_mapping(top.get("alerting"), "alerting"), done)
    _degraded(_mapping(top.get("degraded_modes"), "degraded_modes"), done)
    return done


def _recovery(section: Mapping[str, Any], done: Imported) -> None:
    for key in section:
        if key not in _RECOVERY_KEYS:
            done.unmapped.append(f"recovery.{key}")
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise OriginalConfigError(f"recovery.enabled: expected true or false, got {enabled!r}")
    if enabled:
        done.mapped.append("recovery.enabled: true -> auto-recovery on (the default)")
    else:
        done.notes.append("recovery.enabled: false -> a kill switch lives in the store, not "
                          "in a file: run `recovery disable --for never` after switching over "
                          "(`recovery enable` turns it on)")
    by_component = {str(rb.get("component") or name): name
                    for name, rb in done.runbooks.items()}
    components = _mapping(section.get("components"), "recovery.components")
    for component, spec in components.items():
        where = f"recovery.components.{component}"
        spec = _mapping(spec, where)
        name = by_component.get(str(component))
        if name is None:
            done.unmapped.append(f"{where} (no runbook remediates component {component!r}; "
                                 f"runbooks: {', '.join(sorted(done.runbooks)) or 'none'})")
            continue
        for key in spec:
            if key not in _COMPONENT_KEYS:
                done.unmapped.append(f"{where}.{key}")
        _cooldown(done, name, section, spec, where)
        _runbook(done, name, str(component), spec, where)
    for component, name in sorted(by_component.items()):
        if component not in components:   # the global limits still apply to it
            _cooldown(done, name, section, {}, f"recovery.components.{component}")


def _cooldown(done: Imported, name: str, section: Mapping[str, Any],
              spec: Mapping[str, Any], where: str) -> None:
    """The component's own limit where it sets one, else the global one."""
    cooldown = done.runbooks[name].setdefault("cooldown", {})

    def setting(key: str) -> tuple[Any, str]:
        return (spec[key], f"{where}.{key}") if key in spec else (section.get(key),
                                                                  f"recovery.{key}")

    per_hour, said = setting("max_attempts_per_hour")
    if per_hour is not None:
        cooldown["max_attempts"] = _count(per_hour, said)
        cooldown["window"] = "1h"
        done.mapped.append(f"{said} {per_hour} -> runbook {name}: cooldown.max_attempts "
                           f"{per_hour}, window 1h")
    pause, said = setting("cooldown_seconds")
    if pause is not None:
        cooldown["after_failure"] = f"{_seconds(pause, said)}s"
        done.mapped.append(f"{said} {pause} -> runbook {name}: cooldown.after_failure "
                           f"{pause}s (a pause after a failed attempt; max_attempts bounds "
                           "the others)")


def _runbook(done: Imported, name: str, component: str, spec: Mapping[str, Any],
             where: str) -> None:
    rb = done.runbooks[name]
    if "priority" in spec:
        rb["priority"] = _priority(spec["priority"], f"{where}.priority", done, name)
    if "strategies" in spec:
        wanted = spec["strategies"]
        if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
            raise OriginalConfigError(f"{where}.strategies: expected a list of names")
        _strategies(done, name, component, wanted, where)
    if "timeout_seconds" in spec:
        seconds = _seconds(spec["timeout_seconds"], f"{where}.timeout_seconds")
        for strategy in rb.get("strategies", []):
            strategy["timeout"] = f"{seconds}s"
        done.mapped.append(f"{where}.timeout_seconds {seconds} -> runbook {name}: timeout "
                           f"{seconds}s on each strategy")


def _priority(value: Any, where: str, done: Imported, name: str) -> str:
    known = RUNBOOK_SCHEMA["properties"]["priority"]["enum"]
    word = str(value).lower()
    if word in known:
        done.mapped.append(f"{where} {word} -> runbook {name}: priority {word}")
        return word
    raise OriginalConfigError(f"{where}: unknown priority {value!r} (one of critical, high, "
                              "medium, low)")


def _strategies(done: Imported, name: str, component: str, wanted: list[str],
                where: str) -> None:
    rb = done.runbooks[name]
    have = {s["name"]: s for s in rb.get("strategies", [])}
    aliases = ORIGINAL_NAMES.get(component, {})
    kept: list[dict[str, Any]] = []
    for original in wanted:
        ours = original if original in have else aliases.get(original)
        if ours is None or ours not in have:
            done.unmapped.append(f"{where}.strategies: {original} (runbook {name} has no "
                                 f"such strategy: {', '.join(have)})")
        elif any(s["name"] == ours for s in kept):
            done.mapped.append(f"{where}.strategies: {original} listed twice, kept once")
        else:
            kept.append(have[ours])
            how = f"{original}" if ours == original else f"{original} as {ours}"
            done.mapped.append(f"{where}.strategies: {how} (step {len(kept)})")
    if not kept:
        done.notes.append(f"runbook {name}: none of the original's strategies has an "
                          "equivalent; its strategies are left as shipped")
        return
    left_out = [s for s in have if all(k["name"] != s for k in kept)]
    if left_out:
        done.notes.append(f"runbook {name}: left out, as the original did not use them: "
                          f"{', '.join(left_out)} (add them back to the runbook to use them)")
    rb["strategies"] = kept


def _alerting(section: Mapping[str, Any], done: Imported) -> None:
    for key in section:
        if key not in ("alertmanager_url", "alert_on"):
            done.unmapped.append(f"alerting.{key}")
    url = section.get("alertmanager_url")
    if url is not None:
        if not isinstance(url, str) or "://" not in url:
            raise OriginalConfigError(f"alerting.alertmanager_url: expected a URL, got {url!r}")
        done.recovery["alertmanagers"] = [url.rstrip("/")]
        done.mapped.append(f"alerting.alertmanager_url -> alertmanagers: [{url.rstrip('/')}]")
    alert_on = _mapping(section.get("alert_on"), "alerting.alert_on")
    chosen: dict[str, bool] = {}
    for event, on in alert_on.items():
        if event not in ALERT_ON:
            done.unmapped.append(f"alerting.alert_on.{event} (events: {', '.join(ALERT_ON)})")
        elif not isinstance(on, bool):
            raise OriginalConfigError(f"alerting.alert_on.{event}: expected true or false")
        else:
            chosen[event] = on
    if not chosen:
        return
    if alert_on_known():
        done.recovery.setdefault("alertmanager", {})["alert_on"] = chosen
        done.mapped.append("alerting.alert_on -> alertmanager.alert_on")
    else:
        done.commented["alertmanager.alert_on"] = chosen
        done.notes.append("alerting.alert_on -> alertmanager.alert_on, written commented "
                          "out: this version of recovery.yml does not know the key yet")


def _degraded(section: Mapping[str, Any], done: Imported) -> None:
    modes = done.recovery.setdefault("degraded_modes", {})
    for mode, matrix in section.items():
        where = f"degraded_modes.{mode}"
        matrix = _mapping(matrix, where)
        capabilities = {}
        for feature, on in matrix.items():
            if isinstance(on, bool):
                capabilities[str(feature)] = on
            else:
                done.unmapped.append(f"{where}.{feature} ({on!r}: a capability is on or off)")
        spec = dict(modes.get(mode) or {})
        spec["capabilities"] = capabilities
        modes[str(mode)] = spec
        done.mapped.append(f"{where} -> degraded_modes.{mode}.capabilities "
                           f"({len(capabilities)} features)")
