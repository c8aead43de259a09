"""One-hop transfers: the coordinator authorises, the bytes go client <-> agent, the agent reports.

The coordinator validates the request as for a relayed transfer, opens the operation, and tells
the agent which single transfer the ticket allows. When the client ends the transfer, or when it
never does (a sweep after the ticket's time), the coordinator asks the agent what happened and
records it: an import the agent completed always reaches the catalog. A transfer authorised by a
coordinator that stopped (killed, or a replica whose lease expired) is settled as soon as its agent
answers, at the next start and every maintenance period (:meth:`TransferDesk.settle_orphans`); until
then ``get-model-info`` says its version is being settled (:meth:`TransferDesk.raise_if_settling`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence

import peewee

from fate_registry import faultpoints
from fate_registry.agent.v1 import agent_pb2
from fate_registry.agent.v1.agent_pb2 import TransferState
from fate_registry.db import now_ms
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1 import registry_pb2
from fate_registry.v1.common_pb2 import PartyModelRef, PartyResult
from fate_registry.v1.registry_pb2 import Operation
from registry_server.agent_rpc import AgentRpc
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog, ModelFilter
from registry_server.op_state import OpState
from registry_server.oplog import ANSWER_LOST, failed_result

log = logging.getLogger(__name__)
TICKET_TTL_SECONDS = 300
MAKES_VERSIONS = ("import", "restore")  # in doubt, these may have made a version the catalog lacks


class TransferDesk:
    """The one-hop transfers this replica authorises, and the settling of those left open."""

    def __init__(self, catalog: Catalog, agents: AgentClients, learn: Callable[[PartyModelRef], None]) -> None:
        self.catalog = catalog
        self.agents = agents
        self.learn = learn
        # The operations of the transfers this process authorised and has not closed: any other running
        # transfer of this replica was authorised before its restart. Added before the operation gets its
        # ticket, removed once it is closed (single set operations: atomic for the threads that share it).
        self._issued: set[str] = set()

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
        self._issued.add(operation_id)
        ticket = f"{operation_id}.{secrets.token_urlsafe(24)}"
        self.catalog.set_ticket(operation_id, ticket)
        announce = agent_pb2.ExpectTransferRequest(ticket=ticket, ttl_seconds=TICKET_TTL_SECONDS)
        if kind == "import_header":
            announce.import_header.CopyFrom(request.import_header)
        else:
            announce.export_model.CopyFrom(request.export_model)
            announce.stored = request.stored
        try:
            self.agents.call(
                ref.party_id,
                AgentRpc.EXPECT_TRANSFER,
                announce,
                operation_id,
                self.agents.conf.coordinator.call_timeout,
            )
        except RegistryError as error:
            self._close(operation_id, OpState.FAILED, [], error.fate_retcode, error.message)
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

    def _close(
        self, operation_id: str, status: OpState, results: Sequence[PartyResult], retcode: int, retmsg: str
    ) -> None:
        self.catalog.finish_operation(operation_id, status, results, retcode, retmsg)
        self._issued.discard(operation_id)

    def _settle(self, ticket: str, operation: Operation, orphaned: bool = False) -> registry_pb2.EndTransferResponse:
        """Record the transfer as its agent reports it.

        ``orphaned``: the coordinator that authorised it stopped, so its client may still be streaming, and its agent
        may have restarted since.
        """
        party = operation.results[0]
        try:
            outcome = self.agents.call(
                party.party_id,
                AgentRpc.GET_TRANSFER_OUTCOME,
                agent_pb2.GetTransferOutcomeRequest(ticket=ticket),
                "",
                self.agents.conf.coordinator.call_timeout,
            )
        except RegistryError as error:
            if operation.operation == "import" and error.reason in ANSWER_LOST and not orphaned:
                # the client's stream has ended: the party imported the version or not, it may tell later
                # (an orphan's may not have: asked in doubt, the party could say "no" before it finished)
                lost = failed_result(party.role, party.party_id, error)
                self._close(operation.operation_id, OpState.IN_DOUBT, [lost], error.fate_retcode, error.message)
            raise
        op_id = operation.operation_id
        if outcome.state == TransferState.TRANSFER_STATE_DONE:
            faultpoints.reached("coordinator.transfer.reported")
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
            self._close(op_id, OpState.SUCCESS, [done], Retcode.SUCCESS, "success")
            return registry_pb2.EndTransferResponse(result=outcome.result)
        if outcome.state == TransferState.TRANSFER_STATE_FAILED:
            failed = PartyResult(
                role=party.role,
                party_id=party.party_id,
                retcode=outcome.retcode,
                retmsg=outcome.retmsg,
                reason=outcome.reason,
            )
            self._close(op_id, OpState.FAILED, [failed], outcome.retcode, outcome.retmsg)
            reason = Reason[outcome.reason] if outcome.reason in Reason.__members__ else Reason.INTERNAL
            raise RegistryError(reason, outcome.retmsg, retcode=outcome.retcode)
        if outcome.state == TransferState.TRANSFER_STATE_RUNNING:
            raise RegistryError(Reason.INVALID_ARGUMENT, "the transfer is still running on the party")
        if orphaned and operation.operation == "import":
            # unused (now withdrawn) or unknown to an agent that restarted, perhaps after publishing the
            # version: the transfer can no longer run, and the party is asked (Accounts.settle_in_doubt)
            message = f"the coordinator stopped during the import; party {party.party_id} is asked for the version"
            self._close(op_id, OpState.IN_DOUBT, list(operation.results), Retcode.OPERATING_ERROR, message)
            raise RegistryError(Reason.CANCELLED, message)
        message = "the transfer was authorised but never made"
        self._close(op_id, OpState.CANCELLED, [], Retcode.OPERATING_ERROR, message)
        raise RegistryError(Reason.CANCELLED, message)

    def sweep(self) -> None:
        """Settle the transfers whose client never ended them (a failed one stays open for the next sweep)."""
        for ticket, operation in self.catalog.stale_transfers(now_ms() - TICKET_TTL_SECONDS * 1000):
            try:
                self._settle(ticket, operation)
            except RegistryError as exc:
                log.info("transfer %s: %s", operation.operation_id, exc.message)

    def settle_orphans(self, live: peewee.SelectQuery) -> None:
        """Settle, from their agents' reports, the one-hop transfers a coordinator that stopped had authorised.

        This replica's before its restart, and those of replicas not among ``live`` (a subquery of replica ids).

        Run at start and every maintenance period, so an import the party completed reaches the catalog as
        soon as the party can be asked, not when its ticket expires. A transfer still running at its agent
        (its client streams on) or whose agent does not answer stays open, asked about again next time; a
        party that did not answer is not asked again in the same pass.
        """
        unanswered: set[str] = set()
        for found in self.catalog.open_transfers(live):
            operation = found.operation
            party_id = operation.results[0].party_id
            if operation.operation_id in self._issued or party_id in unanswered:
                continue
            # read again: one of this process's closed since the listing is no longer issued, nor open
            if self.catalog.open_transfer(found.ticket) is None or not self.catalog.claim(found.unfinished):
                continue  # closed meanwhile, or another replica took it over first
            try:
                self._settle(found.ticket, operation, orphaned=True)
            except RegistryError as exc:
                if exc.reason in ANSWER_LOST:
                    unanswered.add(party_id)
                log.info("transfer %s (its coordinator had stopped): %s", operation.operation_id, exc.message)
                continue
            log.info(
                "transfer %s (its coordinator had stopped): settled from party %s's report",
                operation.operation_id,
                party_id,
            )

    def raise_if_settling(self, where: ModelFilter) -> None:
        """Refuse to call a version missing while an import that may have made it is in doubt.

        Relayed and unanswered, or one hop and authorised by a coordinator that stopped. The catalog learns it (or that
        it was not made) as soon as the party can be asked; meanwhile the caller is told to ask again.
        """
        for operation in self.catalog.unsettled(MAKES_VERSIONS, where.model_id, where.model_version):
            if operation.operation_id in self._issued or not operation.results:
                continue  # a transfer of this process: its client ends it; no party named: nothing to ask
            party = operation.results[0]
            if where.role not in ("", party.role) or where.party_id not in ("", party.party_id):
                continue
            raise RegistryError(
                Reason.PARTY_UNAVAILABLE,
                f"model {operation.model_id} version {operation.model_version} of party {party.party_id} "
                f"({party.role}) is being settled: its {operation.operation} was interrupted (the coordinator "
                "or the party stopped) before the catalog recorded it, and the coordinator is asking the party; "
                "ask again in a moment",
                {"party_id": party.party_id},
            )
