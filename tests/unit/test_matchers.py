"""Matchers mean what they mean in Alertmanager: same grammar, same anchoring, RE2."""

from __future__ import annotations

import pytest

from engine.runbooks.matchers import (
    MatcherError,
    compile_regex,
    format_matcher,
    matches,
    matches_all,
    parse_matcher,
)
from engine.runbooks.model import Matcher


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('alertname="RedisDown"', Matcher("alertname", "=", "RedisDown")),
        ('severity!="info"', Matcher("severity", "!=", "info")),
        ('alertname=~"Redis.*"', Matcher("alertname", "=~", "Redis.*")),
        ('job!~"node|blackbox"', Matcher("job", "!~", "node|blackbox")),
        ("instance=cache-1:6379", Matcher("instance", "=", "cache-1:6379")),   # unquoted
        ('  team  =  "db ops"  ', Matcher("team", "=", "db ops")),              # whitespace
        ("job=", Matcher("job", "=", "")),                                        # empty value
        ('foo=~bar=baz!=bad', Matcher("foo", "=~", "bar=baz!=bad")),
        (r'msg="say \"hi\""', Matcher("msg", "=", 'say "hi"')),                  # escaped quote
        (r'path="C:\\tmp"', Matcher("path", "=", "C:\\tmp")),                    # escaped backslash
        (r'text="a\nb"', Matcher("text", "=", "a\nb")),                           # \n escape
        (r'code=~"\d+"', Matcher("code", "=~", r"\d+")),   # spurious escape kept
        ('ns:label="x"', Matcher("ns:label", "=", "x")),
    ],
)
def test_parse_matcher(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('alertname~="x"', "bad matcher format"),
        ('invalid-name="x"', "bad matcher format"),
        ('1abc="x"', "bad matcher format"),
        ("alertname", "bad matcher format"),
        ('="x"', "bad matcher format"),
        ('job="value', "no closing double quote"),
        ('job=value"', "unescaped double quote"),
        ('job="a"b"', "unescaped double quote"),
        ('job=a"b', "unescaped double quote"),
        ('alertname=~"(Redis"', "invalid regex"),
        ('alertname=~"[a-"', "invalid regex"),
    ],
)
def test_bad_matchers_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matcher(text)
    assert reason in caught.value.reason


def test_re2_refuses_backreferences_and_lookarounds() -> None:
    with pytest.raises(MatcherError, match="invalid regex"):
        parse_matcher(r'alertname=~"(a)\1"')
    with pytest.raises(MatcherError, match="invalid regex"):
        parse_matcher('alertname=~"Redis(?!Down)"')


def test_regex_is_fully_anchored() -> None:
    redis = parse_matcher('alertname=~"Redis"')
    assert not matches(redis, {"alertname": "RedisDown"})
    assert matches(redis, {"alertname": "Redis"})
    assert not matches(parse_matcher('alertname=~"Down"'), {"alertname": "RedisDown"})
    assert matches(parse_matcher('alertname=~"Redis.*"'), {"alertname": "RedisDown"})
    # the whole alternation is anchored, not just its ends: ^(?:a|b)$, never ^a|b$
    alternation = parse_matcher('x=~"a|b"')
    assert not matches(alternation, {"x": "ab"})
    assert not matches(alternation, {"x": "xb"})
    assert matches(alternation, {"x": "b"})


def test_not_regex_is_the_negation_of_the_anchored_match() -> None:
    m = parse_matcher('alertname!~"Redis"')
    assert matches(m, {"alertname": "RedisDown"})
    assert not matches(m, {"alertname": "Redis"})


def test_missing_label_counts_as_empty_string() -> None:
    labels = {"alertname": "RedisDown"}
    assert matches(parse_matcher('severity!="info"'), labels)
    assert not matches(parse_matcher('severity="info"'), labels)
    assert matches(parse_matcher('severity=""'), labels)
    assert matches(parse_matcher('severity=~".*"'), labels)
    assert not matches(parse_matcher('severity=~".+"'), labels)
    assert matches(parse_matcher('severity!~".+"'), labels)


def test_equality_is_exact() -> None:
    m = parse_matcher('severity="critical"')
    assert matches(m, {"severity": "critical"})
    assert not matches(m, {"severity": "Critical"})
    assert not matches(m, {"severity": "critical "})


def test_dot_does_not_cross_newlines_as_in_go() -> None:
    m = parse_matcher('msg=~"a.b"')
    assert matches(m, {"msg": "a-b"})
    assert not matches(m, {"msg": "a\nb"})


def test_group_needs_every_matcher_and_empty_group_holds() -> None:
    group = (parse_matcher('alertname=~"Redis.*"'), parse_matcher('severity!="info"'))
    assert matches_all(group, {"alertname": "RedisDown", "severity": "critical"})
    assert not matches_all(group, {"alertname": "RedisDown", "severity": "info"})
    assert not matches_all(group, {"alertname": "HostDown", "severity": "critical"})
    assert matches_all((), {"anything": "at all"})


def test_compiled_regexes_are_cached() -> None:
    assert compile_regex("Redis(Down|Up)") is compile_regex("Redis(Down|Up)")


def test_hostile_regex_input_is_linear() -> None:
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once.
    m = parse_matcher('x=~"(a+)+"')
    assert not matches(m, {"x": "a" * 50_000 + "b"})


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "two\nlines", "", "\\d+"])
def test_format_round_trips(value: str) -> None:
    m = Matcher("label", "=", value)
    assert parse_matcher(format_matcher(m)) == m
