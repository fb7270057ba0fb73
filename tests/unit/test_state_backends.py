"""The ``both_backends`` mark (tests/support/state_backends.py): a marked test runs once
per backend and its engine home keeps its state there; an unmarked one stays on the
home's own SQLite file."""

from __future__ import annotations

import pytest

from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore

KINDS = {"sqlite": SQLiteStore, "redis": RedisStore}


@pytest.mark.both_backends
def test_a_marked_test_keeps_its_engine_state_on_its_backend(engine_env, state_backend):
    ctx = engine_env.context()
    assert isinstance(ctx.store, KINDS[state_backend])
    engine_env.write_config(threads=1)              # a rewritten config keeps its backend
    assert isinstance(engine_env.context().store, KINDS[state_backend])


def test_an_unmarked_test_stays_on_the_home_sqlite_file(engine_env, state_backend):
    assert state_backend == "sqlite"
    assert engine_env.context().config.state_url.startswith("sqlite:///")


def test_the_marked_tests_run_on_every_backend(request):
    ids = [item.name for item in request.session.items
           if item.originalname == "test_a_marked_test_keeps_its_engine_state_on_its_backend"]
    assert sorted(ids) == sorted(f"test_a_marked_test_keeps_its_engine_state_on_its_backend"
                                 f"[{b}]" for b in KINDS)
