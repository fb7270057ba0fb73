"""`recovery import-config`: the original system's recovery_config.yml
(tests/fixtures/original/recovery_config.yml) as this engine's recovery.yml and runbooks,
written, then read back by the real config parser and runbook loader, and validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.config import load_config
from engine.context import EngineContext
from engine.runbooks.import_original import alert_on_known
from engine.runbooks.loader import load_runbooks
from tests.support.paths import ROOT

ORIGINAL = ROOT / "tests" / "fixtures" / "original" / "recovery_config.yml"
SHIPPED = ROOT / "recovery.yml"


@pytest.fixture
def recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """``recovery(*args)`` on the shipped configuration, its home in the test's folder:
    (exit code, stdout, stderr)."""
    monkeypatch.setenv("RECOVERY_HOME", str(tmp_path / "home"))

    def run(*args: str, config: Path = SHIPPED) -> tuple[int, str, str]:
        code = main(["--config", str(config), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_original_configuration_becomes_a_valid_set(tmp_path: Path, recovery) -> None:
    out_dir = tmp_path / "imported"
    code, out, err = recovery("import-config", str(ORIGINAL), "--out", str(out_dir))
    assert code == 0, out + err
    assert "valid" in out.splitlines()[-1] and "INVALID" not in out

    # what has no equivalent is said, never dropped
    unmapped = [line for line in out.splitlines() if line.startswith("could not map: ")]
    assert unmapped == [], unmapped       # every strategy of the original has its equivalent
    assert "mapped: recovery.components.redis.strategies: restart_container as " \
           "restart_service (step 3)" in out
    assert "mapped: recovery.components.chromadb.strategies: rebuild_index as " \
           "index_rebuild (step 3)" in out

    # the real config parser
    config = load_config(out_dir / "recovery.yml", environ={})
    assert config.alertmanagers == ["http://localhost:9093"]
    assert config.degraded_modes["redis_unavailable"]["capabilities"] == {
        "cache_reads": False, "cache_writes": False, "sessions": False, "rate_limits": False}
    assert config.degraded_modes["openwebui_unavailable"]["capabilities"]["direct_model_api"]
    assert config.degraded_modes["chromadb_unavailable"]["description"], "kept from the base"
    assert config.playbooks_dir == ROOT / "playbooks"
    assert config.runbooks_dir == out_dir / "runbooks"
    written = (out_dir / "recovery.yml").read_text()
    alert_on = {"recovery": True, "cooldown": True, "degraded_mode": True, "exhaustion": True}
    if alert_on_known():
        assert yaml.safe_load(written)["alertmanager"]["alert_on"] == alert_on
    else:   # this version lacks the key: written, commented out, and said
        assert "# alertmanager.alert_on" in written and "#   recovery: true" in written
        assert "commented out" in out

    # the real runbook loader, with the engine's actions and the shipped playbooks
    ctx = EngineContext(config)
    try:
        runbooks = {rb.name: rb for rb in load_runbooks(
            config.runbooks_dir, known_actions=ctx.registry.names(),
            playbooks_dir=config.playbooks_dir)}
    finally:
        ctx.store.close()
    names = {name: [s.name for s in rb.strategies] for name, rb in runbooks.items()}
    assert names == {
        "redis": ["reconnect", "flush_corrupted", "restart_service"],
        "chromadb": ["query_retry", "collection_reload", "index_rebuild"],
        "openwebui": ["restart_service", "model_failover"],   # the original's order
        "system": ["disk_cleanup", "memory_gc", "file_handle_cleanup"],
    }
    assert "chromadb: left out, as the original did not use them: restart_service, " \
           "snapshot_rollback" in out
    for rb in runbooks.values():
        assert (rb.cooldown.max_attempts, rb.cooldown.window, rb.cooldown.after_failure) == (
            3, 3600.0, 300.0), rb.name
    assert [s.timeout for s in runbooks["redis"].strategies] == [60.0] * 3
    shipped = {s.name: s.timeout for rb in load_runbooks(ROOT / "runbooks")
               if rb.name == "chromadb" for s in rb.strategies}
    assert {s.name: s.timeout for s in runbooks["chromadb"].strategies}.items() <= \
        shipped.items(), "only redis had a timeout_seconds"
    priorities = {name: rb.priority.name.lower() for name, rb in runbooks.items()}
    assert priorities["redis"] == priorities["chromadb"] == "critical"
    assert priorities["system"] == "high"
    assert priorities["openwebui"] in ("medium", "warning")   # warning: this version's nearest

    # and `recovery validate` passes on the written set
    code, out, err = recovery("validate", config=out_dir / "recovery.yml")
    assert code == 0, out + err


def test_unknown_keys_strategies_and_components_are_listed(tmp_path: Path, recovery) -> None:
    original = tmp_path / "recovery_config.yml"
    original.write_text(yaml.safe_dump({
        "recovery": {"enabled": False, "max_attempts_per_hour": 2, "retry_jitter": 0.2,
                     "components": {
                         "redis": {"strategies": ["reconnect", "defragment"],
                                   "cooldown_seconds": 60, "owner": "team-a"},
                         "kafka": {"priority": "high", "strategies": ["rebalance"]}}},
        "alerting": {"alertmanager_url": "http://am:9093/", "slack_webhook": "https://x",
                     "alert_on": {"exhaustion": True, "escalation": True}},
        "degraded_modes": {"redis_unavailable": {"cache_reads": False,
                                                 "max_stale": "5m"}},
        "logging": {"level": "debug"},
    }))
    out_dir = tmp_path / "out"
    code, out, err = recovery("import-config", str(original), "--out", str(out_dir))
    assert code == 0, out + err
    unmapped = sorted(line.removeprefix("could not map: ").split(" ")[0]
                      for line in out.splitlines() if line.startswith("could not map: "))
    assert unmapped == sorted([
        "logging", "recovery.retry_jitter", "recovery.components.redis.owner",
        "recovery.components.redis.strategies:", "recovery.components.kafka",
        "alerting.slack_webhook", "alerting.alert_on.escalation",
        "degraded_modes.redis_unavailable.max_stale"])
    assert "recovery.components.redis.strategies: defragment" in out
    assert "`recovery disable --for never`" in out
    redis = yaml.safe_load((out_dir / "runbooks" / "redis.yml").read_text())
    assert [s["name"] for s in redis["strategies"]] == ["reconnect"]
    assert redis["cooldown"] == {"max_attempts": 2, "window": "1h", "after_failure": "60s"}
    chromadb = yaml.safe_load((out_dir / "runbooks" / "chromadb.yml").read_text())
    assert chromadb["cooldown"]["max_attempts"] == 2     # the global limit applies to all
    assert load_config(out_dir / "recovery.yml", environ={}).alertmanagers == [
        "http://am:9093"]

    # the same again: the files exist
    code, _, err = recovery("import-config", str(original), "--out", str(out_dir))
    assert code == 2 and "--force" in err
    code, _, _ = recovery("import-config", str(original), "--out", str(out_dir), "--force")
    assert code == 0


@pytest.mark.parametrize("text, says", [
    ("recovery: [1, 2]\n", "recovery: expected a mapping, got list"),
    ("recovery:\n  components:\n    redis: {strategies: reconnect}\n",
     "recovery.components.redis.strategies: expected a list of names"),
    ("recovery: {max_attempts_per_hour: many}\n",
     "recovery.max_attempts_per_hour: expected a whole number"),
    ("recovery: {components: {redis: {priority: urgent}}}\n",
     "recovery.components.redis.priority: unknown priority 'urgent'"),
    ("alerting: {alertmanager_url: x}\n", "no `recovery:` section"),
    ("recovery: {enabled: true\n", "is not valid YAML"),
])
def test_a_malformed_file_is_a_clear_error(tmp_path: Path, recovery, text: str,
                                           says: str) -> None:
    original = tmp_path / "recovery_config.yml"
    original.write_text(text)
    code, out, err = recovery("import-config", str(original), "--out", str(tmp_path / "o"))
    assert code == 2 and says in err, err
    assert str(original) in err
    assert not (tmp_path / "o").exists(), "nothing written"


def test_a_missing_file_is_a_usage_error(tmp_path: Path, recovery) -> None:
    code, _, err = recovery("import-config", str(tmp_path / "nope.yml"))
    assert code == 2 and "cannot read" in err


def test_a_runbook_already_in_out_is_not_replaced_without_force(tmp_path: Path,
                                                                recovery) -> None:
    """Only recovery.yml was checked: a runbooks/ folder of one's own (no recovery.yml
    beside it) was overwritten silently."""
    out_dir = tmp_path / "out"
    (out_dir / "runbooks").mkdir(parents=True)
    mine = out_dir / "runbooks" / "redis.yml"
    mine.write_text("# my own redis runbook\n")
    code, _, err = recovery("import-config", str(ORIGINAL), "--out", str(out_dir))
    assert code == 2 and str(mine) in err and "--force" in err, err
    assert mine.read_text() == "# my own redis runbook\n"
    assert not (out_dir / "recovery.yml").exists(), "nothing written"
    code, _, err = recovery("import-config", str(ORIGINAL), "--out", str(out_dir), "--force")
    assert code == 0, err
    assert mine.read_text().startswith("# Written by `recovery import-config`")
