"""``/login`` (a token for a session), ``/logout``, and the console's stylesheet."""

from __future__ import annotations

from pathlib import Path

from flask import make_response, redirect, render_template, request, send_from_directory, url_for

from engine.security.roles import Access
from webhook.auth import requires
from webhook.console import session
from webhook.console.blueprint import bp
from webhook.console.errors import error_page
from webhook.state import state

STATIC = Path(__file__).parent / "static"


@bp.get("/login")
@requires(Access.OPEN)
def login():
    if session.current() is not None:
        return redirect(session.local_next(request.args.get("next")), 303)
    return _form()


@bp.post("/login")
@requires(Access.OPEN)
def log_in():
    if not session.csrf_ok():
        return error_page(400, "this form's CSRF token is missing or wrong: reload the page "
                               "and try again")
    token = request.form.get("token", "").strip()
    credential = None
    if token and len(token) <= session.MAX_TOKEN and " " not in token:
        credential = state().credentials.identify(f"Bearer {token}")
    if credential is None:
        return _form("that token is not known here", 401)
    if not session.may_log_in(credential.role):
        return _form(f"{credential.name!r} is a {credential.role} token: the console takes "
                     f"a {' or '.join(session.login_roles())} token", 403)
    session.log_in(credential)
    return redirect(session.local_next(request.form.get("next")), 303)


@bp.post("/logout")
@requires(Access.READ, session.refusal)
def log_out():
    session.log_out()
    return redirect(url_for("console.login"), 303)


@bp.get("/console.css")
@requires(Access.OPEN)
def stylesheet():
    return send_from_directory(STATIC, "console.css", max_age=300)


def _form(error: str | None = None, status: int = 200):
    return make_response(render_template("login.html", title="Log in", error=error,
                                         next=request.values.get("next", "")), status)
