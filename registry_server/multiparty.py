"""The coordinator's multi-party operations: load, bind, unload, unbind and deploy.

Every party is called at once (:class:`FanOut`), each answer becomes a typed PartyResult, and the
operation log records them. Deploy is all or nothing: every party prepares the child version in
staging; only when all have prepared does the coordinator commit; otherwise every party aborts.
The decision is written to the operation log before it is sent, so a restarted coordinator
finishes a commit or an abort it had started, and aborts a deploy caught while preparing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from fate_registry import faultpoints
from fate_registry.agent.v1 import agent_pb2
from fate_registry.config import ServiceConf
from fate_registry.errors import Reason, RegistryError, Retcode, missing_keys
from fate_registry.identity import gen_model_id, job_ids, validate_name
from fate_registry.migration_roles import party_map
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import Party, PartyModelInfo, PartyModelRef, PartyResult, RoleParties
from registry_server.adoption import Adoption
from registry_server.agent_rpc import AgentRpc, Req, Resp, Rpc
from registry_server.agents import AgentClients, ref_of
from registry_server.catalog import Catalog, ModelFilter
from registry_server.deletes import DELETE, settle_delete
from registry_server.fanout import REACH_SECONDS, FanOut, PartyCall
from registry_server.oplog import OperationLog
from registry_server.predict_dsl import derive_predict_dsl, validate_predict_dsl
from registry_server.transport import UNREACHABLE_KEY

log = logging.getLogger(__name__)
DEPLOY_ROLES = ("arbiter", "host", "guest")
SERVING_ROLES = ("guest", "host")  # FATE-Flow loads on every party but the arbiter
IN_DOUBT = ("import", "restore", DELETE)  # they write (or forget) in the catalog after the party's answer
REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
FINAL_STATUSES = ("success", "failed", "rolled_back", "interrupted", "cancelled")
REPEAT_POLL_SECONDS = 0.2
# Added to the result of a party the abort could not be sent to, while it is not confirmed.
ABORT_NOT_CONFIRMED = "; the abort is not confirmed yet: the coordinator resends it until it is"
Roles = dict[str, list[str]]


@dataclass(frozen=True)
class Resolved:
    model_id: str
    model_version: str
    roles: Roles


def _roles_json(text: str) -> Roles:
    try:
        roles = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(r): [str(p) for p in ids] for r, ids in roles.items()} if isinstance(roles, dict) else {}


def _roles_message(roles: Roles) -> dict[str, RoleParties]:
    return {role: RoleParties(party_ids=parties) for role, parties in roles.items()}


def _result(role: str, party_id: str, answer: Any) -> PartyResult:
    if isinstance(answer, RegistryError):
        return PartyResult(
            role=role, party_id=party_id, retcode=answer.fate_retcode, retmsg=answer.message, reason=answer.reason.name
        )
    return PartyResult(role=role, party_id=party_id, retcode=answer.retcode, retmsg=answer.retmsg)


class MultiParty:
    def __init__(
        self, conf: ServiceConf, catalog: Catalog, agents: AgentClients, fanout: FanOut, adoption: Adoption
    ) -> None:
        self.conf = conf
        self.catalog = catalog
        self.adoption = adoption  # the catalog's lookups, asking the parties on a miss
        self.agents = agents
        self.fanout = fanout
        self.oplog = OperationLog(catalog)
        # The two-phase operations a request of this process is carrying out: recovery leaves them alone.
        self._active: set[str] = set()
        self._active_lock = threading.Lock()

    # -- resolving a model --------------------------------------------------------------------------

    def resolve(self, model_id: str, model_version: str, job_id: str, role: Mapping[str, RoleParties]) -> Resolved:
        """FATE's two ways to name a model: a job id (the deployed version) or model id and version."""
        if job_id:
            rows = self.adoption.find(ModelFilter(model_version=job_id, role="guest"))
            if not rows:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND,
                    f"Model with version {job_id} can not be found in database. "
                    "Please check if the model version is valid.",
                    retcode=Retcode.ARGUMENT_ERROR,
                )
            return Resolved(rows[0].model_id, job_id, _roles_json(rows[0].roles_json))
        missing = [k for k, v in (("model_id", model_id), ("model_version", model_version)) if not v]
        if missing:
            raise missing_keys(missing)
        roles = {r: list(p.party_ids) for r, p in role.items() if p.party_ids}
        if not roles:
            rows = self.adoption.find(ModelFilter(model_id=model_id, model_version=model_version))
            if not rows:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND,
                    f"Model {model_id} {model_version} not found.",
                    retcode=Retcode.HTTP_NOT_FOUND,
                )
            roles = _roles_json(rows[0].roles_json)
        if not roles:
            raise missing_keys(["role"])
        return Resolved(model_id, model_version, roles)

    def _ref(self, model: Resolved, role: str, party_id: str) -> PartyModelRef:
        return PartyModelRef(role=role, party_id=party_id, model_id=model.model_id, model_version=model.model_version)

    def _serving_parties(self, model: Resolved) -> list[tuple[str, str]]:
        return [(role, p) for role in model.roles if role in SERVING_ROLES for p in dict.fromkeys(model.roles[role])]

    def _fan(
        self,
        operation: str,
        caller: str,
        model: Resolved,
        parties: Sequence[tuple[str, str]],
        make: Callable[[str, str, str], Callable[[float], Any]],
        idempotent: bool,
        undo: Callable[[str, str, str], Callable[[float], Any]] | None = None,
    ) -> list[PartyResult]:
        """Call ``make(role, party, operation_id)`` on every party at once; log and return the results.

        With ``undo``, a call is all or nothing: when a party fails, ``undo`` is called on every party
        that succeeded, and those are answered as rolled back.
        """
        retry_for = REACH_SECONDS if idempotent else 0.0
        with self.oplog.track(operation, caller, model.model_id, model.model_version) as op:
            calls = [PartyCall(role, party, make(role, party, op.operation_id), retry_for) for role, party in parties]
            answers = self.fanout.parties(calls, self.conf.coordinator.call_timeout)
            results = [_result(role, party, a) for (role, party), a in zip(parties, answers, strict=True)]
            if undo is not None and any(r.retcode for r in results):
                results = self._undo(operation, results, undo, op.operation_id)
            op.results.extend(results)
            return list(op.results)

    def _undo(
        self,
        operation: str,
        results: list[PartyResult],
        undo: Callable[[str, str, str], Callable[[float], Any]],
        operation_id: str,
    ) -> list[PartyResult]:
        """Undo the parties that succeeded, because another failed; their results say whether it worked."""
        done = [r for r in results if r.retcode == 0]
        calls = [PartyCall(r.role, r.party_id, undo(r.role, r.party_id, operation_id), REACH_SECONDS) for r in done]
        undone = dict(zip(map(id, done), self.fanout.parties(calls, self.conf.coordinator.call_timeout), strict=True))
        failed = ", ".join(dict.fromkeys(r.party_id for r in results if r.retcode))
        rolled_back = []
        for result in results:
            if result.retcode:
                rolled_back.append(result)
                continue
            answer = undone[id(result)]
            what = f"{operation} on role {result.role} {result.party_id}"
            message = (
                f"{what} could not be rolled back after party {failed} failed: {answer.message}"
                if isinstance(answer, RegistryError)
                else f"{what} rolled back: party {failed} failed"
            )
            rolled_back.append(
                PartyResult(
                    role=result.role,
                    party_id=result.party_id,
                    retcode=Retcode.FEDERATED_ERROR,
                    retmsg=message,
                    reason="ABORTED",
                )
            )
        return rolled_back

    def learn(self, ref: PartyModelRef) -> None:
        """Catalog a version a party holds that the catalog does not know: the party brought it back
        from the model store on its own (``enable_model_store``) while serving an export or a load."""
        if self.catalog.knows(ref.model_id, ref.model_version, ref.role, ref.party_id):
            return
        try:
            self.catalog.record(self.agents.party_info(ref))
        except RegistryError as exc:
            log.info(
                "could not catalog %s %s of party %s: %s", ref.model_id, ref.model_version, ref.party_id, exc.message
            )

    def settle_in_doubt(self) -> None:
        """Ask the party of every operation in doubt whether it holds the version, and catalog what it
        says (imports and restores whose coordinator stopped while relaying them are in doubt: :meth:`recover`)."""
        for operation in self.catalog.in_doubt():
            if not operation.results:  # logged before operations named their party: nobody to ask
                message = "interrupted by a stop of the coordinator"
                self.catalog.finish_operation(operation.operation_id, "failed", [], Retcode.OPERATING_ERROR, message)
                continue
            party = operation.results[0]
            ref = PartyModelRef(
                role=party.role,
                party_id=party.party_id,
                model_id=operation.model_id,
                model_version=operation.model_version,
            )
            if operation.operation == DELETE:
                settle_delete(self.catalog, self.agents, operation, ref)
                continue
            try:
                self.catalog.record(self.agents.party_info(ref))
            except RegistryError as exc:
                if exc.reason is not Reason.MODEL_NOT_FOUND:
                    continue  # the party is still away: asked again next time
                done = PartyResult(role=ref.role, party_id=ref.party_id, retcode=exc.fate_retcode, retmsg=exc.message)
                message = f"the answer of party {ref.party_id} was lost; it does not hold the version"
                self.catalog.finish_operation(operation.operation_id, "failed", [done], exc.fate_retcode, message)
                continue
            message = f"the answer of party {ref.party_id} was lost; it holds the version, now in the catalog"
            done = PartyResult(role=ref.role, party_id=ref.party_id, retcode=0, retmsg=message)
            self.catalog.finish_operation(operation.operation_id, "success", [done], Retcode.SUCCESS, message)
            log.info("%s %s: %s", operation.operation, operation.operation_id, message)

    # -- FATE-Serving operations --------------------------------------------------------------------

    def load(self, request: pb.LoadModelRequest, caller: str) -> pb.LoadModelResponse:
        model = self.resolve(request.model_id, request.model_version, request.job_id, request.role)
        roles = _roles_message(model.roles)

        def make(role: str, party: str, operation_id: str) -> Callable[[float], Any]:
            message = agent_pb2.LoadModelRequest(
                model=self._ref(model, role, party),
                role=roles,
                load_type=request.load_type,
                file_path=request.file_path,
                use_transfer_url_on_serving=request.use_transfer_url_on_serving,
            )
            return lambda timeout: self.agents.call(party, AgentRpc.LOAD_MODEL, message, operation_id, timeout)

        def unload(role: str, party: str, operation_id: str) -> Callable[[float], Any]:
            message = agent_pb2.UnloadModelRequest(model=self._ref(model, role, party))
            return lambda timeout: self.agents.call(party, AgentRpc.UNLOAD_MODEL, message, operation_id, timeout)

        results = self._fan("load", caller, model, self._serving_parties(model), make, idempotent=True, undo=unload)
        loaded = [(r.role, r.party_id) for r in results if r.retcode == 0]
        for role, party in loaded:  # a party may have brought the version back from the model store
            self.learn(self._ref(model, role, party))
        self.catalog.count_loads(model.model_id, model.model_version, loaded)
        return pb.LoadModelResponse(job_id=job_ids.next(), results=results)

    def bind(self, request: pb.BindModelRequest, caller: str) -> pb.BindModelResponse:
        if not request.service_id:
            raise RegistryError(Reason.MISSING_ARGUMENT, "no service id", retcode=Retcode.ARGUMENT_ERROR)
        if any(c in request.service_id for c in "?:/& ") or len(request.service_id) > 255:
            raise RegistryError(
                Reason.INVALID_ARGUMENT,
                f"service id {request.service_id!r} may not contain '?', ':', '/', '&' or spaces",
            )
        model = self.resolve(request.model_id, request.model_version, request.job_id, request.role)
        if request.initiator.role:
            initiator = request.initiator
        elif model.roles.get("guest"):
            initiator = Party(role="guest", party_id=model.roles["guest"][0])
        else:  # no initiator given, and no guest to stand for it
            raise missing_keys(["initiator"])
        message = agent_pb2.BindModelRequest(
            model=self._ref(model, initiator.role, initiator.party_id),
            role=_roles_message(model.roles),
            service_id=request.service_id,
            servings=list(request.servings),
        )
        results = self._fan(
            "bind",
            caller,
            model,
            [(initiator.role, initiator.party_id)],
            lambda role, party, op_id: lambda t: self.agents.call(party, AgentRpc.BIND_MODEL, message, op_id, t),
            idempotent=True,
        )
        return pb.BindModelResponse(service_id=request.service_id, results=results)

    def unload(self, request: pb.UnloadModelRequest, caller: str) -> pb.UnloadModelResponse:
        model = self.resolve(request.model_id, request.model_version, "", {})

        def make(role: str, party: str, operation_id: str) -> Callable[[float], Any]:
            message = agent_pb2.UnloadModelRequest(model=self._ref(model, role, party))
            return lambda timeout: self.agents.call(party, AgentRpc.UNLOAD_MODEL, message, operation_id, timeout)

        return pb.UnloadModelResponse(
            results=self._fan("unload", caller, model, self._serving_parties(model), make, idempotent=True)
        )

    def unbind(self, request: pb.UnbindModelRequest, caller: str) -> pb.UnbindModelResponse:
        if not request.service_ids:
            raise missing_keys(["service_ids"])
        model = self.resolve(request.model_id, request.model_version, "", {})
        guests = [("guest", p) for p in model.roles.get("guest", [])]

        def make(role: str, party: str, operation_id: str) -> Callable[[float], Any]:
            message = agent_pb2.UnbindModelRequest(
                model=self._ref(model, role, party), service_ids=list(request.service_ids)
            )
            return lambda timeout: self.agents.call(party, AgentRpc.UNBIND_MODEL, message, operation_id, timeout)

        return pb.UnbindModelResponse(results=self._fan("unbind", caller, model, guests, make, idempotent=True))

    # -- deploy ------------------------------------------------------------------------------------

    def deploy(self, request: pb.DeployModelRequest, caller: str) -> pb.DeployModelResponse:
        missing = [k for k in ("model_id", "model_version") if not getattr(request, k)]
        if missing:
            raise missing_keys(missing)
        if request.request_id:
            if not REQUEST_ID.fullmatch(request.request_id):
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    "request_id must be 1 to 64 letters, digits, '_' or '-'",
                    {"field": "request_id"},
                )
            if self.catalog.operation(request.request_id) is not None:
                return self._earlier_deploy(request.request_id)
        rows = self.adoption.find(ModelFilter(model_id=request.model_id, model_version=request.model_version))
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Deploy model failed. Model {request.model_id} {request.model_version} not found.",
                retcode=Retcode.HTTP_NOT_FOUND,
            )
        roles = _roles_json(rows[0].roles_json)
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
        predict_dsl = self._predict_dsl(request, json.loads(source.train_dsl_json or "{}"))
        both = set(request.cpn_step_index) & set(request.cpn_step_name)
        if both:
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"give a step index or a step name, not both, for {', '.join(sorted(both))}"
            )
        unknown = (set(request.cpn_step_index) | set(request.cpn_step_name)) - set(predict_dsl["components"])
        if unknown:
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"checkpoints were asked for components not deployed: {sorted(unknown)}"
            )
        child = self.catalog.new_version_id()
        model = Resolved(request.model_id, request.model_version, roles)
        plan: dict[str, Any] = {
            "kind": "deploy",
            "model_id": model.model_id,
            "model_version": model.model_version,
            "child": child,
            "roles": roles,
            "parties": parties,
            "parent_info": {"parent_model_id": model.model_id, "parent_model_version": model.model_version},
        }

        predict_dsl_json = json.dumps(predict_dsl)

        def make(role: str, party: str) -> agent_pb2.PrepareDeployRequest:
            return agent_pb2.PrepareDeployRequest(
                model=self._ref(model, role, party),
                child_model_version=child,
                predict_dsl_json=predict_dsl_json,
                cpn_step_index=dict(request.cpn_step_index),
                cpn_step_name=dict(request.cpn_step_name),
            )

        try:
            results = self._two_phase("deploy", caller, plan, AgentRpc.PREPARE_DEPLOY, make, request.request_id)
        except peewee.IntegrityError:  # the same request id, sent twice at once: the other one runs it
            return self._earlier_deploy(request.request_id)
        return pb.DeployModelResponse(model_id=model.model_id, model_version=child, results=results)

    def _earlier_deploy(self, request_id: str) -> pb.DeployModelResponse:
        """The outcome of the deploy logged under ``request_id``, once it has one (within the call timeout)."""
        deadline = time.monotonic() + self.conf.coordinator.call_timeout
        while True:
            found = self.catalog.operation(request_id)
            if found is None or found[0].operation != "deploy":
                raise RegistryError(
                    Reason.INVALID_ARGUMENT, f"request id {request_id} names another operation, not a deploy"
                )
            operation, plan = found
            if operation.status in FINAL_STATUSES:
                return pb.DeployModelResponse(
                    model_id=operation.model_id, model_version=plan.get("child", ""), results=operation.results
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    Reason.PARTY_UNAVAILABLE,
                    f"deploy {request_id} is still {operation.status}; send it again for its outcome",
                )
            time.sleep(REPEAT_POLL_SECONDS)  # the first call of this request is still running

    def migrate(self, request: pb.MigrateModelRequest, caller: str) -> pb.MigrateModelResponse:
        """FATE's migrate (fate_flow.md §6.8), all or nothing: every executing party prepares its
        rewritten slice and its archive; only when all have are they committed."""
        missing = [
            k
            for k, present in (
                ("migrate_initiator", request.migrate_initiator.role and request.migrate_initiator.party_id),
                ("role", request.role),
                ("migrate_role", request.migrate_role),
                ("model_id", request.model_id),
                ("model_version", request.model_version),
                ("execute_party", request.execute_party),
            )
            if not present
        ]
        if missing:
            raise missing_keys(missing)
        old = {r: list(p.party_ids) for r, p in request.role.items()}
        new = {r: list(p.party_ids) for r, p in request.migrate_role.items()}
        moves = party_map(old, new)  # FATE's checks of the two role maps, with FATE's messages
        execute = {r: list(dict.fromkeys(p.party_ids)) for r, p in request.execute_party.items()}
        for role, ids in execute.items():
            outside = [i for i in ids if i not in old.get(role, [])]
            if outside:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    f"execute_party {role} {', '.join(outside)} is not in the model's role {role}: {old.get(role, [])}",
                )
        self._check_new_sites({moves[r][p]: p for r, ids in execute.items() for p in ids if p in moves.get(r, {})})
        job_id = self.catalog.new_version_id()
        unify = request.unify_model_version or job_id
        validate_name(unify, "unify_model_version")
        new_model_id = gen_model_id(new)
        parties = [(r, p) for r, ids in execute.items() for p in ids]
        plan: dict[str, Any] = {
            "kind": "migrate",
            "model_id": request.model_id,
            "model_version": request.model_version,
            "new_model_id": new_model_id,
            "child": unify,
            "parties": parties,
        }

        def make(role: str, party: str) -> agent_pb2.PrepareMigrateRequest:
            return agent_pb2.PrepareMigrateRequest(
                model=PartyModelRef(
                    role=role, party_id=party, model_id=request.model_id, model_version=request.model_version
                ),
                role=request.role,
                migrate_role=request.migrate_role,
                migrate_initiator=request.migrate_initiator,
                new_model_version=unify,
            )

        results = self._two_phase("migrate", caller, plan, AgentRpc.PREPARE_MIGRATE, make)
        prepared: dict[str, dict[str, str]] = plan.get("prepared", {})
        archives = [
            pb.MigratedArchive(party=Party(role=r, party_id=p), path=prepared[f"{r}#{p}"]["archive"])
            for r, p in parties
            if f"{r}#{p}" in prepared and all(x.retcode == 0 for x in results)
        ]
        return pb.MigrateModelResponse(
            job_id=job_id, model_id=new_model_id, model_version=unify, results=results, archives=archives
        )

    def _check_new_sites(self, sites: Mapping[str, str]) -> None:
        """A migrated slice stays with the agent that prepares it, under its new party id, and is reached
        through that agent: the new id must not be a party of this federation (whose agent would be asked
        instead), nor one whose slices another party's agent holds already."""
        for new_party, site in sites.items():
            if new_party == site:
                continue
            if new_party in self.conf.parties:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    f"cannot migrate party {site}'s slice to party {new_party}: {new_party} is a party of this "
                    f"federation, and the slice would stay on the agent of {site}; migrate to party ids this "
                    "federation does not use",
                )
            holder = self.catalog.site_of(new_party)
            if holder is not None and holder != site:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    f"cannot migrate party {site}'s slice to party {new_party}: the agent of {holder} already "
                    f"holds migrated slices of party {new_party}",
                )

    def _two_phase(
        self,
        operation: str,
        caller: str,
        plan: dict[str, Any],
        prepare: Rpc[Req, Resp],
        make: Callable[[str, str], Req],
        operation_id: str = "",
    ) -> list[PartyResult]:
        """Prepare on every party at once; commit everywhere if all prepared, else abort everywhere.

        The plan, and then the decision, are written to the operation log before they are acted on.
        """
        operation_id = operation_id or uuid.uuid4().hex
        with self._carrying(operation_id):
            parties = plan["parties"]
            pending = [PartyResult(role=r, party_id=p, retcode=Retcode.RUNNING, retmsg="running") for r, p in parties]
            self.catalog.start_operation(
                operation, caller, plan["model_id"], plan["model_version"], operation_id=operation_id, pending=pending
            )
            self.catalog.set_plan(operation_id, "preparing", plan)
            faultpoints.reached("coordinator.two_phase.preparing")

            def call(role: str, party: str) -> Callable[[float], Any]:
                message = make(role, party)
                return lambda timeout: self.agents.call(party, prepare, message, operation_id, timeout)

            answers = self.fanout.parties(
                [PartyCall(r, p, call(r, p), REACH_SECONDS) for r, p in parties], self.conf.coordinator.deploy_timeout
            )
            prepared = [a for a in answers if not isinstance(a, RegistryError)]
            if len(prepared) < len(answers):
                return self._abort(operation_id, plan, answers)
            plan["prepared"] = {
                f"{r}#{p}": {
                    "digest": a.manifest_digest,
                    "archive": getattr(a, "archive_path", ""),
                    "new_party_id": a.new_model.party_id if isinstance(a, agent_pb2.PrepareMigrateResponse) else "",
                }
                for (r, p), a in zip(parties, prepared, strict=True)
            }
            return self._commit(operation_id, plan)

    @contextlib.contextmanager
    def _carrying(self, operation_id: str) -> Iterator[None]:
        """Mark an operation as carried out by a request of this process, for recovery to leave alone."""
        with self._active_lock:
            self._active.add(operation_id)
        try:
            yield
        finally:
            with self._active_lock:
                self._active.discard(operation_id)

    def _detail(self, rows: Sequence[PartyModelInfo]) -> PartyModelInfo:
        """A guest's (else a host's, else any) party detail: its train DSL and whether it is a parent."""
        last: RegistryError | None = None
        for row in sorted(rows, key=lambda r: (r.role != "guest", r.role != "host")):
            try:
                return self.agents.party_info(ref_of(row))
            except RegistryError as exc:
                last = exc
        assert last is not None
        raise last

    @staticmethod
    def _predict_dsl(request: pb.DeployModelRequest, train_dsl: Mapping[str, Any]) -> dict[str, Any]:
        if request.predict_dsl_json:
            if request.cpn_list:
                raise RegistryError(Reason.INVALID_ARGUMENT, "'cpn_list' should not be set when 'predict_dsl' is set")
            return validate_predict_dsl(request.predict_dsl_json, train_dsl)
        for name in request.cpn_list:
            validate_name(name, "component name")
        return derive_predict_dsl(train_dsl, list(request.cpn_list) or None)

    def _party_ids(self, plan: Mapping[str, Any]) -> list[str]:
        return list(dict.fromkeys(p for _, p in plan["parties"]))

    def _decide(self, operation_id: str, parties: Sequence[str], commit: bool) -> dict[str, RegistryError | object]:
        """Send the decision (commit or abort) to ``parties`` at once, retrying for a moment while one is
        unavailable; each party's answer, or its error.

        A decision is a rename or a removal, not a copy: each party has the short deadline (at most the
        deploy's), so a party that hangs delays the answer by ``call_timeout``, not a second ``deploy_timeout``."""
        commit_request = agent_pb2.CommitOperationRequest(operation_id=operation_id)
        abort_request = agent_pb2.AbortOperationRequest(operation_id=operation_id)

        def make(party: str) -> Callable[[float], object]:
            if commit:
                return lambda t: self.agents.call(party, AgentRpc.COMMIT_OPERATION, commit_request, operation_id, t)
            return lambda t: self.agents.call(party, AgentRpc.ABORT_OPERATION, abort_request, operation_id, t)

        deadline = min(self.conf.coordinator.call_timeout, self.conf.coordinator.deploy_timeout)
        answers = self.fanout.parties([PartyCall("", p, make(p), REACH_SECONDS) for p in parties], deadline)
        return dict(zip(parties, answers, strict=True))

    def _commit(self, operation_id: str, plan: dict[str, Any]) -> list[PartyResult]:
        self.catalog.set_plan(operation_id, "committing", plan)
        faultpoints.reached("coordinator.two_phase.committing")
        answers = self._decide(operation_id, self._party_ids(plan), commit=True)
        if any(isinstance(a, RegistryError) for a in answers.values()):
            failed = ", ".join(p for p, a in answers.items() if isinstance(a, RegistryError))
            why = "; ".join(f"{p}: {a.message}" for p, a in answers.items() if isinstance(a, RegistryError))
            log.error("deploy %s: commit not yet acknowledged (%s); it will be resent", operation_id, why)
            raise RegistryError(
                Reason.PARTY_UNAVAILABLE,
                f"every party prepared the deploy and it is committed, but {failed} did not confirm yet; "
                "the coordinator resends the commit until it does",
            )
        faultpoints.reached("coordinator.two_phase.committed")
        return self._finish_commit(operation_id, plan)

    def _finish_commit(self, operation_id: str, plan: Mapping[str, Any]) -> list[PartyResult]:
        """Catalog the committed child, each party's row as the party tells it (so a row reads the same
        whether the catalog or the party serves it), then answer."""
        if plan.get("kind") == "migrate":
            return self._finish_migrate(operation_id, plan)
        parties = [(role, party) for role, party in plan["parties"]]
        refs = [
            PartyModelRef(role=role, party_id=party, model_id=plan["model_id"], model_version=plan["child"])
            for role, party in parties
        ]
        accounts = self.fanout.run([functools.partial(self._info_at, ref.party_id, ref) for ref in refs])
        rows = [
            self._planned_row(plan, ref, account) if isinstance(account, RegistryError) else account
            for ref, account in zip(refs, accounts, strict=True)
        ]
        results = [
            PartyResult(role=role, party_id=party, retcode=0, retmsg=f"deploy model of role {role} {party} success")
            for role, party in parties
        ]
        self.catalog.record_all(rows)
        self.catalog.finish_operation(operation_id, "success", results, Retcode.SUCCESS, "success")
        return results

    @staticmethod
    def _planned_row(plan: Mapping[str, Any], ref: PartyModelRef, failure: RegistryError) -> PartyModelInfo:
        """A committed child's row from the plan alone, when its party cannot give its account right now."""
        log.info(
            "deploy %s: party %s gave no account of its child (%s)", ref.model_version, ref.party_id, failure.message
        )
        roles = {r: [int(p) if p.isdigit() else p for p in ids] for r, ids in plan["roles"].items()}  # FATE's form
        return PartyModelInfo(
            role=ref.role,
            party_id=ref.party_id,
            model_id=ref.model_id,
            model_version=ref.model_version,
            roles_json=json.dumps(roles),
            parent=False,
            parent_info_json=json.dumps(plan["parent_info"]),
            manifest_digest=plan.get("prepared", {}).get(f"{ref.role}#{ref.party_id}", {}).get("digest", ""),
            job_id=plan["child"],
        )

    def _finish_migrate(self, operation_id: str, plan: Mapping[str, Any]) -> list[PartyResult]:
        """Catalog the committed slices, each as its party tells it (they stay on the agents that prepared
        them, under the new party ids), then FATE's answer text per party."""
        prepared = plan.get("prepared", {})
        slices = [
            (
                party,
                PartyModelRef(
                    role=role, party_id=new_party, model_id=plan["new_model_id"], model_version=plan["child"]
                ),
            )
            for role, party in plan["parties"]
            if (new_party := prepared.get(f"{role}#{party}", {}).get("new_party_id"))
        ]
        infos = self.fanout.run([functools.partial(self._info_at, site, ref) for site, ref in slices])
        self.catalog.record_all(
            [info for info in infos if not isinstance(info, RegistryError)],
            {ref.party_id: site for site, ref in slices if ref.party_id != site},
        )
        for (site, ref), info in zip(slices, infos, strict=True):
            if isinstance(info, RegistryError):  # committed, but its account is not to be had now: learnt later
                log.info(
                    "migrate %s: slice %s of %s not catalogued yet: %s", operation_id, ref.party_id, site, info.message
                )
        results = []
        for role, party in plan["parties"]:
            archive = plan.get("prepared", {}).get(f"{role}#{party}", {}).get("archive", "")
            message = (
                "Migrating model successfully. The configuration of model has been modified automatically. "
                f"New model id is: {plan['new_model_id']}, model version is: {plan['child']}. "
                f"Model files can be found at '{archive}'."
            )
            results.append(PartyResult(role=role, party_id=party, retcode=0, retmsg=message))
        self.catalog.finish_operation(operation_id, "success", results, Retcode.SUCCESS, "success")
        return results

    def _info_at(self, site: str, ref: PartyModelRef) -> PartyModelInfo:
        """A party's own account of a version, asked of the agent of ``site`` (which holds it)."""
        request = agent_pb2.GetModelInfoRequest(model=ref)
        answer = self.agents.call(site, AgentRpc.GET_MODEL_INFO, request, "", self.conf.coordinator.call_timeout)
        info: PartyModelInfo = answer.info
        return info

    def _abort(self, operation_id: str, plan: dict[str, Any], answers: Sequence[Any]) -> list[PartyResult]:
        """Abort everywhere. Each party's outcome is kept in the plan, so that an abort a party did not
        confirm is resent by the maintenance loop (and after a restart) until it is."""
        kind = plan.get("kind", "deploy")
        outcome = []
        for (role, party), answer in zip(plan["parties"], answers, strict=True):
            if isinstance(answer, RegistryError):
                outcome.append(_result(role, party, answer))
            else:
                message = f"{kind} on role {role} {party} rolled back: another party failed"
                outcome.append(
                    PartyResult(
                        role=role, party_id=party, retcode=Retcode.FEDERATED_ERROR, retmsg=message, reason="ABORTED"
                    )
                )
        plan["outcome"] = [_result_dict(r) for r in outcome]
        self.catalog.set_plan(operation_id, "aborting", plan)
        # A party whose prepare could not reach it is sent the abort by the maintenance loop, not while the
        # caller waits: nothing was sent to it, and trying again now would only delay the answer.
        unreachable = frozenset(
            party
            for (_, party), answer in zip(plan["parties"], answers, strict=True)
            if isinstance(answer, RegistryError) and UNREACHABLE_KEY in answer.metadata
        )
        return self._finish_abort(operation_id, plan, "failed", unreachable)

    def _finish_abort(
        self, operation_id: str, plan: dict[str, Any], status: str, deferred: frozenset[str] = frozenset()
    ) -> list[PartyResult]:
        results = [PartyResult(**r) for r in plan["outcome"]]
        sent = [p for p in self._party_ids(plan) if p not in deferred]  # the deferred: the maintenance loop's
        acks = self._decide(operation_id, sent, commit=False)
        unconfirmed = [p for p in self._party_ids(plan) if p in deferred or isinstance(acks[p], RegistryError)]
        if unconfirmed:
            log.info("%s %s: abort not yet confirmed by %s", plan.get("kind"), operation_id, ", ".join(unconfirmed))
            message = f"failed; the abort is resent until {', '.join(unconfirmed)} confirm"
            for result in results:
                if result.party_id in unconfirmed:
                    result.retmsg += ABORT_NOT_CONFIRMED
            self.catalog.set_results(operation_id, results, Retcode.ARGUMENT_ERROR, message)
            return results  # stays "aborting": the maintenance loop resends it
        retcode = Retcode.ARGUMENT_ERROR if status == "failed" else Retcode.OPERATING_ERROR
        message = (
            "failed" if status == "failed" else "rolled back: the coordinator stopped before every party had prepared"
        )
        self.catalog.finish_operation(operation_id, status, results, retcode, message)
        return results

    def recover(self, at_start: bool, live: peewee.SelectQuery) -> None:
        """Finish or undo the unfinished operations of this replica and of replicas not in ``live``.

        Decided operations (committing, aborting) are sent their decision again. One caught preparing
        is rolled back, and a single-phase one caught running is closed as interrupted, when its
        owner is gone: another replica whose lease expired, or this replica's previous run (at start).
        An operation this replica is running right now is left alone.
        """
        for unfinished in self.catalog.unfinished(["running", "preparing", "committing", "aborting"], live):
            operation_id, status, plan = unfinished.operation_id, unfinished.status, unfinished.plan
            orphaned = at_start or unfinished.owner != self.catalog.owner
            with self._active_lock:
                active = operation_id in self._active
            if active or (status in ("running", "preparing") and not orphaned):
                continue
            if not self.catalog.claim(unfinished):
                continue  # another replica took it over first
            if unfinished.owner != self.catalog.owner:
                log.info("operation %s: taken over from replica %s", operation_id, unfinished.owner)
            if not plan:
                self.catalog.interrupt(
                    operation_id,
                    f"the coordinator replica {unfinished.owner} stopped before the operation finished",
                    in_doubt=IN_DOUBT,
                )
                continue
            try:
                self._recover_two_phase(operation_id, status, plan)
            except RegistryError as exc:
                log.info("%s %s: recovery deferred: %s", plan.get("kind"), operation_id, exc.message)

    def _recover_two_phase(self, operation_id: str, status: str, plan: dict[str, Any]) -> None:
        if status == "committing":
            self._commit(operation_id, plan)
            log.info("%s %s: commit finished", plan.get("kind"), operation_id)
            return
        if "outcome" not in plan:  # caught preparing: every party is rolled back
            kind = plan.get("kind", "deploy")
            plan["outcome"] = [
                _result_dict(
                    PartyResult(
                        role=role,
                        party_id=party,
                        retcode=Retcode.FEDERATED_ERROR,
                        reason="ABORTED",
                        retmsg=f"{kind} on role {role} {party} rolled back: the coordinator stopped "
                        "before every party had prepared",
                    )
                )
                for role, party in plan["parties"]
            ]
            plan["rolled_back"] = True
            self.catalog.set_plan(operation_id, "aborting", plan)
        self._finish_abort(operation_id, plan, "rolled_back" if plan.get("rolled_back") else "failed")


def _result_dict(result: PartyResult) -> dict[str, Any]:
    return {
        "role": result.role,
        "party_id": result.party_id,
        "retcode": result.retcode,
        "retmsg": result.retmsg,
        "reason": result.reason,
    }
