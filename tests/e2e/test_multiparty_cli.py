"""Deploy, load, bind, predict DSL/conf, tags and checkpoints through `flow`, on real processes:
a coordinator, agents for guest 9999 and host/arbiter 10000, and a FATE-Serving test server per party."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from fate_registry.fate import model_service_pb2 as ms
from fate_registry.fate.model_service_pb2_grpc import ModelServiceStub
from fate_registry.fate.pipeline_pb2 import Pipeline
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow, import_slices, write_conf
from tests.support.federation import LocalFederation
from tests.support.serving import Faults
from tests.support.serving_process import ServingTestServer

ROLES = {"guest": [9999], "host": [10000], "arbiter": [10000]}


@pytest.fixture(scope="module")
def imported(serving_federation: LocalFederation, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    root = tmp_path_factory.mktemp("model")
    model = generate_model(root, checkpoints=3)
    import_slices(serving_federation, model.archives, model.model_id, model.version, root)
    return model


def _versions(fed: LocalFederation, party: str, role: str, model_id: str) -> list[str]:
    directory = fed.model_cache(party) / f"{role}#{party}#{model_id}"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _deploy(fed: LocalFederation, model: GeneratedModel, *extra: str) -> tuple[int, dict[str, Any]]:
    return flow(fed, "model", "deploy", "--model-id", model.model_id, "--model-version", model.version, *extra)


def _load_conf(model_id: str, version: str) -> dict[str, Any]:
    return {
        "initiator": {"party_id": "9999", "role": "guest"},
        "role": {r: [str(p) for p in ids] for r, ids in ROLES.items()},
        "job_parameters": {"model_id": model_id, "model_version": version},
    }


def test_deploy_load_bind_dsl_tags_checkpoints(
    serving_federation: LocalFederation,
    servings: dict[str, ServingTestServer],
    imported: GeneratedModel,
    tmp_path: Path,
) -> None:
    fed, model = serving_federation, imported
    checkpoints_code, listed = flow(
        fed,
        "checkpoint",
        "list",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "guest",
        "-p",
        "9999",
        "-cpn",
        "hetero_lr_0",
    )
    assert checkpoints_code == 0 and len(listed["data"]) == 3
    first = listed["data"][0]
    assert set(first) >= {"create_time", "step_index", "step_name", "models"}
    assert set(first["models"]["HeteroLogisticRegressionParam"]) == {"buffer_name", "sha1"}
    step = first["step_index"]

    code, got = flow(
        fed,
        "checkpoint",
        "get",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "guest",
        "-p",
        "9999",
        "-cpn",
        "hetero_lr_0",
        "--step-index",
        str(step),
    )
    assert code == 0
    param = base64.b64decode(got["data"]["models"]["HeteroLogisticRegressionParam"])
    assert hashlib.sha1(param).hexdigest() == first["models"]["HeteroLogisticRegressionParam"]["sha1"]

    # deploy with a component list and a checkpoint in place of hetero_lr_0's final model
    code, answer = _deploy(
        fed,
        model,
        "--cpn-list",
        "reader_0, data_transform_0, intersection_0, hetero_lr_0",
        "--cpn-step-index",
        f"hetero_lr_0:{step}",
    )
    assert code == 0 and answer["retcode"] == 0, json.dumps(answer)
    child = answer["data"]["model_version"]
    assert answer["data"]["model_id"] == model.model_id and child != model.version
    assert answer["data"]["guest"] == {"9999": 0} and answer["data"]["host"] == {"10000": 0}
    assert answer["data"]["arbiter"] == {"10000": 0}
    assert answer["data"]["detail"]["guest"]["9999"]["retmsg"] == "deploy model of role guest 9999 success"
    child_dir = fed.model_cache("9999") / f"guest#9999#{model.model_id}" / child
    pipeline = Pipeline.FromString((child_dir / "variables/data/pipeline/pipeline/Pipeline").read_bytes())
    assert not pipeline.parent and pipeline.model_version == child
    assert json.loads(pipeline.parent_info) == {
        "parent_model_id": model.model_id,
        "parent_model_version": model.version,
    }
    inference = json.loads(pipeline.inference_dsl)["components"]
    assert set(inference) == {"reader_0", "data_transform_0", "intersection_0", "hetero_lr_0"}
    assert inference["hetero_lr_0"]["input"]["model"] == ["pipeline.hetero_lr_0.model"]
    assert (child_dir / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam").read_bytes() == param
    meta = yaml.safe_load((child_dir / "define/define_meta.yaml").read_text())
    assert "evaluation_0" not in meta["model_proto"] and "hetero_lr_0" in meta["model_proto"]

    # a child cannot be deployed again
    code, again = flow(fed, "model", "deploy", "--model-id", model.model_id, "--model-version", child)
    assert code != 0 and "Child model could not be deployed." in again["retmsg"]

    # load: FATE-Serving gets FATE-Flow's request and pulls the child back from the agent
    code, loaded = flow(
        fed, "model", "load", "-c", write_conf(tmp_path, "load.json", _load_conf(model.model_id, child))
    )
    assert code == 0 and loaded["retcode"] == 0, loaded
    assert loaded["data"]["guest"] == {"9999": 0} and loaded["data"]["host"] == {"10000": 0}
    assert "arbiter" not in loaded["data"] and loaded["jobId"]
    record = servings["9999"].records("publishLoad")[-1]["request"]
    assert record["local"] == {"role": "guest", "partyId": "9999"}
    assert record["role"] == {
        "guest": {"partyId": ["9999"]},
        "host": {"partyId": ["10000"]},
        "arbiter": {"partyId": ["10000"]},
    }
    assert record["model"]["host"]["roleModelInfo"]["10000"] == {
        "tableName": child,
        "namespace": f"host#10000#{model.model_id}",
    }
    assert record["loadType"] == "FATEFLOW" and record["filePath"].endswith("/v1/model/transfer")
    assert "serviceId" not in record
    host_content = _queried(servings["10000"], child, f"host#10000#{model.model_id}")
    assert host_content["pipeline"]["model_version"] == child
    code, info = flow(
        fed,
        "model",
        "get-model-info",
        "--model-id",
        model.model_id,
        "--model-version",
        child,
        "-r",
        "guest",
        "-p",
        "9999",
    )
    assert info["data"][0]["f_loaded_times"] == 1 and info["data"][0]["f_parent"] is False

    # a training version does not load
    code, refused = flow(
        fed, "model", "load", "-c", write_conf(tmp_path, "load-train.json", _load_conf(model.model_id, model.version))
    )
    assert code != 0 and refused["retcode"] == 101
    assert refused["data"]["detail"]["guest"]["9999"]["retmsg"].startswith("Only deployed models could be used")

    # bind: the initiator's FATE-Serving only, with its own model only
    bind = {**_load_conf(model.model_id, child), "service_id": "svc-1"}
    code, bound = flow(fed, "model", "bind", "-c", write_conf(tmp_path, "bind.json", bind))
    assert code == 0 and bound == {"retcode": 0, "retmsg": "service id is svc-1"}, bound
    bind_record = servings["9999"].records("publishBind")[-1]["request"]
    assert bind_record["serviceId"] == "svc-1" and list(bind_record["model"]) == ["guest"]
    assert not servings["10000"].records("publishBind")
    code, no_id = flow(fed, "model", "bind", "-c", write_conf(tmp_path, "bind0.json", {**bind, "service_id": ""}))
    assert code != 0 and no_id["retcode"] == 101 and no_id["retmsg"] == "no service id"
    code, by_job = flow(fed, "model", "bind", "-c", write_conf(tmp_path, "bindj.json", bind), "-j", child)
    assert code == 0, by_job

    # FATE-Serving's own stubs fetch and list models from an agent as from a peer serving
    agent = fed.agent_address("10000")
    with grpc.insecure_channel(agent) as channel:
        stub = ModelServiceStub(channel)
        namespace = f"host#10000#{model.model_id}"
        fetched = stub.modelTransfer(ms.ModelTransferRequest(tableName=child, namespace=namespace), timeout=30)
        listed_models = stub.queryModel(ms.QueryModelRequest(queryType=0), timeout=30)
        missing = stub.modelTransfer(ms.ModelTransferRequest(tableName="nosuch", namespace=namespace), timeout=30)
    assert fetched.statusCode == 0
    cache = json.loads(fetched.cacheData)
    assert "pipeline.pipeline:Pipeline" in cache and "hetero_lr_0.model:HeteroLogisticRegressionParam" in cache
    assert Pipeline.FromString(base64.b64decode(cache["pipeline.pipeline:Pipeline"])).model_version == child
    assert {(i.tableName, i.namespace) for i in listed_models.modelInfos} >= {
        (child, namespace),
        (model.version, namespace),
    }
    assert missing.statusCode == 104

    # predict DSL and conf files, named as FATE names them
    out = tmp_path / "dsl"
    code, written = flow(
        fed, "model", "get-predict-dsl", "--model-id", model.model_id, "--model-version", child, "-o", str(out)
    )
    assert code == 0, written
    (dsl_file,) = out.glob("predict_dsl_*.json")
    assert set(json.loads(dsl_file.read_text())["components"]) == set(inference)
    code, written = flow(
        fed, "model", "get-predict-conf", "--model-id", model.model_id, "--model-version", child, "-o", str(out)
    )
    assert code == 0, written
    (conf_file,) = out.glob("predict_conf_*.json")
    predict_conf = json.loads(conf_file.read_text())
    assert predict_conf["job_parameters"]["common"]["model_version"] == child
    assert predict_conf["job_parameters"]["common"]["job_type"] == "predict"

    # tags hang on the version
    code, tagged = flow(fed, "model", "tag-model", "-j", child, "-t", "prod")
    assert code == 0 and tagged["retmsg"] == f"Adding prod tag for model with job id: {child} successfully."
    code, dup = flow(fed, "model", "tag-model", "-j", child, "-t", "prod")
    assert code != 0 and dup["retmsg"] == f"Model {model.model_id} {child} already been tagged as tag 'prod'."
    code, tags = flow(fed, "model", "tag-list", "-j", child)
    assert tags["data"] == {"tags": [{"name": "prod", "description": ""}], "count": 1}
    code, removed = flow(fed, "model", "tag-model", "-j", child, "-t", "prod", "--remove")
    assert code == 0, removed
    code, gone = flow(fed, "model", "tag-model", "-j", child, "-t", "prod", "--remove")
    assert code != 0 and gone["retmsg"] == f"Model {model.model_id} {child} does not have tag 'prod'."
    code, nothing = flow(fed, "model", "tag-model", "-j", child, "-t", "nosuch", "--remove")
    assert code != 0 and nothing["retmsg"] == "Can not found 'nosuch' tag."

    # beyond FATE: unbind and unload through FATE-Serving's own calls
    code, unbound = flow(
        fed, "model", "unbind", "--model-id", model.model_id, "--model-version", child, "--service-id", "svc-1"
    )
    assert code == 0 and unbound["data"]["guest"] == {"9999": 0}, unbound
    code, unloaded = flow(fed, "model", "unload", "--model-id", model.model_id, "--model-version", child)
    assert code == 0 and unloaded["data"] == {
        "guest": {"9999": 0},
        "host": {"10000": 0},
        "detail": unloaded["data"]["detail"],
    }
    with pytest.raises(KeyError):
        _queried(servings["10000"], child, f"host#10000#{model.model_id}")


def _queried(server: ServingTestServer, table: str, namespace: str) -> dict[str, Any]:
    """What a FATE-Serving test server holds for a model (KeyError when it holds nothing)."""
    with grpc.insecure_channel(server.address) as channel:
        answer = ModelServiceStub(channel).queryModel(
            ms.QueryModelRequest(queryType=2, tableName=table, namespace=namespace), timeout=10
        )
    if not answer.modelInfos:
        raise KeyError(namespace)
    content: dict[str, Any] = json.loads(answer.modelInfos[0].content)
    return content


def test_serving_answering_123_on_one_party(
    serving_federation: LocalFederation,
    servings: dict[str, ServingTestServer],
    imported: GeneratedModel,
    tmp_path: Path,
) -> None:
    code, answer = _deploy(serving_federation, imported)
    assert code == 0, answer
    child = answer["data"]["model_version"]
    servings["10000"].set_control(Faults(fail_load=123, fail_load_message="model init failed"))
    try:
        code, loaded = flow(
            serving_federation,
            "model",
            "load",
            "-c",
            write_conf(tmp_path, "load.json", _load_conf(imported.model_id, child)),
        )
    finally:
        servings["10000"].clear_control()
    assert code != 0 and loaded["retcode"] == 101 and loaded["retmsg"] == "failed"
    assert loaded["data"]["guest"] == {"9999": 104} and loaded["data"]["host"] == {"10000": 123}  # all or nothing
    assert loaded["data"]["detail"]["host"]["10000"]["retmsg"] == "model init failed"
    assert [r["request"]["tableName"] for r in servings["9999"].records("unload")][-1:] == [child]


def test_bad_input_is_refused_and_changes_nothing(
    serving_federation: LocalFederation, imported: GeneratedModel, tmp_path: Path
) -> None:
    fed, model = serving_federation, imported
    before = {p: _versions(fed, p, "guest" if p == "9999" else "host", model.model_id) for p in ("9999", "10000")}
    cases: list[tuple[list[str], int, str]] = [
        (["model", "deploy", "--model-id", model.model_id, "--model-version", "nosuch"], 404, "not found"),
        (
            ["model", "deploy", "--model-id", model.model_id, "--model-version", model.version, "--cpn-list", "nope_0"],
            101,
            "nope_0",
        ),
        (
            [
                "model",
                "deploy",
                "--model-id",
                model.model_id,
                "--model-version",
                model.version,
                "--cpn-step-index",
                "hetero_lr_0:1",
                "--cpn-step-name",
                "hetero_lr_0:step_name",
            ],
            101,
            "Duplicated",
        ),
        (
            [
                "model",
                "deploy",
                "--model-id",
                model.model_id,
                "--model-version",
                model.version,
                "--cpn-step-index",
                "hetero_lr_0",
            ],
            101,
            ":",
        ),
        (
            [
                "model",
                "deploy",
                "--model-id",
                model.model_id,
                "--model-version",
                model.version,
                "--cpn-step-index",
                "hetero_lr_0:12345",
            ],
            101,
            "The checkpoint was not found.",
        ),
        (["model", "load", "-j", "nosuch"], 101, "can not be found"),
        (
            ["model", "unload", "--model-id", model.model_id, "--model-version", "nope"],
            404,
            f"Model {model.model_id} nope not found.",
        ),
    ]
    for args, retcode, needle in cases:
        code, answer = flow(fed, *args)
        assert code != 0, (args, answer)
        assert answer["retcode"] == retcode or (retcode == 101 and answer["retcode"] in (101, 404)), (args, answer)
        assert needle in json.dumps(answer), (args, answer)
    after = {p: _versions(fed, p, "guest" if p == "9999" else "host", model.model_id) for p in ("9999", "10000")}
    assert after == before
    staging = [p for party in ("9999", "10000") for p in (fed.model_cache(party) / ".staging").glob("prep-*")]
    assert staging == []
