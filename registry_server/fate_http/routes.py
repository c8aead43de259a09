"""The JSON routes of FATE-Flow 1.11's model and checkpoint API, each a call of the coordinator's RPC method.

A route reads FATE's request body (a :class:`~client.confs.Conf`: ids as ints or strings, unknown keys
ignored), builds the RPC's request (with :mod:`client.confs` where FATE's confs and the bodies agree), calls
the method (:mod:`registry_server.fate_http.calls`) and answers FATE's JSON (:mod:`client.render`, shaped to
FATE-Flow's keys by :mod:`registry_server.fate_http.rows`). The archive routes are in
:mod:`registry_server.fate_http.archives`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client import confs, render
from client.conf_reader import is_text
from client.confs import Conf
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1 import registry_pb2 as pb
from registry_server.fate_http import rows
from registry_server.fate_http.bodies import (
    CheckpointBody,
    CpnList,
    DeployBody,
    HomoDeployBody,
    JobBody,
    ModelTagBody,
    PredictBody,
    QueryBody,
    TagBody,
    VersionBody,
)
from registry_server.fate_http.calls import Registry
from registry_server.fate_http.replies import Reply, download_error_reply, error_reply, json_reply, status_reply
from registry_server.required import REQUIRED

# The version of FATE-Flow whose HTTP API this is, and of the FATE that ships it (version/get).
VERSIONS = {"FATE": "1.11.4", "FATEFlow": "1.11.2"}
STEP = "step_index or step_name"
ALL_OR_NOTHING = "failed; no party changed: the registry does it on every party or on none"


@dataclass(frozen=True)
class Call:
    """One request to a route: its body and caller, and the way to the RPC methods."""

    body: Conf
    registry: Registry
    peer: str

    def rpc(self, method: str, request: Any) -> Any:
        return self.registry.call(method, request, self.peer)


Route = Callable[[Call], Reply]


def _failed_all_or_nothing(answer: dict[str, Any]) -> dict[str, Any]:
    """A failed multi-party answer keeps FATE's shape; its retmsg says that no party kept a change."""
    if answer["retcode"] != 0:
        answer["retmsg"] = ALL_OR_NOTHING
    return answer


# -- multi-party ------------------------------------------------------------------------------------------


def _load(call: Call) -> Reply:
    job_id = call.body.read(JobBody).job_id
    request = pb.LoadModelRequest(job_id=job_id) if job_id else confs.load_request(call.body, "")
    return json_reply(_failed_all_or_nothing(render.load_answer(call.rpc("LoadModel", request))))


def _bind(call: Call) -> Reply:
    request = confs.bind_request(call.body, call.body.read(JobBody).job_id)
    return json_reply(render.bind_answer(call.rpc("BindModel", request)))


def _migrate(call: Call) -> Reply:
    answer = render.migrate_answer(call.rpc("MigrateModel", confs.migrate_request(call.body)))
    return json_reply(_failed_all_or_nothing(answer))


def _deploy_request(conf: Conf) -> pb.DeployModelRequest:
    """FATE's deploy body.

    ``cpn_list`` (a list, or the CLI's string), ``predict_dsl`` (the SDK's object) or ``dsl`` (the CLI's JSON text), and
    ``components_checkpoint`` ``{cpn: {"step_index"|"step_name": …}}``.
    """
    body = conf.read(DeployBody)
    dsl = body.predict_dsl or body.dsl
    step_index: dict[str, int] = {}
    step_name: dict[str, str] = {}
    for component, step in body.components_checkpoint.items():
        if not isinstance(step, dict):
            raise RegistryError(Reason.INVALID_ARGUMENT, f"components_checkpoint.{component} must be an object")
        index, name = step.get("step_index"), step.get("step_name")
        if index is not None:
            if not (is_text(index) and str(index).lstrip("-").isdigit()):
                raise RegistryError(Reason.INVALID_ARGUMENT, f"Invalid 'step_index' of component {component}")
            step_index[component] = int(index)
        elif name:
            if not is_text(name):
                raise RegistryError(Reason.INVALID_ARGUMENT, f"Invalid 'step_name' of component {component}")
            step_name[component] = str(name)
    cpn_list = body.cpn_list
    return pb.DeployModelRequest(
        model_id=body.model_id,
        model_version=body.model_version,
        cpn_list=confs.parse_cpn_list(cpn_list) if isinstance(cpn_list, str) else conf.read(CpnList).cpn_list,
        predict_dsl_json=dsl if isinstance(dsl, str) else json.dumps(dsl) if dsl else "",
        cpn_step_index=step_index,
        cpn_step_name=step_name,
    )


def _deploy(call: Call) -> Reply:
    """The pipeline reads ``data`` of a failed deploy too: every error answer carries it."""
    try:
        response = call.rpc("DeployModel", _deploy_request(call.body))
    except RegistryError as exc:
        return error_reply(exc, data={})
    return json_reply(_failed_all_or_nothing(render.deploy_answer(response)))


# -- model info, predict DSL and conf ----------------------------------------------------------------------


def _query(call: Call) -> Reply:
    body = call.body.read(QueryBody)
    filters = body.query_filters
    request = pb.GetModelInfoRequest(
        model_id=body.model_id,
        model_version=body.model_version,
        role=body.role,
        party_id=body.party_id,
        detail=rows.needs_detail(filters),
    )
    try:
        response = call.rpc("GetModelInfo", request)
    except RegistryError as exc:
        return error_reply(exc, data=[])
    return json_reply(rows.model_info_answer(response, filters))


def _predict(kind: str, call: Call) -> Reply:
    """A predict DSL or conf, in FATE's two modes.

    With ``filename`` (the CLI) the document itself, an error never HTTP 200; without it (the SDK, the pipeline) the
    envelope whose ``data`` is the document.
    """
    method, request_type = (
        ("GetPredictDsl", pb.GetPredictDslRequest) if kind == "dsl" else ("GetPredictConf", pb.GetPredictConfRequest)
    )
    body = call.body.read(PredictBody)
    filename = body.filename
    request = request_type(
        model_id=body.model_id, model_version=body.model_version, role=body.role, party_id=body.party_id
    )
    try:
        response = call.rpc(method, request)
    except RegistryError as exc:
        return download_error_reply(exc) if filename else error_reply(exc)
    document = response.predict_dsl_json if kind == "dsl" else response.predict_conf_json
    if not filename:
        return json_reply(render.envelope(data=json.loads(document)))
    disposition = f"attachment; filename={filename}"
    return Reply(200, document.encode(), headers=(("Content-Disposition", disposition),))


def _predict_dsl(call: Call) -> Reply:
    return _predict("dsl", call)


def _predict_conf(call: Call) -> Reply:
    return _predict("conf", call)


# -- tags of a model ---------------------------------------------------------------------------------------


def _model_tag(operation: str) -> Route:
    def run(call: Call) -> Reply:
        body = call.body.read(ModelTagBody)
        job_id, tag_name = body.job_id, body.tag_name
        if operation == "retrieve":
            tags: list[pb.Tag] = []
            token = ""
            while True:
                page = call.rpc("ListModelTags", pb.ListModelTagsRequest(job_id=job_id, page_token=token))
                tags.extend(page.tags)
                token = page.next_page_token
                if not token:
                    break
            return json_reply(rows.tag_list_answer(tags))
        if operation == "create":
            response = call.rpc("AddModelTag", pb.AddModelTagRequest(job_id=job_id, tag_name=tag_name))
        else:
            response = call.rpc("RemoveModelTag", pb.RemoveModelTagRequest(job_id=job_id, tag_name=tag_name))
        return json_reply(render.envelope(retmsg=response.retmsg))

    return run


def _tag_create(call: Call) -> Reply:
    body = call.body.read(TagBody)
    request = pb.CreateTagRequest(tag_name=body.tag_name, tag_desc=body.tag_desc)
    return json_reply(render.envelope(retmsg=call.rpc("CreateTag", request).retmsg))


def _tag_retrieve(call: Call) -> Reply:
    """Without ``with_model`` the tags whose name contains ``tag_name``; with it, the models of exactly that tag."""
    body = call.body.read(TagBody)
    with_model = body.with_model
    response = call.rpc("QueryTag", pb.QueryTagRequest(tag_name=body.tag_name, with_model=with_model))
    if not with_model:
        return json_reply(render.envelope(data={"tags": rows.tag_rows(response.tags)}))
    models = [rows.tagged_model(info) for info in response.models]
    return json_reply(render.envelope(data={"models": models, "count": len(models)}))


def _tag_update(call: Call) -> Reply:
    body = call.body.read(TagBody)
    request = pb.UpdateTagRequest(
        tag_name=body.tag_name, new_tag_name=body.new_tag_name, new_tag_desc=body.new_tag_desc
    )
    return json_reply(render.envelope(retmsg=call.rpc("UpdateTag", request).retmsg))


def _tag_destroy(call: Call) -> Reply:
    response = call.rpc("DeleteTag", pb.DeleteTagRequest(tag_name=call.body.read(TagBody).tag_name))
    return json_reply(render.envelope(retmsg=response.retmsg))


def _tag_list(call: Call) -> Reply:
    limit = call.body.read(TagBody).limit
    response = call.rpc("ListTags", pb.ListTagsRequest(limit=int(limit) if limit.isdigit() else 0))
    return json_reply(render.envelope(data={"tags": rows.tag_rows(response.tags, with_count=True)}))


def unsupported(message: str) -> Route:
    """FATE-Flow's answer to a tag operation it lacks."""
    return lambda call: json_reply(render.envelope(int(Retcode.EXCEPTION_ERROR), message))


# -- single party ------------------------------------------------------------------------------------------


def _store(call: Call) -> Reply:
    """FATE-Flow starts a ModelStore job; the registry stores before it answers, and says so."""
    response = call.rpc("StoreModel", confs.store_request(call.body))
    answer = render.store_answer(response)
    answer["data"]["model_info"] = {"model_id": response.model.model_id, "model_version": response.model.model_version}
    answer["retmsg"] = "success; stored before this answer (no job to wait for)"
    return json_reply(answer)


def _restore(call: Call) -> Reply:
    """FATE-Flow starts a ModelRestore job; the registry restores before it answers, and says so."""
    response = call.rpc("RestoreModel", confs.restore_request(call.body))
    answer = rows.imported_answer(response.result)
    answer["retmsg"] = "success; restored before this answer (no job to wait for)"
    return json_reply(answer)


def _homo_convert(call: Call) -> Reply:
    response = call.rpc("HomoConvertModel", confs.homo_convert_request(call.body))
    return json_reply(render.homo_convert_answer(response))


def _homo_deploy(call: Call) -> Reply:
    """FATE's client sends the kubeconfig's text (``config_file_content``).

    A ``config_file`` path would name a file of the coordinator's machine, which is never read for a caller.
    """
    parameters = call.body.read(HomoDeployBody).deployment_parameters
    body = dict(call.body.data)
    body["deployment_parameters"] = {k: v for k, v in parameters.items() if k != "config_file"}
    body.setdefault("deployment_type", "kfserving")
    request = confs.homo_deploy_request(Conf(body))
    return json_reply(render.homo_deploy_answer(call.rpc("HomoDeployModel", request)))


# -- checkpoints ---------------------------------------------------------------------------------------------


def _checkpoint_refusal(exc: RegistryError) -> Reply:
    """FATE-Flow's checkpoint app answers a missing key with HTTP 400, a missing checkpoint with 404."""
    if exc.reason is Reason.MISSING_ARGUMENT:
        missing = exc.metadata.get("missing", "").replace(",", ", ")
        return status_reply(400, f"the following arguments are required: {missing}")
    return error_reply(exc)


def _checkpoint_list(call: Call) -> Reply:
    body = call.body.read(CheckpointBody)
    request = pb.ListCheckpointsRequest(model=body.ref(), component_name=body.component_name)
    try:
        response = call.rpc("ListCheckpoints", request)
    except RegistryError as exc:
        if exc.reason is Reason.MODEL_NOT_FOUND:  # FATE-Flow: no checkpoint of an unknown model, and no error
            return json_reply(render.envelope(data=[]))
        return _checkpoint_refusal(exc)
    return json_reply(render.checkpoint_list_answer(response))


def _checkpoint_get(call: Call) -> Reply:
    body = call.body.read(CheckpointBody)
    request = pb.GetCheckpointRequest(model=body.ref(), component_name=body.component_name)
    step_index, step_name = body.step_index, body.step_name
    missing = REQUIRED["GetCheckpoint"].missing(request) + ([] if step_index is not None or step_name else [STEP])
    if missing:
        return status_reply(400, f"the following arguments are required: {', '.join(missing)}")
    if step_index is not None:
        index = str(step_index) if isinstance(step_index, (int, str)) and not isinstance(step_index, bool) else ""
        if not index.lstrip("-").isdigit():
            return status_reply(400, "Invalid 'step_index'")
        request.step_index = int(index)
    else:
        request.step_name = step_name
    try:
        response = call.rpc("GetCheckpoint", request)
    except RegistryError as exc:
        if exc.reason is Reason.MODEL_NOT_FOUND:
            return status_reply(404, "The checkpoint was not found.")
        return _checkpoint_refusal(exc)
    return json_reply(render.checkpoint_answer(response))


def _version(call: Call) -> Reply:
    module = call.body.read(VersionBody).module or "FATE"
    return json_reply(render.envelope(data={module: VERSIONS.get(module)}))


V1 = "/v1"
POST = frozenset({"POST"})
GET_OR_POST = frozenset({"GET", "POST"})
# path -> (methods, route); the archive routes (import, export) are added by the server.
ROUTES: dict[str, tuple[frozenset[str], Route]] = {
    f"{V1}/model/load": (POST, _load),
    f"{V1}/model/bind": (POST, _bind),
    f"{V1}/model/migrate": (POST, _migrate),
    f"{V1}/model/deploy": (POST, _deploy),
    f"{V1}/model/query": (POST, _query),
    f"{V1}/model/get/predict/dsl": (POST, _predict_dsl),
    f"{V1}/model/get/predict/conf": (POST, _predict_conf),
    f"{V1}/model/model_tag/create": (POST, _model_tag("create")),
    f"{V1}/model/model_tag/remove": (POST, _model_tag("remove")),
    f"{V1}/model/model_tag/retrieve": (POST, _model_tag("retrieve")),
    f"{V1}/model/tag/create": (POST, _tag_create),
    f"{V1}/model/tag/retrieve": (POST, _tag_retrieve),
    f"{V1}/model/tag/update": (POST, _tag_update),
    f"{V1}/model/tag/destroy": (POST, _tag_destroy),
    f"{V1}/model/tag/list": (POST, _tag_list),
    f"{V1}/model/store": (GET_OR_POST, _store),
    f"{V1}/model/restore": (GET_OR_POST, _restore),
    f"{V1}/model/homo/convert": (POST, _homo_convert),
    f"{V1}/model/homo/deploy": (POST, _homo_deploy),
    f"{V1}/checkpoint/list": (POST, _checkpoint_list),
    f"{V1}/checkpoint/get": (POST, _checkpoint_get),
    f"{V1}/version/get": (POST, _version),
}
