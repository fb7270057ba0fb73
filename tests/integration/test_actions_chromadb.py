"""ChromaDB strategies against a real ``chroma run`` server under a real supervisord
(tests/support/chroma_server.py), started once for the module: the shipped runbook and
playbooks, run as the CLI runs them (a ``recovery`` subprocess) and as an application
that embeds the engine runs them (this test process, with a registered
``ChromaCollections``). Our own embeddings (dim 8), telemetry off."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from engine.actions.chromadb import ChromaCollections
from engine.lifecycle import IncidentState, RunStatus
from tests.support.chroma_server import ChromaServer
from tests.support.shipped import install_runbook

pytestmark = pytest.mark.requires("chroma", "supervisord")

SECRET = "chroma-token-s3cr3t-4711"
FAILURE_TYPES = {   # failure type -> the first strategy that would run
    "connection_refused": "query_retry", "connection_timeout": "query_retry",
    "query_timeout": "query_retry", "query_error": "query_retry",
    "collection_unavailable": "collection_reload", "index_corruption": "index_rebuild",
    "data_corruption": "snapshot_rollback"}


@pytest.fixture(scope="module")
def chroma(tmp_path_factory) -> ChromaServer:
    server = ChromaServer(tmp_path_factory.mktemp("chroma"))
    try:
        yield server.start()
    finally:
        server.stop()


def shipped_env(engine_env, server: ChromaServer, **host_vars) -> object:
    """The engine home with the shipped chromadb runbook and playbooks, and an
    inventory host chroma-1 pointing at the server."""
    install_runbook("chromadb", engine_env.root)
    inventory = {"all": {"hosts": {"chroma-1": server.inventory_host(**host_vars)}}}
    (engine_env.root / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return engine_env


def recovery_cli(engine_env, *args: str, env: dict | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
    environ = {**engine_env.env(), **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *args], env=environ,
                          capture_output=True, text=True, timeout=timeout)


def runs(ctx, component: str = "chromadb"):
    return sorted(ctx.store.query_runs(component=component, limit=None),
                  key=lambda r: r.started_at)


def self_query(collection, records: dict[str, list[float]], ids: list[str]) -> list[str]:
    """Top hit of each record's own embedding: the record itself when the index is sound."""
    answer = collection.query(query_embeddings=[records[i] for i in ids], n_results=1)
    return [hits[0] for hits in answer["ids"]]


def take_snapshot(ctx, check: bool = False):
    from engine.artifacts import RunArtifacts
    from engine.records import new_id

    artifacts = RunArtifacts(ctx.artifacts_dir, new_id("run"), ctx.redactor).create()
    return ctx.ansible.run(artifacts=artifacts, playbook="snapshot_take.yml",
                           limit="chroma-1", check=check, timeout=120,
                           extravars={"recovery_component": "chromadb",
                                      "health_path": "/api/v2/heartbeat"})


# -- plans -------------------------------------------------------------------------------
def test_recovery_test_shows_which_strategy_runs_for_each_failure_type(engine_env, chroma):
    import contextlib
    import io

    from engine.cli import main

    env = shipped_env(engine_env, chroma)
    for failure, first in FAILURE_TYPES.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(env.config_path), "test", "--component", "chromadb",
                         "--failure-type", failure, "--target", "chroma-1", "--json"])
        assert code == 0
        plan = json.loads(out.getvalue())
        applying = [s["strategy"] for s in plan["strategies"] if s["applies"]]
        assert applying[0] == first, (failure, applying)
    assert "snapshot_rollback" in applying    # data_corruption: only the rollback


def test_actions_say_so_when_the_chromadb_package_is_missing(engine_env, chroma,
                                                             monkeypatch):
    """An optional extra: the engine imports and runs without it; the step is skipped
    with the reason, never a stack trace."""
    from engine.actions.base import ActionContext

    ctx = shipped_env(engine_env, chroma).context()
    monkeypatch.setitem(sys.modules, "chromadb", None)
    action_ctx = ActionContext(component="chromadb", target="chroma-1",
                               host_vars=ctx.host_vars("chroma-1"))
    for name in ("chromadb.query_retry", "chromadb.index_rebuild"):
        result = ctx.python.call(name, action_ctx)
        assert result.not_applicable and "chromadb package is not installed" in result.summary
    assert ctx.python.call("chromadb.heartbeat", action_ctx).ok   # plain HTTP still works


# -- query_retry, from the CLI -------------------------------------------------------------
@pytest.mark.slow
def test_query_retry_waits_out_a_restart_and_keeps_the_token_out_of_the_record(
        engine_env, chroma):
    chroma.populate("docs", 50)
    env = shipped_env(engine_env, chroma, chromadb_collections=["docs"])
    assert "stopped" in chroma.ctl("stop", "chroma")
    starter = threading.Timer(4, chroma.ctl, ("start", "chroma"))
    starter.start()
    try:
        done = recovery_cli(env, "recover", "--component", "chromadb", "--strategy",
                            "query_retry", "--target", "chroma-1", "--force",
                            env={"CHROMADB_TOKEN": SECRET})
    finally:
        starter.join(30)
        chroma.wait_healthy()
    assert done.returncode == 0, done.stdout + done.stderr
    ctx = env.context()
    [run] = runs(ctx)
    assert run.status == RunStatus.SUCCEEDED and run.strategy == "query_retry"
    result = json.loads((ctx.artifacts_dir / run.id / "run.json").read_text())["result"]
    assert result["attempts"] > 1 and result["errors"]     # it failed first, then answered
    assert "docs: query answered" in run.reason
    home = ctx.config.home
    for path in Path(home).rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


# -- index_rebuild + collection_reload, embedded ------------------------------------------
def test_an_embedding_application_follows_the_rebuilt_collection(engine_env, chroma):
    """index_rebuild, run by an application that embeds the engine, re-opens the handles
    this process registered as part of the step, and its verify checks the server side:
    one step, succeeded, recovered, same data."""
    from engine import Recovery

    records = chroma.populate("docs", 200)
    env = shipped_env(engine_env, chroma, chromadb_collections=["docs"])
    recovery = Recovery.from_config(env.config_path)
    handles = ChromaCollections(chroma.client, ["docs"])
    recovery.resources.register("chromadb", handles, target="chroma-1")
    old_id = handles.collection("docs").id
    try:
        incident = recovery.trigger("chromadb", "index_corruption", target="chroma-1")
        incident.wait(120)
        ctx = recovery.context
        assert incident.state == IncidentState.RECOVERED.value, incident.incident.reason
        [run] = runs(ctx)
        assert (run.strategy, run.status) == ("index_rebuild", RunStatus.SUCCEEDED)
        assert "this process's handles re-opened (docs)" in run.reason
        assert "no write during the rebuild" in run.reason
        data = json.loads((ctx.artifacts_dir / run.id / "run.json").read_text())
        figures = data["result"]["collections"]["docs"]
        assert figures["copied"] == 200 and figures["sample_hits"] == figures["sample"] == 10
        assert data["result"]["reloaded_here"] == ["docs"]
    finally:
        recovery.close()
    current = chroma.client().get_collection("docs", embedding_function=None)
    assert current.id != old_id and handles.ids() == {"docs": str(current.id)}
    assert handles.collection("docs").count() == 200
    sample = ["r0", "r57", "r199"]
    assert self_query(handles.collection("docs"), records, sample) == sample
    got = current.get(ids=["r57"], include=["metadatas", "documents"])
    assert got["metadatas"] == [{"n": 57}] and got["documents"] == ["document r57"]
    assert [c.name for c in chroma.client().list_collections()
            if c.name.startswith("docs")] == ["docs"]      # no copy or old one left over


def rebuild_with(chroma, when: str, write) -> object:
    """Runs index_rebuild on docs (batches of 50) and calls ``write(collection)`` on a
    handle to the original the first time the action logs ``when``: a write that lands
    at that point of the rebuild, deterministically."""
    from engine.actions.base import ActionContext
    from engine.actions.registry import default_registry

    app = chroma.client().get_collection("docs", embedding_function=None)
    fired: list[str] = []

    def log(message: str) -> None:
        if when in message and not fired:
            fired.append(message)
            write(app)

    ctx = ActionContext("chromadb", "chroma-1", params={"collection": "docs",
                        "batch_size": 50}, host_vars=chroma.inventory_host(), log=log)
    result = default_registry().get("chromadb.index_rebuild").run(ctx)
    assert fired, "the write never happened"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("when,write,what", [
    ("copied 50/", lambda c: c.update(ids=["r5"], metadatas=[{"n": 5, "edited": "yes"}]),
     "changed during the rebuild (0 added, 0 removed, 1 changed: r5)"),
    ("copied 100/", lambda c: c.delete(ids=["r7"]),    # also shifts the offsets: r100
     "changed during the rebuild (1 added, 1 removed, 0 changed)"),   # was never copied
    ("swapping the names", lambda c: c.upsert(ids=["r5"], embeddings=[[0.5] * 8],
                                              metadatas=[{"n": 5, "edited": "yes"}]),
     "was written to during the swap (0 added, 0 removed, 1 changed: r5)"),
])
def test_index_rebuild_refuses_to_swap_when_a_write_lands_meanwhile(chroma, when, write,
                                                                    what):
    """An acknowledged write during the copy (an update: same count; a delete of a copied
    record) or just before the swap is never lost: the rebuild stops, the original
    collection stays (or comes back) under its name with the write in it, and no copy is
    left. (An add during the copy lands past the read offset and is copied.)"""
    chroma.populate("docs", 200)
    old_id = chroma.client().get_collection("docs").id
    result = rebuild_with(chroma, when, write)
    assert not result.ok and what in result.summary, result.summary
    current = chroma.client().get_collection("docs", embedding_function=None)
    assert current.id == old_id
    if "r5" in what:
        got = current.get(ids=["r5"], include=["metadatas"])
        assert got["metadatas"] == [{"n": 5, "edited": "yes"}]
    else:
        assert current.count() == 199 and current.get(ids=["r7"])["ids"] == []
    assert [c.name for c in chroma.client().list_collections()
            if c.name.startswith("docs")] == ["docs"]


@pytest.mark.slow
def test_an_application_keeps_answering_while_the_service_side_rebuilds(engine_env,
                                                                        chroma):
    records = chroma.populate("docs", 200)
    env = shipped_env(engine_env, chroma, chromadb_collections=["docs"])
    handles = ChromaCollections(chroma.client, ["docs"])
    old_id = handles.collection("docs").id
    answers, errors, stop = [], [], threading.Event()
    ids = list(records)

    def keep_querying() -> None:
        n = 0
        while not stop.is_set():
            wanted = ids[n % len(ids)]
            try:
                got = handles.query("docs", query_embeddings=[records[wanted]], n_results=1)
                answers.append(got["ids"][0][0] == wanted)
            except Exception as exc:  # noqa: BLE001 - counted, asserted below
                errors.append(repr(exc))
            n += 1

    thread = threading.Thread(target=keep_querying, daemon=True)
    thread.start()
    try:
        done = recovery_cli(env, "recover", "--component", "chromadb", "--strategy",
                            "index_rebuild", "--target", "chroma-1", "--force")
        before = len(answers)
        deadline = time.monotonic() + 10
        while len(answers) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert errors == [] and len(answers) > before >= 20 and all(answers)
    current = chroma.client().get_collection("docs", embedding_function=None)
    assert current.id != old_id and handles.ids() == {"docs": str(current.id)}


# -- collection_reload, embedded ------------------------------------------------------------
def registered(env, chroma: ChromaServer, names: list[str]):
    """An application embedding the engine with its handles on ``names`` opened and
    registered as ``chromadb`` for chroma-1: (recovery, handles, the ids they hold)."""
    from engine import Recovery

    recovery = Recovery.from_config(env.config_path)
    handles = ChromaCollections(chroma.client, names)
    recovery.resources.register("chromadb", handles, target="chroma-1")
    return recovery, handles, {n: str(handles.collection(n).id) for n in names}


def on_server(chroma: ChromaServer, *names: str) -> dict[str, str]:
    """Name -> id of the server's collections among ``names``."""
    return {c.name: str(c.id) for c in chroma.client().list_collections() if c.name in names}


def test_collection_reload_follows_a_re_created_collection_and_its_check_changes_nothing(
        engine_env, chroma):
    """The collection is dropped and created again under its name (a new id): the
    application's handle fails ("does not exist"). The check names the stale handle and
    changes nothing, here or on the server; collection_unavailable then re-opens it, its
    verify (handles: true) passes, and the handle answers from the new collection."""
    from chromadb.errors import NotFoundError

    chroma.populate("docs", 50)
    env = shipped_env(engine_env, chroma, chromadb_collections=["docs"])
    recovery, handles, held = registered(env, chroma, ["docs"])
    try:
        fresh = chroma.populate("docs", 60, seed=8)       # dropped and re-created
        server = on_server(chroma, "docs")
        assert server["docs"] != held["docs"]
        with pytest.raises(NotFoundError):
            handles.collection("docs").query(query_embeddings=[fresh["r1"]], n_results=1)

        [planned] = recovery.check("chromadb", strategy="collection_reload")
        assert planned.check_mode and planned.status == RunStatus.SUCCEEDED, planned.reason
        assert (f"would make a new client and re-open docs by name (stale: docs (handle "
                f"{held['docs'][:8]}, now {server['docs'][:8]}))") in planned.reason
        assert handles.ids() == held and on_server(chroma, "docs") == server

        incident = recovery.trigger("chromadb", "collection_unavailable", target="chroma-1")
        incident.wait(60)
        assert incident.state == IncidentState.RECOVERED.value, incident.incident.reason
        [run] = [r for r in runs(recovery.context) if not r.check_mode]
        assert (run.strategy, run.status) == ("collection_reload", RunStatus.SUCCEEDED)
        assert "re-opened docs (60 records) with a new client; docs now point at a new " \
               "collection id" in run.reason, run.reason
        assert "verified by chromadb.collection_check" in run.reason, run.reason
    finally:
        recovery.close()
    assert handles.ids() == server == on_server(chroma, "docs")
    assert self_query(handles.collection("docs"), fresh, ["r1", "r59"]) == ["r1", "r59"]


def test_collection_reload_reports_a_dropped_collection_and_never_creates_it(engine_env,
                                                                             chroma):
    """One collection re-created, one dropped for good: the check and the step name the
    missing one; the step re-opens the other (it answers again) and fails (the incident
    goes on to the restart, which waits for approval), and no collection comes into being
    under the dropped name."""
    chroma.populate("docs", 50)
    chroma.populate("small", 20, seed=3)
    env = shipped_env(engine_env, chroma, chromadb_collections=["docs", "small"])
    recovery, handles, held = registered(env, chroma, ["docs", "small"])
    try:
        chroma.client().delete_collection("small")
        fresh = chroma.populate("docs", 50, seed=8)
        server = on_server(chroma, "docs", "small")
        assert list(server) == ["docs"]

        [planned] = recovery.check("chromadb", strategy="collection_reload")
        assert "missing on the server, not created (a rollback brings a collection " \
               "back): small" in planned.reason, planned.reason
        assert handles.ids() == held and on_server(chroma, "docs", "small") == server

        incident = recovery.trigger("chromadb", "collection_unavailable", target="chroma-1")
        incident.wait(60)
        # the reload failed, so the incident goes on to the next strategy: a restart of
        # the service, which waits for a person (it is never taken silently)
        assert incident.state == IncidentState.REMEDIATING.value, incident.incident.reason
        assert "restart_service on chroma-1 needs approval" in incident.incident.reason
        [run] = [r for r in runs(recovery.context)
                 if not r.check_mode and r.strategy == "collection_reload"]
        assert run.status == RunStatus.FAILED, run.reason
        assert "re-opened docs (50 records)" in run.reason, run.reason
        assert "not created (a rollback brings a collection back): small" in run.reason
    finally:
        recovery.close()
    assert on_server(chroma, "docs", "small") == server          # nothing created
    assert handles.ids() == {"docs": server["docs"], "small": held["small"]}
    assert self_query(handles.collection("docs"), fresh, ["r7"]) == ["r7"]


# -- snapshots and the rollback, from the CLI with an approval -----------------------------
def test_snapshot_take_refuses_a_data_dir_that_resolves_outside_the_roots(
        engine_env, chroma, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = chroma.root / "link-out"
    link.symlink_to(outside)
    snapshots = chroma.root / "refused-snapshots"    # a successful take would create it
    try:
        env = shipped_env(engine_env, chroma, chromadb_persist_dir=str(link),
                          chromadb_snapshot_dir=str(snapshots))
        result = take_snapshot(env.context())
    finally:
        link.unlink()
    assert result.status == RunStatus.FAILED and "refused" in result.reason
    assert f"({outside.resolve()})" in result.reason     # refused for where it resolves
    assert not snapshots.exists() and list(outside.iterdir()) == []


@pytest.mark.slow
def test_a_corrupted_index_and_a_dropped_collection_come_back_from_the_snapshot(
        engine_env, chroma):
    """Snapshot (good), break two ways, then the runbook: the rebuild cannot read the
    broken index, the rollback parks; approved, it stops chroma, snapshots the broken
    state, restores, starts it: both collections answer again."""
    docs = chroma.populate("docs", 200)
    small = chroma.populate("small", 200, seed=11, configuration={
        "hnsw": {"sync_threshold": 10, "batch_size": 10}})   # its index goes to disk
    env = shipped_env(engine_env, chroma, chromadb_collections=["small", "docs"])
    ctx = env.context()
    result = take_snapshot(ctx)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    [good] = chroma.snapshots.glob("data-*.tar.gz")
    assert Path(f"{good}.good").exists()

    client = chroma.client()
    small_id = str(client.get_collection("small").id)
    client.delete_collection("docs")
    client.create_collection("junk", embedding_function=None)
    chroma.ctl("stop", "chroma")
    for index_file in (chroma.data / _segment_of(chroma, small_id)).glob("*.bin"):
        index_file.write_bytes(b"\0garbage" * 8)
    chroma.ctl("start", "chroma")
    chroma.wait_healthy()
    with pytest.raises(Exception, match="hnsw"):
        chroma.client().get_collection("small").get(limit=1, include=["embeddings"])
    # A heartbeat cannot see it; the runbook's verify (and default probe) does.
    from engine.actions.base import ActionContext

    rb = ctx.runbook("chromadb")
    check = ActionContext("chromadb", "chroma-1", params=dict(rb.verify.params),
                          host_vars=ctx.host_vars("chroma-1"))
    assert ctx.python.call("chromadb.heartbeat", check).ok
    assert rb.verify.action == "chromadb.collection_check"
    broken = ctx.python.call(rb.verify.action, check)
    assert not broken.ok and not broken.not_applicable and "hnsw" in broken.summary.lower()

    opened = _incident(ctx, "index_corruption")
    assert opened.state in (IncidentState.OPEN, IncidentState.REMEDIATING)   # parked
    ran = {r.strategy: r for r in runs(ctx)}
    assert ran["index_rebuild"].status == RunStatus.FAILED
    assert "snapshot rollback is the next step" in ran["index_rebuild"].reason
    assert list(ran) == ["index_rebuild", "snapshot_rollback"]
    parked = ran["snapshot_rollback"]
    assert parked.status == RunStatus.PENDING_APPROVAL
    pid_before = chroma.supervisor.pid("chroma")

    done = recovery_cli(env, "approve", parked.id, "--now")
    assert done.returncode == 0, done.stdout + done.stderr
    chroma.wait_healthy()
    assert chroma.supervisor.pid("chroma") != pid_before          # stopped and started
    client = chroma.client()
    assert sorted(c.name for c in client.list_collections()) == ["docs", "small"]
    for name, records in (("docs", docs), ("small", small)):
        collection = client.get_collection(name, embedding_function=None)
        assert collection.count() == 200
        assert self_query(collection, records, ["r3", "r150"]) == ["r3", "r150"]
    [pre] = chroma.snapshots.glob("data-*.pre-rollback.tar.gz")
    assert not Path(f"{pre}.good").exists()          # never picked as a good one
    assert list(chroma.snapshots.glob("*.partial")) == []
    assert not list(chroma.root.glob("data.rollback-*"))   # old data deleted once healthy
    incident = ctx.store.get_incident(opened.id)
    assert incident.state == IncidentState.RECOVERED, incident.reason


def _segment_of(server: ChromaServer, collection_id: str) -> str:
    """The folder of a collection's vector segment (chroma.sqlite3 knows it)."""
    import sqlite3

    db = sqlite3.connect(f"file:{server.data / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        [(segment,)] = db.execute("SELECT id FROM segments WHERE collection = ? AND scope = "
                                  "'VECTOR'", (collection_id,)).fetchall()
    finally:
        db.close()
    return segment


def _incident(ctx, failure_type: str):
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    opened = open_incident(ctx, TriggerRequest(runbook="chromadb", target="chroma-1",
                                               failure_type=failure_type))
    assert opened.claimed, opened.refusal
    advance(ctx, opened.incident.id)
    return ctx.store.get_incident(opened.incident.id)
