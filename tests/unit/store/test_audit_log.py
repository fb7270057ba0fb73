"""The ``AuditLog`` protocol: operator actions, listed newest first."""

from __future__ import annotations

from engine.records import AuditEvent
from engine.store.audit_log import AuditLog
from tests.unit.store.backends import uses

pytestmark = uses(AuditLog)


def test_events_are_listed_newest_first_with_their_detail(store):
    for i in range(3):
        store.add_event(AuditEvent(at=100.0 + i, actor="alice", action=f"disable-{i}",
                                   detail={"scope": {"target": f"h{i}"}}))
    assert [e.action for e in store.list_events()] == ["disable-2", "disable-1", "disable-0"]
    [newest] = store.list_events(limit=1)
    assert (newest.at, newest.actor, newest.detail) == (102.0, "alice",
                                                        {"scope": {"target": "h2"}})
