"""Keep secrets out of everything written under RECOVERY_HOME.

ansible-runner writes extravars, passwords and the whole process environment to
disk. Every writer of an artifact passes its text through a
``Redactor``: values of secret-looking environment variables and of secret-looking
keys are replaced wherever they appear, and secret-looking keys are masked whatever
their value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"
SECRET_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)", re.I
)
# Short values (a 1-char password) would mask half of every log; below this we do not
# search for the value in free text, but the key itself is still masked.
MIN_SECRET_LEN = 4


URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:([^/\s@]+)@", re.I)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values in text and masks secret-named keys in data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}
        self._pattern: re.Pattern[str] | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        """Values of secret-named variables, and the password inside any URL
        (``REDIS_URL=redis://:pw@host``), whatever the variable is called."""
        redactor = cls()
        redactor.add_from_environment(os.environ if environ is None else environ)
        return redactor

    def copy(self) -> Redactor:
        """A new redactor that knows the same secrets; learning more leaves this one alone."""
        return Redactor(self._values)

    def add(self, *values: str) -> None:
        new = {v for v in values if v and len(v) >= MIN_SECRET_LEN} - self._values
        if new:
            self._values |= new
            self._pattern = None

    def add_from_environment(self, environ: Mapping[str, str]) -> None:
        """Learn what ``from_environment`` knows of ``environ`` (another process's)."""
        values = {k: v for k, v in environ.items() if isinstance(v, str)}
        self.add(*(v for k, v in values.items() if is_secret_name(k)))
        self.add(*(m.group(1) for v in values.values() for m in URL_PASSWORD.finditer(v)))

    def add_from_mapping(self, data: Any) -> None:
        """Learn the values of every secret-named key in a nested structure."""
        if isinstance(data, Mapping):
            for key, value in data.items():
                if is_secret_name(str(key)) and isinstance(value, (str, int, float)):
                    self.add(str(value))
                else:
                    self.add_from_mapping(value)
        elif isinstance(data, (list, tuple)):
            for item in data:
                self.add_from_mapping(item)

    def text(self, text: str) -> str:
        if not self._values or not text:
            return text
        if self._pattern is None:
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))
        return self._pattern.sub(MASK, text)

    def data(self, data: Any) -> Any:
        """A copy of ``data`` with secret-named keys masked and secret values replaced."""
        if isinstance(data, Mapping):
            return {
                k: (MASK if is_secret_name(str(k)) and v not in (None, "", {}, [])
                    and not isinstance(v, (Mapping, list)) else self.data(v))
                for k, v in data.items()
            }
        if isinstance(data, list):
            return [self.data(v) for v in data]
        if isinstance(data, tuple):
            return tuple(self.data(v) for v in data)
        if isinstance(data, str):
            return self.text(data)
        return data
