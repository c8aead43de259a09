"""The catalog brought in line with a party's own account of a version.

One the party holds that the catalog does not know, or one whose operation's answer was lost ("in_doubt",
:mod:`registry_server.oplog`).
"""

from __future__ import annotations

import logging

from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyModelRef, PartyResult
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog
from registry_server.deletes import DELETE, settle_delete
from registry_server.op_state import OpState

log = logging.getLogger(__name__)


class Accounts:
    """Brings the catalog in line with what a party says it holds."""

    def __init__(self, catalog: Catalog, agents: AgentClients) -> None:
        self.catalog = catalog
        self.agents = agents

    def learn(self, ref: PartyModelRef) -> None:
        """Catalog a version a party holds that the catalog does not know.

        The party brought it back from the model store on its own (``enable_model_store``) while serving an export or a
        load.
        """
        if self.catalog.knows(ref.model_id, ref.model_version, ref.role, ref.party_id):
            return
        try:
            self.catalog.record(self.agents.party_info(ref))
        except RegistryError as exc:
            log.info(
                "could not catalog %s %s of party %s: %s", ref.model_id, ref.model_version, ref.party_id, exc.message
            )

    def settle_in_doubt(self) -> None:
        """Ask the party of every operation in doubt whether it holds the version, and catalog what it says.

        Imports and restores whose coordinator stopped while relaying them are in doubt: :meth:`TwoPhase.recover`.
        """
        for operation in self.catalog.in_doubt():
            if not operation.results:  # logged before operations named their party: nobody to ask
                message = "interrupted by a stop of the coordinator"
                self.catalog.finish_operation(
                    operation.operation_id, OpState.FAILED, [], Retcode.OPERATING_ERROR, message
                )
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
                self.catalog.finish_operation(operation.operation_id, OpState.FAILED, [done], exc.fate_retcode, message)
                continue
            message = f"the answer of party {ref.party_id} was lost; it holds the version, now in the catalog"
            done = PartyResult(role=ref.role, party_id=ref.party_id, retcode=0, retmsg=message)
            self.catalog.finish_operation(operation.operation_id, OpState.SUCCESS, [done], Retcode.SUCCESS, message)
            log.info("%s %s: %s", operation.operation, operation.operation_id, message)
