"""The service's log lines (engine.service.log_format) and the ids they carry
(engine.log_context): one JSON object a line, the ids of the work in hand and of no other."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from logging.config import dictConfig

import pytest

from engine import log_context
from engine.config import ConfigError, load_config
from engine.log_context import LogIds
from engine.service.log_format import (
    ACCESS_LOG_ENV,
    JsonFormatter,
    chosen_format,
    formatter,
    gunicorn_logconfig,
)


def record(message: str = "step %s done", *args, exc_info=None, **extra) -> logging.LogRecord:
    made = logging.LogRecord("engine.test", logging.WARNING, __file__, 1, message,
                             args or ("x",), exc_info)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_json_line_says_when_what_and_where_on_one_line():
    line = JsonFormatter("worker", "replica-a").format(record("two\nlines %s"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines x" and entry["level"] == "WARNING"
    assert entry["logger"] == "engine.test" and isinstance(entry["process"], int)
    assert (entry["role"], entry["replica"]) == ("worker", "replica-a")
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"
    assert not {"run_id", "incident_id", "fingerprint", "exception"} & set(entry)


def test_an_exception_travels_in_the_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = record(exc_info=sys.exc_info())
    entry = json.loads(JsonFormatter().format(made))
    assert "Traceback" in entry["exception"] and "RuntimeError: boom" in entry["exception"]


def test_the_filter_puts_the_ids_of_the_scope_on_records_and_forgets_them_after():
    ids = LogIds()
    with log_context.scope(incident_id="inc-1"):
        log_context.note(fingerprint="fp-1", run_id=None)
        with log_context.scope(run_id="run-1"):
            inner = record()
            ids.filter(inner)
        after_run = record()
        ids.filter(after_run)
    outside = record()
    ids.filter(outside)
    assert (inner.run_id, inner.incident_id, inner.fingerprint) == ("run-1", "inc-1", "fp-1")
    assert not hasattr(after_run, "run_id") and after_run.fingerprint == "fp-1"
    assert not hasattr(outside, "incident_id") and not hasattr(outside, "fingerprint")


def test_an_id_given_by_the_call_wins_over_the_scope():
    with log_context.scope(incident_id="inc-scope"):
        given = record(incident_id="inc-given")
        LogIds().filter(given)
    assert given.incident_id == "inc-given"


def test_another_threads_ids_never_reach_this_ones_lines():
    seen: dict[str, dict] = {}
    started, release = threading.Event(), threading.Event()

    def other() -> None:
        with log_context.scope(run_id="run-other"):
            started.set()
            release.wait(10)
            seen["other"] = log_context.current()

    thread = threading.Thread(target=other)
    thread.start()
    assert started.wait(10)
    seen["here"] = log_context.current()
    release.set()
    thread.join(10)
    assert seen == {"here": {}, "other": {"run_id": "run-other"}}


def test_the_text_line_says_when_and_which_process():
    text = formatter("http").format(record())
    assert text[:4].isdigit() and "recovery-http[" in text
    assert text.endswith("WARNING engine.test: step x done")


def logged_through_gunicorns_config(monkeypatch, fmt: str) -> list[str]:
    """What gunicorn's error log and the webhook say, configured as under the service."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    config = gunicorn_logconfig({"RECOVERY_LOG_FORMAT": fmt, "RECOVERY_LOG_LEVEL": "INFO",
                                 "RECOVERY_LOG_REPLICA": "r1"})
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        dictConfig(config)
        with log_context.scope(fingerprint="fp-9"):
            logging.getLogger("gunicorn.error").info("Booting worker")
            logging.getLogger("webhook.alerts").info("refused")
    finally:
        for name in ("gunicorn.error", "gunicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        root.handlers[:], root.level = saved
    return stream.getvalue().splitlines()


def test_gunicorns_config_writes_every_logger_through_the_format(monkeypatch):
    entries = [json.loads(line) for line in logged_through_gunicorns_config(monkeypatch, "json")]
    assert [(e["logger"], e["role"], e["replica"], e["fingerprint"]) for e in entries] == [
        ("gunicorn.error", "http", "r1", "fp-9"), ("webhook.alerts", "http", "r1", "fp-9")]


def test_in_text_the_webhooks_lines_say_when_too(monkeypatch):
    booting, refused = logged_through_gunicorns_config(monkeypatch, "text")
    assert booting[:4].isdigit() and "recovery-http[" in booting
    assert booting.endswith("INFO gunicorn.error: Booting worker")
    assert refused[:4].isdigit() and refused.endswith("INFO webhook.alerts: refused")


def test_the_format_is_text_unless_json_is_chosen(tmp_path):
    assert chosen_format({}) == "text" and chosen_format({"RECOVERY_LOG_FORMAT": "xml"}) == "text"
    assert chosen_format({"RECOVERY_LOG_FORMAT": "json"}) == "json"
    path = tmp_path / "recovery.yml"
    path.write_text("logging: {format: json}\n")
    assert load_config(path, environ={}).log_format == "json"
    path.write_text("")
    assert load_config(path, environ={}).log_format == "text"
    path.write_text("logging: {format: yaml}\n")
    with pytest.raises(ConfigError, match="logging/format"):
        load_config(path, environ={})


def test_in_json_the_first_starts_banner_is_one_line_and_carries_no_token(capsys):
    """A first start's banner is for a person; under --log-format json whatever collects
    the service's output reads JSON lines: the banner becomes one (token files' paths,
    never a token, since a log keeps what it is given), and stdout stays empty."""
    from engine.cli.serve import say_first_start
    from engine.service.log_format import configure
    from engine.service.supervisor import ServiceSettings

    saved = logging.getLogger().handlers[:]
    try:
        configure("serve", fmt="json", replica="r")
        logging.getLogger("engine.service.supervisor").setLevel(logging.INFO)
        say_first_start(ServiceSettings(host="127.0.0.1", port=9797),
                        {"webhook": "w-token-0123456789", "operator": "o-token-0123456789"},
                        "/var/x", log_format="json")
    finally:
        root = logging.getLogger()
        root.handlers[:] = saved
    said = capsys.readouterr()
    assert said.out == ""
    [entry] = [json.loads(line) for line in said.err.splitlines()]
    assert "cat /var/x/operator.token" in entry["message"] and "receivers:" in entry["message"]
    assert "token-0123456789" not in said.err


def test_a_python_actions_own_lines_carry_the_ids_of_its_run(tmp_path):
    """An action runs on a pool thread of the executor (engine.executors.python): what
    it logs is said during its step, so it carries the step's run and incident too."""
    from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
    from engine.actions.registry import ActionRegistry
    from engine.artifacts import RunArtifacts
    from engine.executors.python import PythonExecutor

    class Chatty(Action):
        name, scope = "test.chatty", REMOTE

        def run(self, ctx: ActionContext) -> ActionResult:
            logging.getLogger("engine.actions.test").warning("reconnecting %s", ctx.target)
            return ActionResult(True, "ok")

    registry = ActionRegistry()
    registry.register(Chatty())
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    handler.addFilter(LogIds())
    logger = logging.getLogger("engine.actions.test")
    logger.addHandler(handler)
    try:
        with log_context.scope(run_id="run-7", incident_id="inc-7"):
            PythonExecutor(registry).run(
                artifacts=RunArtifacts(tmp_path, "run-7").create(), action="test.chatty",
                ctx=ActionContext(component="redis", target="cache-1"))
    finally:
        logger.removeHandler(handler)
    [line] = [r for r in seen if r.getMessage() == "reconnecting cache-1"]
    assert (line.run_id, line.incident_id) == ("run-7", "inc-7")


def access_lines(monkeypatch, environ: dict[str, str]) -> list[str]:
    """What gunicorn's access logger writes, configured as under the service."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stdout", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        dictConfig(gunicorn_logconfig({"RECOVERY_LOG_LEVEL": "INFO", **environ}))
        logging.getLogger("gunicorn.access").info('"POST /api/v1/alerts HTTP/1.1" 200')
    finally:
        for name in ("gunicorn.error", "gunicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
            logging.getLogger(name).setLevel(logging.NOTSET)
        root.handlers[:], root.level = saved
    return stream.getvalue().splitlines()


def test_the_access_log_is_written_only_when_the_setting_asks_for_it(monkeypatch):
    """gunicorn logs every request once it has a logging config: the access log stays off
    (service.access_log: false, the default) unless asked for, as before the log format."""
    assert access_lines(monkeypatch, {}) == []
    [line] = access_lines(monkeypatch, {ACCESS_LOG_ENV: "1"})
    assert "POST /api/v1/alerts" in line and "gunicorn.access" in line
