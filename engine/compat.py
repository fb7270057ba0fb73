"""Where the engine leans on what its dependencies do not promise, in one place.

Each shim here reaches into another library's private or undocumented parts because no
public way does the job (each docstring says why). None acts at import time: the code
that needs a shim calls it, where it needs it. ``tests/test_compat.py`` checks the shape
each one leans on, so an upgrade that moves or removes it fails there, loudly, instead of
quietly changing what the engine does; a shape that no longer fits at run time is
logged and left alone (the engine keeps working, without the shim's benefit).

- :func:`skip_pty_close_pause` (ptyprocess): no 0.1 s pause after every playbook run.
- :func:`collect_ansible_warnings` (ansible-core's ``ansible._internal``): Ansible's
  warnings while the inventory is parsed, as text, instead of printed to the terminal.
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout

log = logging.getLogger(__name__)

_PATCH_MARK = "_recovery_skips_pause"
_patch_lock = threading.Lock()

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
        misfits = pty_close_shape()
        if misfits:
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
