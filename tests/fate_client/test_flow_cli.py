"""Every model, tag and checkpoint command of FATE's 1.11 ``flow`` CLI (PyPI ``fate-client``), unchanged,
against the registry's HTTP API: the JSON it prints (FATE-Flow's keys and messages) and the files it writes."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

from fate_registry.fate.pipeline_pb2 import Pipeline
from fate_registry.fate_models import STEP_NAME, build_fate_archive
from tests.conftest import GeneratedModel, generate_model
from tests.fate_client.conftest import (
    ROLES,
    HttpFederation,
    conf_file,
    guest_model,
    import_conf,
    import_with_flow,
    load_conf,
)
from tests.support.fate_client import FateClient
from tests.support.kube_api import fake_kube_api
from tests.support.services import s3_server

PIPELINE_ENTRY = "variables/data/pipeline/pipeline/Pipeline"


def test_init_keeps_the_address_in_this_clients_own_settings(
    client: FateClient, http_federation: HttpFederation
) -> None:
    settings = yaml.safe_load((client.home / "flow_client" / "settings.yaml").read_text())
    host, port = http_federation.http_address.rsplit(":", 1)
    assert (settings["ip"], settings["port"]) == (host, int(port))
    installed = client.venv.glob("lib/python*/site-packages/flow_client/settings.yaml")
    assert all(yaml.safe_load(p.read_text())["ip"] is None for p in installed)  # the venv's own file untouched


def test_import_answers_fate_flows_keys(client: FateClient, tmp_path: Path) -> None:
    model = generate_model(tmp_path, roles=ROLES)
    conf = conf_file(tmp_path, "import.json", import_conf(model, "guest", "9999"))

    code, answer = client.flow("model", "import", "-c", conf)

    assert code == 0 and answer["retcode"] == 0 and answer["retmsg"] == "success", answer
    assert {k: answer["data"][k] for k in ("model_id", "model_version", "party_id", "role")} == {
        "model_id": model.model_id,
        "model_version": model.version,
        "party_id": "9999",
        "role": "guest",
    }
    assert answer["data"]["job_id"]


def test_model_info_filtered_and_detailed(client: FateClient, imported: GeneratedModel) -> None:
    code, answer = client.flow(
        "model", "get-model-info", "--model-id", imported.model_id, "--model-version", imported.version
    )
    assert code == 0 and answer["retcode"] == 0, answer
    assert answer["retmsg"] == "Query model info from db success."
    rows = answer["data"]
    assert sorted((r["f_role"], r["f_party_id"]) for r in rows) == sorted(imported.archives)
    for row in rows:
        assert row["f_roles"] == ROLES and row["f_parent"] is True and row["f_loaded_times"] == 0
        assert row["f_model_version"] == imported.version and row["f_size"] > 0
        assert "f_train_dsl" not in row  # only the columns the CLI asked for

    code, answer = client.flow(
        "model",
        "get-model-info",
        "--model-id",
        imported.model_id,
        "--model-version",
        imported.version,
        "-r",
        "host",
        "-p",
        "10000",
        "--detail",
    )
    assert code == 0 and answer["retcode"] == 0 and len(answer["data"]) == 1, answer
    row = answer["data"][0]
    fate_columns = {
        "f_archive_from_ip",
        "f_archive_sha256",
        "f_create_date",
        "f_create_time",
        "f_fate_version",
        "f_imported",
        "f_inference_dsl",
        "f_initiator_party_id",
        "f_initiator_role",
        "f_job_id",
        "f_loaded_times",
        "f_model_id",
        "f_model_version",
        "f_parent",
        "f_parent_info",
        "f_party_id",
        "f_role",
        "f_roles",
        "f_runtime_conf",
        "f_size",
        "f_train_dsl",
        "f_train_runtime_conf",
        "f_update_date",
        "f_update_time",
    }
    assert fate_columns <= set(row), sorted(fate_columns - set(row))
    assert row["f_role"] == "host" and row["f_party_id"] == "10000" and row["f_train_dsl"]["components"]


def test_export_saves_the_archive_under_fates_name(
    client: FateClient, imported: GeneratedModel, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    conf = {
        "role": "guest",
        "party_id": 9999,
        "model_id": imported.model_id,
        "model_version": imported.version,
        "output_path": str(out),
    }

    code, answer = client.flow("model", "export", "-c", conf_file(tmp_path, "export.json", conf))

    assert code == 0 and answer["retcode"] == 0, answer
    name = f"guest#9999#{imported.model_id}_{imported.version}.zip"
    assert answer["file"] == str(out / name)
    assert answer["retmsg"] == f"download successfully, please check {out / name}"
    assert [p.name for p in out.iterdir()] == [name]
    with zipfile.ZipFile(out / name) as archive:
        assert archive.testzip() is None
        names = set(archive.namelist())
        assert {PIPELINE_ENTRY, "define/define_meta.yaml"} <= names
        pipeline = Pipeline.FromString(archive.read(PIPELINE_ENTRY))
        source = imported.version_dirs["guest", "9999"]
        param = "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam"
        assert archive.read(param) == (source / param).read_bytes()
    assert pipeline.model_version == imported.version and pipeline.model_id == imported.model_id


def test_store_and_restore_through_the_model_store(
    client: FateClient, imported: GeneratedModel, tmp_path: Path
) -> None:
    conf = {"role": "guest", "party_id": 9999, "model_id": imported.model_id, "model_version": imported.version}

    code, stored = client.flow("model", "export", "-c", conf_file(tmp_path, "store.json", conf), "--to-database")
    assert code == 0 and stored["retcode"] == 0, stored
    assert stored["data"]["model_info"] == {
        "model_id": imported.model_id,
        "model_version": imported.version,
    }
    assert not list(tmp_path.glob("*.zip"))

    restore = conf_file(tmp_path, "restore.json", {**conf, "force_update": True})  # the version is here: replace it
    code, restored = client.flow("model", "import", "-c", restore, "--from-database")
    assert code == 0 and restored["retcode"] == 0, restored
    assert restored["data"]["model_info"]["model_version"] == imported.version


def _checkpoint(client: FateClient, model: GeneratedModel, command: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return client.flow("checkpoint", command, *guest_model(model.model_id, model.version), *extra)


def test_checkpoint_list_and_get(client: FateClient, imported: GeneratedModel) -> None:
    code, listed = _checkpoint(client, imported, "list", "-cpn", "hetero_lr_0")
    assert code == 0 and listed["retcode"] == 0, listed
    steps = listed["data"]
    assert len(steps) == 3 and [s["step_index"] for s in steps] == sorted(s["step_index"] for s in steps)
    first = steps[0]
    assert set(first) == {"create_time", "step_index", "step_name", "models"}
    assert set(first["models"]["HeteroLogisticRegressionParam"]) == {"buffer_name", "sha1"}

    code, got = _checkpoint(client, imported, "get", "-cpn", "hetero_lr_0", "--step-index", str(first["step_index"]))
    assert code == 0 and got["retcode"] == 0, got
    param = base64.b64decode(got["data"]["models"]["HeteroLogisticRegressionParam"])
    assert hashlib.sha1(param).hexdigest() == first["models"]["HeteroLogisticRegressionParam"]["sha1"]
    assert got["data"]["step_index"] == first["step_index"]

    code, by_name = _checkpoint(client, imported, "get", "-cpn", "hetero_lr_0", "--step-name", first["step_name"])
    assert code == 0 and by_name["retcode"] == 0 and by_name["data"]["step_name"] == STEP_NAME, by_name

    code, unknown = _checkpoint(client, imported, "list", "-cpn", "no_such_component")
    assert code == 0 and unknown["retcode"] == 0 and unknown["data"] == [], unknown


def _deploy(client: FateClient, model: GeneratedModel, *extra: str) -> dict[str, Any]:
    code, answer = client.flow(
        "model", "deploy", "--model-id", model.model_id, "--model-version", model.version, *extra
    )
    assert code == 0 and answer["retcode"] == 0 and answer["retmsg"] == "success", answer
    data = answer["data"]
    assert data["model_id"] == model.model_id and data["model_version"] != model.version
    assert (data["guest"], data["host"], data["arbiter"]) == ({"9999": 0}, {"10000": 0}, {"10000": 0})
    assert data["detail"]["guest"]["9999"] == {"retcode": 0, "retmsg": "deploy model of role guest 9999 success"}
    assert data["detail"]["arbiter"]["10000"]["retmsg"] == "deploy model of role arbiter 10000 success"
    child: str = data["model_version"]
    return {"child": child, **answer}


def test_deploy_predict_dsl_conf_load_bind(
    client: FateClient, http_federation: HttpFederation, imported: GeneratedModel, tmp_path: Path
) -> None:
    cpns = "reader_0, data_transform_0, intersection_0, hetero_lr_0"
    code, listed = _checkpoint(client, imported, "list", "-cpn", "hetero_lr_0")
    step = listed["data"][-1]["step_index"]
    child = _deploy(client, imported, "--cpn-list", cpns, "--cpn-step-index", f"hetero_lr_0:{step}")["child"]

    code, info = client.flow("model", "get-model-info", *guest_model(imported.model_id, child))
    assert code == 0 and info["retcode"] == 0, info
    row = info["data"][0]
    assert row["f_parent"] is None  # FATE-Flow's answer for a deployed child
    assert row["f_parent_info"] == {"parent_model_id": imported.model_id, "parent_model_version": imported.version}

    out = tmp_path / "dsl"
    code, answer = client.flow(
        "model", "get-predict-dsl", "--model-id", imported.model_id, "--model-version", child, "-o", str(out)
    )
    assert code == 0 and answer["retcode"] == 0, answer
    [dsl_file] = out.iterdir()
    assert answer["retmsg"] == f"Query predict dsl successfully. File path is: {dsl_file}"
    assert dsl_file.name.startswith("predict_dsl_") and dsl_file.suffix == ".json"
    dsl = json.loads(dsl_file.read_text())
    assert set(dsl["components"]) == {"reader_0", "data_transform_0", "intersection_0", "hetero_lr_0"}

    conf_out = tmp_path / "conf"
    code, answer = client.flow(
        "model", "get-predict-conf", "--model-id", imported.model_id, "--model-version", child, "-o", str(conf_out)
    )
    assert code == 0 and answer["retcode"] == 0, answer
    [conf_path] = conf_out.iterdir()
    assert answer["retmsg"] == f"Query predict conf successfully. File path is: {conf_path}"
    predict_conf = json.loads(conf_path.read_text())
    assert predict_conf["role"] == ROLES and predict_conf["initiator"] == {"role": "guest", "party_id": 9999}
    assert predict_conf["job_parameters"]["common"]["model_version"] == child

    # a deploy from a predict DSL file: the CLI sends it as a JSON string
    dsl_path = tmp_path / "predict_dsl.json"
    dsl_path.write_text(json.dumps(dsl))
    _deploy(client, imported, "--dsl-path", str(dsl_path))

    servings = http_federation.servings
    code, loaded = client.flow(
        "model", "load", "-c", conf_file(tmp_path, "load.json", load_conf(imported.model_id, child))
    )
    assert code == 0 and loaded["retcode"] == 0 and loaded["retmsg"] == "success", loaded
    assert loaded["data"]["guest"] == {"9999": 0} and loaded["data"]["host"] == {"10000": 0}
    assert loaded["data"]["detail"]["guest"]["9999"]["retcode"] == 0 and loaded["jobId"]
    assert "arbiter" not in loaded["data"]
    published = servings["9999"].records("publishLoad")[-1]["request"]
    assert published["model"]["guest"]["roleModelInfo"]["9999"]["tableName"] == child

    code, again = client.flow("model", "load", "-j", child)
    assert code == 0 and again["retcode"] == 0, again

    bind = load_conf(imported.model_id, child, service_id="svc-fate-client", servings=[])
    code, bound = client.flow("model", "bind", "-c", conf_file(tmp_path, "bind.json", bind))
    assert code == 0 and bound == {"retcode": 0, "retmsg": "service id is svc-fate-client"}, bound
    assert servings["9999"].records("publishBind")[-1]["request"]["serviceId"] == "svc-fate-client"

    code, info = client.flow("model", "get-model-info", *guest_model(imported.model_id, child))
    assert info["data"][0]["f_loaded_times"] >= 2, info


def test_model_tags(client: FateClient, imported: GeneratedModel) -> None:
    version, model_id = imported.version, imported.model_id
    code, answer = client.flow("model", "tag-model", "-j", version, "-t", "fate-t1")
    assert code == 0 and answer == {
        "retcode": 0,
        "retmsg": f"Adding fate-t1 tag for model with job id: {version} successfully.",
    }, answer
    code, answer = client.flow("model", "tag-model", "-j", version, "-t", "fate-t1")
    assert answer["retcode"] == 100 and "already been tagged as tag 'fate-t1'" in answer["retmsg"], answer

    code, listed = client.flow("model", "tag-list", "-j", version)
    assert code == 0 and listed["retcode"] == 0, listed
    assert {"name": "fate-t1", "description": None} in listed["data"]["tags"]
    assert listed["data"]["count"] == len(listed["data"]["tags"])

    code, answer = client.flow("model", "tag-model", "-j", version, "-t", "fate-t1", "--remove")
    assert answer == {
        "retcode": 0,
        "retmsg": f"'fate-t1' tag has been removed from tag list of model {model_id} {version}.",
    }, answer
    code, answer = client.flow("model", "tag-model", "-j", version, "-t", "fate-t1", "--remove")
    assert answer["retcode"] == 100 and "does not have tag 'fate-t1'" in answer["retmsg"], answer


def test_tag_commands(client: FateClient, imported: GeneratedModel) -> None:
    code, answer = client.flow("tag", "create", "-t", "fate-tag", "-d", "first tag")
    assert code == 0 and answer == {"retcode": 0, "retmsg": "'fate-tag' tag has been created successfully."}, answer
    code, answer = client.flow("tag", "create", "-t", "fate-tag")
    assert answer["retcode"] == 100 and "has already exists in database" in answer["retmsg"], answer

    code, answer = client.flow("tag", "query", "-t", "fate-ta")  # a substring, without models
    assert answer["retcode"] == 0 and {"name": "fate-tag", "description": "first tag"} in answer["data"]["tags"]

    client.flow("model", "tag-model", "-j", imported.version, "-t", "fate-tag")
    code, answer = client.flow("tag", "query", "-t", "fate-tag", "--with-model")
    assert answer["retcode"] == 0 and answer["data"]["count"] == len(imported.archives), answer
    assert {(m["role"], str(m["party_id"])) for m in answer["data"]["models"]} == set(imported.archives)

    code, answer = client.flow("tag", "update", "-t", "fate-tag", "--new-tag-name", "fate-tag2", "--new-tag-desc", "d2")
    assert answer == {"retcode": 0, "retmsg": "Infomation of 'fate-tag' tag has been updated successfully."}, answer

    code, answer = client.flow("tag", "list", "-l", "50")
    assert answer["retcode"] == 0, answer
    listed = {t["name"]: t for t in answer["data"]["tags"]}
    assert listed["fate-tag2"]["description"] == "d2" and listed["fate-tag2"]["model_count"] == 1

    code, answer = client.flow("tag", "delete", "-t", "fate-tag2")
    assert answer == {"retcode": 0, "retmsg": "'fate-tag2' tag has been deleted successfully."}, answer
    code, answer = client.flow("tag", "delete", "-t", "fate-tag2")
    assert answer["retcode"] == 100 and "Can not found 'fate-tag2' tag." in answer["retmsg"], answer


def test_migrate(client: FateClient, tmp_path: Path) -> None:
    model = generate_model(tmp_path, roles=ROLES)
    import_with_flow(client, model, tmp_path)
    conf = {
        "job_parameters": {"federated_mode": "MULTIPLE"},
        "role": ROLES,
        "execute_party": ROLES,
        "migrate_initiator": {"role": "guest", "party_id": 99},
        "migrate_role": {"guest": [99], "host": [100], "arbiter": [100]},
        "model_id": model.model_id,
        "model_version": model.version,
    }

    code, answer = client.flow("model", "migrate", "-c", conf_file(tmp_path, "migrate.json", conf))

    assert code == 0 and answer["retcode"] == 0 and answer["retmsg"] == "success", answer
    assert answer["data"]["guest"] == {"9999": 0} and answer["data"]["host"] == {"10000": 0}
    message = answer["data"]["detail"]["guest"]["9999"]["retmsg"]
    assert message.startswith("Migrating model successfully.") and "arbiter-100#guest-99#host-100#model" in message
    assert answer["jobId"]


def test_homo_convert(client: FateClient, tmp_path: Path) -> None:
    model = generate_model(tmp_path, algorithm="homo_lr")
    conf = import_conf(model, "guest", "9999")
    code, answer = client.flow("model", "import", "-c", conf_file(tmp_path, "import.json", conf))
    assert code == 0 and answer["retcode"] == 0, answer
    convert = {k: conf[k] for k in ("role", "party_id", "model_id", "model_version")}

    code, answer = client.flow("model", "homo-convert", "-c", conf_file(tmp_path, "convert.json", convert))

    assert code == 0 and answer["retcode"] == 0, answer
    assert answer["retmsg"].startswith("Conversion of homogeneous federated learning component(s) in model")
    [converted] = answer["data"]
    assert converted["component_name"] == "homo_lr_0" and converted["converted_model_path"]


def test_homo_deploy_to_kfserving(client: FateClient, tmp_path: Path) -> None:
    """The CLI reads ``config_file`` (a kubeconfig) into ``config_file_content``; the Kubernetes API is the
    project's stand-in (``tests.support.kube_api``), the object store a real S3 server."""
    model = generate_model(tmp_path, algorithm="homo_lr")
    converted = model.version_dirs["guest", "9999"] / "variables/data/homo_lr_0/model/converted_model"
    converted.mkdir(parents=True)
    (converted / "sklearn.joblib").write_bytes(b"a converted model")
    archive = build_fate_archive(
        model.version_dirs["guest", "9999"], tmp_path / "g", "guest", 9999, model.model_id, model.version
    )
    conf = {**import_conf(model, "guest", "9999"), "file": str(archive.resolve())}
    code, answer = client.flow("model", "import", "-c", conf_file(tmp_path, "import.json", conf))
    assert code == 0 and answer["retcode"] == 0, answer
    with fake_kube_api() as kube, s3_server(tmp_path / "s3") as s3:
        kubeconfig = tmp_path / "kubeconfig.yaml"
        kubeconfig.write_text(kube.kubeconfig())
        deploy = {
            "service_id": "homo-fate-client",
            "model_id": model.model_id,
            "model_version": model.version,
            "role": "guest",
            "party_id": 9999,
            "component_name": "homo_lr_0",
            "deployment_type": "kfserving",
            "deployment_parameters": {
                "namespace": "fate-serving",
                "config_file": str(kubeconfig),
                "model_storage_type": "minio",
                "model_storage_parameters": s3.minio_parameters(),
            },
        }

        code, answer = client.flow("model", "homo-deploy", "-c", conf_file(tmp_path, "deploy.json", deploy))

        assert code == 0 and answer["retcode"] == 0, answer
        assert answer["retmsg"] == "An online serving service is started in the kfserving system."
        stored = kube.inference_service("fate-serving", "homo-fate-client", group="serving.kubeflow.org")
        assert stored is not None and answer["data"] == stored
