"""Naming a model as FATE does: by a job id (the deployed version), or by model id and version with roles."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from fate_registry.errors import Reason, RegistryError, Retcode, missing_keys
from fate_registry.v1.common_pb2 import PartyModelRef, RoleParties
from registry_server.adoption import Adoption
from registry_server.catalog import ModelFilter
from registry_server.plan import Roles


@dataclass(frozen=True)
class Resolved:
    """A model named by FATE's keys: its id, version and parties by role."""

    model_id: str
    model_version: str
    roles: Roles

    def ref(self, role: str, party_id: str) -> PartyModelRef:
        return PartyModelRef(role=role, party_id=party_id, model_id=self.model_id, model_version=self.model_version)


def roles_json(text: str) -> Roles:
    """A catalog row's ``roles_json`` as role -> party ids (strings); {} when it is not a role map."""
    try:
        roles = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(r): [str(p) for p in ids] for r, ids in roles.items()} if isinstance(roles, dict) else {}


def roles_message(roles: Roles) -> dict[str, RoleParties]:
    """``roles`` as the role map of a request or a response."""
    return {role: RoleParties(party_ids=parties) for role, parties in roles.items()}


def resolve(
    adoption: Adoption, model_id: str, model_version: str, job_id: str, role: Mapping[str, RoleParties]
) -> Resolved:
    """FATE's two ways to name a model: a job id (the deployed version) or model id and version."""
    if job_id:
        rows = adoption.find(ModelFilter(model_version=job_id, role="guest"))
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Model with version {job_id} can not be found in database. "
                "Please check if the model version is valid.",
                retcode=Retcode.ARGUMENT_ERROR,
            )
        return Resolved(rows[0].model_id, job_id, roles_json(rows[0].roles_json))
    missing = [k for k, v in (("model_id", model_id), ("model_version", model_version)) if not v]
    if missing:
        raise missing_keys(missing)
    roles = {r: list(p.party_ids) for r, p in role.items() if p.party_ids}
    if not roles:
        rows = adoption.find(ModelFilter(model_id=model_id, model_version=model_version))
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Model {model_id} {model_version} not found.",
                retcode=Retcode.HTTP_NOT_FOUND,
            )
        roles = roles_json(rows[0].roles_json)
    if not roles:
        raise missing_keys(["role"])
    return Resolved(model_id, model_version, roles)
