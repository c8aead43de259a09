"""Every operation is written to the catalog's operation log: who, what, per-party results, when.

An operation on one party's version whose answer was lost (the party or the link went down) is
"in_doubt": the party may have done it. The coordinator asks the party later (:meth:`Accounts.settle_in_doubt`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyModelRef, PartyResult
from registry_server.catalog import Catalog
from registry_server.op_state import OpState

# A failure after which the party may still have done what it was asked.
ANSWER_LOST = frozenset({Reason.PARTY_UNAVAILABLE, Reason.DEADLINE_EXCEEDED})


def failed_result(role: str, party_id: str, error: RegistryError) -> PartyResult:
    """One party's result: the error it answered, or the failure to get its answer."""
    return PartyResult(
        role=role, party_id=party_id, retcode=error.fate_retcode, retmsg=error.message, reason=error.reason.name
    )


def rolled_back_result(role: str, party_id: str, retmsg: str) -> PartyResult:
    """One party's result when what it did was undone because another party failed."""
    return PartyResult(role=role, party_id=party_id, retcode=Retcode.FEDERATED_ERROR, retmsg=retmsg, reason="ABORTED")


@dataclass
class TrackedOperation:
    """An operation under way: its id and the per-party results gathered so far."""

    operation_id: str
    results: list[PartyResult] = field(default_factory=list)


class OperationLog:
    """Writes each operation to the catalog's log as it starts and ends."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @contextlib.contextmanager
    def track(
        self, operation: str, caller: str, model_id: str, model_version: str, party: PartyModelRef | None = None
    ) -> Iterator[TrackedOperation]:
        """``party``: the one party whose version the operation changes; named in the log from the start."""
        pending = (
            [] if party is None else [PartyResult(role=party.role, party_id=party.party_id, retcode=Retcode.RUNNING)]
        )
        op = TrackedOperation(self.catalog.start_operation(operation, caller, model_id, model_version, pending=pending))
        try:
            yield op
        except RegistryError as exc:
            status, results = OpState.FAILED, op.results
            if party is not None and exc.reason in ANSWER_LOST:
                status = OpState.IN_DOUBT
                results = [failed_result(party.role, party.party_id, exc)]
            self.catalog.finish_operation(op.operation_id, status, results, exc.fate_retcode, exc.message)
            raise
        except GeneratorExit:  # the client stopped reading a stream
            self.catalog.finish_operation(
                op.operation_id, OpState.CANCELLED, op.results, Retcode.OPERATING_ERROR, "the client cancelled the call"
            )
            raise
        except Exception:
            self.catalog.finish_operation(
                op.operation_id, OpState.FAILED, op.results, Retcode.EXCEPTION_ERROR, "internal error"
            )
            raise
        failed = [r for r in op.results if r.retcode != 0]
        if failed:
            self.catalog.finish_operation(op.operation_id, OpState.FAILED, op.results, Retcode.ARGUMENT_ERROR, "failed")
        else:
            self.catalog.finish_operation(op.operation_id, OpState.SUCCESS, op.results, Retcode.SUCCESS, "success")
