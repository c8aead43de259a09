"""One-hop transfers: the coordinator authorises, the bytes go client <-> agent, the agent reports.

The coordinator validates the request as for a relayed transfer, opens the operation, and tells
the agent which single transfer the ticket allows. When the client ends the transfer, or when it
never does (a sweep after the ticket's time), the coordinator asks the agent what happened and
records it: an import the agent completed always reaches the catalog.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from fate_registry.agent.v1 import agent_pb2
from fate_registry.agent.v1.agent_pb2 import TransferState
from fate_registry.db import now_ms
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1 import registry_pb2
from fate_registry.v1.common_pb2 import PartyModelRef, PartyResult
from fate_registry.v1.registry_pb2 import Operation
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog
from registry_server.oplog import ANSWER_LOST, failed_result

log = logging.getLogger(__name__)
TICKET_TTL_SECONDS = 300


class TransferDesk:
    def __init__(self, catalog: Catalog, agents: AgentClients, learn: Callable[[PartyModelRef], None]) -> None:
        self.catalog = catalog
        self.agents = agents
        self.learn = learn

    def begin(
        self, request: registry_pb2.BeginTransferRequest, caller: str, ref: PartyModelRef
    ) -> registry_pb2.BeginTransferResponse:
        kind = request.WhichOneof("transfer")
        operation = "import" if kind == "import_header" else "export"
        if self.agents.behind_proxy(ref.party_id):
            raise RegistryError(
                Reason.NOT_IMPLEMENTED,
                f"party {ref.party_id} is reachable only through its proxy: no one-hop transfer, "
                "the archive goes through the coordinator (transfer mode relay)",
                {"party_id": ref.party_id},
            )
        operation_id = self.catalog.start_operation(
            operation,
            caller,
            ref.model_id,
            ref.model_version,
            pending=[PartyResult(role=ref.role, party_id=ref.party_id, retcode=Retcode.RUNNING, retmsg="running")],
        )
        ticket = f"{operation_id}.{secrets.token_urlsafe(24)}"
        self.catalog.set_ticket(operation_id, ticket)
        announce = agent_pb2.ExpectTransferRequest(ticket=ticket, ttl_seconds=TICKET_TTL_SECONDS)
        if kind == "import_header":
            announce.import_header.CopyFrom(request.import_header)
        else:
            announce.export_model.CopyFrom(request.export_model)
        try:
            self.agents.unary(
                ref.party_id, "ExpectTransfer", announce, operation_id, self.agents.conf.coordinator.call_timeout
            )
        except RegistryError as error:
            self.catalog.finish_operation(operation_id, "failed", [], error.fate_retcode, error.message)
            raise
        address = str(self.agents.party(ref.party_id).address)
        return registry_pb2.BeginTransferResponse(agent_address=address, ticket=ticket)

    def end(self, request: registry_pb2.EndTransferRequest) -> registry_pb2.EndTransferResponse:
        operation = self.catalog.open_transfer(request.ticket)
        if operation is None:
            raise RegistryError(Reason.INVALID_ARGUMENT, "the transfer ticket is unknown or its transfer is closed")
        party = operation.results[0]
        if (party.role, party.party_id, operation.model_id, operation.model_version) != (
            request.model.role,
            request.model.party_id,
            request.model.model_id,
            request.model.model_version,
        ):
            raise RegistryError(Reason.INVALID_ARGUMENT, "the transfer ticket was issued for another model")
        return self._settle(request.ticket, operation)

    def _settle(self, ticket: str, operation: Operation) -> registry_pb2.EndTransferResponse:
        party = operation.results[0]
        try:
            outcome = self.agents.unary(
                party.party_id,
                "GetTransferOutcome",
                agent_pb2.GetTransferOutcomeRequest(ticket=ticket),
                "",
                self.agents.conf.coordinator.call_timeout,
            )
        except RegistryError as error:
            if operation.operation == "import" and error.reason in ANSWER_LOST:
                # the client's stream has ended: the party imported the version or not, it may tell later
                lost = failed_result(party.role, party.party_id, error)
                self.catalog.finish_operation(
                    operation.operation_id, "in_doubt", [lost], error.fate_retcode, error.message
                )
            raise
        op_id = operation.operation_id
        if outcome.state == TransferState.TRANSFER_STATE_DONE:
            if operation.operation == "import":
                self.catalog.record_import(outcome.result)
            else:
                self.learn(
                    PartyModelRef(
                        role=party.role,
                        party_id=party.party_id,
                        model_id=operation.model_id,
                        model_version=operation.model_version,
                    )
                )
            done = PartyResult(role=party.role, party_id=party.party_id, retcode=0, retmsg="success")
            self.catalog.finish_operation(op_id, "success", [done], Retcode.SUCCESS, "success")
            return registry_pb2.EndTransferResponse(result=outcome.result)
        if outcome.state == TransferState.TRANSFER_STATE_FAILED:
            failed = PartyResult(
                role=party.role,
                party_id=party.party_id,
                retcode=outcome.retcode,
                retmsg=outcome.retmsg,
                reason=outcome.reason,
            )
            self.catalog.finish_operation(op_id, "failed", [failed], outcome.retcode, outcome.retmsg)
            reason = Reason[outcome.reason] if outcome.reason in Reason.__members__ else Reason.INTERNAL
            raise RegistryError(reason, outcome.retmsg, retcode=outcome.retcode)
        if outcome.state == TransferState.TRANSFER_STATE_RUNNING:
            raise RegistryError(Reason.INVALID_ARGUMENT, "the transfer is still running on the party")
        message = "the transfer was authorised but never made"
        self.catalog.finish_operation(op_id, "cancelled", [], Retcode.OPERATING_ERROR, message)
        raise RegistryError(Reason.CANCELLED, message)

    def sweep(self) -> None:
        """Settle the transfers whose client never ended them (a failed one stays open for the next sweep)."""
        for ticket, operation in self.catalog.stale_transfers(now_ms() - TICKET_TTL_SECONDS * 1000):
            try:
                self._settle(ticket, operation)
            except RegistryError as exc:
                log.info("transfer %s: %s", operation.operation_id, exc.message)
