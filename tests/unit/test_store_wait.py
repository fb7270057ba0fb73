"""``StoreWait``: the start-up checks of a service that started with its store down are
tried until the store answers; a store found unsafe then refuses the start (the service
stops with exit 2: tests/integration/test_redis_outage.py runs it for real)."""

from __future__ import annotations

import pytest

from engine.service.store_wait import StoreWait
from engine.store import StoreRefused, StoreUnavailable
from tests.support.service import wait_for


class Checks:
    """Fails as ``outcomes`` say, one per try (then passes); counts the tries."""

    def __init__(self, *outcomes: BaseException) -> None:
        self.outcomes = list(outcomes)
        self.tries = 0

    def __call__(self) -> None:
        self.tries += 1
        if self.outcomes:
            raise self.outcomes.pop(0)


def test_a_store_down_is_tried_again_until_the_checks_pass():
    checks = Checks(StoreUnavailable("down"), StoreUnavailable("still down"))
    waiting = StoreWait(checks, first_wait=0.01, max_wait=0.02).start()
    assert wait_for(lambda: waiting.passed, 10, every=0.01)
    assert checks.tries == 3 and waiting.refused is None
    waiting.stop()


@pytest.mark.parametrize("refusal, reason", [
    (StoreRefused("refusing Redis as the state store:\n- appendonly is no"),
     "refusing Redis as the state store: - appendonly is no"),
    (ValueError("a migration to this store did not finish"),
     "a migration to this store did not finish"),
])
def test_a_refusal_at_the_first_answer_is_kept_with_its_reason(refusal, reason):
    waiting = StoreWait(Checks(StoreUnavailable("down"), refusal), first_wait=0.01).start()
    assert wait_for(lambda: waiting.refused, 10, every=0.01) == reason
    assert not waiting.passed
    waiting.stop()


def test_stopping_ends_the_wait_without_a_verdict():
    waiting = StoreWait(Checks(*[StoreUnavailable("down")] * 1000), first_wait=0.01,
                        max_wait=0.01).start()
    waiting.stop()
    assert not waiting.passed and waiting.refused is None
