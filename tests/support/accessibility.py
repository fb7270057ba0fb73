"""Basic accessibility checks of a page, from its HTML and its stylesheet: every form
control has a label, headings go in order under one ``<h1>``, ``<html lang>`` is set, and
the palette's text colours stand out from its background (WCAG AA, 4.5:1).

Each check returns the problems it found as sentences (an empty list: none), so a test
asserts ``== []`` and a failure reads as a list of what is wrong. They read HTML with the
standard library's parser: what a browser's ``page_source`` gives, or a server's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

# WCAG 2.x, success criterion 1.4.3: text against its background, at least this ratio.
AA_CONTRAST = 4.5
# The palette a page's stylesheet defines: the background and the colours text takes on it.
BACKGROUND = "--bg"
TEXT_COLOURS = ("--fg", "--accent", "--ok", "--bad", "--warn", "--muted")
# Inputs a person does not fill in: they need no label.
UNLABELLED_INPUT_TYPES = {"hidden", "submit", "button", "reset", "image"}
CONTROLS = {"input", "select", "textarea"}
HEADINGS = {f"h{n}": n for n in range(1, 7)}


# -- contrast -------------------------------------------------------------------------------

def parse_colour(value: str) -> tuple[int, int, int]:
    """``#rgb``, ``#rrggbb`` or ``rgb(r, g, b)`` as three 0-255 channels; ValueError for
    anything else (a colour the check cannot judge must not pass unseen)."""
    text = value.strip().lower()
    if m := re.fullmatch(r"#([0-9a-f]{3})", text):
        return tuple(int(c * 2, 16) for c in m.group(1))  # type: ignore[return-value]
    if m := re.fullmatch(r"#([0-9a-f]{6})", text):
        digits = m.group(1)
        return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    if m := re.fullmatch(r"rgb\(\s*(\d+)\s*,?\s*(\d+)\s*,?\s*(\d+)\s*\)", text):
        channels = tuple(int(g) for g in m.groups())
        if all(0 <= c <= 255 for c in channels):
            return channels  # type: ignore[return-value]
    raise ValueError(f"not a colour this check reads (#rgb, #rrggbb, rgb()): {value!r}")


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2.x relative luminance: each sRGB channel linearised, weighted as the eye sees."""
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """The WCAG contrast ratio of two colours, from 1 (the same) to 21 (black on white);
    the order does not matter."""
    lighter, darker = sorted((relative_luminance(parse_colour(first)),
                              relative_luminance(parse_colour(second))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_PROPERTY = re.compile(r"(--[\w-]+)\s*:\s*([^;]+?)\s*(?:;|$)")


def _rules(css: str) -> list[tuple[str, str]]:
    """(selector, declarations) of every innermost rule, its selector prefixed by the
    at-rules around it (``@media (...) :root``)."""
    rules: list[tuple[str, str]] = []
    context: list[str] = []
    start = 0
    for i, char in enumerate(css):
        if char == "{":
            context.append(" ".join(css[start:i].split()))
            start = i + 1
        elif char == "}":
            if context:
                rules.append((" ".join(context), css[start:i]))
                context.pop()
            start = i + 1
    return rules


def palettes(css: str) -> dict[str, dict[str, str]]:
    """The custom properties a stylesheet defines, as palettes: the first rule that
    defines any is the base; each later one (a dark scheme under ``@media``, a theme
    class) is its own palette, the base's values under its own. Keyed by the rule's
    selector."""
    found: dict[str, dict[str, str]] = {}
    base: dict[str, str] | None = None
    for selector, body in _rules(_COMMENT.sub("", css)):
        declared = dict(_PROPERTY.findall(body))
        if not declared:
            continue
        if base is None:
            base = declared
        found[selector] = {**base, **declared}
    return found


def contrast_problems(css: str, background: str = BACKGROUND,
                      text: tuple[str, ...] = TEXT_COLOURS,
                      minimum: float = AA_CONTRAST) -> list[str]:
    """Each text colour of each palette against its background, under ``minimum``; a
    palette property missing, or one this check cannot read, is a problem too."""
    found = palettes(css)
    if not found:
        return ["the stylesheet defines no custom properties (no palette)"]
    problems = []
    for selector, palette in found.items():
        for name in (background, *text):
            if name not in palette:
                problems.append(f"{selector}: {name} is not defined")
        if background not in palette:
            continue
        for name in text:
            if name not in palette:
                continue
            try:
                ratio = contrast_ratio(palette[name], palette[background])
            except ValueError as exc:
                problems.append(f"{selector}: {name}: {exc}")
                continue
            if ratio < minimum:
                problems.append(f"{selector}: {name} {palette[name]} on {background} "
                                f"{palette[background]} is {ratio:.2f}:1, under {minimum}:1")
    return problems


# -- the page's HTML ------------------------------------------------------------------------

@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    in_label: bool = False
    text: list[str] = field(default_factory=list)


class _Outline(HTMLParser):
    """One pass over a page: its ``<html lang>``, its form controls (and whether each sits
    inside a ``<label>``), the ``for`` of its labels, its buttons and headings with their
    text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.controls: list[_Element] = []
        self.label_for: set[str] = set()
        self.ids: set[str] = set()
        self.buttons: list[_Element] = []
        self.headings: list[_Element] = []
        self._labels = 0
        self._open: list[_Element] = []          # buttons and headings collecting text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: (v or "") for k, v in attrs}
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "html":
            self.lang = values.get("lang", "")
        elif tag == "label":
            self._labels += 1
            if values.get("for"):
                self.label_for.add(values["for"])
        elif tag in CONTROLS:
            self.controls.append(_Element(tag, values, in_label=self._labels > 0))
        elif tag == "button" or tag in HEADINGS:
            element = _Element(tag, values)
            (self.buttons if tag == "button" else self.headings).append(element)
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._labels = max(0, self._labels - 1)
        elif self._open and self._open[-1].tag == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)


def _outline(html: str) -> _Outline:
    outline = _Outline()
    outline.feed(html)
    outline.close()
    return outline


def _named(attrs: dict[str, str], ids: set[str]) -> bool:
    """Named by ``aria-label``, or by ``aria-labelledby`` pointing at elements that exist."""
    if attrs.get("aria-label", "").strip():
        return True
    refs = attrs.get("aria-labelledby", "").split()
    return bool(refs) and all(ref in ids for ref in refs)


def _describe(element: _Element) -> str:
    shown = " ".join(f'{k}="{v}"' for k, v in element.attrs.items()
                     if k in ("id", "name", "type", "value"))
    return f"<{element.tag}{' ' + shown if shown else ''}>"


def label_problems(html: str) -> list[str]:
    """Every ``input`` (but hidden ones and buttons), ``select`` and ``textarea`` has a
    label: a ``<label for>`` naming its id, a ``<label>`` around it, or an aria name; and
    every button has text or an aria name (a screen reader reads that out)."""
    outline = _outline(html)
    problems = []
    for control in outline.controls:
        if (control.tag == "input"
                and control.attrs.get("type", "text").lower() in UNLABELLED_INPUT_TYPES):
            if control.attrs.get("type", "").lower() == "image" and not (
                    control.attrs.get("alt", "").strip() or _named(control.attrs, outline.ids)):
                problems.append(f"{_describe(control)} has no alt text")
            continue
        labelled = (control.in_label or control.attrs.get("id", "") in outline.label_for
                    or _named(control.attrs, outline.ids))
        if not labelled:
            problems.append(f"{_describe(control)} has no label")
    for button in outline.buttons:
        if not ("".join(button.text).strip() or _named(button.attrs, outline.ids)):
            problems.append(f"{_describe(button)} has no text and no aria-label")
    return problems


def heading_problems(html: str) -> list[str]:
    """One ``<h1>``, first; no level skipped going down (an ``<h2>`` then an ``<h4>``);
    no heading without text."""
    headings = _outline(html).headings
    problems = []
    levels = [HEADINGS[h.tag] for h in headings]
    if levels.count(1) != 1:
        problems.append(f"{levels.count(1)} <h1> headings, not one")
    if levels and levels[0] != 1:
        problems.append(f"the first heading is <h{levels[0]}>, not <h1>")
    before = 0
    for heading, level in zip(headings, levels, strict=True):
        text = " ".join("".join(heading.text).split())
        if before and level > before + 1:
            problems.append(f"<h{level}> {text!r} follows <h{before}>: a level skipped")
        if not text:
            problems.append(f"an empty <h{level}>")
        before = level
    return problems


def language_problems(html: str) -> list[str]:
    """``<html lang="...">`` set (a screen reader picks its voice by it)."""
    lang = _outline(html).lang
    if lang is None:
        return ["no <html> element"]
    return [] if lang.strip() else ["<html> has no lang attribute"]


def page_problems(html: str) -> list[str]:
    """Every check of the page's HTML: language, labels, headings."""
    return language_problems(html) + label_problems(html) + heading_problems(html)
