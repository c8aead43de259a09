"""FATE's 1.11 ``FlowClient`` SDK and ``pipeline`` SDK, unchanged, against the registry's HTTP API: each a
small script run by the client venv's Python, printing what the SDK returned as one JSON line."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

from tests.conftest import generate_model
from tests.fate_client.conftest import ROLES, HttpFederation, import_with_flow, load_conf
from tests.support.fate_client import FateClient

FLOW_CLIENT_SCRIPT = """
import json, sys
from flow_sdk.client import FlowClient

args = json.loads(sys.argv[1])
ip, port = args["address"].rsplit(":", 1)
client = FlowClient(ip, int(port), "v1")
model = {"model_id": args["model_id"], "model_version": args["model_version"]}
guest = {"role": "guest", "party_id": 9999, **model}
out = {"version": client.remote_version.fate_flow()}
out["import"] = [
    client.model.import_model({"role": role, "party_id": party, **model, "file": path, "force_update": 0})
    for role, party, path in args["archives"]
]
out["info"] = client.model.get_model_info(**model)
out["export"] = client.model.export_model({**guest, "output_path": args["output_path"]})
out["store"] = client.model.export_model(guest, to_database=True)
out["restore"] = client.model.import_model({**guest, "force_update": True}, from_database=True)
out["checkpoints"] = client.checkpoint.list_checkpoints(**guest, component_name="hetero_lr_0")
step = out["checkpoints"]["data"][0]["step_index"]
out["checkpoint"] = client.checkpoint.get_checkpoint(**guest, component_name="hetero_lr_0", step_index=step)
out["deploy"] = client.model.deploy(cpn_list=["data_transform_0", "intersection_0", "hetero_lr_0"], **model)
child = {"model_id": args["model_id"], "model_version": out["deploy"]["data"]["model_version"]}
out["predict_dsl"] = client.model.get_predict_dsl(**child)
out["predict_conf"] = client.model.get_predict_conf(**child)
out["load"] = client.model.load(args["load"] | {"job_parameters": child})
out["bind"] = client.model.bind(args["load"] | {"job_parameters": child, "service_id": "svc-sdk"})
out["tag"] = client.model.tag_model(args["model_version"], "sdk-tag")
out["tags"] = client.model.tag_list(args["model_version"])
out["untag"] = client.model.tag_model(args["model_version"], "sdk-tag", remove=True)
print(json.dumps(out))
"""


def test_flow_client_model_and_checkpoint_methods(
    client: FateClient, http_federation: HttpFederation, tmp_path: Path
) -> None:
    model = generate_model(tmp_path, roles=ROLES, checkpoints=2)
    out = tmp_path / "export"
    args = {
        "address": http_federation.http_address,
        "model_id": model.model_id,
        "model_version": model.version,
        "archives": [[role, int(party), str(path.resolve())] for (role, party), path in model.archives.items()],
        "output_path": str(out),
        "load": load_conf(model.model_id, model.version),
    }

    got = client.python(FLOW_CLIENT_SCRIPT, [json.dumps(args)])

    assert isinstance(got["version"], str) and got["version"], got["version"]
    for answer in got["import"]:
        assert answer["retcode"] == 0 and answer["data"]["model_version"] == model.version, answer
    info = got["info"]
    assert info["retcode"] == 0 and len(info["data"]) == len(model.archives), info
    assert all(row["f_train_dsl"]["components"] and row["f_roles"] == ROLES for row in info["data"])
    assert got["export"]["retcode"] == 0, got["export"]
    exported = out / f"guest#9999#{model.model_id}_{model.version}.zip"
    assert got["export"]["file"] == str(exported) and zipfile.ZipFile(exported).testzip() is None
    assert got["store"]["retcode"] == 0 and got["store"]["data"]["model_info"]["model_version"] == model.version
    assert got["restore"]["retcode"] == 0 and got["restore"]["jobId"], got["restore"]
    steps = got["checkpoints"]["data"]
    assert got["checkpoints"]["retcode"] == 0 and len(steps) == 2, got["checkpoints"]
    param = base64.b64decode(got["checkpoint"]["data"]["models"]["HeteroLogisticRegressionParam"])
    assert hashlib.sha1(param).hexdigest() == steps[0]["models"]["HeteroLogisticRegressionParam"]["sha1"]
    deploy = got["deploy"]
    assert deploy["retcode"] == 0 and deploy["data"]["model_version"] != model.version, deploy
    assert got["predict_dsl"]["retcode"] == 0 and "hetero_lr_0" in got["predict_dsl"]["data"]["components"]
    assert got["predict_conf"]["retcode"] == 0, got["predict_conf"]
    assert got["predict_conf"]["data"]["job_parameters"]["common"]["model_version"] == deploy["data"]["model_version"]
    assert got["load"]["retcode"] == 0 and got["load"]["data"]["guest"] == {"9999": 0}, got["load"]
    assert got["bind"] == {"retcode": 0, "retmsg": "service id is svc-sdk"}
    assert got["tag"]["retcode"] == 0 and got["untag"]["retcode"] == 0, (got["tag"], got["untag"])
    assert {"name": "sdk-tag", "description": None} in got["tags"]["data"]["tags"], got["tags"]


PIPELINE_SCRIPT = """
import json, sys
from pipeline.backend.pipeline import PipeLine
from pipeline.component import DataTransform, HeteroLR, HomoLR, Intersection, Reader
from pipeline.interface import Data

args = json.loads(sys.argv[1])
out = {}

def trained(model_id, model_version, *components):
    # a pipeline as fit() leaves it, without training: compiled, then given the trained model's id and version
    pipeline = PipeLine().set_initiator(role="guest", party_id=9999).set_roles(guest=9999, host=10000, arbiter=10000)
    previous = None
    for component in components:
        pipeline.add_component(component, data=Data(data=previous.output.data) if previous else None)
        previous = component
    pipeline.compile()
    return pipeline.update_model_info(model_id=model_id, model_version=model_version)

hetero = trained(
    args["hetero_id"], args["hetero_version"],
    Reader(name="reader_0"), DataTransform(name="data_transform_0"),
    Intersection(name="intersection_0"), HeteroLR(name="hetero_lr_0"),
)
hetero.deploy_component(["data_transform_0", "intersection_0", "hetero_lr_0"])
child = hetero.get_predict_model_info()
out["deployed"] = {"is_deploy": hetero.is_deploy(), "model_version": child.model_version}
out["predict_dsl"] = hetero.get_predict_dsl()
hetero.online.load()
out["loaded"] = hetero.is_load()
hetero.online.bind("svc-pipeline")
homo = trained(
    args["homo_id"], args["homo_version"],
    Reader(name="reader_0"), DataTransform(name="data_transform_0"), HomoLR(name="homo_lr_0"),
)
out["converted"] = homo.model_convert.convert()
print(json.dumps(out))
"""


def test_pipeline_deploy_load_bind_convert(client: FateClient, http_federation: HttpFederation, tmp_path: Path) -> None:
    hetero = generate_model(tmp_path / "hetero", roles=ROLES)
    import_with_flow(client, hetero, tmp_path)
    homo = generate_model(tmp_path / "homo", algorithm="homo_lr")
    import_with_flow(client, homo, tmp_path)
    args = {
        "hetero_id": hetero.model_id,
        "hetero_version": hetero.version,
        "homo_id": homo.model_id,
        "homo_version": homo.version,
    }
    serving = http_federation.servings["9999"]
    binds = len(serving.records("publishBind"))

    got = client.python(PIPELINE_SCRIPT, [json.dumps(args)])

    child = got["deployed"]["model_version"]
    assert got["deployed"]["is_deploy"] is True and child != hetero.version, got
    assert set(got["predict_dsl"]["components"]) >= {"data_transform_0", "intersection_0", "hetero_lr_0"}
    assert got["loaded"] is True
    assert (
        serving.records("publishLoad")[-1]["request"]["model"]["guest"]["roleModelInfo"]["9999"]["tableName"] == child
    )
    bound = serving.records("publishBind")
    assert len(bound) == binds + 1 and bound[-1]["request"]["serviceId"] == "svc-pipeline"
    [converted] = got["converted"]
    assert converted["component_name"] == "homo_lr_0" and converted["converted_model_path"]
