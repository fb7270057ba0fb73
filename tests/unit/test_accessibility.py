"""The accessibility checks the browser tests run on every console page
(tests/support/accessibility.py), on small pages and stylesheets whose answer is known:
the WCAG contrast arithmetic against published figures, labels found every way HTML
gives one, headings in order. And the console's own stylesheet, where it exists."""

from __future__ import annotations

import pytest

from tests.support.accessibility import (
    contrast_problems,
    contrast_ratio,
    heading_problems,
    label_problems,
    language_problems,
    page_problems,
    palettes,
    parse_colour,
    relative_luminance,
)
from tests.support.paths import ROOT

CONSOLE_CSS = ROOT / "webhook" / "console" / "static" / "console.css"


# -- contrast -------------------------------------------------------------------------------

def test_colours_are_read_in_each_css_spelling_and_a_foreign_one_is_an_error():
    assert parse_colour("#fff") == (255, 255, 255)
    assert parse_colour(" #1A2b3C ") == (0x1A, 0x2B, 0x3C)
    assert parse_colour("rgb(10, 20, 30)") == (10, 20, 30)
    assert parse_colour("rgb(10 20 30)") == (10, 20, 30)
    for unread in ("red", "#12345", "rgb(300, 0, 0)", "hsl(0, 0%, 0%)", "var(--fg)"):
        with pytest.raises(ValueError):
            parse_colour(unread)


def test_luminance_and_ratio_give_the_published_wcag_figures():
    assert relative_luminance((0, 0, 0)) == 0
    assert relative_luminance((255, 255, 255)) == pytest.approx(1)
    assert contrast_ratio("#000", "#fff") == pytest.approx(21)
    assert contrast_ratio("#fff", "#000") == pytest.approx(21)        # either order
    assert contrast_ratio("#777", "#777") == pytest.approx(1)
    # The familiar AA edge: #767676 is the lightest grey that passes on white, #777 fails.
    assert contrast_ratio("#767676", "#fff") == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    # Pure red on white, as WebAIM's checker gives it.
    assert contrast_ratio("#ff0000", "#ffffff") == pytest.approx(4.0, abs=0.01)


GOOD = """
/* the console's palette */
:root {
  --bg: #ffffff; --fg: #1b1b1b; --accent: #0b57d0;
  --ok: #146c2e; --bad: #b3261e; --warn: #7a4f00; --muted: #5f6368;
  --radius: 4px;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #121212; --fg: #e8e8e8; --accent: #8ab4f8; --ok: #81c995;
          --bad: #f28b82; --warn: #fdd663; --muted: #bdc1c6; }
}
body { color: var(--fg); background: var(--bg); }
"""


def test_a_palette_at_aa_contrast_in_both_schemes_passes():
    found = palettes(GOOD)
    assert list(found) == [":root", "@media (prefers-color-scheme: dark) :root"]
    assert found[":root"]["--radius"] == "4px"
    assert found["@media (prefers-color-scheme: dark) :root"]["--bg"] == "#121212"
    assert contrast_problems(GOOD) == []


def test_a_faint_colour_a_missing_one_and_an_unreadable_one_are_each_named():
    faint = GOOD.replace("--muted: #5f6368", "--muted: #999999")
    [problem] = contrast_problems(faint)
    assert problem.startswith(":root: --muted #999999 on --bg #ffffff is 2.85:1")
    dark_faint = GOOD.replace("--warn: #fdd663", "--warn: #5a4a00")
    [problem] = contrast_problems(dark_faint)
    assert "prefers-color-scheme: dark" in problem and "--warn" in problem
    assert contrast_problems(GOOD.replace("--ok: #146c2e;", "")) == [
        ":root: --ok is not defined"]
    [problem] = contrast_problems(GOOD.replace("--bad: #b3261e", "--bad: crimson"))
    assert "--bad" in problem and "crimson" in problem
    assert contrast_problems("body { color: black; }") == [
        "the stylesheet defines no custom properties (no palette)"]


@pytest.mark.skipif(not CONSOLE_CSS.exists(), reason="the console is not in this tree yet "
                    "(webhook/console/static/console.css)")
def test_the_console_palette_is_at_aa_contrast():
    assert contrast_problems(CONSOLE_CSS.read_text()) == []


# -- the page's HTML ------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><title>t</title></head><body>
<nav aria-label="Main"><a href="/">Now</a></nav>
<h1>Approvals</h1>
<article><h2>redis / restart on <code>cache-1</code></h2>
<form method="post" action="/approvals/run-1">
  <input type="hidden" name="csrf_token" value="x">
  <label for="reason-run-1">Reason</label><input id="reason-run-1" name="reason">
  <label>Component <select name="component"><option>redis</option></select></label>
  <textarea name="note" aria-label="Note"></textarea>
  <input name="who" aria-labelledby="who-label"><span id="who-label">Who</span>
  <button name="decision" value="approve">Approve</button>
  <button aria-label="Close"><svg></svg></button>
  <input type="submit" value="Send">
</form>
<h3>Plan</h3></article>
<h2>Expired</h2>
</body></html>"""


def test_a_page_that_labels_every_control_and_orders_its_headings_passes():
    assert page_problems(PAGE) == []


def test_a_control_without_a_label_is_named_whatever_it_is():
    assert label_problems('<input id="reason" name="reason">') == [
        '<input id="reason" name="reason"> has no label']
    assert label_problems('<label for="other">x</label><select id="s"></select>') == [
        '<select id="s"> has no label']
    assert label_problems('<textarea name="t"></textarea>') == ['<textarea name="t"> has no label']
    assert label_problems('<input name="w" aria-labelledby="nowhere">') == [
        '<input name="w"> has no label']
    assert label_problems('<input type="email" name="e" aria-label="  ">') == [
        '<input type="email" name="e"> has no label']
    # Out of the label once it closed: the second input is not wrapped.
    assert label_problems('<label>A <input name="a"></label><input name="b">') == [
        '<input name="b"> has no label']
    assert label_problems('<input type="hidden" name="csrf_token">') == []
    assert label_problems('<button name="go"> </button>') == [
        '<button name="go"> has no text and no aria-label']
    assert label_problems('<input type="image" src="x.png">') == [
        '<input type="image"> has no alt text']


def test_headings_out_of_order_are_named():
    assert heading_problems("<h1>A</h1><h2>B</h2><h4>C</h4>") == [
        "<h4> 'C' follows <h2>: a level skipped"]
    assert heading_problems("<h2>A</h2><h1>B</h1>") == ["the first heading is <h2>, not <h1>"]
    assert heading_problems("<h1>A</h1><h1>B</h1>") == ["2 <h1> headings, not one"]
    assert heading_problems("<p>no headings</p>") == ["0 <h1> headings, not one"]
    assert heading_problems("<h1>A</h1><h2> </h2>") == ["an empty <h2>"]
    # Going back up any number of levels is fine; text inside inline tags counts.
    assert heading_problems("<h1>A</h1><h2>B</h2><h3>C</h3><h2><a href=x>D</a></h2>") == []


def test_a_page_without_a_language_is_named():
    assert language_problems('<html lang="en"><h1>x</h1></html>') == []
    assert language_problems("<html><h1>x</h1></html>") == ["<html> has no lang attribute"]
    assert language_problems('<html lang=""></html>') == ["<html> has no lang attribute"]
    assert language_problems("<h1>x</h1>") == ["no <html> element"]
