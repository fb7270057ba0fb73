"""Who is looking at the console: a token exchanged once for a signed session cookie,
and the CSRF token every form carries.

The cookie (``recovery_session``) is Flask's signed session, keyed by
``RECOVERY_HOME/console.secret`` (engine.security.credentials.console_secret), so every
worker and every restart reads the same sessions. It is HttpOnly, SameSite=Strict,
Secure when the request came over https, and lasts 12 hours. It holds the credential's
name and role and an HMAC of the token's hash (never the token, never its hash): each
request looks the credential up again, so a token removed (``recovery token remove``)
or given another role logs its sessions out at once.

CSRF: a random token per session, in every form as ``csrf_token``, compared in constant
time on every POST (the login form's included, against a session that holds nothing
else). A POST without a session goes to the login page; without the right CSRF token,
400; from a role that may not act, 403: the CSRF check comes first, so a forged POST is
refused whoever's session it rides.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from engine.config import Config
from engine.security.credentials import Credential, console_secret
from engine.security.roles import Access, allows, roles_for
from webhook.console.errors import error_page
from webhook.state import state

COOKIE = "recovery_session"
LIFETIME = timedelta(hours=12)
MAX_TOKEN = 1024
LOGIN_ACCESS = Access.READ        # who may log in: the roles that may read the pages
# A path here: no scheme, no host, no backslash, space or control character a browser
# might read as one.
_LOCAL = re.compile(r"/[A-Za-z0-9/_.~%?=&+:@!$,;-]{0,500}")


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure whenever the request itself was https."""

    def open_session(self, app: Flask, request: Any) -> Any:
        """A request without the cookie (every webhook post, every API call) gets the new
        empty session Flask would give it, without building the cookie's signer first:
        that signer was ~5% of an alert post's time in the app (bench/intake_ratio.py
        --profile)."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


def install(app: Flask, config: Config) -> None:
    """Sessions for ``app``: its key from RECOVERY_HOME, the cookie's flags."""
    app.secret_key = console_secret(config)
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", PERMANENT_SESSION_LIFETIME=LIFETIME)
    app.session_interface = _SessionCookies()


def may_log_in(role: str) -> bool:
    return allows(role, LOGIN_ACCESS)


def login_roles() -> list[str]:
    return roles_for(LOGIN_ACCESS)


def log_in(credential: Credential) -> None:
    """A new session for ``credential`` (a fresh CSRF token: nothing from before carries)."""
    session.clear()
    session.permanent = True
    session.update(name=credential.name, role=credential.role, key=_key(credential),
                   csrf=secrets.token_urlsafe(32))


def log_out() -> None:
    session.clear()


def current() -> Credential | None:
    """The credential of this request's session, looked up again now; a session whose
    token is gone (or changed role) is cleared."""
    name = session.get("name")
    if not name:
        return None
    for credential in state().credentials.all():
        if (credential.name == name and credential.role == session.get("role")
                and hmac.compare_digest(_key(credential), str(session.get("key", "")))):
            return credential
    log_out()
    return None


def csrf_token() -> str:
    """This session's CSRF token (made now for a session that has none)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def csrf_ok() -> bool:
    given = request.form.get("csrf_token", "")
    wanted = session.get("csrf")
    return bool(wanted) and hmac.compare_digest(given.encode(), str(wanted).encode())


def local_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site, else the Now page."""
    if value and _LOCAL.fullmatch(value) and not value.startswith("//"):
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return url_for("console.now")


def refusal(access: Access) -> Response | Any | None:
    """``webhook.auth.requires``'s check for console routes: None when the session may
    do ``access`` (``g.credential``, ``g.operator`` then set); else a 303 to the login
    page (no session), a 400 (a POST without this session's CSRF token) or a 403."""
    if access is Access.OPEN:
        return None
    credential = current()
    if credential is None:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("console.login", next=target), 303)
    if request.method == "POST" and not csrf_ok():
        return error_page(400, "this form's CSRF token is missing or wrong: reload the page "
                               "and try again")
    if not allows(credential.role, access):
        return error_page(403, f"{credential.name!r} (role {credential.role}) may not "
                               f"{access.value}: that takes the "
                               f"{' or '.join(roles_for(access))} role")
    g.credential = credential
    g.operator = credential.name
    return None


def _key(credential: Credential) -> str:
    """Binds a session to the token it was opened with, without carrying the token."""
    return hmac.new(str(current_app.secret_key).encode(), credential.hash.encode(),
                    hashlib.sha256).hexdigest()
