"""The coordinator's FATE-Flow HTTP API on real processes (coordinator, agents, FATE-Serving test servers),
called as FATE's 1.11 clients call it: every model, tag and checkpoint route, FATE's envelope, keys, retcodes
and HTTP statuses."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from registry_server.fate_http.rows import CATALOG_FILTERS
from tests.conftest import GeneratedModel, generate_model
from tests.fate_http import call, import_archive, send
from tests.support.federation import LocalFederation

ARCHIVE_ONLY = {"import_model.json", ".fate_registry_manifest.json"}
CLI_FILTERS = sorted(CATALOG_FILTERS)  # what FATE's CLI sends without --detail


@pytest.fixture(scope="module")
def fed(serving_federation: LocalFederation) -> LocalFederation:
    return serving_federation


@pytest.fixture(scope="module")
def imported(fed: LocalFederation, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    model = generate_model(tmp_path_factory.mktemp("model"), checkpoints=2)
    for (role, party), archive in model.archives.items():
        fields = {"role": role, "party_id": party, "model_id": model.model_id, "model_version": model.version}
        answer = import_archive(fed.http_address, {**fields, "force_update": "0", "conf_path": "import.json"}, archive)
        assert answer.status == 200, answer
        assert answer.json()["retcode"] == 0
        assert {k: answer.json()["data"][k] for k in fields} == fields
    return model


def _ref(model: GeneratedModel, role: str = "guest", party: str = "9999") -> dict[str, str]:
    return {"role": role, "party_id": party, "model_id": model.model_id, "model_version": model.version}


def test_an_existing_version_is_409_and_a_form_without_archive_400(
    fed: LocalFederation, imported: GeneratedModel
) -> None:
    archive = imported.archives["guest", "9999"]
    again = import_archive(fed.http_address, {**_ref(imported), "force_update": "0"}, archive)
    assert (again.status, again.json()) == (409, {"retmsg": "Model already exists.", "retcode": 409})
    replaced = import_archive(fed.http_address, {**_ref(imported), "force_update": "1"}, archive)
    assert replaced.status == 200 and replaced.json()["retcode"] == 0
    missing = import_archive(fed.http_address, {"role": "guest", "model_id": "m", "model_version": "v"}, archive)
    assert missing.status == 200 and missing.json()["retcode"] == 101 and "party_id" in missing.json()["retmsg"]
    no_file = call(fed.http_address, "/v1/model/import", _ref(imported))
    assert (no_file.status, no_file.json()) == (400, {"retmsg": "`file` is required.", "retcode": 400})


def test_export_is_the_archive_with_an_unquoted_file_name_and_never_200_on_error(
    fed: LocalFederation, imported: GeneratedModel
) -> None:
    body = {**_ref(imported, "host", "10000"), "party_id": 10000, "output_path": "/tmp", "conf_path": "c.json"}
    answer = call(fed.http_address, "/v1/model/export", body, method="GET")
    assert answer.status == 200
    name = f"host#10000#{imported.model_id}_{imported.version}.zip"
    assert answer.headers["Content-Disposition"] == f"attachment; filename={name}"
    with zipfile.ZipFile(io.BytesIO(answer.body)) as archive:
        inside = {n: archive.read(n) for n in archive.namelist() if n not in ARCHIVE_ONLY and not n.endswith("/")}
    source = imported.version_dirs["host", "10000"]
    expected = {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert inside == {k: v for k, v in expected.items() if k not in ARCHIVE_ONLY}
    unknown = call(fed.http_address, "/v1/model/export", {**body, "model_version": "nosuch"}, method="GET")
    assert unknown.status == 404 and unknown.json()["retcode"] == 404
    no_keys = call(fed.http_address, "/v1/model/export", {"output_path": "/tmp"}, method="GET")
    assert no_keys.status == 400 and no_keys.json()["retcode"] == 101
    assert "Content-Disposition" not in no_keys.headers


def test_model_query_has_fates_columns(fed: LocalFederation, imported: GeneratedModel) -> None:
    filtered = call(fed.http_address, "/v1/model/query", {**_ref(imported), "query_filters": CLI_FILTERS}).json()
    assert filtered["retcode"] == 0 and filtered["retmsg"] == "Query model info from db success."
    [row] = filtered["data"]
    assert set(row) == {f"f_{name}" for name in CLI_FILTERS} - {"f_description"}
    assert row["f_party_id"] == "9999" and row["f_parent"] is True
    assert row["f_roles"] == {"guest": [9999], "host": [10000], "arbiter": [10000]}
    full = call(fed.http_address, "/v1/model/query", {"model_id": imported.model_id, "model_version": imported.version})
    rows = full.json()["data"]
    assert len(rows) == 3
    for key in ("f_archive_sha256", "f_archive_from_ip", "f_update_date", "f_update_time", "f_imported", "f_train_dsl"):
        assert all(key in r for r in rows), key
    unknown = call(fed.http_address, "/v1/model/query", {"model_version": "nosuch"}).json()
    assert unknown["retcode"] == 100 and unknown["data"] == []


def test_deploy_predict_dsl_and_conf_load_bind(fed: LocalFederation, imported: GeneratedModel, tmp_path: Path) -> None:
    address = fed.http_address
    deployed = call(
        address,
        "/v1/model/deploy",
        {
            "model_id": imported.model_id,
            "model_version": imported.version,
            "cpn_list": ["data_transform_0", "hetero_lr_0"],
        },
    ).json()
    assert deployed["retcode"] == 0, deployed
    child = deployed["data"]["model_version"]
    assert child != imported.version and deployed["data"]["guest"] == {"9999": 0}
    assert deployed["data"]["detail"]["host"]["10000"]["retcode"] == 0
    child_rows = call(address, "/v1/model/query", {"model_id": imported.model_id, "model_version": child}).json()[
        "data"
    ]
    assert {r["f_parent"] for r in child_rows} == {None}

    dsl = call(address, "/v1/model/get/predict/dsl", {"model_id": imported.model_id, "model_version": child}).json()
    assert dsl["retcode"] == 0 and "hetero_lr_0" in dsl["data"]["components"]
    as_file = call(
        address,
        "/v1/model/get/predict/dsl",
        {"model_id": imported.model_id, "model_version": child, "filename": "p.json", "output_path": str(tmp_path)},
    )
    assert as_file.status == 200 and json.loads(as_file.body) == dsl["data"]
    missing = call(
        address,
        "/v1/model/get/predict/conf",
        {"model_id": imported.model_id, "model_version": "nosuch", "filename": "c.json"},
    )
    assert missing.status == 210 and missing.json()["retcode"] == 210
    conf = call(address, "/v1/model/get/predict/conf", {"model_id": imported.model_id, "model_version": child}).json()
    assert conf["retcode"] == 0 and conf["data"]["job_parameters"]["common"]["model_version"] == child

    roles = {"guest": [9999], "host": [10000], "arbiter": [10000]}
    published: dict[str, Any] = {
        "initiator": {"role": "guest", "party_id": 9999},
        "role": roles,
        "job_parameters": {"model_id": imported.model_id, "model_version": child},
    }
    loaded = call(
        address, "/v1/model/load", {**published, "job_parameters": {**published["job_parameters"], "file_path": ""}}
    ).json()
    assert loaded["retcode"] == 0 and loaded["jobId"] and loaded["data"]["guest"] == {"9999": 0}, loaded
    bound = call(address, "/v1/model/bind", {**published, "service_id": "svc-http", "servings": []}).json()
    assert bound == {"retcode": 0, "retmsg": "service id is svc-http"}
    no_service = call(address, "/v1/model/bind", published).json()
    assert no_service["retcode"] == 101 and no_service["retmsg"] == "no service id"

    unknown = call(
        address, "/v1/model/deploy", {"model_id": imported.model_id, "model_version": "nosuch", "cpn_list": []}
    )
    assert unknown.status == 404 and unknown.json()["retcode"] == 404 and unknown.json()["data"] == {}


def test_model_tags(fed: LocalFederation, imported: GeneratedModel) -> None:
    address, version = fed.http_address, imported.version
    created = call(address, "/v1/model/model_tag/create", {"job_id": version, "tag_name": "http-t1"}).json()
    assert created == {"retcode": 0, "retmsg": f"Adding http-t1 tag for model with job id: {version} successfully."}
    again = call(address, "/v1/model/model_tag/create", {"job_id": version, "tag_name": "http-t1"}).json()
    assert again["retcode"] == 100 and "already been tagged" in again["retmsg"]
    listed = call(address, "/v1/model/model_tag/retrieve", {"job_id": version}).json()
    assert {"description": None, "name": "http-t1"} in listed["data"]["tags"] and listed["data"]["count"] >= 1
    removed = call(address, "/v1/model/model_tag/remove", {"job_id": version, "tag_name": "http-t1"}).json()
    assert removed["retcode"] == 0 and "has been removed" in removed["retmsg"]
    unknown = call(address, "/v1/model/model_tag/retrieve", {"job_id": "nosuch"}).json()
    assert unknown == {"retcode": 100, "retmsg": "Can not found model by job id: 'nosuch'."}
    bogus = call(address, "/v1/model/model_tag/bogus", {"job_id": version}).json()
    assert bogus == {"retcode": 100, "retmsg": "'bogus' is not currently supported."}


def test_checkpoints(fed: LocalFederation, imported: GeneratedModel) -> None:
    body = {**_ref(imported), "party_id": "9999", "component_name": "hetero_lr_0"}
    listed = call(fed.http_address, "/v1/checkpoint/list", body).json()
    assert listed["retcode"] == 0 and [c["step_index"] for c in listed["data"]] == sorted(
        c["step_index"] for c in listed["data"]
    )
    assert len(listed["data"]) == 2 and all(
        set(m) == {"buffer_name", "sha1"} for m in listed["data"][0]["models"].values()
    )
    step = listed["data"][0]["step_index"]
    got = call(fed.http_address, "/v1/checkpoint/get", {**body, "step_index": step}).json()
    assert (
        got["retcode"] == 0
        and got["data"]["step_index"] == step
        and all(isinstance(v, str) for v in got["data"]["models"].values())
    )
    unknown = call(fed.http_address, "/v1/checkpoint/list", {**body, "model_version": "nosuch"}).json()
    assert unknown == {"data": [], "retcode": 0, "retmsg": "success"}
    no_step = call(fed.http_address, "/v1/checkpoint/get", {**body, "step_index": 999})
    assert (no_step.status, no_step.json()) == (404, {"retmsg": "The checkpoint was not found.", "retcode": 404})
    missing = call(fed.http_address, "/v1/checkpoint/get", {"role": "guest"})
    assert missing.status == 400 and missing.json()["retmsg"].startswith(
        "the following arguments are required: party_id"
    )


def test_homo_convert_of_a_hetero_model_and_version(fed: LocalFederation, imported: GeneratedModel) -> None:
    converted = call(fed.http_address, "/v1/model/homo/convert", _ref(imported)).json()
    assert converted["retcode"] != 0 and "converted" in converted["retmsg"]
    missing = call(fed.http_address, "/v1/model/homo/deploy", {"model_id": imported.model_id}).json()
    assert missing["retcode"] == 101 and missing["retmsg"].startswith("required")
    assert call(fed.http_address, "/v1/version/get", {"module": "FATEFlow"}).json() == {
        "data": {"FATEFlow": "1.11.2"},
        "retcode": 0,
        "retmsg": "success",
    }


def test_other_routes_answer_fates_not_found(fed: LocalFederation) -> None:
    for method, path in (("POST", "/v1/job/submit"), ("GET", "/v1/nosuch"), ("POST", "/")):
        answer = send(fed.http_address, method, path, b"{}")
        assert (answer.status, answer.json()) == (200, {"retcode": 100, "retmsg": "<NotFound '404: Not Found'>"})
    wrong = send(fed.http_address, "GET", "/v1/model/load", b"{}")
    assert wrong.status == 200 and wrong.json()["retcode"] == 100
    trailing = call(fed.http_address, "/v1/version/get/", {"module": "FATE"}).json()
    assert trailing["retcode"] == 0


def test_tags(fed: LocalFederation, imported: GeneratedModel) -> None:
    address = fed.http_address
    created = call(address, "/v1/model/tag/create", {"tag_name": "http-tag", "tag_desc": "first"}).json()
    assert created == {"retcode": 0, "retmsg": "'http-tag' tag has been created successfully."}
    assert call(address, "/v1/model/tag/create", {"tag_name": "http-tag"}).json() == {
        "retcode": 100,
        "retmsg": "'http-tag' has already exists in database.",
    }
    call(address, "/v1/model/model_tag/create", {"job_id": imported.version, "tag_name": "http-tag"})
    found = call(address, "/v1/model/tag/retrieve", {"tag_name": "http-t", "with_model": False}).json()
    assert {"name": "http-tag", "description": "first"} in found["data"]["tags"]
    models = call(address, "/v1/model/tag/retrieve", {"tag_name": "http-tag", "with_model": True}).json()["data"]
    assert models["count"] == 3 and {m["role"] for m in models["models"]} == {"guest", "host", "arbiter"}
    assert set(models["models"][0]) == {"model_id", "model_version", "model_size", "role", "party_id"}
    updated = call(address, "/v1/model/tag/update", {"tag_name": "http-tag", "new_tag_name": "http-tag2"}).json()
    assert updated == {"retcode": 0, "retmsg": "Infomation of 'http-tag' tag has been updated successfully."}
    listed = call(address, "/v1/model/tag/list", {"limit": 100}).json()["data"]["tags"]
    assert {"name": "http-tag2", "description": None, "model_count": 1} in listed
    same = call(address, "/v1/model/tag/update", {"tag_name": "http-tag2", "new_tag_name": "http-tag2"}).json()
    assert same == {"retcode": 100, "retmsg": "Nothing to be updated."}
    deleted = call(address, "/v1/model/tag/destroy", {"tag_name": "http-tag2"}).json()
    assert deleted == {"retcode": 0, "retmsg": "'http-tag2' tag has been deleted successfully."}
    assert call(address, "/v1/model/tag/destroy", {"tag_name": "http-tag2"}).json() == {
        "retcode": 100,
        "retmsg": "Can not found 'http-tag2' tag.",
    }
    assert call(address, "/v1/model/tag/retrieve", {"tag_name": "zzz-none"}).json() == {
        "retcode": 100,
        "retmsg": "No tags found.",
    }
    assert call(address, "/v1/model/tag/bogus", {}).json() == {
        "retcode": 100,
        "retmsg": "The bogus operation is not currently supported.",
    }


def test_migrate(fed: LocalFederation, imported: GeneratedModel) -> None:
    old = {"guest": [9999], "host": [10000], "arbiter": [10000]}
    body = {
        "job_parameters": {"federated_mode": "MULTIPLE"},
        "role": old,
        "execute_party": old,
        "migrate_initiator": {"role": "guest", "party_id": 99},
        "migrate_role": {"guest": [99], "host": [100], "arbiter": [100]},
        "model_id": imported.model_id,
        "model_version": imported.version,
        "conf_path": "migrate.json",
    }
    migrated = call(fed.http_address, "/v1/model/migrate", body).json()
    assert migrated["retcode"] == 0 and migrated["retmsg"] == "success" and migrated["jobId"], migrated
    assert migrated["data"]["guest"] == {"9999": 0} and migrated["data"]["host"] == {"10000": 0}
    assert "Migrating model successfully" in migrated["data"]["detail"]["guest"]["9999"]["retmsg"]
    same = call(fed.http_address, "/v1/model/migrate", {**body, "migrate_role": old}).json()
    assert same["retcode"] == 100 and "There is no need to migrate model." in same["retmsg"]
    missing = call(fed.http_address, "/v1/model/migrate", {"model_id": imported.model_id}).json()
    assert missing["retcode"] == 101 and "migrate_initiator" in missing["retmsg"]


def test_store_and_restore_without_a_model_store_say_why(fed: LocalFederation, imported: GeneratedModel) -> None:
    for route in ("store", "restore"):
        answer = call(fed.http_address, f"/v1/model/{route}", {**_ref(imported), "force_update": False}).json()
        assert answer["retcode"] != 0 and answer["retmsg"], answer
