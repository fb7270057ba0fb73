"""The operator console: server-rendered pages at ``/`` (Flask and Jinja2 with
autoescaping; no build step, no JavaScript needed, nothing fetched from elsewhere).

- ``session``: a token exchanged at ``/login`` for a signed session cookie
  (``recovery_session``: HttpOnly, SameSite=Strict, Secure over https, keyed by
  ``RECOVERY_HOME/console.secret``), looked up again on every request; a CSRF token
  in every form, checked on every POST.
- ``pages`` (``Access.READ``: viewer, operator): Now (open incidents, degraded modes
  with their capability matrices, kill switches, cooldowns, locks, approvals waiting),
  Approvals (each step's plan and what its check-mode plan found), History (filters),
  a run (alert, gates, hosts, job events, stdout, from its artifacts), Charts (inline
  SVG drawn here: ``charts``).
- ``actions`` (``Access.OPERATE``: operator): approve or reject, cancel an incident,
  disable or enable (kill switch), unlock; each the engine function the CLI calls.
- ``login``: ``/login``, ``/logout``, the stylesheet.

Every route states its access with ``webhook.auth.requires`` (the one role table,
engine.security.roles), with the session's check in place of the Authorization
header's: no session is a 303 to ``/login``, not a 401. Errors are HTML pages here
(``errors``), a browser's 404 or 405 at an address of the console too; the rest of the
app answers JSON. Every answer forbids framing and any
source but this site (Content-Security-Policy), and pages are not cached.
"""

from __future__ import annotations

from flask import Flask

from engine.config import Config


def install(app: Flask, config: Config) -> None:
    """Sessions and the console's routes on ``app``."""
    from webhook.console import actions, login, pages, session  # noqa: F401 - routes
    from webhook.console.blueprint import bp

    session.install(app, config)
    app.register_blueprint(bp)
