"""An in-memory fake of the coordinator's agent client, for unit tests of the two-phase engine.

Each party keeps what an agent's two-phase store keeps (:mod:`party_agent.two_phase`): versions
prepared per operation, versions published, operations aborted (a prepare after its abort is
refused). Commit and abort are idempotent. A fault can be set on one RPC of one party; it fires on
the next such call only, so a resent decision gets through.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from google.protobuf.message import Message

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyModelRef
from registry_server.agent_rpc import Req, Resp, Rpc
from registry_server.transport import UNREACHABLE_KEY


class Crash(BaseException):
    """The coordinator stops here: nothing after this point of its run happens (not an Exception, so no
    handler of the coordinator's catches it)."""


class Fault(Enum):
    REFUSE = "the party answers no (it cannot prepare)"
    UNREACHABLE = "no connection to the party: the request never reached it"
    ANSWER_LOST = "the party did the work, its answer was lost (a deadline passed)"
    CRASH = "the coordinator stops as it sends the call: the party never gets it"


@dataclass
class FakeParty:
    prepared: dict[str, PartyModelInfo] = field(default_factory=dict)  # operation id -> its version
    published: dict[tuple[str, str], PartyModelInfo] = field(default_factory=dict)  # (model id, version) -> it
    aborted: set[str] = field(default_factory=set)


class FakeAgents:
    def __init__(self) -> None:
        self.parties: dict[str, FakeParty] = {}
        self.faults: dict[tuple[str, str], Fault] = {}
        self.calls: Counter[tuple[str, str]] = Counter()  # (rpc name, party) -> calls answered or failed
        self._lock = threading.Lock()

    def fail(self, rpc: Rpc[Req, Resp], party_id: str, fault: Fault) -> None:
        self.faults[(rpc.name, party_id)] = fault

    def party(self, party_id: str) -> FakeParty:
        return self.parties.setdefault(party_id, FakeParty())

    def call(self, party_id: str, rpc: Rpc[Req, Resp], request: Req, operation_id: str, timeout: float) -> Resp:
        with self._lock:
            fault = self.faults.pop((rpc.name, party_id), None)
            try:
                if fault is Fault.CRASH:
                    raise Crash(f"{rpc.name} on {party_id}")
                if fault is Fault.REFUSE:
                    raise RegistryError(Reason.INVALID_ARGUMENT, f"party {party_id} cannot {rpc.name}")
                if fault is Fault.UNREACHABLE:
                    raise RegistryError(
                        Reason.PARTY_UNAVAILABLE,
                        f"party {party_id} did not answer",
                        {"party_id": party_id, UNREACHABLE_KEY: "true"},
                    )
                answer = self._serve(self.party(party_id), party_id, rpc.name, request, operation_id)
                if fault is Fault.ANSWER_LOST:
                    raise RegistryError(Reason.DEADLINE_EXCEEDED, f"party {party_id} did not answer in time")
            finally:
                self.calls[(rpc.name, party_id)] += 1
        return rpc.response.FromString(answer.SerializeToString())

    def _serve(self, party: FakeParty, party_id: str, method: str, request: Message, operation_id: str) -> Message:
        if isinstance(request, agent_pb2.PrepareDeployRequest | agent_pb2.PrepareMigrateRequest):
            if operation_id in party.aborted:
                raise RegistryError(Reason.CANCELLED, "the coordinator aborted this operation; nothing was kept")
            version = _prepared_version(party_id, request)
            party.prepared[operation_id] = version
            if isinstance(request, agent_pb2.PrepareDeployRequest):
                return agent_pb2.PrepareDeployResponse(manifest_digest=version.manifest_digest)
            return agent_pb2.PrepareMigrateResponse(
                new_model=PartyModelRef(
                    role=version.role,
                    party_id=version.party_id,
                    model_id=version.model_id,
                    model_version=version.model_version,
                ),
                manifest_digest=version.manifest_digest,
                archive_path=f"/archives/{version.party_id}.zip",
            )
        if isinstance(request, agent_pb2.CommitOperationRequest):
            if request.operation_id in party.prepared:
                version = party.prepared.pop(request.operation_id)
                party.published[(version.model_id, version.model_version)] = version
            return agent_pb2.CommitOperationResponse()
        if isinstance(request, agent_pb2.AbortOperationRequest):
            party.aborted.add(request.operation_id)
            party.prepared.pop(request.operation_id, None)
            return agent_pb2.AbortOperationResponse()
        if isinstance(request, agent_pb2.GetModelInfoRequest):
            found = party.published.get((request.model.model_id, request.model.model_version))
            if found is None:
                raise RegistryError(Reason.MODEL_NOT_FOUND, f"party {party_id} holds no such version")
            return agent_pb2.GetModelInfoResponse(info=found)
        raise AssertionError(f"the fake agents do not serve {method}")


def _prepared_version(
    party_id: str, request: agent_pb2.PrepareDeployRequest | agent_pb2.PrepareMigrateRequest
) -> PartyModelInfo:
    """The version a prepare makes: a deploy's child, or a migrate's slice under its new party id."""
    model = request.model
    if isinstance(request, agent_pb2.PrepareDeployRequest):
        ref = PartyModelRef(
            role=model.role, party_id=party_id, model_id=model.model_id, model_version=request.child_model_version
        )
    else:
        new_party = request.migrate_role[model.role].party_ids[list(request.role[model.role].party_ids).index(party_id)]
        ref = PartyModelRef(
            role=model.role, party_id=new_party, model_id="new-model", model_version=request.new_model_version
        )
    return PartyModelInfo(
        role=ref.role,
        party_id=ref.party_id,
        model_id=ref.model_id,
        model_version=ref.model_version,
        manifest_digest=f"digest-of-{ref.party_id}",
        parent=False,
        job_id=ref.model_version,
    )
