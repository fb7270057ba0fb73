"""The ``requires`` marker: a test that needs a real server, binary or privilege says so,

    @pytest.mark.requires("redis-server")
    @pytest.mark.requires("root", "setpriv")

and is skipped, with the reason, where that is missing. A skip hides a test that did not
run, so with ``RECOVERY_STRICT_SKIPS=1`` (``.ci/run`` sets it) every skip is a failure:
a marked test whose requirement is missing, and any other skip as well (a ``pytest.skip``
inside a test, a skipped module). ``make test`` installs what the marked tests need, so
in CI nothing may skip.

A name that is not in ``REQUIREMENTS`` is an error at collection, not a silent skip.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

STRICT_ENV = "RECOVERY_STRICT_SKIPS"
MARKER = "requires"
VENV_BIN = Path(sys.executable).parent     # console scripts of the test extra (supervisord)


def _on_path(*names: str) -> Callable[[], str | None]:
    """A check that one of ``names`` is on PATH: None where it is, else why not."""
    def check() -> str | None:
        if any(shutil.which(name) for name in names):
            return None
        return f"{' or '.join(names)} not on PATH"
    return check


def _in_venv(name: str, package: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if (VENV_BIN / name).exists() or shutil.which(name):
            return None
        return f"{name} missing (PyPI {package}, installed by `make install`)"
    return check


def _root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (mount, chattr, a service run as root)"


def _sshd() -> str | None:
    if Path("/usr/sbin/sshd").exists():
        return None
    return "/usr/sbin/sshd missing (Debian openssh-server, installed by `make test`)"


def _chroma() -> str | None:
    try:
        import chromadb  # noqa: F401
    except ImportError:
        return "the chromadb package is missing (extra `chromadb`, installed by `make install`)"
    return _in_venv("chroma", "chromadb")()


def _chromium() -> str | None:
    """Headless Chromium and its driver as Debian ships them, and Selenium to drive them
    (tests/support/browser.py): no browser is downloaded."""
    from tests.support.browser import CHROMEDRIVER, CHROMIUM

    absent = [f"{path} missing (Debian {package}, installed by `make test`)"
              for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
              if not path.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package is missing (extra `test`, installed by "
                      "`make install`)")
    return "; ".join(absent) or None


# name -> check: None when the requirement is met, else the reason it is not.
REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "redis-server": _on_path("redis-server"),
    "alertmanager": _on_path("prometheus-alertmanager", "alertmanager"),
    "prometheus": _on_path("prometheus"),
    "redis-exporter": _on_path("prometheus-redis-exporter"),
    "curl": _on_path("curl"),
    "promtool": _on_path("promtool"),
    "amtool": _on_path("amtool"),
    "systemd-analyze": _on_path("systemd-analyze"),
    "openssl": _on_path("openssl"),
    "setpriv": _on_path("setpriv"),
    "chattr": _on_path("chattr"),
    "mount": _on_path("mount"),
    "ip": _on_path("ip"),                       # iproute2: network namespaces (test hosts)
    "sshd": _sshd,
    "supervisord": _in_venv("supervisord", "supervisor"),
    "chroma": _chroma,
    "chromium": _chromium,
    "root": _root,
}


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def missing(names: tuple[str, ...]) -> list[str]:
    """The reasons ``names`` are not met here; an unknown name raises (a typo must not
    read as a requirement that is merely missing)."""
    reasons = []
    for name in names:
        if name not in REQUIREMENTS:
            raise pytest.UsageError(f"requires({name!r}): unknown requirement; known: "
                                    f"{', '.join(sorted(REQUIREMENTS))}")
        reason = REQUIREMENTS[name]()
        if reason:
            reasons.append(f"{name}: {reason}")
    return reasons


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(*names): the test needs these real servers, binaries or "
        f"privileges ({', '.join(sorted(REQUIREMENTS))}); skipped where one is missing, "
        f"a failure under {STRICT_ENV}=1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:             # unknown names fail the run before any test starts
        for mark in item.iter_markers(MARKER):
            for name in mark.args:
                if name not in REQUIREMENTS:
                    missing((name,))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    names = tuple(name for mark in item.iter_markers(MARKER) for name in mark.args)
    reasons = missing(names) if names else []
    if reasons:
        pytest.skip("requires " + "; ".join(reasons))


def _strict_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    """A skip turned into a failure that names why the test did not run."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    reason = str(reason).removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (f"skipped, and {STRICT_ENV}=1 makes a skip a failure: {reason}\n"
                       "(install what it requires: `make test` does it on Debian)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and strict() and not hasattr(report, "wasxfail"):
        _strict_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and strict():
        _strict_failure(report)
