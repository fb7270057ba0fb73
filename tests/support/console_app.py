"""The console in this process (Flask's test client) on a real store: credentials of
every role (operators alice and bob, viewer vera, the webhook and metrics tokens), a
login that goes through the form as a browser would, and a reader of a page's outline
(headings, forms, labels) for the accessibility checks."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from engine.security.credentials import Credentials, hash_token
from engine.security.tokens import TOKENS_FILE, IssuedToken, TokenFile
from tests.support.webhook_app import ALICE, BOB, WEBHOOK
from webhook import EXTENSION, create_app

VERA = "vera-viewer-token-0123456789ab"
METRICS = "metrics-token-0123456789abcdef"


def credentials(config) -> Credentials:
    """alice and bob (operators), the webhook and metrics tokens; vera (viewer) issued
    into the home's tokens file, as ``recovery token add vera --role viewer`` would."""
    config.ensure_home()
    tokens = TokenFile(Path(config.home) / TOKENS_FILE)
    if not any(t.name == "vera" for t in tokens.tokens()):
        tokens.add(IssuedToken("vera", "viewer", hash_token(VERA), time.time(), "test"))
    return Credentials(WEBHOOK, {"alice": hash_token(ALICE), "bob": hash_token(BOB)},
                       {"metrics": hash_token(METRICS)}, tokens)


class Console:
    """One app on the test's store; ``client`` keeps cookies like a browser."""

    def __init__(self, config, context=None, base_url: str = "http://localhost") -> None:
        self.app = create_app(config, context=context, credentials=credentials(config))
        self.ctx = self.app.extensions[EXTENSION].context
        self.store = self.ctx.store
        self.base_url = base_url
        self.client = self.app.test_client()

    def get(self, path: str, **kw):
        return self.client.get(path, base_url=self.base_url, **kw)

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kw):
        """POST a form, with this session's CSRF token unless ``csrf`` is False."""
        form = dict(data or {})
        if csrf and "csrf_token" not in form:
            form["csrf_token"] = self.csrf()
        return self.client.post(path, data=form, base_url=self.base_url, **kw)

    def csrf(self) -> str:
        page = self.get("/login" if not self.logged_in() else "/history")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        assert found, page.get_data(as_text=True)[:500]
        return found.group(1)

    def logged_in(self) -> bool:
        return self.get("/history").status_code == 200

    def login(self, token: str, next_page: str = ""):
        page = self.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"',
                         page.get_data(as_text=True)).group(1)
        return self.client.post("/login", data={"token": token, "csrf_token": csrf,
                                                "next": next_page}, base_url=self.base_url)


@dataclass
class Outline:
    """What a page is made of, for the accessibility checks."""

    lang: str | None = None
    title: str = ""
    headings: list[tuple[int, str]] = field(default_factory=list)
    controls: list[dict[str, str]] = field(default_factory=list)   # input, select, textarea
    labels: set[str] = field(default_factory=set)                    # their for=
    forms: list[dict[str, str]] = field(default_factory=list)
    buttons: list[str] = field(default_factory=list)
    nav_links: dict[str, str] = field(default_factory=dict)
    nav_label: str | None = None
    ids: dict[str, str] = field(default_factory=dict)                # id -> tag

    def unlabeled(self) -> list[dict[str, str]]:
        return [c for c in self.controls if c.get("type") not in ("hidden", "submit")
                and not c.get("aria-label") and c.get("id") not in self.labels]

    def post_forms(self) -> list[str]:
        return [f.get("action", "") for f in self.forms if f.get("method") == "post"]

    def skipped_levels(self) -> list[tuple[int, str]]:
        skipped, last = [], 0
        for level, text in self.headings:
            if level > last + 1:
                skipped.append((level, text))
            last = level
        return skipped


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outline = Outline()
        self._heading: int | None = None
        self._text: list[str] = []
        self._in_title = self._in_nav = False
        self._link: str | None = None
        self._button = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        o = self.outline
        if "id" in a:
            o.ids[a["id"]] = tag
        if tag == "html":
            o.lang = a.get("lang")
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading, self._text = int(tag[1]), []
        elif tag in ("input", "select", "textarea"):
            o.controls.append({"tag": tag, **a})
        elif tag == "label" and a.get("for"):
            o.labels.add(a["for"])
        elif tag == "form":
            o.forms.append({"method": a.get("method", "get").lower(),
                            "action": a.get("action", "")})
        elif tag == "button":
            self._button, self._text = True, []
        elif tag == "nav":
            self._in_nav, o.nav_label = True, a.get("aria-label")
        elif tag == "a" and self._in_nav:
            self._link, self._text = a.get("href"), []

    def handle_endtag(self, tag: str) -> None:
        o = self.outline
        text = " ".join("".join(self._text).split())
        if tag == "title":
            self._in_title = False
        elif self._heading is not None and tag == f"h{self._heading}":
            o.headings.append((self._heading, text))
            self._heading = None
        elif tag == "button" and self._button:
            o.buttons.append(text)
            self._button = False
        elif tag == "nav":
            self._in_nav = False
        elif tag == "a" and self._link is not None:
            o.nav_links[text] = self._link
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.outline.title += data
        self._text.append(data)


def outline(html: str) -> Outline:
    reader = _Reader()
    reader.feed(html)
    return reader.outline
