"""The ``tls`` sections of the service conf and the CLI's TLS settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from client import settings
from fate_registry import config
from fate_registry.errors import RegistryError


def _parse(text: str) -> config.ServiceConf:
    return config.parse(yaml.safe_load(text), Path("service_conf.yaml"))


def test_plain_text_is_the_default_everywhere() -> None:
    conf = _parse("{}")
    assert not conf.coordinator.tls.enabled
    assert all(not p.tls.enabled and not p.serving_tls.enabled for p in conf.parties.values())


def test_an_agent_admits_the_coordinator_by_default_and_the_conf_can_name_another() -> None:
    conf = _parse(
        """
        parties:
          9999: {tls: {cert: a.pem, key: a.key, ca: ca.pem, require_client_cert: true}}
          10000: {tls: {cert: b.pem, key: b.key, ca: ca.pem, require_client_cert: true, allow: [coord-1]}}
        """
    )
    assert conf.parties["9999"].tls.allow == (config.COORDINATOR_IDENTITY,)
    assert conf.parties["10000"].tls.allow == ("coord-1",)
    assert conf.parties["9999"].tls.cert == Path("a.pem")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("coordinator: {tls: {cert: c.pem}}", "coordinator.tls", "cert and key go together"),
        (
            "coordinator: {tls: {cert: c.pem, key: c.key, require_client_cert: true}}",
            "coordinator.tls.ca",
            "needs the ca",
        ),
        (
            "coordinator: {tls: {cert: c.pem, key: c.key, ca: ca.pem, require_client_cert: true}}",
            "coordinator.tls.allow",
            "names of the clients allowed",
        ),
        ("parties: {9999: {tls: {allow: coordinator}}}", "parties.9999.tls.allow", "expected a list"),
        (
            "parties: {9999: {serving_tls: {require_client_cert: 1}}}",
            "parties.9999.serving_tls.require_client_cert",
            "true or false",
        ),
    ],
)
def test_a_bad_tls_section_names_its_key(text: str, key: str, problem: str) -> None:
    with pytest.raises(config.ConfError) as info:
        _parse(text)
    assert f"service_conf.yaml: {key}: " in str(info.value) and problem in str(info.value)


def test_the_cli_reads_its_tls_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"FATE_REGISTRY_ADDRESS": "127.0.0.1:1", "FATE_REGISTRY_CLIENT_CONF": str(tmp_path / "none.json")}
    assert not settings.resolve(env=env).tls.enabled
    chosen = settings.resolve(
        env={
            **env,
            "FATE_REGISTRY_TLS_CA": "ca.pem",
            "FATE_REGISTRY_TLS_CERT": "me.pem",
            "FATE_REGISTRY_TLS_KEY": "me.key",
        }
    )
    assert chosen.tls == config.TlsConf(cert=Path("me.pem"), key=Path("me.key"), ca=Path("ca.pem"))
    with pytest.raises(RegistryError) as info:
        settings.resolve(env={**env, "FATE_REGISTRY_TLS_CERT": "me.pem"})
    assert "go together" in info.value.message
