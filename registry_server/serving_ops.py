"""FATE-Serving's side of a model, on every party at once: load, bind, unload, unbind.

Every party is called at once (:class:`FanOut`), each answer becomes a PartyResult, and the
operation log records them. A load is all or nothing: when a party fails, the parties that loaded
unload again and are answered as rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError, Retcode, missing_keys
from fate_registry.identity import job_ids
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import Party, PartyModelRef, PartyResult
from registry_server.adoption import Adoption
from registry_server.agent_rpc import AgentRpc, Req, Rpc
from registry_server.fanout import REACH_SECONDS, PartyCall
from registry_server.oplog import OperationLog, failed_result, rolled_back_result
from registry_server.resolution import Resolved, resolve, roles_message
from registry_server.two_phase import Services

SERVING_ROLES = ("guest", "host")  # FATE-Flow loads on every party but the arbiter
# The agents' answers to these calls: each carries the party's FATE retcode and message.
ServingAnswer = (
    agent_pb2.LoadModelResponse
    | agent_pb2.BindModelResponse
    | agent_pb2.UnloadModelResponse
    | agent_pb2.UnbindModelResponse
)
Answer = TypeVar(
    "Answer",
    agent_pb2.LoadModelResponse,
    agent_pb2.BindModelResponse,
    agent_pb2.UnloadModelResponse,
    agent_pb2.UnbindModelResponse,
)
# (role, party_id, operation_id) -> the party's call, given its deadline
MakeCall = Callable[[str, str, str], Callable[[float], ServingAnswer]]


def _result(role: str, party_id: str, answer: ServingAnswer | RegistryError) -> PartyResult:
    if isinstance(answer, RegistryError):
        return failed_result(role, party_id, answer)
    return PartyResult(role=role, party_id=party_id, retcode=answer.retcode, retmsg=answer.retmsg)


class ServingOps:
    """Load, bind, unload and unbind on every party's FATE-Serving, logged."""

    def __init__(self, services: Services, adoption: Adoption, learn: Callable[[PartyModelRef], None]) -> None:
        self.services = services
        self.adoption = adoption
        self.learn = learn
        self.oplog = OperationLog(services.catalog)

    def _serving_parties(self, model: Resolved) -> list[tuple[str, str]]:
        return [(role, p) for role in model.roles if role in SERVING_ROLES for p in dict.fromkeys(model.roles[role])]

    def _calling(self, rpc: Rpc[Req, Answer], request: Callable[[str, str], Req]) -> MakeCall:
        """Each party's call of ``rpc`` with its ``request(role, party_id)``, carrying the operation id."""

        def make(role: str, party: str, operation_id: str) -> Callable[[float], ServingAnswer]:
            message = request(role, party)
            return lambda timeout: self.services.agents.call(party, rpc, message, operation_id, timeout)

        return make

    def _fan(
        self,
        operation: str,
        caller: str,
        model: Resolved,
        parties: Sequence[tuple[str, str]],
        make: MakeCall,
        undo: MakeCall | None = None,
    ) -> list[PartyResult]:
        """Call ``make(role, party, operation_id)`` on every party at once; log and return the results.

        Each call may be repeated while its party is unavailable.

        With ``undo``, a call is all or nothing: when a party fails, ``undo`` is called on every party
        that succeeded, and those are answered as rolled back.
        """
        with self.oplog.track(operation, caller, model.model_id, model.model_version) as op:
            calls = [
                PartyCall(role, party, make(role, party, op.operation_id), REACH_SECONDS) for role, party in parties
            ]
            answers = self.services.fanout.parties(calls, self.services.deadlines.call_timeout)
            results = [_result(role, party, a) for (role, party), a in zip(parties, answers, strict=True)]
            if undo is not None and any(r.retcode for r in results):
                results = self._undo(operation, results, undo, op.operation_id)
            op.results.extend(results)
            return list(op.results)

    def _undo(self, operation: str, results: list[PartyResult], undo: MakeCall, operation_id: str) -> list[PartyResult]:
        """Undo the parties that succeeded, because another failed; their results say whether it worked."""
        done = [r for r in results if r.retcode == 0]
        calls = [PartyCall(r.role, r.party_id, undo(r.role, r.party_id, operation_id), REACH_SECONDS) for r in done]
        answers = self.services.fanout.parties(calls, self.services.deadlines.call_timeout)
        undone = iter(answers)  # in the order of ``done``, which is the order of ``results``
        failed = ", ".join(dict.fromkeys(r.party_id for r in results if r.retcode))
        rolled_back = []
        for result in results:
            if result.retcode:
                rolled_back.append(result)
                continue
            answer = next(undone)
            what = f"{operation} on role {result.role} {result.party_id}"
            message = (
                f"{what} could not be rolled back after party {failed} failed: {answer.message}"
                if isinstance(answer, RegistryError)
                else f"{what} rolled back: party {failed} failed"
            )
            rolled_back.append(rolled_back_result(result.role, result.party_id, message))
        return rolled_back

    def _unloading(self, model: Resolved) -> MakeCall:
        return self._calling(
            AgentRpc.UNLOAD_MODEL, lambda role, party: agent_pb2.UnloadModelRequest(model=model.ref(role, party))
        )

    def load(self, request: pb.LoadModelRequest, caller: str) -> pb.LoadModelResponse:
        model = resolve(self.adoption, request.model_id, request.model_version, request.job_id, request.role)
        roles = roles_message(model.roles)
        load = self._calling(
            AgentRpc.LOAD_MODEL,
            lambda role, party: agent_pb2.LoadModelRequest(
                model=model.ref(role, party),
                role=roles,
                load_type=request.load_type,
                file_path=request.file_path,
                use_transfer_url_on_serving=request.use_transfer_url_on_serving,
            ),
        )
        results = self._fan("load", caller, model, self._serving_parties(model), load, undo=self._unloading(model))
        loaded = [(r.role, r.party_id) for r in results if r.retcode == 0]
        for role, party in loaded:  # a party may have brought the version back from the model store
            self.learn(model.ref(role, party))
        self.services.catalog.mark_loaded(model.model_id, model.model_version, loaded)
        return pb.LoadModelResponse(job_id=job_ids.next(), results=results)

    def bind(self, request: pb.BindModelRequest, caller: str) -> pb.BindModelResponse:
        if not request.service_id:
            raise RegistryError(Reason.MISSING_ARGUMENT, "no service id", retcode=Retcode.ARGUMENT_ERROR)
        if any(c in request.service_id for c in "?:/& ") or len(request.service_id) > 255:
            raise RegistryError(
                Reason.INVALID_ARGUMENT,
                f"service id {request.service_id!r} may not contain '?', ':', '/', '&' or spaces",
            )
        model = resolve(self.adoption, request.model_id, request.model_version, request.job_id, request.role)
        if request.initiator.role:
            initiator = request.initiator
        elif model.roles.get("guest"):
            initiator = Party(role="guest", party_id=model.roles["guest"][0])
        else:  # no initiator given, and no guest to stand for it
            raise missing_keys(["initiator"])
        message = agent_pb2.BindModelRequest(
            model=model.ref(initiator.role, initiator.party_id),
            role=roles_message(model.roles),
            service_id=request.service_id,
            servings=list(request.servings),
        )
        bind = self._calling(AgentRpc.BIND_MODEL, lambda role, party: message)
        results = self._fan("bind", caller, model, [(initiator.role, initiator.party_id)], bind)
        if all(r.retcode == 0 for r in results):
            self.services.catalog.mark_bound(
                model.model_id, model.model_version, initiator.party_id, request.service_id
            )
        return pb.BindModelResponse(service_id=request.service_id, results=results)

    def unload(self, request: pb.UnloadModelRequest, caller: str) -> pb.UnloadModelResponse:
        model = resolve(self.adoption, request.model_id, request.model_version, "", {})
        results = self._fan("unload", caller, model, self._serving_parties(model), self._unloading(model))
        unloaded = [(r.role, r.party_id) for r in results if r.retcode == 0]
        self.services.catalog.mark_unloaded(model.model_id, model.model_version, unloaded)
        return pb.UnloadModelResponse(results=results)

    def unbind(self, request: pb.UnbindModelRequest, caller: str) -> pb.UnbindModelResponse:
        if not request.service_ids:
            raise missing_keys(["service_ids"])
        model = resolve(self.adoption, request.model_id, request.model_version, "", {})
        guests = [("guest", p) for p in model.roles.get("guest", [])]
        unbind = self._calling(
            AgentRpc.UNBIND_MODEL,
            lambda role, party: agent_pb2.UnbindModelRequest(
                model=model.ref(role, party), service_ids=list(request.service_ids)
            ),
        )
        results = self._fan("unbind", caller, model, guests, unbind)
        if any(r.retcode == 0 for r in results):
            self.services.catalog.mark_unbound(model.model_id, model.model_version, list(request.service_ids))
        return pb.UnbindModelResponse(results=results)
