"""FATE's JSON answers, built from our response messages. Pure functions: no I/O, no gRPC.

An answer is FATE's envelope ``{"retcode", "retmsg", "jobId"?, "data"?, "meta"?}`` with null
values left out, as FATE-Flow's ``get_json_result`` does.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from client.sdk import ExportResult
from fate_registry.errors import RegistryError, Retcode
from fate_registry.identity import party_model_id
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

Answer = dict[str, Any]

# FATE answers a failed multi-party operation with 101 "failed" (fate_flow.md §1.3).
MULTI_PARTY_FAILED = int(Retcode.ARGUMENT_ERROR)
MODEL_INFO_FROM_DB = "Query model info from db success."
MODEL_INFO_NOT_FOUND = (
    "Query model info failed, cannot find model from db and local model files. "
    "Try use both model id and model version to query model info from local models."
)
FATE_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def envelope(
    retcode: int = 0,
    retmsg: str = "success",
    data: Any = None,
    job_id: str | None = None,
    meta: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Answer:
    """FATE's envelope; ``None`` values (and an empty ``jobId``) are left out."""
    answer = {"retcode": retcode, "retmsg": retmsg, "jobId": job_id or None, "data": data, "meta": meta, **extra}
    return {key: value for key, value in answer.items() if value is not None}


def dumps(answer: Answer) -> str:
    """How FATE's CLI prints an answer."""
    return json.dumps(answer, indent=4, ensure_ascii=False)


def exit_code(answer: Answer) -> int:
    """The process exit code of an answer: 0 for retcode 0, else 1."""
    return 0 if answer.get("retcode") == 0 else 1


def error_answer(error: RegistryError) -> Answer:
    """A registry error as FATE answers it: its FATE retcode and its message."""
    return envelope(error.fate_retcode, error.message)


def unexpected_answer(error: BaseException) -> Answer:
    """An error we did not foresee: its class only, never its repr or a traceback."""
    return envelope(
        int(Retcode.EXCEPTION_ERROR), f"flow failed with an unexpected {type(error).__name__}; nothing more is known"
    )


# Shared pieces ------------------------------------------------------------------------------------


def _json(text: str) -> Any:
    """A JSON text column as an object; empty is None; text that is not JSON stays text."""
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _timestamp(message: Message, field: str) -> datetime.datetime | None:
    """A Timestamp field in local time (FATE stores local times), or None when unset."""
    if not message.HasField(field):
        return None
    moment: datetime.datetime = getattr(message, field).ToDatetime(tzinfo=datetime.UTC)
    return moment.astimezone()


def fate_date(message: Message, field: str) -> str | None:
    """A Timestamp as FATE serialises its date columns."""
    moment = _timestamp(message, field)
    return moment.strftime(FATE_DATE_FORMAT) if moment else None


def _iso_utc(value: common.Checkpoint) -> str | None:
    """A checkpoint's create_time as FATE stores it: naive UTC, ISO 8601."""
    if not value.HasField("create_time"):
        return None
    return value.create_time.ToDatetime().isoformat()


def _compact(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if value is not None}


def _ref(model: common.PartyModelRef) -> dict[str, Any]:
    return {
        "role": model.role,
        "party_id": model.party_id,
        "model_id": model.model_id,
        "model_version": model.model_version,
    }


# Multi-party answers -----------------------------------------------------------------------------


def party_map(results: Iterable[common.PartyResult]) -> dict[str, Any]:
    """``{<role>: {<party_id>: retcode}, "detail": {<role>: {<party_id>: {"retcode", "retmsg"}}}}``.

    A failed party's detail also carries its ``reason``, so the user can tell a refusal from an
    unreachable party.
    """
    data: dict[str, Any] = {}
    detail: dict[str, dict[str, Any]] = {}
    for result in results:
        data.setdefault(result.role, {})[result.party_id] = result.retcode
        entry: dict[str, Any] = {
            "retcode": result.retcode,
            "retmsg": result.retmsg or ("success" if result.retcode == 0 else "failed"),
        }
        if result.retcode and result.reason:
            entry["reason"] = result.reason
        detail.setdefault(result.role, {})[result.party_id] = entry
    data["detail"] = detail
    return data


def multi_party_answer(
    results: Sequence[common.PartyResult],
    success_msg: str = "success",
    job_id: str | None = None,
    **data: Any,
) -> Answer:
    """Overall retcode 0 only when every party answered 0 (DESIGN §4); ``data`` adds keys beside the map."""
    ok = all(result.retcode == 0 for result in results)
    return envelope(
        0 if ok else MULTI_PARTY_FAILED,
        success_msg if ok else "failed",
        data={**_compact(data), **party_map(results)},
        job_id=job_id,
    )


def load_answer(response: pb.LoadModelResponse) -> Answer:
    """FATE's load answer: the job id and each party's result."""
    return multi_party_answer(response.results, job_id=response.job_id)


def bind_answer(response: pb.BindModelResponse) -> Answer:
    """FATE's bind answers the initiator's FATE-Serving status alone: ``{"retcode", "retmsg"}``."""
    failed = [r for r in response.results if r.retcode != 0]
    if not failed:
        return envelope(retmsg=f"service id is {response.service_id}")
    return envelope(retcode=failed[0].retcode, retmsg=failed[0].retmsg)


def deploy_answer(response: pb.DeployModelResponse) -> Answer:
    """FATE's deploy answer: the child's model id and version, and each party's result."""
    return multi_party_answer(response.results, model_id=response.model_id, model_version=response.model_version)


def migrate_answer(response: pb.MigrateModelResponse) -> Answer:
    """FATE names each archive only inside its retmsg; we also list them under ``archives``."""
    archives: dict[str, dict[str, str]] = {}
    for archive in response.archives:
        archives.setdefault(archive.party.role, {})[archive.party.party_id] = archive.path
    return multi_party_answer(
        response.results,
        job_id=response.job_id,
        model_id=response.model_id or None,
        model_version=response.model_version or None,
        archives=archives or None,
    )


def party_results_answer(response: pb.UnloadModelResponse | pb.UnbindModelResponse) -> Answer:
    """The answer of an unload or unbind: each party's result."""
    return multi_party_answer(response.results)


# Single-party answers ----------------------------------------------------------------------------


def import_answer(result: common.ImportModelResult) -> Answer:
    """Import and restore: FATE's ``{job_id, role, party_id, model_id, model_version}`` plus our hashes."""
    return envelope(
        data={
            "job_id": result.job_id,
            **_ref(result.model),
            "sha256": result.archive_sha256,
            "manifest_digest": result.manifest_digest,
        },
    )


def store_answer(response: pb.StoreModelResponse) -> Answer:
    """The stored version, its archive's SHA-256 and where the model store holds it."""
    return envelope(data={**_ref(response.model), "sha256": response.sha256, "location": response.location})


def export_answer(result: ExportResult) -> Answer:
    """FATE's export answer: the file written, its size and CRC-32."""
    return envelope(
        retmsg=f"download successfully, please check {result.path}",
        file=str(result.path),
        data={"size": result.size, "crc32": f"{result.crc32:08x}"},
    )


def predict_file_answer(kind: str, path: Path) -> Answer:
    """get-predict-dsl / get-predict-conf: ``kind`` is "dsl" or "conf"."""
    return envelope(retmsg=f"Query predict {kind} successfully. File path is: {path}")


def delete_answer(response: pb.DeleteModelResponse) -> Answer:
    """The deleted version, and whether its local copy and its stored copy were deleted."""
    return envelope(
        data={
            **_ref(response.model),
            "deleted_local": response.deleted_local,
            "deleted_store": response.deleted_store,
        }
    )


def model_info_row(info: common.PartyModelInfo, detail: bool) -> dict[str, Any]:
    """One row of get-model-info with FATE's ``f_`` keys.

    Without ``detail`` only the columns FATE's CLI asks for (its ``query_filters``); with it every
    column, plus our manifest digest, byte size and file count.
    """
    row: dict[str, Any] = {
        "f_create_date": fate_date(info, "create_time"),
        "f_role": info.role,
        "f_party_id": info.party_id,
        "f_roles": _json(info.roles_json),
        "f_model_id": info.model_id,
        "f_model_version": info.model_version,
        "f_loaded_times": info.loaded_times,
        "f_size": info.size_kib,
        "f_parent": info.parent,
        "f_parent_info": _json(info.parent_info_json),
    }
    if detail:
        moment = _timestamp(info, "create_time")
        train_runtime_conf = _json(info.train_runtime_conf_json)
        row.update(
            f_create_time=int(moment.timestamp() * 1000) if moment else None,
            f_job_id=info.job_id,
            f_initiator_role=info.initiator_role,
            f_initiator_party_id=info.initiator_party_id,
            f_fate_version=info.fate_version,
            f_train_dsl=_json(info.train_dsl_json),
            f_train_runtime_conf=train_runtime_conf,
            f_runtime_conf=train_runtime_conf,
            f_inference_dsl=_json(info.inference_dsl_json),
            f_runtime_conf_on_party=_json(info.runtime_conf_on_party_json),
            f_imported=int(info.imported),
            f_manifest_digest=info.manifest_digest,
            f_size_bytes=info.size_bytes,
            f_file_count=info.file_count,
        )
    return _compact(row)


def model_info_answer(response: pb.GetModelInfoResponse, detail: bool) -> Answer:
    """Parties whose detail could not be fetched are listed under ``meta.failures``."""
    failures = party_map(response.failures)["detail"] if response.failures else None
    meta = {"failures": failures} if failures else None
    if not response.models:
        return envelope(int(Retcode.EXCEPTION_ERROR), MODEL_INFO_NOT_FOUND, data=[], meta=meta)
    rows = [model_info_row(info, detail) for info in response.models]
    return envelope(retmsg=MODEL_INFO_FROM_DB, data=rows, meta=meta)


def tag_list_answer(response: pb.ListModelTagsResponse) -> Answer:
    """The tags of a model, with their count."""
    tags = [{"name": tag.name, "description": tag.description} for tag in response.tags]
    return envelope(data={"tags": tags, "count": len(tags)})


def _checkpoint(checkpoint: common.Checkpoint, models: Mapping[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            "create_time": _iso_utc(checkpoint),
            "step_index": checkpoint.step_index,
            "step_name": checkpoint.step_name,
            "models": dict(models),
        }
    )


def checkpoint_list_answer(response: pb.ListCheckpointsResponse) -> Answer:
    """FATE's checkpoint list: each checkpoint with its buffers' names and SHA-1."""
    return envelope(
        data=[
            _checkpoint(
                checkpoint,
                {
                    name: {"buffer_name": buffer.buffer_name, "sha1": buffer.sha1}
                    for name, buffer in sorted(checkpoint.models.items())
                },
            )
            for checkpoint in response.checkpoints
        ]
    )


def checkpoint_answer(response: pb.GetCheckpointResponse) -> Answer:
    """The buffers as base64, as FATE answers ``checkpoint get``."""
    models = {name: base64.b64encode(raw).decode("ascii") for name, raw in sorted(response.models.items())}
    return envelope(data=_checkpoint(response.checkpoint, models))


def homo_convert_answer(response: pb.HomoConvertModelResponse) -> Answer:
    """FATE's rows ``{component_name, model_alias, converted_model_path}``; the path is relative to the version."""
    rows = [
        {
            "component_name": c.component_name,
            "model_alias": c.model_alias,
            "converted_model_path": c.converted_model_path,
        }
        for c in response.components
    ]
    model = response.model
    name = f"{party_model_id(model.role, model.party_id, model.model_id)}:{model.model_version}"
    return envelope(
        retmsg=f"Conversion of homogeneous federated learning component(s) in model {name} completed. "
        "Use export or homo/deploy to download or deploy the converted model.",
        data=rows,
    )


def homo_deploy_answer(response: pb.HomoDeployModelResponse) -> Answer:
    """``data`` is the created inference service, as FATE answers."""
    return envelope(
        retmsg="An online serving service is started in the kfserving system.",
        data=_json(response.status_json) or {"service_id": response.service_id},
    )


def versions_answer(response: pb.ListModelVersionsResponse) -> Answer:
    """A page of versions, each with its parties by role, bytes, state and tags, and the next page token."""
    rows = []
    for version in response.versions:
        roles: dict[str, list[str]] = {}
        for party in version.parties:
            roles.setdefault(party.role, []).append(party.party_id)
        rows.append(
            _compact(
                {
                    "model_id": version.model_id,
                    "model_version": version.model_version,
                    "create_date": fate_date(version, "create_time"),
                    "roles": roles,
                    "size_bytes": version.size_bytes,
                    "state": version.state,
                    "tags": list(version.tags),
                }
            )
        )
    return envelope(data=rows, meta=_page(response.next_page_token))


def operations_answer(response: pb.ListOperationsResponse) -> Answer:
    """A page of the operation log, each operation with its per-party results, and the next page token."""
    rows = [
        _compact(
            {
                "operation_id": op.operation_id,
                "operation": op.operation,
                "status": op.status,
                "caller": op.caller,
                "model_id": op.model_id or None,
                "model_version": op.model_version or None,
                "start_date": fate_date(op, "start_time"),
                "end_date": fate_date(op, "end_time"),
                "retcode": op.retcode,
                "retmsg": op.retmsg,
                "parties": party_map(op.results) if op.results else None,
            }
        )
        for op in response.operations
    ]
    return envelope(data=rows, meta=_page(response.next_page_token))


def _page(next_page_token: str) -> dict[str, str] | None:
    """Where the next page starts (pass it as ``--page-token``), when there is one."""
    return {"next_page_token": next_page_token} if next_page_token else None
