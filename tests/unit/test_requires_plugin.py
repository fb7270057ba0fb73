"""The ``requires`` marker (tests/support/requires.py), run by pytest's own pytester on
small test files: a missing requirement skips with its reason; under
``RECOVERY_STRICT_SKIPS=1`` that skip, and any other, fails the run; an unknown name is
an error, never a skip."""

from __future__ import annotations

import pytest

from tests.support.requires import REQUIREMENTS, STRICT_ENV

PLUGIN = ("-p", "tests.support.requires")

NEEDS_REDIS = """
import pytest

@pytest.mark.requires("redis-server")
def test_needs_redis():
    pass

def test_plain():
    pass
"""


@pytest.fixture
def no_redis(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH on which no redis-server is found (nothing else changes)."""
    empty = pytester.mkdir("empty-bin")
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(STRICT_ENV, raising=False)


def test_a_missing_requirement_skips_with_its_reason(pytester, no_redis):
    pytester.makepyfile(NEEDS_REDIS)
    result = pytester.runpytest(*PLUGIN, "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*requires redis-server: redis-server not on PATH*"])


def test_under_strict_skips_a_missing_requirement_fails_the_run(pytester, no_redis,
                                                                 monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    pytester.makepyfile(NEEDS_REDIS)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [f"*{STRICT_ENV}=1 makes a skip a failure: requires redis-server: *not on PATH*"])


def test_strict_0_is_off(pytester, no_redis, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "0")
    pytester.makepyfile(NEEDS_REDIS)
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1, skipped=1)


def test_under_strict_any_other_skip_fails_too(pytester, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    pytester.makepyfile("""
        import pytest

        def test_skips_itself():
            pytest.skip("no reason to run")

        @pytest.mark.skipif(True, reason="a guard of its own")
        def test_guarded():
            pass
    """)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(failed=1, errors=1)
    for reason in ("no reason to run", "a guard of its own"):
        result.stdout.fnmatch_lines([f"*makes a skip a failure: {reason}*"])


def test_under_strict_a_skipped_module_fails_the_run(pytester, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    pytester.makepyfile("""
        import pytest
        pytest.skip("the whole module", allow_module_level=True)

        def test_never_collected():
            pass
    """)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*makes a skip a failure: the whole module*"])


def test_a_met_requirement_runs_the_test(pytester, monkeypatch):
    monkeypatch.setitem(REQUIREMENTS, "always-here", lambda: None)
    monkeypatch.setenv(STRICT_ENV, "1")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("always-here")
        def test_runs():
            pass
    """)
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)


def test_an_unknown_requirement_is_an_error_not_a_skip(pytester, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("redis-sever")
        def test_typo():
            pass
    """)
    result = pytester.runpytest(*PLUGIN)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*redis-sever*unknown requirement*"])
