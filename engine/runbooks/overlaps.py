"""Runbooks that provably take the same alerts, for ``recovery validate``.

When several runbooks match an alert, the highest ``priority`` wins, then the file name
(engine/alerts/routing.py). That is deterministic but silent, so this module finds the cases an
author should hear about: one runbook's matcher group *covers* another's (every alert
the one group matches, the other runbook matches too), and either the priorities are
equal (the file name decides for the whole group) or the covered group belongs to the
runbook that loses (it never sees those alerts).

Conservative on purpose: only what the matchers prove is reported. A group covers
another when each of its matchers is one of the other group's, or follows from one of
the other's equality matchers (``alertname="RedisDown"`` implies ``alertname=~"Redis.*"``
and ``severity!="info"`` follows from ``severity="critical"``). And every report carries
an example alert built from the matchers and checked with the real matchers against
both runbooks, so a group no alert can match (``a="x"`` with ``a="y"``) is never
reported. Partial overlaps (some alerts match both) are not reported here; ``recovery
test --alert`` lists every runbook a given alert matches and why one won.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from engine.alerts.routing import matching_runbooks, precedence, runbook_matches
from engine.compat import regex_syntax
from engine.runbooks.matchers import format_matcher, matches, matches_all
from engine.runbooks.model import Matcher, Runbook

SAMPLES = 32            # example values tried per regex


@dataclass(frozen=True)
class Overlap:
    """``covered``'s group ``group`` takes only alerts ``winner`` also matches."""

    covered: Runbook
    group: tuple[Matcher, ...]
    by: Runbook                       # the runbook whose group covers it
    by_group: tuple[Matcher, ...]
    example: dict[str, str]
    winner: Runbook

    def describe(self) -> str:
        loser = self.by if self.winner is self.covered else self.covered
        both = (f"every alert {_name(self.covered)} matches with {_group(self.group)} also "
                f"matches {_name(self.by)} ({_group(self.by_group)}), e.g. "
                f"{_labels(self.example)}")
        end = (f": that group of {_name(self.covered)} never takes an alert"
               if self.winner is self.by else "")
        return (f"runbooks overlap: {both}; {precedence(self.winner, loser)}, so "
                f"{_name(self.winner)} takes them{end}")


def overlaps(runbooks: Iterable[Runbook]) -> list[Overlap]:
    """Every provable covering between the groups of two runbooks that either ties on
    priority or leaves the covered group with nothing to match."""
    found = []
    books = sorted(runbooks, key=lambda rb: rb.path)
    for a, b in itertools.combinations(books, 2):
        for group_a, group_b in itertools.product(a.match, b.match):
            for covered, group, by, by_group in ((a, group_a, b, group_b),
                                                 (b, group_b, a, group_a)):
                if not covers(by_group, group):
                    continue
                example = example_alert(group)
                if example is None or not (runbook_matches(covered, example)
                                           and runbook_matches(by, example)):
                    continue
                winner = matching_runbooks([covered, by], example)[0]
                if covered.priority == by.priority or winner is by:
                    found.append(Overlap(covered, group, by, by_group, example, winner))
                    break      # identical groups cover each other: say it once
    return found


def covers(general: Sequence[Matcher], specific: Sequence[Matcher]) -> bool:
    """Does every alert ``specific`` matches also match ``general``? True only when each
    matcher of ``general`` is in ``specific`` or follows from one of its equalities."""
    equal = {m.name: m.value for m in specific if m.op == "="}
    return all(m in specific or (m.name in equal and matches(m, {m.name: equal[m.name]}))
               for m in general)


def example_alert(group: Sequence[Matcher]) -> dict[str, str] | None:
    """Labels every matcher of ``group`` holds for (labels it does not name are left out:
    a missing label is ""), or None if none is found: the values tried are its equality
    values, examples of its regexes, and the empty string."""
    labels: dict[str, str] = {}
    for name in dict.fromkeys(m.name for m in group):
        on_label = [m for m in group if m.name == name]
        tried = [m.value for m in on_label if m.op == "="]
        for m in on_label:
            if m.op == "=~":
                tried += _regex_examples(m.value)
        tried += ["", "x"]
        value = next((v for v in tried if all(matches(m, {name: v}) for m in on_label)),
                     None)
        if value is None:
            return None
        if value:
            labels[name] = value
    return labels if matches_all(group, labels) else None


def _regex_examples(pattern: str) -> list[str]:
    """A few strings the pattern may match, read off its syntax tree (Python's parser:
    RE2 syntax is close; what it gets wrong is filtered out by the real matcher)."""
    syntax = regex_syntax()
    if syntax is None:
        return []
    try:
        return list(itertools.islice(
            dict.fromkeys(_strings(syntax.parse(pattern), syntax.nodes)), SAMPLES))
    except Exception:  # noqa: BLE001 - no example is no proof, never an error
        return []


def _strings(items, c) -> Iterator[str]:
    """The strings a parsed sequence can produce, each choice taken a few ways."""
    choices = [list(itertools.islice(_item(op, av, c), SAMPLES)) for op, av in items]
    for parts in itertools.islice(itertools.product(*choices), SAMPLES):
        yield "".join(parts)


def _item(op, av, c) -> Iterator[str]:
    if op is c.LITERAL:
        yield chr(av)
    elif op in (c.ANY, c.NOT_LITERAL):
        yield from ("a", "b")
    elif op is c.AT:
        yield ""
    elif op in (c.IN, c.CATEGORY):
        yield from _class_chars(op, av, c)
    elif op is c.BRANCH:
        for branch in av[1]:
            yield from _strings(branch, c)
    elif op is c.SUBPATTERN:
        yield from _strings(av[-1], c)
    elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        low, _high, inner = av
        for once in _strings(inner, c):
            yield once * max(low, 1)
        if low == 0:
            yield ""
    else:
        raise ValueError(f"no example for {op}")


def _class_chars(op, av, c) -> Iterator[str]:
    items = [(op, av)] if op is c.CATEGORY else av
    if items and items[0][0] is c.NEGATE:
        yield from ("x", "-", "0")
        return
    for kind, value in items:
        if kind is c.LITERAL:
            yield chr(value)
        elif kind is c.RANGE:
            yield chr(value[0])
        elif kind is c.CATEGORY:
            yield {c.CATEGORY_DIGIT: "0", c.CATEGORY_SPACE: " "}.get(value, "a")


def _name(runbook: Runbook) -> str:
    from pathlib import Path

    return f"{runbook.name} ({Path(runbook.path).name})"


def _group(group: Sequence[Matcher]) -> str:
    return "[" + ", ".join(format_matcher(m) for m in group) + "]"


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
