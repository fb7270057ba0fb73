"""The operator's playbook (docs/escalation.md, docs/troubleshooting.md,
docs/integration.md) stays true to the code: the troubleshooting guide has a row for every
gate, refusal kind, decision code, exit code, HTTP answer, run status and incident state
the engine defines (each list read from the code, so a new one without a row fails here,
and a row for one that is gone too); the capability matrices of escalation.md are the
ones of recovery.yml; integration.md quotes each of its example files verbatim (they run
in tests/integration/test_integration_examples.py); every `recovery` command line the
docs show parses."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shlex
from pathlib import Path

import pytest
import yaml

from engine.cli import build_parser
from engine.gates.base import Gate
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.approvals import DecisionError
from tests.support.docs import DOCS, first_cells, quoted_examples, sections, table_rows
from tests.support.paths import EXAMPLES, ROOT

GUIDE = DOCS / "troubleshooting.md"
ESCALATION = DOCS / "escalation.md"
PLAYBOOK_DOCS = (ESCALATION, GUIDE, DOCS / "integration.md", DOCS / "console.md")
_CODE = re.compile(r"^[a-z]+(_[a-z]+)+$")      # a machine's code, not words


def _trees(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        yield ast.parse(path.read_text(), str(path))


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def keyword_strings(folder: Path, keyword: str) -> set[str]:
    """Every literal string the code of ``folder`` passes as ``keyword=``."""
    found: set[str] = set()
    for tree in _trees(folder):
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == keyword:
                found |= _strings(node.value)
    return found


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def gate_names() -> set[str]:
    """Every gate's name (each module of engine.gates imported), and the gates a record
    names without a class (``gate="target"``: a target the inventory does not resolve)."""
    import engine.gates as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"engine.gates.{module.name}")
    return {c.name for c in _subclasses(Gate)} | keyword_strings(ROOT / "engine", "gate")


def decision_codes() -> set[str]:
    """The codes of decisions that cannot be taken, and the HTTP API's other codes."""
    codes = {c.code for c in _subclasses(DecisionError) if c.code}
    return codes | {s for s in keyword_strings(ROOT / "webhook", "error") if _CODE.match(s)}


def http_statuses() -> set[str]:
    """The error statuses the webhook's code answers with (returned, or set)."""
    found: set[int] = set()
    for tree in _trees(ROOT / "webhook"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
                parts = node.value.elts[1:]
            elif (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                  and node.targets[0].attr == "status_code"):
                parts = [node.value]
            else:
                continue
            found |= {n.value for part in parts for n in ast.walk(part)
                      if isinstance(n, ast.Constant) and isinstance(n.value, int)}
    return {str(code) for code in found if code >= 400}


def exit_codes() -> dict[str, str]:
    """Exit code -> its name in engine/cli/exits.py."""
    from engine.cli import exits

    return {str(value): name for name, value in vars(exits).items()
            if name.isupper() and isinstance(value, int)}


GUIDE_SECTIONS = {
    "Gates": gate_names,
    "Refusals without a gate": lambda: keyword_strings(ROOT / "engine", "reason_key"),
    "Decisions that cannot be taken": decision_codes,
    "Exit codes": lambda: set(exit_codes()),
    "HTTP answers": http_statuses,
    "Run statuses": lambda: {s.value for s in RunStatus},
    "Incident states": lambda: {s.value for s in IncidentState},
}


def test_the_code_defines_what_the_guide_is_checked_against():
    """The derivations find the known cases, so an empty list never passes silently."""
    assert {"kill_switch", "observe", "cooldown", "approval", "lock", "fleet", "silence",
            "target"} <= gate_names()
    assert {"unknown target", "no strategy handles its failure type"} <= keyword_strings(
        ROOT / "engine", "reason_key")
    assert {"runbook_changed", "runbook_not_loaded", "invalid_set"} <= decision_codes()
    assert {"400", "401", "403", "404", "409", "413", "503"} <= http_statuses()
    assert exit_codes() == {"0": "OK", "1": "FAILED", "2": "USAGE", "3": "PARKED",
                            "4": "REFUSED"}


@pytest.mark.parametrize("section", GUIDE_SECTIONS)
def test_the_troubleshooting_guide_has_a_row_for_each_case_the_code_defines(section):
    text = sections(GUIDE)[section]
    documented = first_cells(text)
    assert len(documented) == len(set(documented)), f"{section}: a case twice"
    defined = GUIDE_SECTIONS[section]()
    assert not defined - set(documented), (
        f"docs/troubleshooting.md, {section}: no row for {sorted(defined - set(documented))}")
    assert not set(documented) - defined, (
        f"docs/troubleshooting.md, {section}: rows for what the code no longer defines: "
        f"{sorted(set(documented) - defined)}")


def test_the_exit_codes_rows_name_each_code_as_the_code_does():
    rows = table_rows(sections(GUIDE)["Exit codes"])
    assert {row[0].strip("`"): row[1].strip("`") for row in rows} == exit_codes()


def shipped_modes() -> dict[str, dict[str, bool]]:
    config = yaml.safe_load((ROOT / "recovery.yml").read_text())
    return {mode: dict(spec["capabilities"]) for mode, spec in config["degraded_modes"].items()}


def documented_modes() -> dict[str, dict[str, bool]]:
    modes = {}
    for heading, text in sections(ESCALATION).items():
        rows = table_rows(text)
        if rows and all(row[1] in ("on", "off") for row in rows):
            modes[heading] = {row[0].strip("`"): row[1] == "on" for row in rows}
    return modes


def test_escalation_md_has_the_capability_matrix_of_every_mode_of_recovery_yml():
    assert shipped_modes(), "recovery.yml ships no degraded mode"
    assert documented_modes() == shipped_modes()


def test_escalation_md_says_which_runbook_switches_each_mode_on_and_when():
    documented = sections(ESCALATION)
    for path in sorted((ROOT / "runbooks").glob("*.yml")):
        runbook = yaml.safe_load(path.read_text())
        mode = runbook.get("degraded_mode")
        if not mode:
            continue
        text = documented[mode["name"]]
        assert f"runbook `{runbook['name']}`" in text, (mode["name"], runbook["name"])
        assert f"`when: {mode.get('when', 'exhausted')}`" in text, (mode["name"], mode)


def command_lines(path: Path) -> list[str]:
    """The `recovery ...` lines of the doc's sh blocks, comments dropped."""
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```$", path.read_text(), re.M | re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command.startswith("recovery "):
                lines.append(command)
    return lines


@pytest.mark.parametrize("doc", PLAYBOOK_DOCS, ids=lambda p: p.name)
def test_every_command_line_the_doc_shows_parses(doc):
    lines = command_lines(doc)
    assert lines, f"{doc.name} shows no command"
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line.replace("RUN_ID|INCIDENT_ID", "RUN_ID"))[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{doc.name}: `{line}` does not parse")
        assert getattr(args, "func", None) is not None, line


def test_integration_md_quotes_every_example_file_verbatim():
    quoted = quoted_examples(DOCS / "integration.md")
    files = {str(p.relative_to(ROOT)): p.read_text()
             for p in sorted((EXAMPLES / "integration").iterdir()) if p.is_file()}
    assert files and set(quoted) == set(files)
    for path, text in files.items():
        assert quoted[path] == text, f"docs/integration.md quotes {path} as it no longer is"


CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)


def test_no_document_or_shipped_file_keeps_a_merge_conflict_block():
    """A conflict block once survived a merge in docs/runbooks.md, telling operators two
    contradicting things; what people read and what the engine loads must have none."""
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("docs/**/*.py"),
             *ROOT.glob("docs/**/*.yml"), *ROOT.glob("runbooks/*.yml"),
             *ROOT.glob("playbooks/*.yml"), ROOT / "recovery.yml"]
    assert len(files) > 10
    marked = [f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}"
              for path in files for text in [path.read_text()]
              for match in CONFLICT_MARKER.finditer(text)]
    assert marked == []
