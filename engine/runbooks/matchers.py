"""Alertmanager-style label matchers, parsed and evaluated as Alertmanager does.

A runbook's ``match:`` list is written the way operators already write Alertmanager
routes and silences (``alertname=~"Redis.*"``, ``severity!="info"``), so it must mean
exactly that: regexes are RE2 (google-re2, no backtracking, so a hostile label value
cannot stall a worker), anchored as ``^(?:re)$``; a missing label matches as ``""``.
RE2 has no backreferences or lookarounds; such patterns are refused at load time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

import re2

from engine.runbooks.model import Matcher

OPERATORS = ("=", "!=", "=~", "!~")
# Alertmanager's classic matcher grammar (pkg/labels/parse.go): label name, operator,
# then the rest, with surrounding whitespace dropped. `=~` must precede `=`.
_SYNTAX = re.compile(
    r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*\Z", re.DOTALL | re.ASCII
)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False   # errors come back as MatcherError, not stderr noise


class MatcherError(ValueError):
    """A matcher that cannot be parsed or whose regex RE2 refuses."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_matcher(text: str) -> Matcher:
    """``name op value`` -> Matcher; the value may be bare or double-quoted with escapes.

    Inside quotes ``\\"``, ``\\\\`` and ``\\n`` are escapes; any other backslash is literal
    (as in Alertmanager). A regex is compiled here so a bad one fails at load time.
    """
    if not isinstance(text, str):
        raise MatcherError(f"a matcher is a string like name=\"value\", not {text!r}")
    found = _SYNTAX.match(text)
    if found is None:
        raise MatcherError(
            f"bad matcher format {text!r}: expected <label><op><value>, op one of "
            + " ".join(OPERATORS)
        )
    name, op, raw = found.groups()
    matcher = Matcher(name=name, op=op, value=_unquote(raw))
    if op in ("=~", "!~"):
        compile_regex(matcher.value)
    return matcher


def _unquote(raw: str) -> str:
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    escaped = False
    for i, char in enumerate(body):
        last = i == len(body) - 1
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
        elif char == "\\" and not last:
            escaped = True
        elif char == '"':
            if not (quoted and last):
                raise MatcherError(f"matcher value contains an unescaped double quote: {raw}")
            quoted = False   # the closing quote
        else:
            out.append(char)
    if quoted:
        raise MatcherError(f"matcher value has no closing double quote: {raw}")
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> re2._Regexp:
    """The anchored RE2 program for ``pattern``; cached, since every alert re-uses them."""
    try:
        return re2.compile(f"^(?:{pattern})$", _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise MatcherError(f"invalid regex {pattern!r} (RE2 syntax): {detail}") from None


def matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """Does one matcher hold for these labels? A missing label is the empty string."""
    value = labels.get(matcher.name, "")
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    found = compile_regex(matcher.value).match(value) is not None
    if matcher.op == "=~":
        return found
    if matcher.op == "!~":
        return not found
    raise MatcherError(f"unknown matcher operator {matcher.op!r}")


def matches_all(group: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """All matchers of a group hold (an empty group holds, as in Alertmanager)."""
    return all(matches(m, labels) for m in group)


def format_matcher(matcher: Matcher) -> str:
    """The canonical text of a matcher, quoted and escaped, for messages and records."""
    escaped = matcher.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'{matcher.name}{matcher.op}"{escaped}"'
