from __future__ import annotations

from pathlib import Path

import pytest

from fate_registry import config


def test_embedded_defaults_run_two_parties_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FATE_REGISTRY_CONF", str(tmp_path / "absent.yaml"))
    conf = config.load(None, tmp_path)
    assert str(conf.coordinator.address) == "127.0.0.1:9460"
    assert [p.address.port for p in conf.parties.values()] == [9461, 9462]
    assert set(conf.parties) == {"9999", "10000"}
    assert conf.parties["9999"].model_cache_dir == tmp_path / "parties" / "9999" / "model_local_cache"
    assert conf.coordinator.database.engine == "sqlite"
    assert conf.enable_model_store is False


def test_repository_conf_file_loads() -> None:
    conf = config.load(Path(__file__).parents[2] / "conf" / "service_conf.yaml")
    assert conf.limits.upload_chunk_bytes == 256 * 1024


def test_a_party_is_direct_unless_it_names_a_proxy(tmp_path: Path) -> None:
    conf = config.parse({"parties": {10000: {}, 9999: {"proxy": "10.1.2.3:9370"}}}, None, tmp_path)
    assert conf.parties["10000"].proxy is None
    assert conf.parties["9999"].proxy == config.Address("10.1.2.3", 9370)
    assert conf.coordinator.party_id == "10000"  # the first party, unless set
    assert config.parse({"coordinator": {"party_id": 9999}}, None, tmp_path).coordinator.party_id == "9999"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("coordinator: {address: nohost}", "coordinator.address", "expected host:port"),
        ("parties: {9999: {address: 1.2.3.4:99999}}", "parties.9999.address", "expected host:port"),
        ("parties: []", "parties", "expected a mapping"),
        ("parties: {'a/b': {}}", "parties.a/b", "contains"),
        ("enable_model_store: yes please", "enable_model_store", "expected true or false"),
        ("enable_model_store: true", "enable_model_store", "model_store_address is not set"),
        ("model_store_address: {storage: ftp}", "model_store_address.storage", "expected one of"),
        ("coordinator: {database: {engine: mysql}}", "coordinator.database.name", "required"),
        ("limits: {max_archive_bytes: -1}", "limits.max_archive_bytes", "at least"),
        ("parties: {1: {address: '127.0.0.1:1'}, 2: {address: '127.0.0.1:1'}}", "parties", "share"),
        ("parties: {9999: {proxy: rollsite}}", "parties.9999.proxy", "expected host:port"),
        ("coordinator: {call_timout: 5}", "coordinator.call_timout", "unknown key; did you mean call_timeout?"),
        ("limit: {max_archive_bytes: 5}", "limit", "unknown key; did you mean limits?"),
        ("parties: {9999: {adress: '127.0.0.1:1'}}", "parties.9999.adress", "did you mean address?"),
        ("parties: {9999: {tls: {cafile: ca.pem}}}", "parties.9999.tls.cafile", "unknown key"),
        ("coordinator: {database: {engine: sqlite, user: fate}}", "coordinator.database.user", "mysql only"),
        ("coordinator: {zzz: 1}", "coordinator.zzz", "known: address, call_timeout"),
        ("coordinator: {http: {adress: '127.0.0.1:1'}}", "coordinator.http.adress", "did you mean address?"),
        ("coordinator: {http: {enabled: 1}}", "coordinator.http.enabled", "expected true or false, got 1"),
        ("coordinator: {call_timeout: -5}", "coordinator.call_timeout", "expected a positive number, got -5"),
        ("coordinator: {rpc_workers: '8'}", "coordinator.rpc_workers", "expected an integer, got '8'"),
        ("coordinator: {database: {engine: oracle}}", "coordinator.database.engine", "expected one of sqlite, mysql"),
        ("parties: {9999: {tls: {cert: a.pem}}}", "parties.9999.tls", "cert and key go together"),
    ],
)
def test_bad_conf_names_file_key_and_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "service_conf.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfError) as info:
        config.load(path)
    message = str(info.value)
    assert str(path) in message and key in message and problem in message


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(config.ConfError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("parties: {9999: [unclosed\n")
    with pytest.raises(config.ConfError, match="invalid YAML at line"):
        config.load(path)


def test_database_password_stays_out_of_repr(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("coordinator: {database: {engine: mysql, name: reg, password: s3cret}}")
    conf = config.load(path)
    assert conf.coordinator.database.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(conf)


def test_the_http_section_and_its_secret(tmp_path: Path) -> None:
    http = config.parse({}, None, tmp_path).coordinator.http
    assert (http.enabled, str(http.address), http.upstream, http.authentication.switch) == (
        True,
        "127.0.0.1:9450",
        "",
        False,
    )
    path = tmp_path / "c.yaml"
    path.write_text(
        "coordinator: {http: {upstream: 'http://127.0.0.1:9380',"
        " authentication: {switch: true, http_app_key: app, http_secret_key: s3cret}}}"
    )
    conf = config.load(path)
    assert conf.coordinator.http.upstream == "http://127.0.0.1:9380"
    assert conf.coordinator.http.authentication.http_secret_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(conf)


def test_model_store_settings_stay_out_of_repr(tmp_path: Path) -> None:
    store = {"storage": "mysql", "database": "m", "user": "fate", "host": "127.0.0.1", "password": "s3cret"}
    conf = config.parse({"enable_model_store": True, "model_store_address": store}, None, tmp_path)
    assert conf.model_store is not None and conf.model_store.settings["password"] == "s3cret"
    assert "s3cret" not in repr(conf)
    assert config.parse({"model_store_address": {}}, None, tmp_path).model_store is None


def test_default_ports_avoid_fates_standard_ports(tmp_path: Path) -> None:
    """A registry runs beside a FATE deployment: none of its default ports is one of FATE's."""
    fate_ports = {9360, 9380, 9370, 8000, 8059, 8879, 8080}
    conf = config.parse({"parties": {str(9000 + i): {} for i in range(64)}}, None, tmp_path)
    ports = {conf.coordinator.address.port} | {p.address.port for p in conf.parties.values()}
    assert not ports & fate_ports
