"""Labels are data: they pass through templates as text; runbook templates stay boxed."""

from __future__ import annotations

import pytest

from engine.runbooks.templating import TemplateError, compile_check, render, render_data

HOSTILE_VALUES = [
    "{{ lookup('pipe','id') }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ labels.instance }}",
    "$(id); `id` | rm -rf /",
    "!unsafe {{ 7*7 }}",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_label_values_pass_through_as_literal_text(value: str) -> None:
    out = render("{{ labels.instance }}", {"instance": value})
    assert out == value
    assert type(out) is str


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_annotations_and_extra_data_are_data_too(value: str) -> None:
    out = render("{{ annotations.summary }}/{{ fleet }}", {}, {"summary": value}, fleet=value)
    assert out == f"{value}/{value}"


def test_rendered_output_is_not_rendered_again() -> None:
    # If the output were re-rendered, the label's template would pick up "s3cret".
    out = render("{{ labels.a }}", {"a": "{{ labels.b }}", "b": "s3cret"})
    assert out == "{{ labels.b }}"


def test_missing_variables_render_empty() -> None:
    assert render("{{ labels.instance }}", {}) == ""
    assert render("x{{ labels.nope.deeper }}y", {"a": "b"}) == "xy"
    assert render("{{ nothing }}|{{ nothing.at.all }}", None) == "|"
    assert render("{{ labels.instance | default('localhost') }}", {}) == "localhost"


def test_ordinary_templates_work() -> None:
    labels = {"instance": "cache-1:6379", "job": "redis"}
    assert render("{{ labels.instance.split(':')[0] }}", labels) == "cache-1"
    assert render("{{ labels['job'] | upper }}-{{ n }}", labels, n=3) == "REDIS-3"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ labels.__class__ }}",
        "{{ labels['__class__'] }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_private_attributes_are_refused_at_load_and_render(template: str) -> None:
    with pytest.raises(TemplateError, match="not allowed|unsafe"):
        compile_check(template)
    with pytest.raises(TemplateError):
        render(template, {"instance": "x"})


@pytest.mark.parametrize(
    "template",
    [
        "{{ labels.instance | attr('__class__') }}",   # dynamic: only caught at render
        "{{ [].append(1) }}",                          # immutable sandbox
        "{{ labels.update({'a': 1}) }}",
        "{% for x in range(10**9) %}{% endfor %}",     # capped range
        "{{ 'a' * 10**9 }}",                           # memory bomb
        "{{ 10 ** (10 ** 10) }}",                      # CPU bomb
        "{{ nothing() }}",
        "{{ 1 / 0 }}",
    ],
)
def test_sandbox_violations_and_failures_raise_template_error(template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, {"instance": "cache-1"})
    assert caught.value.reason


@pytest.mark.parametrize(
    "template", ["{{ labels.instance ", "{% if %}", "{{ x | no_such_filter }}", "{% endfor %}"]
)
def test_syntax_errors_are_template_errors(template: str) -> None:
    with pytest.raises(TemplateError, match="syntax"):
        compile_check(template)
    with pytest.raises(TemplateError, match="syntax"):
        render(template, {})


def test_compile_check_accepts_good_templates_and_rejects_non_strings() -> None:
    compile_check("{{ labels.instance }}")
    compile_check("plain text")
    with pytest.raises(TemplateError):
        compile_check(42)  # type: ignore[arg-type]


def test_render_data_renders_each_string_once() -> None:
    data = {"container": "{{ labels.job }}", "n": 3, "list": ["{{ labels.instance }}", True]}
    labels = {"job": "redis", "instance": "{{ lookup('pipe','id') }}"}
    assert render_data(data, labels) == {
        "container": "redis",
        "n": 3,
        "list": ["{{ lookup('pipe','id') }}", True],
    }
