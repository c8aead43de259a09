"""Reading and rewriting the Pipeline buffer that every party model version carries, and the record it gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from fate_registry.errors import Reason, RegistryError
from fate_registry.fate.pipeline_pb2 import Pipeline
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.manifest import Manifest
from party_agent.metadata import PartyModelRecord

PIPELINE_PATH = "variables/data/pipeline/pipeline/Pipeline"


def read_pipeline(version_dir: Path) -> Pipeline:
    """The version's Pipeline; a missing or unreadable one is BAD_ARCHIVE."""
    path = version_dir / PIPELINE_PATH
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(Reason.BAD_ARCHIVE, f"the model holds no Pipeline at {PIPELINE_PATH}") from None
    pipeline = Pipeline()
    try:
        pipeline.ParseFromString(data)
    except DecodeError:
        raise RegistryError(Reason.BAD_ARCHIVE, f"{PIPELINE_PATH} is not a valid Pipeline buffer") from None
    return pipeline


def json_of(data: bytes) -> Any:
    """A JSON bytes field of the Pipeline; empty or invalid JSON reads as an empty object."""
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        return {}


def _roles_of(pipeline: Pipeline) -> dict[str, list[Any]]:
    roles = json_of(pipeline.roles) or json_of(pipeline.train_runtime_conf).get("role", {})
    return {str(r): list(ids) for r, ids in roles.items()} if isinstance(roles, dict) else {}


def party_in_role(pipeline: Pipeline, role: str, party_id: str) -> bool:
    """FATE 1.11 checks the requested role's list in the train conf (ids compared as strings)."""
    conf_roles = json_of(pipeline.train_runtime_conf).get("role") or _roles_of(pipeline)
    return party_id in {str(p) for p in conf_roles.get(role, [])}


def fate_version(version: str) -> tuple[int, ...]:
    """A FATE version string as a comparable tuple: ``"1.11.4"`` → ``(1, 11, 4)``."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def renamed(pipeline: Pipeline, model_id: str, model_version: str) -> Pipeline:
    """What FATE-Flow's import writes when the request names another model id or version."""
    out = Pipeline()
    out.CopyFrom(pipeline)
    out.model_id = model_id
    out.model_version = model_version
    train_conf = json_of(pipeline.train_runtime_conf)
    if train_conf:
        params = train_conf.setdefault("job_parameters", {})
        target = params.setdefault("common", {}) if int(train_conf.get("dsl_version", 1)) == 2 else params
        target["model_id"], target["model_version"] = model_id, model_version
        out.train_runtime_conf = json.dumps(train_conf).encode()
    on_party = json_of(pipeline.runtime_conf_on_party)
    if on_party and fate_version(pipeline.fate_version) > (1, 5, 0):
        on_party.setdefault("job_parameters", {}).update(model_id=model_id, model_version=model_version)
        out.runtime_conf_on_party = json.dumps(on_party).encode()
    return out


def _json_text(data: bytes, default: str = "{}") -> str:
    return json.dumps(json_of(data)) if data else default


def record_from_pipeline(
    ref: PartyModelRef, pipeline: Pipeline, manifest: Manifest, job_id: str, imported: bool
) -> PartyModelRecord:
    """The metadata record of ``ref``, its roles, DSLs and confs taken from ``pipeline``."""
    return PartyModelRecord(
        role=ref.role,
        party_id=ref.party_id,
        model_id=ref.model_id,
        model_version=ref.model_version,
        job_id=job_id,
        manifest=manifest,
        roles_json=json.dumps(_roles_of(pipeline)),
        initiator_role=pipeline.initiator_role,
        initiator_party_id=str(pipeline.initiator_party_id) if pipeline.initiator_party_id else "",
        fate_version=pipeline.fate_version,
        parent=pipeline.parent,
        parent_info_json=_json_text(pipeline.parent_info),
        train_dsl_json=_json_text(pipeline.train_dsl),
        train_runtime_conf_json=_json_text(pipeline.train_runtime_conf),
        inference_dsl_json=_json_text(pipeline.inference_dsl),
        runtime_conf_on_party_json=_json_text(pipeline.runtime_conf_on_party),
        loaded_times=pipeline.loaded_times,
        imported=imported,
    )
