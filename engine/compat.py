"""Where the engine leans on what its dependencies do not promise, in one place.

Each shim here reaches into another library's private or undocumented parts because no
public way does the job (each docstring says why). None acts at import time: the code
that needs a shim calls it, where it needs it. ``tests/unit/test_compat.py`` checks the shape
each one leans on, so an upgrade that moves or removes it fails there, loudly, instead of
quietly changing what the engine does; a shape that no longer fits at run time is
logged and left alone (the engine keeps working, without the shim's benefit).

- :func:`skip_pty_close_pause` (ptyprocess): no 0.1 s pause after every playbook run.
- :func:`collect_ansible_warnings` (ansible-core's ``ansible._internal``): Ansible's
  warnings while the inventory is parsed, as text, instead of printed to the terminal.
- :func:`regex_syntax` (Python's ``re._parser`` and ``re._constants``): a regex's syntax
  tree, from which ``recovery validate`` reads strings it matches to prove overlaps.
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_PATCH_MARK = "_recovery_skips_pause"
_patch_lock = threading.Lock()
_pty_misfit: list[object] = []  # a close() seen not to fit: logged once, not at every run

# What PtyProcess.close does, that the replacement repeats for an exited child (all but
# the pause and the terminate, which only a live child needs).
PTY_CLOSE_STEPS = ("self.fileobj.close()", "time.sleep(self.delayafterclose)",
                   "self.isalive()", "self.fd = -1", "self.closed = True")


def pty_close_shape() -> list[str]:
    """What no longer fits in ``ptyprocess.PtyProcess.close`` (empty: the shim applies):
    its signature ``close(self, force=True)`` and the steps it takes."""
    from ptyprocess import PtyProcess

    close = getattr(PtyProcess.close, "__wrapped__", PtyProcess.close)
    misfits = []
    if list(inspect.signature(close).parameters) != ["self", "force"]:
        misfits.append(f"close{inspect.signature(close)} is not close(self, force=True)")
    try:
        source = inspect.getsource(close)
    except (OSError, TypeError):
        return [*misfits, "the source of PtyProcess.close cannot be read"]
    misfits += [f"PtyProcess.close no longer does {step}" for step in PTY_CLOSE_STEPS
                if step not in source]
    return misfits


def skip_pty_close_pause() -> bool:
    """Skip ptyprocess's pause when ansible-runner closes a child that has already exited.

    Why: at the end of every run ``Runner.run()`` calls ``child.close()`` on its pexpect
    child, and ``PtyProcess.close`` then sleeps ``delayafterclose`` (0.1 s) "to give the
    kernel time", even for a child already reaped: a tenth of a second per run, most of
    the engine's overhead over a bare ``ansible-playbook``. No public way reaches that
    delay: runner creates the child inside ``run()``, pexpect does not pass its own
    ``delayafterclose`` down to ptyprocess, and runner's ``subprocess`` mode would give
    up live events and the cancel callback.

    What it does: replaces ``PtyProcess.close`` (for the whole process, once) with one
    that, for an exited child, closes the file and marks it closed as the original does,
    without the pause; a live child is closed by the original, unchanged. Returns
    whether the replacement is in place (False, logged: ptyprocess changed shape)."""
    from ptyprocess import PtyProcess

    with _patch_lock:
        if getattr(PtyProcess.close, _PATCH_MARK, False):
            return True
        if PtyProcess.close in _pty_misfit:
            return False
        misfits = pty_close_shape()
        if misfits:
            _pty_misfit.append(PtyProcess.close)
            log.warning("ptyprocess changed (%s): every playbook run keeps its 0.1 s pause "
                        "at the end", "; ".join(misfits))
            return False
        original = PtyProcess.close

        def close(self: PtyProcess, force: bool = True) -> None:
            if not self.closed and not self.isalive():
                self.fileobj.close()
                self.fd = -1
                self.closed = True
                return
            original(self, force)

        close.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(close, _PATCH_MARK, True)
        PtyProcess.close = close  # type: ignore[method-assign]
        return True


@contextmanager
def collect_ansible_warnings() -> Iterator[list[str]]:
    """Ansible's warnings raised in the block, collected as text instead of printed.

    Why: parsing an inventory makes ansible-core warn through its ``Display`` (a file
    that does not parse, a group_vars problem), which prints to the terminal, where an
    operator of ``recovery validate`` or the service's log would see them unexplained;
    the engine reports them as problems instead. ansible-core has no public API to
    collect them: ``ansible._internal._display_utils.DeferredWarningContext`` is how
    ansible-core itself collects a task's warnings (per thread, a contextvar, so other
    threads' output is untouched). The list is filled when the block ends.

    Without it (a future ansible-core), the process's stdout and stderr are muted for the
    block instead, which also mutes other threads briefly, and nothing is collected.
    """
    messages: list[str] = []
    try:
        from ansible._internal._display_utils import DeferredWarningContext, format_message
    except ImportError:  # pragma: no cover - a future ansible-core; the test says so first
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            yield messages
        return
    with DeferredWarningContext(variables={}) as ctx:
        try:
            yield messages
        finally:
            messages.extend(format_message(w, False) for w in ctx.get_warnings())


# The node kinds of Python's regex syntax tree that overlap proofs read.
REGEX_NODES = ("LITERAL", "NOT_LITERAL", "ANY", "AT", "IN", "CATEGORY", "BRANCH",
               "SUBPATTERN", "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT", "NEGATE",
               "RANGE", "CATEGORY_DIGIT", "CATEGORY_SPACE")


@dataclass(frozen=True)
class RegexSyntax:
    """``parse(pattern)`` gives the syntax tree; ``nodes`` names its node kinds."""

    parse: Any
    nodes: ModuleType


def regex_syntax_misfits() -> list[str]:
    """What no longer fits in Python's regex parser (empty: :func:`regex_syntax` works)."""
    try:
        from re import _constants, _parser  # type: ignore[attr-defined]
    except ImportError as exc:
        return [f"re._parser or re._constants is gone: {exc}"]
    misfits = [] if callable(getattr(_parser, "parse", None)) else ["re._parser.parse"]
    return misfits + [f"re._constants.{n}" for n in REGEX_NODES if not hasattr(_constants, n)]


def regex_syntax() -> RegexSyntax | None:
    """Python's own regex parser, to read off a few strings a matcher's regex matches.

    Why: ``recovery validate`` proves two runbooks overlap by finding a label value both
    take; the strings come from the regex's syntax tree, and the standard library has no
    public parser. RE2 syntax (Alertmanager's) is close to Python's; what this gets
    wrong is filtered out by the real matcher, so a changed parser costs only examples.
    None (logged once) when the parser changed shape: validate then proves fewer
    overlaps, it never invents one."""
    misfits = regex_syntax_misfits()
    if misfits:
        if not _regex_misfit:
            _regex_misfit.extend(misfits)
            log.warning("Python's regex parser changed (%s): validate proves overlaps of "
                        "literal matchers only", "; ".join(misfits))
        return None
    from re import _constants, _parser  # type: ignore[attr-defined]

    return RegexSyntax(_parser.parse, _constants)


_regex_misfit: list[str] = []
