"""A real, small filesystem for tests of a full disk: a tmpfs mounted on a folder (root
only), filled to the last byte, and emptied again. Always unmounted by ``mounted``'s
exit, whatever the test did.

    with mounted(folder, "2m"):
        with filled(folder):        # every write that needs a new block: ENOSPC
            ...
        ...                          # the space is back
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

FILLER = ".filler"


@contextlib.contextmanager
def mounted(folder: Path, size: str = "4m", mode: str = "0700") -> Iterator[Path]:
    """``folder`` (created 0700 if missing) as a tmpfs of ``size`` whose root has
    ``mode`` (``1777`` for one shared as /tmp is), unmounted at the end."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}", "tmpfs",
                    str(folder)], check=True, timeout=30)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=30)


def fill(folder: Path) -> Path:
    """Write a filler file in ``folder`` until the filesystem has no block left."""
    filler = folder / FILLER
    chunk = b"\0" * 65536
    with open(filler, "ab", buffering=0) as fh:
        while True:
            try:
                fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[:len(chunk) // 2]
    return filler


def free(folder: Path) -> None:
    """The space ``fill`` took, given back."""
    (folder / FILLER).unlink(missing_ok=True)


@contextlib.contextmanager
def filled(folder: Path) -> Iterator[Path]:
    """``folder``'s filesystem full for the block; the space back at its end."""
    fill(folder)
    try:
        yield folder
    finally:
        free(folder)
