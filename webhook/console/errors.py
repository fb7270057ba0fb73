"""The console's error pages: HTML, saying what went wrong in words, never a trace (the
rest of the app answers JSON: webhook/__init__.py)."""

from __future__ import annotations

from flask import Response, make_response, render_template

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
          413: "Too large", 500: "Something went wrong", 503: "The store is unavailable"}


def error_page(status: int, message: str) -> Response:
    """An HTML page for ``status`` saying ``message``."""
    title = TITLES.get(status, "Error")
    return make_response(render_template("error.html", title=title, status=status,
                                         message=message), status)
