"""FATE's deploy, all or nothing across parties.

The child version's plan and each party's prepare request; the two-phase engine (:mod:`registry_server.two_phase`)
carries it out.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import peewee

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError, Retcode, missing_keys
from fate_registry.identity import validate_name
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyModelRef, PartyResult
from registry_server.adoption import Adoption
from registry_server.agent_rpc import AgentRpc
from registry_server.agents import party_info, ref_of
from registry_server.catalog import ModelFilter
from registry_server.op_state import OpState
from registry_server.plan import Plan, PlanKind, Prepared
from registry_server.predict_dsl import derive_predict_dsl, validate_predict_dsl
from registry_server.resolution import Resolved, roles_json
from registry_server.two_phase import PrepareStep, Services, TwoPhase

log = logging.getLogger(__name__)
DEPLOY_ROLES = ("arbiter", "host", "guest")
REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
REPEAT_POLL_SECONDS = 0.2


class Deploys:
    """FATE's deploy, planned here and carried out by the two-phase engine."""

    def __init__(self, engine: TwoPhase, adoption: Adoption) -> None:
        self.engine = engine
        self.services = engine.services
        self.adoption = adoption

    def deploy(self, request: pb.DeployModelRequest, caller: str) -> pb.DeployModelResponse:
        missing = [k for k in ("model_id", "model_version") if not getattr(request, k)]
        if missing:
            raise missing_keys(missing)
        catalog = self.services.catalog
        if request.request_id:
            if not REQUEST_ID.fullmatch(request.request_id):
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    "request_id must be 1 to 64 letters, digits, '_' or '-'",
                    {"field": "request_id"},
                )
            if catalog.operation(request.request_id) is not None:
                return self._earlier_deploy(request.request_id)
        both = set(request.cpn_step_index) & set(request.cpn_step_name)
        if both:
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"give a step index or a step name, not both, for {', '.join(sorted(both))}"
            )
        rows = self.adoption.find(ModelFilter(model_id=request.model_id, model_version=request.model_version))
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Deploy model failed. Model {request.model_id} {request.model_version} not found.",
                retcode=Retcode.HTTP_NOT_FOUND,
            )
        roles = roles_json(rows[0].roles_json)
        parties = [(r, p) for r in DEPLOY_ROLES for p in dict.fromkeys(roles.get(r, []))]
        if not parties:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                "Deploy model failed. Cannot found roles of model.",
                retcode=Retcode.HTTP_NOT_FOUND,
            )
        source = self._detail(rows)
        if not source.parent:
            raise RegistryError(Reason.INVALID_ARGUMENT, "Child model could not be deployed.")
        predict_dsl = _predict_dsl(request, json.loads(source.train_dsl_json or "{}"))
        unknown = (set(request.cpn_step_index) | set(request.cpn_step_name)) - set(predict_dsl["components"])
        if unknown:
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"checkpoints were asked for components not deployed: {sorted(unknown)}"
            )
        model = Resolved(request.model_id, request.model_version, roles)
        plan = Plan(
            kind=PlanKind.DEPLOY,
            model_id=model.model_id,
            model_version=model.model_version,
            child=catalog.new_version_id(),
            parties=parties,
            roles=roles,
            parent_info={"parent_model_id": model.model_id, "parent_model_version": model.model_version},
        )
        predict_dsl_json = json.dumps(predict_dsl)
        step = PrepareStep(
            AgentRpc.PREPARE_DEPLOY,
            lambda role, party: agent_pb2.PrepareDeployRequest(
                model=model.ref(role, party),
                child_model_version=plan.child,
                predict_dsl_json=predict_dsl_json,
                cpn_step_index=dict(request.cpn_step_index),
                cpn_step_name=dict(request.cpn_step_name),
            ),
            lambda answer: Prepared(digest=answer.manifest_digest),
        )
        try:
            results = self.engine.run(caller, plan, step, request.request_id)
        except peewee.IntegrityError:  # the same request id, sent twice at once: the other one runs it
            return self._earlier_deploy(request.request_id)
        return pb.DeployModelResponse(model_id=model.model_id, model_version=plan.child, results=results)

    def _earlier_deploy(self, request_id: str) -> pb.DeployModelResponse:
        """The outcome of the deploy logged under ``request_id``, once it has one (within the call timeout)."""
        deadline = time.monotonic() + self.services.deadlines.call_timeout
        while True:
            found = self.services.catalog.operation(request_id)
            if found is None or found[0].operation != PlanKind.DEPLOY:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT, f"request id {request_id} names another operation, not a deploy"
                )
            operation, plan = found
            if OpState(operation.status).final:
                return pb.DeployModelResponse(
                    model_id=operation.model_id, model_version=Plan.from_json(plan).child, results=operation.results
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    Reason.PARTY_UNAVAILABLE,
                    f"deploy {request_id} is still {operation.status}; send it again for its outcome",
                )
            time.sleep(REPEAT_POLL_SECONDS)  # the first call of this request is still running

    def _detail(self, rows: Sequence[PartyModelInfo]) -> PartyModelInfo:
        """A guest's (else a host's, else any) party detail: its train DSL and whether it is a parent."""
        last: RegistryError | None = None
        timeout = self.services.deadlines.call_timeout
        for row in sorted(rows, key=lambda r: (r.role != "guest", r.role != "host")):
            try:
                return party_info(self.services.agents, row.party_id, ref_of(row), timeout)
            except RegistryError as exc:
                last = exc
        assert last is not None
        raise last


def _predict_dsl(request: pb.DeployModelRequest, train_dsl: Mapping[str, Any]) -> dict[str, Any]:
    if request.predict_dsl_json:
        if request.cpn_list:
            raise RegistryError(Reason.INVALID_ARGUMENT, "'cpn_list' should not be set when 'predict_dsl' is set")
        return validate_predict_dsl(request.predict_dsl_json, train_dsl)
    for name in request.cpn_list:
        validate_name(name, "component name")
    return derive_predict_dsl(train_dsl, list(request.cpn_list) or None)


def catalog_deployed(services: Services, operation_id: str, plan: Plan) -> list[PartyResult]:
    """Catalog the committed child, each party's row as the party tells it, then each party's result.

    So a row reads the same whether the catalog or the party serves it.
    """
    refs = [
        PartyModelRef(role=role, party_id=party, model_id=plan.model_id, model_version=plan.child)
        for role, party in plan.parties
    ]
    timeout = services.deadlines.call_timeout
    accounts = services.fanout.run(
        [functools.partial(party_info, services.agents, ref.party_id, ref, timeout) for ref in refs]
    )
    rows = [
        _planned_row(plan, ref, account) if isinstance(account, RegistryError) else account
        for ref, account in zip(refs, accounts, strict=True)
    ]
    services.catalog.record_all(rows)
    return [
        PartyResult(role=role, party_id=party, retcode=0, retmsg=f"deploy model of role {role} {party} success")
        for role, party in plan.parties
    ]


def _planned_row(plan: Plan, ref: PartyModelRef, failure: RegistryError) -> PartyModelInfo:
    """A committed child's row from the plan alone, when its party cannot give its account right now."""
    log.info("deploy %s: party %s gave no account of its child (%s)", ref.model_version, ref.party_id, failure.message)
    roles = {r: [int(p) if p.isdigit() else p for p in ids] for r, ids in plan.roles.items()}  # FATE's form
    return PartyModelInfo(
        role=ref.role,
        party_id=ref.party_id,
        model_id=ref.model_id,
        model_version=ref.model_version,
        roles_json=json.dumps(roles),
        parent=False,
        parent_info_json=json.dumps(plan.parent_info),
        manifest_digest=plan.prepared_by((ref.role, ref.party_id)).digest,
        job_id=plan.child,
    )
