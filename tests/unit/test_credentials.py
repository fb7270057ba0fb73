"""Credentials: each has one role (the webhook token posts alerts, metrics readers read
/metrics, named operators do the rest); issued tokens are taken at once; never optional."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from engine.config import ConfigError, load_config
from engine.security.credentials import Credentials, hash_token, load_credentials

WEBHOOK = "webhook-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefghij"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def creds() -> Credentials:
    return Credentials(WEBHOOK, {"alice": hash_token(ALICE), "bob": hash_token(BOB)})


@pytest.fixture
def config(engine_env):
    return load_config(engine_env.config_path, environ={})


# -- checking a header ------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    f"Bearer {WEBHOOK}",
    f"bearer {WEBHOOK}",                       # the scheme is case-insensitive
    f"  Bearer   {WEBHOOK}  ",
    basic("alertmanager", WEBHOOK),            # http_config.basic_auth: any user name
    basic("", WEBHOOK),
])
def test_the_webhook_token_as_alertmanager_sends_it(creds, header):
    assert creds.webhook_ok(header)


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", f"Token {WEBHOOK}", WEBHOOK,
    f"Bearer {WEBHOOK[:-1]}",                  # a prefix
    f"Bearer {WEBHOOK}x",                      # a longer token
    f"Bearer {ALICE}",                         # an operator token posts no alerts
    basic("alertmanager", "wrong"),
    basic(WEBHOOK, ""),                        # the token as the user name is not the password
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(WEBHOOK.encode()).decode(),   # no ':' at all
    "Basic " + base64.b64encode(b"user:\xff\xfe").decode(),   # not UTF-8
    "Bearer t\u00f6ken-with-non-ascii",
])
def test_anything_else_is_not_the_webhook_token(creds, header):
    assert not creds.webhook_ok(header)


def test_an_operator_is_named_by_its_token(creds):
    assert creds.operator(f"Bearer {ALICE}") == "alice"
    assert creds.operator(f"Bearer {BOB}") == "bob"
    assert creds.operator(basic("alice", ALICE)) == "alice"


@pytest.mark.parametrize("header", [
    None, f"Bearer {WEBHOOK}", basic("alice", WEBHOOK), basic("operator", WEBHOOK),
    f"Bearer {ALICE[:-1]}", basic("bob", ALICE),   # alice's token under bob's name
    basic("mallory", ALICE), "Bearer " + hash_token(ALICE),   # the hash is not the token
])
def test_no_operator_for_other_tokens_names_or_the_webhook_token(creds, header):
    assert creds.operator(header) is None


def test_the_webhook_token_is_refused_as_an_operator_token_even_if_configured(creds):
    with pytest.raises(ConfigError, match="webhook token"):
        Credentials(WEBHOOK, {"alice": hash_token(WEBHOOK)})


def test_the_webhook_token_is_no_operator_even_if_the_hashes_were_changed_later():
    from engine.security.credentials import Credential

    creds = Credentials(WEBHOOK, {"alice": hash_token(ALICE)})
    clash = Credential("alice", "operator", hash_token(WEBHOOK))
    object.__setattr__(creds, "_configured", (*creds.configured(), clash))  # past the check
    assert creds.operator(f"Bearer {WEBHOOK}") is None
    assert creds.operator(basic("alice", WEBHOOK)) is None


@pytest.mark.parametrize("operators, reason", [
    ({"alice": ALICE}, "sha256"),                              # the token itself, not a hash
    ({"alice": "sha256:" + "0" * 63}, "sha256"),
    ({"alice": "md5:" + "0" * 32}, "sha256"),
    ({"ali:ce": hash_token(ALICE)}, "operator name"),          # ':' breaks basic auth
    ({"": hash_token(ALICE)}, "operator name"),
])
def test_operator_hashes_and_names_are_checked(operators, reason):
    with pytest.raises(ConfigError, match=reason):
        Credentials(WEBHOOK, operators)


def test_hashes_in_upper_case_hex_match(creds):
    upper = "sha256:" + hash_token(ALICE).split(":", 1)[1].upper()
    assert Credentials(WEBHOOK, {"alice": upper}).operator(f"Bearer {ALICE}") == "alice"


# -- loading ---------------------------------------------------------------------------


def test_credentials_are_never_optional(config):
    with pytest.raises(ConfigError, match="no webhook token"):
        load_credentials(config, environ={})


def test_tokens_from_the_environment(config):
    creds, generated = load_credentials(
        config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK, "RECOVERY_API_TOKEN": ALICE})
    assert generated == {}
    assert creds.webhook_ok(f"Bearer {WEBHOOK}")
    assert creds.operator(f"Bearer {ALICE}") == "operator"
    assert creds.operator(basic("operator", ALICE)) == "operator"


def test_tokens_from_files_in_the_home(config):
    config.ensure_home()
    for name, token in (("webhook.token", WEBHOOK), ("operator.token", ALICE)):
        path = config.home / name
        path.write_text(token + "\n")
        path.chmod(0o600)
    creds, generated = load_credentials(config, environ={})
    assert generated == {}
    assert creds.webhook_ok(f"Bearer {WEBHOOK}")
    assert creds.operator(f"Bearer {ALICE}") == "operator"


def test_a_token_file_others_can_read_is_refused(config):
    config.ensure_home()
    path = config.home / "webhook.token"
    path.write_text(WEBHOOK)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials(config, environ={})


@pytest.mark.parametrize("token", ["short", "has a space in it 0123456789"])
def test_weak_or_malformed_tokens_are_refused(config, token):
    with pytest.raises(ConfigError, match="RECOVERY_WEBHOOK_TOKEN"):
        load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": token})


def test_named_operators_from_the_configuration(engine_env):
    engine_env.write_config(operators=f'{{alice: "{hash_token(ALICE)}"}}')
    config = load_config(engine_env.config_path, environ={})
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK,
                                                 "RECOVERY_API_TOKEN": BOB})
    assert creds.operator(f"Bearer {ALICE}") == "alice"
    assert creds.operator(f"Bearer {BOB}") == "operator"


def test_a_plain_token_in_the_configuration_is_refused(engine_env):
    engine_env.write_config(operators=f"{{alice: {ALICE}}}")
    config = load_config(engine_env.config_path, environ={})
    with pytest.raises(ConfigError, match="sha256"):
        load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})


def test_the_same_value_for_both_tokens_is_refused(config):
    with pytest.raises(ConfigError, match="webhook token"):
        load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK,
                                          "RECOVERY_API_TOKEN": WEBHOOK})


def test_the_first_start_generates_its_three_tokens_once(config):
    assert not config.home.exists()
    creds, generated = load_credentials(config, environ={}, create=True)
    assert set(generated) == {"webhook", "operator", "metrics"}
    assert len(set(generated.values())) == 3
    assert generated["webhook"] != generated["operator"]
    assert len(generated["webhook"]) >= 40
    assert creds.webhook_ok(f"Bearer {generated['webhook']}")
    assert creds.operator(f"Bearer {generated['operator']}") == "operator"
    assert creds.identify(f"Bearer {generated['metrics']}").role == "metrics"
    for name in ("webhook.token", "operator.token", "metrics.token"):
        mode = stat.S_IMODE(os.stat(config.home / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert stat.S_IMODE(os.stat(config.home).st_mode) == 0o700
    # The next start reads them back and generates nothing.
    again, generated_again = load_credentials(config, environ={}, create=True)
    assert generated_again == {}
    assert again.webhook_ok(f"Bearer {generated['webhook']}")
    assert again.operator(f"Bearer {generated['operator']}") == "operator"
    # And without create, they are found too.
    assert load_credentials(config, environ={})[0] == again


def test_create_makes_no_operator_token_when_one_is_configured(config):
    creds, generated = load_credentials(config, environ={"RECOVERY_API_TOKEN": ALICE},
                                        create=True)
    assert set(generated) == {"webhook", "metrics"}
    assert not (config.home / "operator.token").exists()
    assert creds.operator(f"Bearer {ALICE}") == "operator"


def test_create_keeps_a_token_given_in_the_environment(config):
    creds, generated = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK},
                                        create=True)
    assert set(generated) == {"operator", "metrics"}
    assert not (config.home / "webhook.token").exists()
    assert creds.webhook_ok(f"Bearer {WEBHOOK}")


def test_the_first_start_banner_never_offers_a_wildcard_address():
    """Bound to every address, the banner cannot know which one Alertmanager reaches:
    it says so instead of offering http://0.0.0.0 (which no Alertmanager can post to);
    its curl lines, run on this machine, use loopback."""
    from engine.cli.serve import first_start
    from engine.service.supervisor import ServiceSettings

    text = first_start(ServiceSettings(host="0.0.0.0", port=9797),
                       {"webhook": "w-token", "operator": "o-token"}, "/var/x",
                       on_terminal=True)
    assert "url: http://<this host's address>:9797/api/v1/alerts" in text
    assert "0.0.0.0" not in text
    assert "curl -s http://127.0.0.1:9797/healthz" in text
    local = first_start(ServiceSettings(host="127.0.0.1", port=9797), {"webhook": "w"}, "/x",
                        on_terminal=True)
    assert "url: http://127.0.0.1:9797/api/v1/alerts" in local


# -- roles and issued tokens -----------------------------------------------------------------

PROM = "prometheus-token-0123456789abcdef"


def issued(home, name: str, role: str, token: str):
    from engine.security.tokens import TOKENS_FILE, IssuedToken, TokenFile

    tokens = TokenFile(home / TOKENS_FILE)
    tokens.add(IssuedToken(name=name, role=role, hash=hash_token(token)))
    return tokens


def test_a_metrics_token_is_a_metrics_reader_and_nothing_else(config):
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK,
                                                 "RECOVERY_METRICS_TOKEN": PROM})
    found = creds.identify(f"Bearer {PROM}")
    assert (found.name, found.role) == ("metrics", "metrics")
    assert not creds.webhook_ok(f"Bearer {PROM}") and creds.operator(f"Bearer {PROM}") is None
    assert creds.identify(basic("metrics", PROM)).role == "metrics"
    assert creds.identify(basic("prometheus", PROM)) is None      # a named token: its name


def test_a_token_issued_after_the_start_is_taken_at_once_and_a_removed_one_refused(config):
    config.ensure_home()
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})
    assert creds.identify(f"Bearer {PROM}") is None
    tokens = issued(config.home, "prom", "metrics", PROM)          # another process, say
    assert creds.identify(f"Bearer {PROM}").name == "prom"
    issued(config.home, "carol", "operator", BOB)
    assert creds.operator(f"Bearer {BOB}") == "carol"
    assert creds.operator(basic("carol", BOB)) == "carol"
    assert creds.webhook_ok(basic("anyone", WEBHOOK))              # the webhook's: any user
    assert tokens.remove("prom").role == "metrics"
    assert creds.identify(f"Bearer {PROM}") is None
    assert "prom" not in (config.home / "tokens.json").read_text().replace("prometheus", "")
    assert PROM not in (config.home / "tokens.json").read_text()   # hashes only


def test_a_taken_name_is_refused_and_a_repeated_token_ignored(config, caplog):
    config.ensure_home()
    issued(config.home, "prom", "metrics", PROM)
    with pytest.raises(ConfigError, match="exists already"):
        issued(config.home, "prom", "operator", ALICE)
    issued(config.home, "sneaky", "operator", WEBHOOK)             # the webhook's own token
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})
    assert creds.identify(f"Bearer {WEBHOOK}").role == "webhook"
    assert "sneaky" not in [c.name for c in creds.all()]
    assert "repeats the name or the token" in caplog.text


def test_a_tokens_file_others_can_read_stops_a_start_and_is_refused_while_running(config,
                                                                                 caplog):
    config.ensure_home()
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})
    issued(config.home, "prom", "metrics", PROM)
    assert creds.identify(f"Bearer {PROM}") is not None
    (config.home / "tokens.json").chmod(0o644)
    assert creds.identify(f"Bearer {PROM}") is None                 # refused, never guessed
    assert "chmod 600" in caplog.text
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})


def test_no_metrics_token_is_generated_when_metrics_are_open_or_one_is_issued(engine_env):
    engine_env.write_config(webhook="{metrics_auth: false}")
    config = load_config(engine_env.config_path, environ={})
    assert set(load_credentials(config, environ={}, create=True)[1]) == {"webhook",
                                                                         "operator"}
    engine_env.write_config()
    config = load_config(engine_env.config_path, environ={})
    issued(config.home, "prom", "metrics", PROM)
    assert load_credentials(config, environ={}, create=True)[1] == {}
    assert not (config.home / "metrics.token").exists()


@pytest.fixture
def cli(engine_env, capsys):
    """``recovery ...`` as alice, in this process: (exit code, stdout, stderr)."""
    from engine.cli import main

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(engine_env.config_path), "--as", "alice", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return cli


def test_recovery_token_add_list_remove(engine_env, cli):
    import json

    code, printed, _ = cli("token", "add", "grafana-agent", "--role", "metrics")
    assert code == 0 and "credentials_file" in printed and "shown this once" in printed
    token = printed.split("\n\n")[1].strip()
    assert len(token) >= 40
    config = load_config(engine_env.config_path, environ={})
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})
    assert creds.identify(f"Bearer {token}").role == "metrics"
    for taken in ("grafana-agent", "webhook", "operator", "metrics"):
        assert cli("token", "add", taken, "--role", "operator")[0] == 2
    assert cli("token", "add", "bad:name", "--role", "operator")[0] == 2
    code, listed, _ = cli("token", "list", "--json")
    assert json.loads(listed)[0]["name"] == "grafana-agent" and "sha256" not in listed
    code, printed, _ = cli("token", "list")
    assert "grafana-agent" in printed and "metrics" in printed and "alice" in printed
    assert cli("token", "remove", "grafana-agent")[0] == 0
    assert creds.identify(f"Bearer {token}") is None
    code, _, err = cli("token", "remove", "grafana-agent")
    assert code == 2 and "no issued token" in err
    events = [(e.action, e.actor, e.detail) for e in engine_env.context().store.list_events()
              if e.action.startswith("token_")]
    assert events == [("token_remove", "alice", {"name": "grafana-agent", "role": "metrics"}),
                      ("token_add", "alice", {"name": "grafana-agent", "role": "metrics"})]


def test_an_app_token_names_the_one_component_it_may_trigger(engine_env, cli):
    """``--role app`` needs ``--component`` naming a known component (exit 2 otherwise);
    the tokens file keeps it beside the hash and the credential carries it; another role
    takes no component. A viewer token is a viewer."""
    import json

    engine_env.runbook("shop-cache", "component: shop\nstrategies: [{name: a, action: test.ok}]\n")

    code, _, err = cli("token", "add", "shop", "--role", "app")
    assert code == 2 and "--component" in err
    code, _, err = cli("token", "add", "shop", "--role", "app", "--component", "nope")
    assert code == 2 and "nope" in err
    assert cli("token", "add", "v", "--role", "viewer", "--component", "shop")[0] == 2
    code, printed, _ = cli("token", "add", "shop", "--role", "app", "--component",
                           "shop-cache", "--json")   # a runbook names its component
    assert code == 0
    app = json.loads(printed)
    assert (app["role"], app["component"]) == ("app", "shop")
    code, printed, _ = cli("token", "add", "vera", "--role", "viewer", "--json")
    viewer = json.loads(printed)
    assert "component" not in viewer
    config = load_config(engine_env.config_path, environ={})
    stored = json.loads((config.home / "tokens.json").read_text())["tokens"]
    assert [(t["name"], t.get("component")) for t in stored] == [("shop", "shop"),
                                                                 ("vera", None)]
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})
    found = creds.identify(f"Bearer {app['token']}")
    assert (found.name, found.role, found.component) == ("shop", "app", "shop")
    assert creds.identify(f"Bearer {viewer['token']}").role == "viewer"
    code, listed, _ = cli("token", "list")
    assert "COMPONENT" in listed and "shop" in listed


def test_an_app_token_without_a_component_in_the_file_is_ignored(config, caplog):
    from engine.security.tokens import TOKENS_FILE, IssuedToken, TokenFile

    config.ensure_home()
    TokenFile(config.home / TOKENS_FILE).add(IssuedToken("bare", "app", hash_token(PROM)))
    creds, _ = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK})
    assert creds.identify(f"Bearer {PROM}") is None
    assert "names no component" in caplog.text


def test_a_start_that_generates_only_the_metrics_token_prints_how_to_scrape():
    """An upgraded home has its webhook and operator tokens: only the metrics one is new,
    and the banner says how Prometheus sends it, nothing about Alertmanager."""
    from engine.cli.serve import first_start
    from engine.service.supervisor import ServiceSettings

    text = first_start(ServiceSettings(host="127.0.0.1", port=9797), {"metrics": "m-token"},
                       "/var/x", on_terminal=True)
    assert "first start" not in text and "receivers:" not in text
    assert "metrics token" in text and "m-token" in text
    assert 'targets: ["127.0.0.1:9797"]' in text and "credentials_file:" in text
    assert "curl -s -H 'Authorization: Bearer m-token' http://127.0.0.1:9797/metrics" in text


def test_the_first_start_banner_names_the_console_and_every_role():
    """The operator token logs into the console too, and `token add` takes every role:
    a banner that named three roles and /api/v1/* only sent a newcomer looking."""
    from engine.cli.serve import first_start
    from engine.security.roles import ROLES
    from engine.service.supervisor import ServiceSettings

    text = first_start(ServiceSettings(host="127.0.0.1", port=9797),
                       {"webhook": "w-token", "operator": "o-token"}, "/var/x",
                       on_terminal=False)
    assert "the console at http://127.0.0.1:9797/" in text
    [add] = [line for line in text.splitlines() if "token add NAME --role" in line]
    assert all(role in add for role in ROLES), add
