"""Credentials: the webhook token posts alerts, named operators do the rest; never optional."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from engine.config import ConfigError, load_config
from engine.credentials import Credentials, hash_token, load_credentials

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
    creds = Credentials(WEBHOOK, {"alice": hash_token(ALICE)})
    object.__setattr__(creds, "operators", {"alice": hash_token(WEBHOOK)})  # bypass the check
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


def test_the_first_start_generates_both_tokens_once(config):
    assert not config.home.exists()
    creds, generated = load_credentials(config, environ={}, create=True)
    assert set(generated) == {"webhook", "operator"}
    assert generated["webhook"] != generated["operator"]
    assert len(generated["webhook"]) >= 40
    assert creds.webhook_ok(f"Bearer {generated['webhook']}")
    assert creds.operator(f"Bearer {generated['operator']}") == "operator"
    for name in ("webhook.token", "operator.token"):
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
    assert set(generated) == {"webhook"}
    assert not (config.home / "operator.token").exists()
    assert creds.operator(f"Bearer {ALICE}") == "operator"


def test_create_keeps_a_token_given_in_the_environment(config):
    creds, generated = load_credentials(config, environ={"RECOVERY_WEBHOOK_TOKEN": WEBHOOK},
                                        create=True)
    assert set(generated) == {"operator"}
    assert not (config.home / "webhook.token").exists()
    assert creds.webhook_ok(f"Bearer {WEBHOOK}")


def test_the_first_start_banner_never_offers_a_wildcard_address():
    """Bound to every address, the banner cannot know which one Alertmanager reaches:
    it says so instead of offering http://0.0.0.0 (which no Alertmanager can post to);
    its curl lines, run on this machine, use loopback."""
    from engine.cli.serve import first_start
    from engine.service import ServiceSettings

    text = first_start(ServiceSettings(host="0.0.0.0", port=9797),
                       {"webhook": "w-token", "operator": "o-token"}, "/var/x")
    assert "url: http://<this host's address>:9797/api/v1/alerts" in text
    assert "0.0.0.0" not in text
    assert "curl -s http://127.0.0.1:9797/healthz" in text
    local = first_start(ServiceSettings(host="127.0.0.1", port=9797), {"webhook": "w"}, "/x")
    assert "url: http://127.0.0.1:9797/api/v1/alerts" in local
