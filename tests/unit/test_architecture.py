"""The shape docs/architecture.md promises, checked from the code's own imports: no
import cycle, no module importing another module's underscore names, and imports that
go one way between the layers. Every import counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

PACKAGES = ("engine", "webhook")
# Lower layers first; a module may import its own layer and those below it (the longest
# prefix places a module). docs/architecture.md draws the same layers.
LAYERS: list[tuple[str, ...]] = [
    # the vocabulary
    ("engine.durations", "engine.lifecycle", "engine.records", "engine.liveness",
     "engine.compat", "engine.config", "engine.resources", "engine.security.redaction",
     "engine.artifacts", "engine.inventory", "engine.fleet_limits", "engine.replica",
     "engine.log_context", "engine.fault_injection"),
    # state, credentials, what a runbook says
    ("engine.store", "engine.outages", "engine.security", "engine.runbooks"),
    # what acts and what it acts with; a set of runbooks checked against the executors
    ("engine.alerts.alert", "engine.alerts.routing", "engine.gates", "engine.actions",
     "engine.executors", "engine.runbooks.loaded_set", "engine.runbooks.validation",
     "engine.runbooks.overlaps"),
    # what one process needs to act
    ("engine.context",),
    # what happens to an alert, an incident, a set put in force
    ("engine.orchestration", "engine.reporting", "engine.alerts", "engine.notify_due",
     "engine.runbooks.reload"),
    # the faces: the service, the embedded API, the CLI, HTTP
    ("engine.service", "engine.embedded", "engine.cli", "engine.__main__", "webhook"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:        # `from engine import x`: x may be a module
                sub = f"{node.module}.{alias.name}"
                found.append((sub, []) if sub in known else (node.module, [alias.name]))
    return found


def edges() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        graph[name] = {target for target, _ in imports(path, set(known))
                       if target in known and target != name}
    return graph


def layer_of(module: str) -> int:
    best, index = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in modules() if m not in ("engine", "webhook")
                      and layer_of(m) < 0)
    assert unplaced == []


def test_no_import_cycle() -> None:
    graph = edges()
    seen: set[str] = set()
    cycles = []

    def visit(node: str, path: list[str], on_path: set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in seen:
                on_path.add(nxt)
                visit(nxt, path + [nxt], on_path)
                on_path.discard(nxt)
        seen.add(node)

    for start in sorted(graph):
        if start not in seen:
            visit(start, [start], {start})
    assert cycles == []


def test_no_module_takes_another_module_s_underscore_names() -> None:
    known = modules()
    private = [f"{name} takes {target}.{taken}"
               for name, path in known.items()
               for target, names in imports(path, set(known))
               for taken in names if taken.startswith("_") and target != name]
    assert private == []


def test_imports_go_one_way_between_the_layers() -> None:
    upward = [f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
              for name, targets in edges().items() for target in sorted(targets)
              if layer_of(target) > layer_of(name) and name not in ("engine", "webhook")
              and target not in ("engine", "webhook")]
    assert upward == []


def test_the_checks_see_what_they_check() -> None:
    """The graph is not empty by mistake: the attempt imports the gates and the context."""
    graph = edges()
    assert "engine.gates" in graph["engine.orchestration.attempt"]
    assert "engine.context" in graph["engine.orchestration.attempt"]
