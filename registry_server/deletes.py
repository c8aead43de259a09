"""Settling a delete of one party's version whose outcome the coordinator did not learn.

The coordinator names the party in the operation log before it calls it, and forgets the version
in the catalog only after the party answered. A delete whose answer was lost (the party or the link
went down), or whose coordinator stopped between the answer and the catalog, is "in_doubt": the
party is asked whether it still holds the version, and the catalog is made to say the same.
"""

from __future__ import annotations

import logging

from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyModelRef, PartyResult
from fate_registry.v1.registry_pb2 import Operation
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog
from registry_server.op_state import OpState

log = logging.getLogger(__name__)
DELETE = "delete"  # the operation log's name of a delete, in doubt when its outcome was lost


def settle_delete(catalog: Catalog, agents: AgentClients, operation: Operation, ref: PartyModelRef) -> None:
    """Ask the party of a delete in doubt whether it holds ``ref``.

    If not, the delete happened and the catalog forgets the version; if it does, the delete did not (the catalog keeps
    it). A party still away is asked again next time.
    """
    try:
        catalog.record(agents.party_info(ref))
    except RegistryError as exc:
        if exc.reason is not Reason.MODEL_NOT_FOUND:
            return
        catalog.forget(ref.model_id, ref.model_version, ref.role, ref.party_id)
        message = f"the outcome was lost; party {ref.party_id} no longer holds the version, now gone from the catalog"
        done = PartyResult(role=ref.role, party_id=ref.party_id, retcode=Retcode.SUCCESS, retmsg=message)
        catalog.finish_operation(operation.operation_id, OpState.SUCCESS, [done], Retcode.SUCCESS, message)
        log.info("%s %s: %s", operation.operation, operation.operation_id, message)
        return
    why = operation.retmsg or "the coordinator stopped before the party's answer was recorded"
    message = f"{why}; party {ref.party_id} still holds the version"
    retcode = operation.retcode or Retcode.OPERATING_ERROR
    failed = PartyResult(role=ref.role, party_id=ref.party_id, retcode=retcode, retmsg=message)
    catalog.finish_operation(operation.operation_id, OpState.FAILED, [failed], retcode, message)
    log.info("%s %s: %s", operation.operation, operation.operation_id, message)
