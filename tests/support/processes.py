"""Processes for the tests of liveness: the pid of one that has exited."""

from __future__ import annotations

import subprocess

import psutil


def dead_pid() -> int:
    """The pid of a process that has exited (and is not reused yet)."""
    for _ in range(20):
        proc = subprocess.Popen(["true"])
        proc.wait(10)
        if not psutil.pid_exists(proc.pid):
            return proc.pid
    raise AssertionError("every pid was reused at once")
