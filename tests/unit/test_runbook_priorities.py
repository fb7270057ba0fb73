"""A runbook's priority: critical, high, medium (the default), low, as the original
system had them; ``warning`` and ``info`` still load as medium and low, with a warning
that ``recovery validate`` prints. The highest priority still wins when several match."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.alerts.routing import match_runbook, precedence
from engine.runbooks.loader import RunbookError, load_runbook
from engine.runbooks.model import Priority


def runbook_file(tmp_path: Path, name: str, priority: str | None) -> Path:
    path = tmp_path / f"{name}.yml"
    line = f"priority: {priority}\n" if priority else ""
    path.write_text(f"name: {name}\n{line}" + textwrap.dedent("""\
        match: ['alertname="CacheDown"']
        strategies: [{name: a, action: cache.a}]
        verify: {action: cache.ping}
    """))
    return path


@pytest.mark.parametrize(("written", "meant"), [
    ("critical", Priority.CRITICAL), ("high", Priority.HIGH), ("medium", Priority.MEDIUM),
    ("low", Priority.LOW), (None, Priority.MEDIUM)])
def test_the_four_priorities_load_without_a_warning(tmp_path, written, meant) -> None:
    book = load_runbook(runbook_file(tmp_path, "cache", written))
    assert book.priority is meant and book.warnings == ()


@pytest.mark.parametrize(("old", "meant", "word"), [
    ("warning", Priority.MEDIUM, "medium"), ("info", Priority.LOW, "low")])
def test_an_old_spelling_loads_as_its_priority_with_a_deprecation_warning(
        tmp_path, old, meant, word) -> None:
    path = runbook_file(tmp_path, "cache", old)
    book = load_runbook(path)
    assert book.priority is meant and book.priority.name.lower() == word
    assert book.warnings == (f"{path}:2: priority {old!r} is deprecated: write {word!r} "
                             "(same rank)",)


def test_an_unknown_priority_is_refused_with_its_line(tmp_path) -> None:
    with pytest.raises(RunbookError, match=r":2: .*'urgent' is not one of"):
        load_runbook(runbook_file(tmp_path, "cache", "urgent"))


def test_the_highest_priority_wins_old_spellings_ranked_as_their_new_names(tmp_path) -> None:
    ranked = [load_runbook(runbook_file(tmp_path, name, priority))
              for name, priority in (("a-low", "info"), ("b-medium", "warning"),
                                     ("c-high", "high"))]
    assert match_runbook(ranked, {"alertname": "CacheDown"}).name == "c-high"
    assert match_runbook(ranked[:2], {"alertname": "CacheDown"}).name == "b-medium"
    assert precedence(ranked[1], ranked[0]) == "priority medium over low"
    medium = load_runbook(runbook_file(tmp_path, "a-medium", "medium"))
    # warning and medium are one rank: the file name decides between them.
    assert match_runbook([ranked[1], medium], {"alertname": "CacheDown"}) is medium


def test_validate_prints_the_deprecation_and_stays_valid(cli_env) -> None:
    cli_env.write_config()
    path = cli_env.write_runbook("cache.yml", """\
        name: cache
        priority: warning
        strategies: [{name: a, action: test.ok}]
    """)
    done = cli_env.cli("validate")
    assert done.code == 0, done.err
    assert f"warning: {path}:2: priority 'warning' is deprecated: write 'medium'" in done.err
    assert "valid" in done.out


def test_the_shipped_runbooks_carry_the_original_priorities() -> None:
    from tests.support.paths import ROOT

    shipped = {name: load_runbook(ROOT / "runbooks" / f"{name}.yml").priority
               for name in ("redis", "chromadb", "system", "openwebui")}
    assert shipped == {"redis": Priority.CRITICAL, "chromadb": Priority.CRITICAL,
                       "system": Priority.HIGH, "openwebui": Priority.MEDIUM}
