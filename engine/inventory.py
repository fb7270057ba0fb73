"""Targets: an alert's ``instance`` label or an operator's ``--target``, as inventory hosts.

Why this module exists: a label is data an attacker can write (anyone who can post to
Alertmanager, or make Prometheus scrape a target of their choosing). So an ``instance`` label
is only ever compared, exactly, with what the inventory says a host is called: its name, its
``ansible_host``, or one of its ``instance_aliases`` (ports stripped on both sides). It is never
expanded as an Ansible pattern (``all``, ``web*``, ``~regex``, ``a:!b``), never templated, and a
value two hosts claim is refused rather than guessed. Only an operator's ``--target`` is also
expanded as a ``--limit`` pattern. Connection endpoints (``redis_url`` ...) come from the
resolved host's variables, never from the label.

Parsing is ansible-core's own (InventoryManager, DataLoader, VariableManager), so group_vars,
host_vars, inline vars and every inventory plugin behave as they do for ``ansible-playbook``.
What it cannot do: variables are read as written, not templated, so an alias, ``ansible_host``
or endpoint written as ``{{ ... }}`` is compared or returned literally (``validate()`` says so).

Ansible is imported on first use, not at import time: an embedding application must stay small
and never pays for ansible (~40 MB) unless it resolves an inventory target.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.compat import collect_ansible_warnings

ENDPOINT_KEYS = ("redis_url", "chromadb_url", "openwebui_url")
ALIASES_KEY = "instance_aliases"
LOCALHOST = "localhost"
# Ansible's implicit localhost also answers to these; here only when no host claims them.
# Variables ansible adds that are not the host's or its groups' own; _load adds whatever else
# VariableManager gives for no host at all, so a new ansible magic variable is dropped too.
_MAGIC_VARS = frozenset({
    "ansible_config_file", "ansible_facts", "ansible_playbook_python", "ansible_version",
    "environment", "group_names", "groups", "hostvars", "inventory_dir", "inventory_file",
    "inventory_hostname", "inventory_hostname_short", "omit", "playbook_dir", "vars",
})
_SHOWN = 200  # characters of a hostile label quoted back in a reason


class UnknownTarget(LookupError):
    """A target that resolves to no host: the gate refuses it, with ``reason``, never guesses."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AmbiguousTarget(UnknownTarget):
    """A label that two or more hosts claim: refused like an unknown one, naming the claimants."""


@dataclass(frozen=True)
class Host:
    """One inventory host as the engine sees it: a name, its own variables, its groups.

    ``vars`` are the merged host, group and group_vars/host_vars variables (as
    VariableManager gives them) without ansible's magic variables; plain Python values,
    read-only. ``groups`` mirrors ansible's ``group_names`` (every group but ``all``).
    """

    name: str
    # Not in repr: host vars may hold secrets, and a Host is logged.
    vars: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, repr=False
    )
    groups: tuple[str, ...] = ()

    def endpoint(self, name: str) -> str | None:
        """The URL this host gives for a component (``"redis"`` or ``"redis_url"``), or None.

        Only a string counts: a missing or malformed value is None, so a caller falls back
        to its configured endpoint instead of connecting somewhere odd.
        """
        key = name if name.endswith("_url") else f"{name}_url"
        value = self.vars.get(key)
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Expansion:
    """What a target pattern resolved to: its hosts in inventory order, and whether the
    pattern named one host itself (``exact``) or a group of them, which is acted on
    host by host, the healthy ones left alone."""

    pattern: str
    hosts: tuple[Host, ...]
    exact: bool = False

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]


def strip_port(value: str) -> str:
    """``host:9121`` -> ``host``, ``[::1]:6379`` -> ``::1``; anything else unchanged.

    Only a numeric port after a single colon is removed, so a bare IPv6 address
    (``2001:db8::1``) and a pattern-looking ``web:!db`` are left as they are.
    """
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:]
        if end > 0 and (rest == "" or (rest[:1] == ":" and rest[1:].isdigit())):
            return value[1:end]
        return value
    head, sep, port = value.rpartition(":")
    if sep and ":" not in head and port.isdigit() and port.isascii():
        return head
    return value


@dataclass(frozen=True)
class _Snapshot:
    """One parse of the inventory; replaced whole by reload(), so readers need no lock."""

    hosts: tuple[Host, ...]  # inventory order; an implicit localhost last
    listed: tuple[Host, ...]  # the hosts the inventory lists (ansible's `all`)
    names: Mapping[str, Host]
    claims: Mapping[str, tuple[tuple[str, str], ...]]  # key -> ((host name, how), ...)
    groups: Mapping[str, tuple[str, ...]]
    problems: tuple[str, ...]
    manager: Any  # ansible InventoryManager: only for --target patterns, under the lock

    def by_name(self, name: str) -> Host | None:
        return self.names.get(name)


class Inventory:
    """The Ansible inventory at ``path`` (a file, or a directory with hosts.yml, group_vars/).

    Parsed once, on first use; ``reload()`` re-reads it. Safe to share between threads.
    Ansible's warnings are captured (``validate()`` reports them), never printed, so they
    cannot pollute ``--json`` output.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self._lock = threading.RLock()
        self._snap: _Snapshot | None = None

    # -- reading -------------------------------------------------------------------------

    def get(self, name: str) -> Host | None:
        """The host named exactly ``name`` (``localhost`` exists even when not listed)."""
        return self._snapshot().by_name(name)

    def hosts(self) -> list[Host]:
        """Listed hosts in inventory order (like ansible's ``all``: no implicit localhost)."""
        return list(self._snapshot().listed)

    def groups(self) -> dict[str, list[str]]:
        """Group name -> host names, as ansible's ``groups`` variable has them."""
        return {name: list(members) for name, members in self._snapshot().groups.items()}

    def validate(self) -> list[str]:
        """Problems an operator should fix, in words; [] for a sound inventory."""
        return list(self._snapshot().problems)

    def reload(self) -> None:
        """Re-read the inventory (a bad edit shows in validate(); targets then refuse)."""
        snap = self._load()
        with self._lock:
            self._snap = snap

    # -- resolving -----------------------------------------------------------------------

    def resolve_instance(self, value: str) -> Host:
        """The one host an alert's ``instance`` label names, or UnknownTarget with the reason.

        Exact comparison only, port stripped: host name, ``ansible_host``, an entry of
        ``instance_aliases``. ``localhost`` is ansible's localhost; a bare
        127.0.0.1 is not (it means the *scraper's* machine, which may not be ours):
        list it in ``instance_aliases`` of the host it is. Never a pattern, a group, or a template.
        """
        if not isinstance(value, str) or not value.strip():
            raise UnknownTarget(f"instance label is empty ({value!r}): no host to act on")
        snap = self._snapshot()
        key = strip_port(value)
        claimants = list(dict.fromkeys(name for name, _ in snap.claims.get(key, ())))
        if len(claimants) == 1:
            found = snap.by_name(claimants[0])
            assert found is not None
            return found
        if claimants:
            raise AmbiguousTarget(
                f"instance {_quote(value)} is ambiguous: {_describe(key, snap.claims[key])}; "
                "refusing to guess, make it unique in the inventory"
            )
        raise UnknownTarget(
            f"instance {_quote(value)} matches no inventory host "
            f"(by name, ansible_host or {ALIASES_KEY}){_problems_note(snap)}"
        )

    def resolve_pattern(self, pattern: str, *, what: str = "--target") -> list[Host]:
        """Hosts an operator's ``--target`` (or a step's ``target:``) names, in inventory
        order; UnknownTarget if none. See ``expand``."""
        return list(self.expand(pattern, what=what).hosts)

    def expand(self, pattern: str, *, what: str = "--target") -> Expansion:
        """A host or an Ansible ``--limit`` pattern, resolved to concrete hosts.

        An exact host (as resolve_instance, so ``10.0.0.5:6379`` works) first; otherwise
        the pattern as ansible-core reads it: groups, wildcards, ``a:b``, ``a:!b``,
        ``a:&b``, ``g[0:2]``, ``~regex``. Every term must match something: ``redis:!x``
        with no ``x`` in the inventory is a typo, refused rather than read as ``redis``.
        ``what`` names the source in a reason (``--target``, ``strategies[1].target``).
        """
        if not isinstance(pattern, str) or not pattern.strip():
            raise UnknownTarget(f"{what} is empty ({pattern!r}): name a host or a group")
        try:
            return Expansion(pattern, (self.resolve_instance(pattern),), exact=True)
        except AmbiguousTarget:
            raise
        except UnknownTarget:
            pass
        snap = self._snapshot()
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import split_host_pattern

        with self._lock, collect_ansible_warnings():
            try:
                names = {h.name for h in snap.manager.get_hosts(pattern)}
                terms = split_host_pattern(pattern)
                unmatched = [t for t in terms if not snap.manager.get_hosts(t.lstrip("!&"))]
            except AnsibleError as exc:
                raise UnknownTarget(f"{what} {_quote(pattern)} is not a valid host pattern: "
                                    f"{_first_line(str(exc))}") from None
        found = tuple(h for h in snap.hosts if h.name in names)
        if len(terms) > 1 and unmatched:
            raise UnknownTarget(
                f"{what} {_quote(pattern)}: {_unmatched(unmatched[0], snap)}; "
                f"refusing to guess what was meant{_problems_note(snap)}")
        if not found:
            note = _group_note(unmatched[0], snap) if unmatched else None
            raise UnknownTarget(
                f"{what} {_quote(pattern)} matches no "
                + (f"host: {note}" if note else "inventory host or group")
                + _problems_note(snap))
        return Expansion(pattern, found, exact=False)

    # -- parsing -------------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        snap = self._snap
        if snap is None:
            with self._lock:
                if self._snap is None:
                    self._snap = self._load()
                snap = self._snap
        return snap

    def _load(self) -> _Snapshot:
        """Parse with ansible-core and copy out everything resolving needs."""
        with self._lock, collect_ansible_warnings() as messages:
            from ansible.errors import AnsibleError
            from ansible.inventory.manager import InventoryManager
            from ansible.parsing.dataloader import DataLoader
            from ansible.vars.manager import VariableManager

            problems: list[str] = []
            loader = DataLoader()
            sources = [str(self.path)]
            if not self.path.exists():
                problems.append(f"inventory {self.path} does not exist")
                sources = []
            try:
                manager = InventoryManager(loader=loader, sources=sources)
            except AnsibleError as exc:
                problems.append(f"inventory {self.path} failed to parse: {_first_line(str(exc))}")
                manager = InventoryManager(loader=loader, sources=[])
            variables = VariableManager(loader=loader, inventory=manager)
            magic = _MAGIC_VARS | set(variables.get_vars(include_hostvars=False))
            found = list(manager.hosts.values())
            if LOCALHOST not in manager.hosts:
                # Created on demand by ansible: ansible_connection=local, `all`'s vars.
                found.append(manager.get_host(LOCALHOST))
            everything = []
            failed: dict[str, list[str]] = {}  # error -> hosts (one bad group_vars hits many)
            for host in found:
                try:
                    everything.append(_host(host, variables, magic))
                except AnsibleError as exc:  # e.g. a group_vars file that is not YAML
                    failed.setdefault(_first_line(str(exc)), []).append(str(host.name))
                    everything.append(_host(host, None, magic))
            for error, hit in failed.items():
                problems.append(
                    f"variables failed to load for {', '.join(map(repr, hit))}: {error} "
                    f"(check group_vars/ and host_vars/ next to {self.path.name}); "
                    "those hosts keep only the variables written on the host itself"
                )
            listed = [h for h in everything if h.name in manager.hosts]
            group_map = {
                str(name): tuple(str(m) for m in members)
                for name, members in manager.get_groups_dict().items()
            }
        if sources:  # else ansible only adds "no inventory was parsed", said better above
            problems.extend(_first_line(m) for m in messages)
        claims = _claims(everything)
        problems.extend(_check(everything, claims, group_map))
        return _Snapshot(
            hosts=tuple(everything),
            listed=tuple(listed),
            names=MappingProxyType({h.name: h for h in everything}),
            claims=MappingProxyType(claims),
            groups=MappingProxyType(group_map),
            problems=tuple(problems),
            manager=manager,
        )


# -- helpers (pure, no ansible) ---------------------------------------------------------------


def _host(host: Any, variables: Any | None, magic: frozenset[str] | set[str]) -> Host:
    """Copy an ansible Host into ours: own variables only, as plain Python values.

    Without a VariableManager (its variables failed to load), only the variables set on
    the host itself (inline, or ansible's implicit-localhost defaults) are kept.
    """
    hidden = magic | set(host.get_magic_vars())
    if variables is None:
        merged = host.get_vars()
    else:
        merged = variables.get_vars(host=host, include_hostvars=False)
    own = {str(k): _plain(v) for k, v in merged.items() if k not in hidden}
    return Host(name=str(host.name), vars=MappingProxyType(own), groups=_group_names(host))


def _group_names(host: Any) -> tuple[str, ...]:
    """Ansible's ``group_names``: every group of the host, ancestors included, but ``all``."""
    return tuple(sorted(str(g.name) for g in host.get_groups() if g.name != "all"))


def _plain(value: Any) -> Any:
    """Drop ansible 2.19's data tags (tagged str/int/list ...) so values are builtins."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def _aliases(host: Host) -> list[str]:
    """The valid ``instance_aliases`` of a host; a malformed value counts as none."""
    value = host.vars.get(ALIASES_KEY)
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        return []
    return value


def _claims(hosts: list[Host]) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every port-stripped key a label may use -> the hosts that claim it, and how."""
    claims: dict[str, list[tuple[str, str]]] = {}
    for host in hosts:
        keys = [(host.name, "name")]
        address = host.vars.get("ansible_host")
        if isinstance(address, str) and address:
            keys.append((strip_port(address), "ansible_host"))
        keys.extend((strip_port(a), ALIASES_KEY) for a in _aliases(host))
        for key, how in dict.fromkeys(keys):
            claims.setdefault(key, []).append((host.name, how))
    return {key: tuple(who) for key, who in claims.items()}


def _check(
    hosts: list[Host],
    claims: Mapping[str, tuple[tuple[str, str], ...]],
    groups: Mapping[str, tuple[str, ...]],
) -> list[str]:
    """Inventory mistakes that would make a label resolve wrongly or an endpoint unusable."""
    problems: list[str] = []
    for host in hosts:
        aliases = host.vars.get(ALIASES_KEY)
        if aliases is not None and aliases != _aliases(host):
            problems.append(f"host {host.name!r}: {ALIASES_KEY} must be a list of non-empty "
                            f"strings, got {aliases!r}; its aliases are ignored until fixed")
        for alias in _aliases(host):
            if "{{" in alias:
                problems.append(f"host {host.name!r}: {ALIASES_KEY} entry {alias!r} is a "
                                "template; labels are compared with it literally")
        for key in ENDPOINT_KEYS:
            if key not in host.vars:
                continue
            value = host.vars[key]
            # The value itself is never quoted: a URL may carry a password.
            if not isinstance(value, str) or not value:
                problems.append(f"host {host.name!r}: {key} must be a non-empty string, "
                                f"got {type(value).__name__}")
            elif "{{" in value:
                problems.append(f"host {host.name!r}: {key} is a template; the engine "
                                "reads it literally, write the URL itself")
    for key, who in claims.items():
        if len({name for name, _ in who}) > 1:
            problems.append(f"{_describe(key, who)}: an alert for it would be refused "
                            "as ambiguous")
        elif key in groups and who[0][1] != "name":
            problems.append(f"{_describe(key, who)} and is also a group name: "
                            f"--target {key} would pick the host, not the group")
    return problems


def _describe(key: str, who: tuple[tuple[str, str], ...]) -> str:
    owners = " and ".join(f"host {name!r} ({how})" for name, how in who)
    return f"{key!r} is claimed by {owners}"


def _problems_note(snap: _Snapshot) -> str:
    if not snap.problems:
        return ""
    return (f"; note: the inventory has {len(snap.problems)} problem(s), "
            f"first: {snap.problems[0]} (run `recovery validate`)")


def _unmatched(term: str, snap: _Snapshot) -> str:
    """Why one term of a pattern selects nothing, in words."""
    return _group_note(term, snap) or f"{term.lstrip('!&')!r} matches no inventory host or group"


def _group_note(term: str, snap: _Snapshot) -> str | None:
    """Why a term naming a known group selects nothing (None: it names no group)."""
    bare = term.lstrip("!&")
    group = bare.split("[", 1)[0]
    if group not in snap.groups:
        return None
    if not snap.groups[group]:
        return f"group {group!r} has no hosts"
    return f"{bare!r} selects none of group {group!r}'s {len(snap.groups[group])} host(s)"


def _quote(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
