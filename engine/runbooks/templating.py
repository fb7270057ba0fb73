"""Render runbook templates (``target``, ``with``, ``extravars``) from alert data.

Why a sandbox: labels and annotations come from whoever can post an alert. They are
*data*: they enter the template context as plain strings, the output is returned as a
plain ``str`` and never rendered again, so ``{{ lookup('pipe','id') }}`` in a label
stays text. The template itself is runbook code, rendered by Jinja2's
``ImmutableSandboxedEnvironment``: no ``_``-attributes, no mutating methods, ranges
capped, huge ``*``/``**`` results refused; any such attempt is a TemplateError, not an
empty string. Missing variables render as ``""`` (an alert without ``instance`` gives
an empty target, which target resolution then refuses with its reason).

What it cannot stop: a runbook template that loops for a long time by itself (nested
capped ranges). Runbooks are reviewed code; this guards against alerts, not authors.
Ansible templates extravars again, so values from alerts must also reach Ansible
marked ``!unsafe`` (the executor's job, see docs/runbooks.md).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2 import exceptions as jinja_errors
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_SIZE = 65536        # longest string/sequence a `*` may build
MAX_EXPONENT = 1024     # largest exponent a `**` may use


class TemplateError(ValueError):
    """A template that does not compile, breaks the sandbox, or fails to render."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Blank(ChainableUndefined):
    """Missing variables (and attributes of them) render as the empty string."""

    __slots__ = ()


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, made loud: unsafe access raises instead of rendering ``""``."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, str | list | tuple) and isinstance(times, int)
                        and len(seq) * times > MAX_SIZE):
                    raise SecurityError(f"repeating a sequence beyond {MAX_SIZE} items")
        return {"*": operator.mul, "**": operator.pow}[op](left, right)


_ENV = _Sandbox(autoescape=False, undefined=_Blank)


@functools.lru_cache(maxsize=1024)
def _compile(template: str) -> Any:
    try:
        ast = _ENV.parse(template)
        _refuse_private_names(ast)
        return _ENV.from_string(ast)
    except jinja_errors.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template refused by the sandbox: {exc}") from None


def _refuse_private_names(ast: nodes.Template) -> None:
    """Catch ``x.__class__`` / ``x['_y']`` at load time, not first at 3 a.m."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"access to {name!r} is not allowed in templates")


def compile_check(template: str) -> None:
    """Reject a template that would fail at compile time; used when loading runbooks."""
    if not isinstance(template, str):
        raise TemplateError(f"a template is a string, not {type(template).__name__}")
    _compile(template)


def render(
    template: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **data: Any,
) -> str:
    """``template`` rendered with ``labels``, ``annotations`` and ``data``: a plain str."""
    compiled = _compile(template)
    context = {**data, "labels": dict(labels or {}), "annotations": dict(annotations or {})}
    try:
        return str(compiled.render(context))
    except SecurityError as exc:
        raise TemplateError(f"template refused by the sandbox: {exc}") from None
    except jinja_errors.TemplateError as exc:
        raise TemplateError(f"template failed: {exc.message or type(exc).__name__}") from None
    except Exception as exc:   # a runbook bug (1/0, range too big) is a reason, not a crash
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None


def render_data(
    value: Any,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **data: Any,
) -> Any:
    """Render every string inside nested dicts/lists (``with:``, ``extravars:``) once."""
    if isinstance(value, str):
        return render(value, labels, annotations, **data)
    if isinstance(value, Mapping):
        return {k: render_data(v, labels, annotations, **data) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_data(v, labels, annotations, **data) for v in value]
    return value
