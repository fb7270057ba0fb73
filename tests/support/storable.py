"""What no field the engine keeps may carry (a lone UTF-16 surrogate, a value past
``MAX_VALUE``), and notifications that carry it in one field: for the tests that the
webhook refuses at the door what the store could not write."""

from __future__ import annotations

import json

from tests.support.alerts import good_alert, notification
from webhook.notification import MAX_VALUE

RUNBOOK = """
    match: ['alertname="RedisDown"']
    target: "{{ labels.instance }}"
    strategies: [{name: fix, action: test.ok}]
"""

# Strings no field the engine keeps may carry, as they arrive in JSON text.
REFUSED = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate": '"x\\udfff"',
    "surrogate pair reversed": '"\\udc00\\ud800"',
    "very long": json.dumps("h" * (MAX_VALUE + 1)),
}
ALERT_FIELDS = ("status", "fingerprint", "startsAt", "endsAt", "generatorURL",
                "label name", "label value", "annotation name", "annotation value")


def hostile_body(where: str, field: str, hostile: str) -> str:
    """A notification of one good alert (instance cache-1) with ``hostile`` (JSON text)
    in one field, at the top level or in the alert."""
    marker = "\u2603HOSTILE\u2603"
    alert = good_alert("cache-1")
    top = notification(alert)
    if where == "top":
        top[field] = marker
    elif field == "label name":
        alert["labels"][marker] = "x"
    elif field == "label value":
        alert["labels"]["extra"] = marker
    elif field == "annotation name":
        alert["annotations"][marker] = "x"
    elif field == "annotation value":
        alert["annotations"]["description"] = marker
    else:
        alert[field] = marker
    return json.dumps(top, ensure_ascii=False).replace(f'"{marker}"', hostile)
