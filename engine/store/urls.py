"""A state URL as it may be shown: never its password.

Every message, log line and report that names the store goes through ``redacted``. It
works on the text, not on a URL parser's reading: a password with an unencoded ``/``,
``?`` or ``#`` is not where ``urlsplit`` looks for it, and would be shown whole.
"""

from __future__ import annotations

import re

PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redacted(url: str) -> str:
    """``url`` with the password of its credentials (everything after the first ``:`` up
    to the last ``@`` after ``scheme://``), and a ``password=`` in its query (redis-py
    takes one there), replaced by ``***``; the user name stays. A URL with no host part
    (``sqlite:////path``) has no credentials, whatever ``@`` its path holds."""
    url = PASSWORD_IN_QUERY.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0 or rest.startswith("/"):
        return url
    userinfo, host = rest[:at], rest[at + 1:]
    if ":" not in userinfo:
        return url if "/" not in userinfo else f"{scheme}://***@{host}"
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
