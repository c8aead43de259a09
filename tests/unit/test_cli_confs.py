"""Conf files, option strings and coordinator address resolution of the ``flow`` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client import confs, settings
from client.cli import main
from fate_registry import config
from fate_registry.errors import Reason, RegistryError

MODEL_ID = "arbiter-10000#guest-9999#host-10000#model"
VERSION = "202006122009345696314"


def write_conf(directory: Path, data: Any, name: str = "conf.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def single_party(**extra: Any) -> dict[str, Any]:
    return {"role": "guest", "party_id": 9999, "model_id": MODEL_ID, "model_version": VERSION, **extra}


# Reading conf files -------------------------------------------------------------------------------


def test_missing_conf_file_is_retcode_100_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(RegistryError) as caught:
        confs.read_conf(path)
    assert caught.value.fate_retcode == 100
    assert str(path) in caught.value.message


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "role": "guest",\n  "party_id": ,\n}\n', encoding="utf-8")
    with pytest.raises(RegistryError) as caught:
        confs.read_conf(path)
    assert caught.value.fate_retcode == 100
    assert "line 3, column 15" in caught.value.message
    assert str(path) in caught.value.message


def test_a_conf_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="must hold a JSON object, got a list"):
        confs.read_conf(write_conf(tmp_path, [1, 2]))


def test_missing_keys_are_all_named_in_fates_words(tmp_path: Path) -> None:
    conf = confs.read_conf(write_conf(tmp_path, {"role": "guest", "model_id": MODEL_ID}))
    with pytest.raises(RegistryError) as caught:
        confs.store_request(conf)
    assert caught.value.reason is Reason.MISSING_ARGUMENT
    assert caught.value.fate_retcode == 101
    assert caught.value.message == "required parameters are missing: party_id,model_version; "


def test_nested_missing_keys_carry_their_dotted_path() -> None:
    conf = confs.Conf(
        {
            "initiator": {"role": "guest", "party_id": 9999},
            "role": {"guest": [9999]},
            "job_parameters": {"model_id": MODEL_ID},
        }
    )
    with pytest.raises(RegistryError, match=r"missing: job_parameters\.model_version; "):
        confs.load_request(conf, "")
    conf = confs.Conf({"initiator": {"role": "guest"}, "role": {}, "job_parameters": single_party()})
    with pytest.raises(RegistryError, match=r"missing: initiator\.party_id; "):
        confs.load_request(conf, "")


def test_missing_keys_nested_or_not_come_in_one_error() -> None:
    conf = confs.Conf({"initiator": {"role": "guest"}, "job_parameters": {"model_id": MODEL_ID}})
    with pytest.raises(RegistryError) as caught:
        confs.load_request(conf, "")
    assert (
        caught.value.message
        == "required parameters are missing: initiator.party_id,role,job_parameters.model_version; "
    )


def test_keys_a_command_does_not_read_are_left_alone() -> None:
    """FATE's confs carry more keys than a command reads (a job's whole runtime conf, say)."""
    request = confs.store_request(confs.Conf(single_party(dsl_version=2, job_parameters={"common": {}})))
    assert request.model.model_id == MODEL_ID


@pytest.mark.parametrize("party_id", [9999, "9999"])
def test_party_ids_may_be_ints_or_strings(party_id: int | str) -> None:
    request = confs.store_request(confs.Conf(single_party(party_id=party_id, force_update=True)))
    assert request.model.party_id == "9999"
    assert request.force_update is True


def test_a_party_id_that_is_no_whole_number_says_what_is_accepted() -> None:
    with pytest.raises(RegistryError) as info:
        confs.store_request(confs.Conf(single_party(party_id=9999.5)))
    assert info.value.message == "party_id must be a string or a whole number, got a number (9999.5)"


MIGRATE_CONF = {
    "job_parameters": {"federated_mode": "SINGLE"},
    "role": {"guest": [9999], "arbiter": [10000], "host": [10000]},
    "execute_party": {"guest": [9999]},
    "migrate_initiator": {"role": "guest", "party_id": 99},
    "migrate_role": {"guest": [99], "arbiter": [100], "host": [100]},
    "model_id": MODEL_ID,
    "model_version": VERSION,
}


def test_role_maps_carry_string_party_ids() -> None:
    roles = confs.migrate_request(
        confs.Conf({**MIGRATE_CONF, "role": {"guest": [9999], "host": ["10000", 10001]}})
    ).role
    assert {role: list(parties.party_ids) for role, parties in roles.items()} == {
        "guest": ["9999"],
        "host": ["10000", "10001"],
    }


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"role": {"guest": 9999}}, "role.guest must be a list of strings, got a number"),
        ({"role": {"guest": [True]}}, "role.guest must be a list of strings, got a list"),
        ({"role": ["guest"]}, "role must be an object, got a list"),
    ],
)
def test_bad_role_maps_are_named(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(RegistryError, match=problem):
        confs.migrate_request(confs.Conf({**MIGRATE_CONF, **data}))


def test_force_update_accepts_fates_0_and_1_but_not_words() -> None:
    assert confs.store_request(confs.Conf(single_party(force_update=1))).force_update is True
    assert confs.store_request(confs.Conf(single_party(force_update=0))).force_update is False
    assert confs.store_request(confs.Conf(single_party())).force_update is False
    with pytest.raises(RegistryError, match="force_update must be true or false, got a string"):
        confs.store_request(confs.Conf(single_party(force_update="yes")))


# Single-party builders ----------------------------------------------------------------------------


def test_import_resolves_a_relative_file_against_the_current_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir, cwd = tmp_path / "confs", tmp_path / "cwd"
    conf_dir.mkdir()
    cwd.mkdir()
    (conf_dir / "model.zip").write_bytes(b"in conf dir")
    monkeypatch.chdir(cwd)
    conf = confs.read_conf(write_conf(conf_dir, single_party(file="model.zip", sha256="ab" * 32)))
    assert confs.import_spec(conf).file == (conf_dir / "model.zip").absolute()
    (cwd / "model.zip").write_bytes(b"in cwd")
    spec = confs.import_spec(conf)
    assert spec.file == cwd / "model.zip"
    assert spec.target.party_id == "9999"
    assert spec.sha256 == "ab" * 32
    assert spec.force_update is False


def test_import_of_a_missing_file_names_every_place_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    conf = confs.read_conf(write_conf(tmp_path, single_party(file="nowhere.zip")))
    with pytest.raises(RegistryError) as caught:
        confs.import_spec(conf)
    assert caught.value.fate_retcode == 100
    assert caught.value.message.startswith("Import model failed. The file is obtained from the fate flow client")
    assert str(tmp_path / "nowhere.zip") in caught.value.message


def test_import_without_file_uses_fates_message() -> None:
    with pytest.raises(RegistryError, match="Please specify the valid model file path"):
        confs.import_spec(confs.Conf(single_party()))


def test_export_makes_output_path_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = confs.export_spec(confs.Conf(single_party(output_path="out")))
    assert spec.output_dir == tmp_path / "out"
    assert spec.model.model_version == VERSION
    with pytest.raises(RegistryError, match="missing: output_path; "):
        confs.export_spec(confs.Conf(single_party()))


def test_restore_carries_the_expected_hash() -> None:
    request = confs.restore_request(confs.Conf(single_party(sha256="cd" * 32)))
    assert request.sha256 == "cd" * 32
    assert request.model.role == "guest"


def test_homo_deploy_reads_the_kubeconfig_into_the_parameters(tmp_path: Path) -> None:
    (tmp_path / "kube.yaml").write_text("apiVersion: v1\n", encoding="utf-8")
    data = single_party(
        service_id="sklearn-lr",
        component_name="homo_lr_0",
        deployment_type="kfserving",
        deployment_parameters={"namespace": "default", "config_file": "kube.yaml", "replace": False},
    )
    request = confs.homo_deploy_request(confs.read_conf(write_conf(tmp_path, data)))
    assert json.loads(request.deployment_parameters_json) == {
        "namespace": "default",
        "replace": False,
        "config_file_content": "apiVersion: v1\n",
    }
    assert (request.service_id, request.component_name, request.deployment_type) == (
        "sklearn-lr",
        "homo_lr_0",
        "kfserving",
    )


def test_homo_deploy_requires_fates_keys() -> None:
    with pytest.raises(RegistryError, match="missing: service_id,component_name,deployment_type,deployment_parameters"):
        confs.homo_deploy_request(confs.Conf(single_party()))


# Multi-party builders -----------------------------------------------------------------------------

LOAD_CONF = {
    "initiator": {"party_id": "10000", "role": "guest"},
    "role": {"guest": ["10000"], "host": [10000], "arbiter": ["10000"]},
    "job_parameters": {"model_id": MODEL_ID, "model_version": VERSION, "use_transfer_url_on_serving": True},
}


def test_load_from_conf() -> None:
    request = confs.load_request(confs.Conf(LOAD_CONF), "")
    assert request.initiator.role == "guest"
    assert request.initiator.party_id == "10000"
    assert list(request.role["host"].party_ids) == ["10000"]
    assert (request.model_id, request.model_version) == (MODEL_ID, VERSION)
    assert request.use_transfer_url_on_serving is True
    assert request.job_id == ""


def test_load_wants_exactly_one_of_conf_and_job_id() -> None:
    assert confs.load_request(None, "202111091122168817080").job_id == "202111091122168817080"
    with pytest.raises(RegistryError, match="No arguments received") as caught:
        confs.load_request(None, "")
    assert caught.value.fate_retcode == 100
    with pytest.raises(RegistryError, match="do not provide job id and conf path at the same time"):
        confs.load_request(confs.Conf(LOAD_CONF), "202111091122168817080")


def test_bind_with_a_job_id_needs_only_the_service() -> None:
    request = confs.bind_request(confs.Conf({"service_id": "123", "servings": ["127.0.0.1:8000"]}), "2021")
    assert (request.job_id, request.service_id, list(request.servings)) == ("2021", "123", ["127.0.0.1:8000"])
    assert not request.HasField("initiator")
    with pytest.raises(RegistryError, match="missing: initiator,role,job_parameters; "):
        confs.bind_request(confs.Conf({"service_id": "123"}), "")


def test_migrate_maps_every_key() -> None:
    data = dict(MIGRATE_CONF)
    request = confs.migrate_request(confs.Conf(data))
    assert list(request.migrate_role["guest"].party_ids) == ["99"]
    assert list(request.execute_party) == ["guest"]
    assert request.migrate_initiator.party_id == "99"
    assert request.unify_model_version == ""
    del data["execute_party"], data["migrate_initiator"]
    with pytest.raises(RegistryError, match="missing: migrate_initiator,execute_party; "):
        confs.migrate_request(confs.Conf(data))


# Deploy options -----------------------------------------------------------------------------------


def test_component_lists_as_fate_writes_them() -> None:
    assert confs.parse_cpn_list("reader_0, data_transform_0,\nhetero_lr_0") == [
        "reader_0",
        "data_transform_0",
        "hetero_lr_0",
    ]
    assert confs.parse_cpn_list('["reader_0", "hetero_lr_0",]') == ["reader_0", "hetero_lr_0"]
    with pytest.raises(RegistryError, match="should not contain"):
        confs.parse_cpn_list("reader_0, a/b")


def test_checkpoint_options_split_at_the_last_colon() -> None:
    choice = confs.parse_checkpoints(["cpn:a:12"], ["hetero_lr_0:epoch:3"])
    assert choice.step_index == {"cpn:a": 12}
    assert choice.step_name == {"hetero_lr_0:epoch": "3"}
    with pytest.raises(RegistryError, match="Duplicated component name: cpn"):
        confs.parse_checkpoints(["cpn:1"], ["cpn:foo"])
    with pytest.raises(RegistryError, match="integer step index"):
        confs.parse_checkpoints(["cpn:foo"], [])
    with pytest.raises(RegistryError, match="expects <component name>:<step>"):
        confs.parse_checkpoints([], ["nocolon"])


def test_deploy_request_from_files(tmp_path: Path) -> None:
    (tmp_path / "cpn.txt").write_text("[reader_0, hetero_lr_0]\n", encoding="utf-8")
    request = confs.deploy_request(MODEL_ID, VERSION, cpn_path=tmp_path / "cpn.txt", step_index=["hetero_lr_0:3"])
    assert list(request.cpn_list) == ["reader_0", "hetero_lr_0"]
    assert dict(request.cpn_step_index) == {"hetero_lr_0": 3}
    (tmp_path / "dsl.json").write_text('{"components": {', encoding="utf-8")
    with pytest.raises(RegistryError, match=r"predict DSL file .* is not valid JSON: .* line 1, column 17"):
        confs.deploy_request(MODEL_ID, VERSION, dsl_path=tmp_path / "dsl.json")


# Address resolution -------------------------------------------------------------------------------


@pytest.fixture
def service_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A service conf naming the coordinator 10.0.0.4:9360, found through $FATE_REGISTRY_CONF."""
    path = tmp_path / "service_conf.yaml"
    path.write_text("coordinator:\n  address: 10.0.0.4:9360\n", encoding="utf-8")
    monkeypatch.setenv("FATE_REGISTRY_CONF", str(path))
    return path


def test_address_resolution_order(tmp_path: Path, service_conf: Path) -> None:
    saved = tmp_path / "flow.json"
    env = {settings.CLIENT_CONF_ENV: str(saved)}
    assert settings.resolve(None, env).address == "10.0.0.4:9360"
    settings.save({"ip": "10.0.0.3", "port": 9360}, env)
    assert settings.resolve(None, env).address == "10.0.0.3:9360"
    env[settings.ADDRESS_ENV] = "10.0.0.2:9360"
    assert settings.resolve(None, env).address == "10.0.0.2:9360"
    assert settings.resolve("10.0.0.1:9360", env).address == "10.0.0.1:9360"


def test_embedded_default_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FATE_REGISTRY_CONF", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./conf/service_conf.yaml here
    assert settings.resolve(None, {settings.CLIENT_CONF_ENV: str(tmp_path / "none.json")}).address == "127.0.0.1:9460"


def test_saved_service_conf_path(tmp_path: Path, service_conf: Path) -> None:
    env = {settings.CLIENT_CONF_ENV: str(tmp_path / "flow.json")}
    other = tmp_path / "other.yaml"
    other.write_text("coordinator:\n  address: '[::1]:9400'\n", encoding="utf-8")
    settings.save({"server_conf_path": str(other)}, env)
    assert settings.resolve(None, env).address == "[::1]:9400"


def test_corrupt_saved_settings_are_named(tmp_path: Path) -> None:
    saved = tmp_path / "flow.json"
    saved.write_text("{", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"flow\.json are not valid JSON \(line 1, column 2\)") as caught:
        settings.resolve(None, {settings.CLIENT_CONF_ENV: str(saved)})
    assert caught.value.fate_retcode == 100


def test_ipv6_addresses_are_bracketed() -> None:
    assert settings.join_address("::1", 9360) == "[::1]:9360"
    assert settings.join_address("registry.local", 9360) == "registry.local:9360"


# The command line, without a registry -------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    status = main(argv)
    return status, json.loads(capsys.readouterr().out)


def test_cli_init_saves_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "flow.json"
    monkeypatch.setenv(settings.CLIENT_CONF_ENV, str(saved))
    status, answer = run(["init", "--ip", "10.1.2.3", "--port", "9380"], capsys)
    assert (status, answer["retcode"], answer["retmsg"]) == (0, 0, "Fate Flow CLI has been initialized successfully.")
    assert json.loads(saved.read_text(encoding="utf-8")) == {"ip": "10.1.2.3", "port": 9380}
    assert settings.resolve().address == "10.1.2.3:9380"
    status, answer = run(["init"], capsys)
    assert (status, answer["retcode"]) == (1, 100)
    status, answer = run(["init", "--reset"], capsys)
    assert status == 0
    assert not saved.exists()


def test_cli_init_saves_the_tls_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "flow.json"
    monkeypatch.setenv(settings.CLIENT_CONF_ENV, str(saved))
    monkeypatch.chdir(tmp_path)
    for name in ("ca.pem", "me.pem", "me.key"):
        (tmp_path / name).write_text("-----", encoding="utf-8")
    address = ["init", "--ip", "10.1.2.3", "--port", "9380"]
    status, answer = run([*address, "--tls-ca", "ca.pem", "--tls-cert", "me.pem", "--tls-key", "me.key"], capsys)
    files = {"ca": str(tmp_path / "ca.pem"), "cert": str(tmp_path / "me.pem"), "key": str(tmp_path / "me.key")}
    assert (status, answer["retcode"], answer["data"]["tls"]) == (0, 0, files)
    assert json.loads(saved.read_text(encoding="utf-8"))["tls"] == files  # absolute: flow may run elsewhere
    tls = config.TlsConf(cert=tmp_path / "me.pem", key=tmp_path / "me.key", ca=tmp_path / "ca.pem")
    assert settings.resolve("10.9.9.9:1", {settings.CLIENT_CONF_ENV: str(saved)}).tls == tls  # whatever the address
    from_env = {settings.CLIENT_CONF_ENV: str(saved), settings.TLS_CA_ENV: "other-ca.pem"}
    assert settings.resolve(None, from_env).tls == config.TlsConf(ca=Path("other-ca.pem"))  # the environment wins

    saved.unlink()
    status, answer = run([*address, "--tls-cert", "me.pem"], capsys)
    assert (status, answer["retcode"]) == (1, 100)
    assert answer["retmsg"] == "--tls-cert and --tls-key go together: set both or neither"
    status, answer = run([*address, "--tls-ca", "absent.pem"], capsys)
    assert (status, answer["retcode"], answer["retmsg"]) == (
        1,
        100,
        f"--tls-ca: no such file: {tmp_path / 'absent.pem'}",
    )
    assert not saved.exists()  # nothing half-saved


def test_bad_saved_tls_settings_are_named(tmp_path: Path) -> None:
    saved = tmp_path / "flow.json"
    env = {settings.CLIENT_CONF_ENV: str(saved)}
    saved.write_text(json.dumps({"ip": "10.1.2.3", "port": 9380, "tls": {"cert": "/me.pem"}}), encoding="utf-8")
    with pytest.raises(RegistryError) as caught:
        settings.resolve(None, env)
    assert (
        caught.value.message == f"the flow CLI settings {saved}: tls.cert and tls.key go together: set both or neither"
    )
    saved.write_text(json.dumps({"ip": "10.1.2.3", "port": 9380, "tls": ["/ca.pem"]}), encoding="utf-8")
    with pytest.raises(RegistryError, match="tls must map ca, cert and key to paths; run flow init again"):
        settings.resolve(None, env)


def test_cli_load_without_conf_or_job_id(capsys: pytest.CaptureFixture[str]) -> None:
    status, answer = run(["model", "load"], capsys)
    assert status == 1
    assert answer == {
        "retcode": 100,
        "retmsg": "Load model failed. No arguments received, "
        "please provide one of arguments from job id and conf path.",
    }


def test_cli_reports_a_missing_conf_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, answer = run(["model", "export", "-c", str(tmp_path / "absent.json")], capsys)
    assert status == 1
    assert answer["retcode"] == 100
    assert str(tmp_path / "absent.json") in answer["retmsg"]


def test_cli_usage_errors_keep_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkpoint", "get", "--model-id", "m", "--model-version", "v", "-r", "guest", "-p", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "-cpn/--component-name" in captured.err
    assert main(["model", "no-such-command"]) == 2
    assert main(["--help"]) == 0
