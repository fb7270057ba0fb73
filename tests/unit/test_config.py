"""recovery.yml loading and RECOVERY_HOME: created 0700, taken over only if it is ours."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config
from engine.fleet_limits import FleetLimits
from tests.support.paths import ROOT


def config_with_home(tmp_path: Path, home: Path):
    file = tmp_path / "recovery.yml"
    file.write_text("runbooks: runbooks\n")
    return load_config(file, environ={"RECOVERY_HOME": str(home)})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_is_created_0700(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "home"
    old = os.umask(0o022)
    try:
        config_with_home(tmp_path, home).ensure_home()
    finally:
        os.umask(old)
    assert home.is_dir() and mode(home) == 0o700
    assert (home / "artifacts").is_dir() and mode(home / "artifacts") == 0o700


def test_an_existing_empty_directory_is_taken_and_set_0700(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    config_with_home(tmp_path, home).ensure_home()
    assert mode(home) == 0o700 and (home / "artifacts").is_dir()


@pytest.mark.parametrize("marker", ["recovery.db", "artifacts"])
def test_an_existing_recovery_home_is_used(tmp_path: Path, marker: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if marker == "artifacts":
        (home / "artifacts").mkdir()
    else:
        (home / "recovery.db").write_bytes(b"")
    (home / "other-file").write_text("kept")
    os.chmod(home, 0o750)
    config_with_home(tmp_path, home).ensure_home()
    assert mode(home) == 0o700
    assert (home / "other-file").read_text() == "kept"
    config_with_home(tmp_path, home).ensure_home()  # again: still fine
    assert mode(home) == 0o700


def test_a_foreign_non_empty_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "unrelated.txt").write_text("not ours to lock")
    os.chmod(tmp_path, 0o755)
    with pytest.raises(ConfigError, match="not a recovery home") as exc:
        config_with_home(tmp_path, tmp_path).ensure_home()
    assert str(tmp_path) in str(exc.value)
    assert mode(tmp_path) == 0o755
    assert not (tmp_path / "artifacts").exists()


def test_a_directory_owned_by_someone_else_is_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "theirs"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    ours = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: ours + 1)  # as if another user ran it
    with pytest.raises(ConfigError, match=f"owned by uid {ours}, not us: refusing"):
        config_with_home(tmp_path, home).ensure_home()
    assert mode(home) == 0o755


def test_a_file_as_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "a-file"
    home.write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        config_with_home(tmp_path, home).ensure_home()


def test_the_shipped_default_home_is_var_beside_recovery_yml(tmp_path: Path) -> None:
    shipped = (ROOT / "recovery.yml").read_text()
    file = tmp_path / "recovery.yml"
    file.write_text(shipped)
    config = load_config(file, environ={})
    assert config.home == tmp_path / "var"
    config.ensure_home()
    assert mode(tmp_path / "var") == 0o700
    (tmp_path / "var" / "recovery.db").write_bytes(b"")
    load_config(file, environ={}).ensure_home()  # the second run finds its own home


def test_a_bad_key_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\nno_such_key: 1\n")
    with pytest.raises(ConfigError, match="no_such_key"):
        load_config(file, environ={})
    file.write_text("home: var\nlock: {lease: 30s, leese: 1s}\n")
    with pytest.raises(ConfigError, match="leese") as exc:
        load_config(file, environ={})
    assert "lock" in str(exc.value)


# --- fleet: the limits every remediation acts under --------------------------------------

def test_fleet_limits_default_to_the_documented_values(tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\n")
    assert load_config(file, environ={}).fleet == FleetLimits(
        forks=5, coalesce_window=1.0, max_in_flight=10, group_share=0.25, group_window=600.0)


def test_the_shipped_fleet_section_says_the_defaults(tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text((ROOT / "recovery.yml").read_text())
    assert load_config(file, environ={}).fleet == FleetLimits()


@pytest.mark.parametrize(("written", "share"), [("50%", 0.5), ("100%", 1.0), (0.1, 0.1),
                                                (1, 1.0), ("12.5%", 0.125)])
def test_fleet_values_are_parsed(tmp_path: Path, written: object, share: float) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\nfleet: {forks: 2, coalesce_window: 250ms, max_in_flight: 3, "
                    f"group_share: {written!r}, group_window: 1h}}\n".replace("'", '"'))
    assert load_config(file, environ={}).fleet == FleetLimits(
        forks=2, coalesce_window=0.25, max_in_flight=3, group_share=share, group_window=3600.0)


@pytest.mark.parametrize(("fleet", "words"), [
    ("{group_share: 25}", "fleet.group_share: 25 must be more than 0 and at most 1"),
    ("{group_share: 0}", "fleet.group_share: 0 must be more than 0"),
    ("{group_share: 0%}", "fleet.group_share: '0%' must be from 1% to 100%"),
    ("{group_share: 150%}", "fleet.group_share: '150%' must be from 1% to 100%"),
    ("{group_share: lots}", "fleet.group_share: 'lots' is not a percentage"),
    ("{group_window: 0s}", "fleet.group_window: '0s' must be more than 0"),
    ("{coalesce_window: soon}", "fleet.coalesce_window: 'soon' is not a duration"),
    ("{max_in_flight: 0}", "fleet/max_in_flight: 0 is less than the minimum of 1"),
    ("{forks: two}", "fleet/forks: 'two' is not of type 'integer'"),
    ("{max_inflight: 3}", "max_inflight"),
])
def test_a_bad_fleet_value_is_a_config_error_naming_it(tmp_path: Path, fleet: str,
                                                       words: str) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text(f"home: var\nfleet: {fleet}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(file, environ={})
    assert words in str(exc.value)


def test_a_group_allows_its_share_rounded_down_but_never_none() -> None:
    limits = FleetLimits(group_share=0.25)
    assert [limits.group_allowance(n) for n in (1, 3, 4, 7, 8, 100)] == [1, 1, 1, 1, 2, 25]
    assert FleetLimits(group_share=0.29).group_allowance(100) == 29   # no float rounding loss


# --- alertmanager: which events go out, at which severity ---------------------------------

def test_outgoing_alerts_default_to_every_event_and_the_original_severities(
        tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\n")
    config = load_config(file, environ={})
    assert config.alert_on == {"recovery": True, "cooldown": True, "degraded_mode": True,
                               "exhaustion": True, "in_progress": True}
    assert config.severity_by_priority == {"critical": "P0", "high": "P1", "medium": "P2",
                                           "low": "P3"}
    assert config.external_url == ""


def test_the_shipped_outgoing_alert_settings_say_the_defaults(tmp_path: Path) -> None:
    from engine.config import Config

    file = tmp_path / "recovery.yml"
    file.write_text((ROOT / "recovery.yml").read_text())
    shipped, default = load_config(file, environ={}), Config(tmp_path, tmp_path, "", tmp_path,
                                                            tmp_path, tmp_path)
    assert shipped.alert_on == default.alert_on
    assert shipped.severity_by_priority == default.severity_by_priority
    assert shipped.external_url == ""


def test_outgoing_alert_settings_are_read_over_the_defaults(tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\nexternal_url: https://recovery.example:9797/\n"
                    "alertmanager: {alert_on: {cooldown: false}, "
                    "severity_by_priority: {critical: page, low: ticket}}\n")
    config = load_config(file, environ={})
    assert config.alert_on["cooldown"] is False and config.alert_on["recovery"] is True
    assert config.severity_by_priority == {"critical": "page", "high": "P1", "medium": "P2",
                                           "low": "ticket"}
    assert config.external_url == "https://recovery.example:9797"


@pytest.mark.parametrize(("alertmanager", "says"), [
    ("{alert_on: {recovered: true}}",
     r"alertmanager/alert_on: .*'recovered' was unexpected.*known events: recovery, "
     "cooldown, degraded_mode, exhaustion, in_progress"),
    ("{alert_on: {cooldown: sometimes}}", r"alertmanager/alert_on/cooldown: 'sometimes' is "
     "not of type 'boolean'"),
    ("{severity_by_priority: {warning: P2}}",
     r"alertmanager/severity_by_priority: .*'warning' was unexpected.*priorities: "
     "critical, high, medium, low"),
    ("{severity_by_priority: {high: 'P 1'}}",
     r"alertmanager/severity_by_priority/high: 'P 1' is not a severity label value"),
    ("{severity_by_priority: {high: 1}}",
     r"alertmanager/severity_by_priority/high: 1 is not a severity label value"),
])
def test_a_bad_outgoing_alert_setting_is_a_clear_config_error(tmp_path: Path,
                                                              alertmanager: str,
                                                              says: str) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text(f"home: var\nalertmanager: {alertmanager}\n")
    with pytest.raises(ConfigError, match=says):
        load_config(file, environ={})


def test_external_url_must_be_an_http_url(tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\nexternal_url: recovery.example:9797\n")
    with pytest.raises(ConfigError, match=r"external_url: 'recovery.example:9797' is not an "
                                          r"http\(s\) URL"):
        load_config(file, environ={})


def test_the_replica_name_comes_from_recovery_replica_then_the_file(tmp_path: Path) -> None:
    from engine.replica import default_replica, replica_of

    file = tmp_path / "recovery.yml"
    file.write_text("replica: db-1\n")
    assert load_config(file, environ={}).replica == "db-1"
    assert load_config(file, environ={"RECOVERY_REPLICA": "db-2"}).replica == "db-2"
    file.write_text("home: var\n")
    unnamed = load_config(file, environ={})
    assert replica_of(unnamed) == default_replica(tmp_path / "var")


def test_the_replica_name_env_then_config_then_the_one_serve_recorded_then_default(
        tmp_path: Path) -> None:
    from engine.replica import (
        REPLICA_FILE,
        default_replica,
        record_serving_replica,
        replica_of,
    )

    file = tmp_path / "recovery.yml"
    file.write_text("home: var\n")
    assert replica_of(load_config(file, environ={})) == default_replica(tmp_path / "var")
    record_serving_replica(load_config(file, environ={"RECOVERY_REPLICA": "served"}))
    assert replica_of(load_config(file, environ={})) == "served"
    file.write_text("home: var\nreplica: configured\n")
    assert replica_of(load_config(file, environ={})) == "configured"
    assert replica_of(load_config(file, environ={"RECOVERY_REPLICA": "env"})) == "env"
    file.write_text("home: var\n")
    (tmp_path / "var" / REPLICA_FILE).write_text("not a name!\n")     # ignored, not used
    assert replica_of(load_config(file, environ={})) == default_replica(tmp_path / "var")


@pytest.mark.parametrize("name", ["", "-lead", "a:b", "a b", "x" * 65])
def test_a_bad_replica_name_is_a_config_error(tmp_path: Path, name: str) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("home: var\n")
    if name == "":
        load_config(file, environ={"RECOVERY_REPLICA": name})   # empty: the default
        return
    with pytest.raises(ConfigError, match="replica"):
        load_config(file, environ={"RECOVERY_REPLICA": name})


def test_artifacts_go_under_the_home_unless_a_shared_directory_is_set(tmp_path: Path) -> None:
    file = tmp_path / "recovery.yml"
    file.write_text("runbooks: runbooks\n")
    env = {"RECOVERY_HOME": str(tmp_path / "home")}
    assert load_config(file, environ=env).artifacts_dir == tmp_path / "home" / "artifacts"
    file.write_text("artifacts_dir: ../common/artifacts\n")     # relative to the file
    config = load_config(file, environ=env)
    assert config.artifacts_dir == (tmp_path / ".." / "common" / "artifacts").resolve()
    file.write_text(f"artifacts_dir: {tmp_path / 'nfs'}\n")
    config = load_config(file, environ=env)
    config.ensure_home()
    assert config.artifacts_dir == tmp_path / "nfs" and mode(tmp_path / "nfs") == 0o700
    assert mode(tmp_path / "home") == 0o700
