"""The shims of engine.compat: what each leans on in another library is still there, with
the shape it expects, and each does what it is for. A failure here after an upgrade
means that library changed: revisit the shim (its docstring says why it exists)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time

import pytest

from engine.compat import (
    collect_ansible_warnings,
    pty_close_shape,
    regex_syntax,
    regex_syntax_misfits,
    skip_pty_close_pause,
)


# -- ptyprocess: no pause after closing an exited child ------------------------------------
def test_ptyprocess_close_still_takes_the_steps_the_shim_repeats() -> None:
    assert pty_close_shape() == []


def test_ansible_runner_still_closes_a_pexpect_child_at_the_end_of_a_run() -> None:
    """Why the shim exists: runner's pexpect mode ends every run with ``child.close()``."""
    from ansible_runner.runner import Runner

    source = inspect.getsource(Runner.run)
    assert "pexpect.spawn(" in source and "child.close()" in source


def _exited_child():
    from ptyprocess import PtyProcess

    child = PtyProcess.spawn(["true"])
    deadline = time.monotonic() + 10
    while child.isalive():
        assert time.monotonic() < deadline, "`true` did not exit within 10 s"
        time.sleep(0.01)
    return child


def test_closing_an_exited_child_does_not_pause() -> None:
    assert skip_pty_close_pause() is True
    assert skip_pty_close_pause() is True          # applying it again changes nothing
    child = _exited_child()
    child.delayafterclose = 5.0                    # the pause, were it taken, would show
    started = time.monotonic()
    child.close()
    assert time.monotonic() - started < 2.0
    assert child.closed and child.fd == -1 and child.exitstatus == 0


def test_a_live_child_is_closed_as_before() -> None:
    from ptyprocess import PtyProcess

    skip_pty_close_pause()
    child = PtyProcess.spawn(["sleep", "60"])
    child.delayafterclose = 0.0
    child.close(force=True)
    assert child.closed and not child.isalive()


def test_a_ptyprocess_of_another_shape_is_left_alone(monkeypatch, caplog) -> None:
    from ptyprocess import PtyProcess

    def close(self, force=True):  # a future close() that no longer pauses
        self.fileobj.close()
        self.closed = True

    monkeypatch.setattr(PtyProcess, "close", close)
    assert skip_pty_close_pause() is False
    assert PtyProcess.close is close
    assert "ptyprocess changed" in caplog.text and "delayafterclose" in caplog.text
    caplog.clear()
    assert skip_pty_close_pause() is False          # asked at every run: logged once
    assert "ptyprocess changed" not in caplog.text


def test_the_shim_is_applied_by_the_executor_not_by_importing_it() -> None:
    code = (
        "import engine.executors.ansible, engine.inventory\n"
        "from ptyprocess import PtyProcess\n"
        "from engine import compat\n"
        "print(getattr(PtyProcess.close, '_recovery_skips_pause', False))\n"
        "print(compat.skip_pty_close_pause(),"
        " getattr(PtyProcess.close, '_recovery_skips_pause', False))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["False", "True", "True"]


# -- ansible-core: warnings collected while an inventory is parsed ---------------------------
def test_ansible_still_has_its_deferred_warning_context() -> None:
    from ansible._internal._display_utils import DeferredWarningContext, format_message

    parameters = inspect.signature(DeferredWarningContext).parameters
    assert parameters["variables"].kind is inspect.Parameter.KEYWORD_ONLY
    assert callable(DeferredWarningContext.get_warnings)
    assert hasattr(DeferredWarningContext, "__enter__")
    assert list(inspect.signature(format_message).parameters) == ["summary",
                                                                  "include_traceback"]


def test_ansible_warnings_are_collected_not_printed(capfd: pytest.CaptureFixture[str]) -> None:
    from ansible.utils.display import Display

    with collect_ansible_warnings() as messages:
        Display().warning("a warning the engine reports itself")
        assert messages == []                      # filled when the block ends
    assert any("a warning the engine reports itself" in m for m in messages)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# -- Python's regex parser: strings a matcher's regex takes, for overlap proofs ------------


def test_python_s_regex_parser_still_has_the_shape_overlaps_read() -> None:
    assert regex_syntax_misfits() == []
    syntax = regex_syntax()
    assert syntax is not None
    (op, value), = syntax.parse("a")
    assert op is syntax.nodes.LITERAL and value == ord("a")


def test_overlaps_still_prove_a_regex_overlap_through_it() -> None:
    from engine.runbooks.overlaps import _regex_examples

    examples = _regex_examples("redis-(cache|queue)[0-9]+")
    assert "redis-cache0" in examples or any(e.startswith("redis-") for e in examples)


def test_a_regex_parser_of_another_shape_costs_examples_not_errors(monkeypatch, caplog) -> None:
    import re._constants as constants

    from engine.runbooks.overlaps import _regex_examples

    monkeypatch.delattr(constants, "POSSESSIVE_REPEAT")
    assert regex_syntax() is None
    assert _regex_examples("redis-.*") == []
    assert "regex parser changed" in caplog.text
