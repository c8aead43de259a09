"""One-hop transfers: tickets the coordinator announces and a client then presents, once.

A ticket names exactly one import (with its header) or one export (its request: the model, stored or not); the agent
refuses a ticket it was not told of, one used already, one past its time, or one presented for
another model. Outcomes are kept for a while so the coordinator can record them; the book holds at
most ``max_tickets``: when it is full the oldest finished outcomes make room (the coordinator asks
for an outcome within seconds of a transfer's end, and its sweep within minutes), and only a book
full of open transfers refuses a new one.

A ticket keeps serialized bytes, never protobuf messages: a message parsed from a request (or built
for an answer) holds its protobuf arena, some KiB of native memory (a sub-message holds its whole
request's), which tracemalloc does not see; kept for a day, 10,000 of them grew the agent's RSS by
tens of MiB under load. As bytes a kept outcome costs under a KiB, so a full book stays under
~10 MiB. Errors are kept without their traceback (which would hold the failed call's frames).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

from fate_registry.agent.v1.agent_pb2 import ExportModelRequest, TransferState
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import ImportModelHeader, ImportModelResult

OUTCOME_KEEP_SECONDS = 24 * 3600
MAX_TICKETS = 10_000


def _wire(message: ImportModelHeader | ExportModelRequest) -> bytes:
    """What a ticket remembers of the transfer it allows: the message's kind and its deterministic bytes."""
    return message.DESCRIPTOR.full_name.encode() + b"\0" + message.SerializeToString(deterministic=True)


@dataclass(slots=True)
class Ticket:
    """What a ticket allows and, once it is used, how the transfer ended."""

    expected: bytes  # _wire() of the import header or export request the ticket allows
    expires: float
    state: int = TransferState.TRANSFER_STATE_PENDING
    result_bytes: bytes | None = None  # the serialized ImportModelResult of a finished import
    error: RegistryError | None = None

    @property
    def result(self) -> ImportModelResult | None:
        return None if self.result_bytes is None else ImportModelResult.FromString(self.result_bytes)


FINISHED = (TransferState.TRANSFER_STATE_DONE, TransferState.TRANSFER_STATE_FAILED)


class TicketBook:
    """The tickets of this agent, each used once; at most ``max_tickets`` kept."""

    def __init__(self, max_tickets: int = MAX_TICKETS) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, Ticket] = {}  # in the order they were announced
        self._max = max_tickets

    def expect(self, ticket: str, expected: ImportModelHeader | ExportModelRequest, ttl_seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, t in self._tickets.items() if t.expires < now]:
                del self._tickets[key]
            excess = len(self._tickets) - self._max + 1
            if excess > 0:
                for key in [k for k, t in self._tickets.items() if t.state in FINISHED][:excess]:
                    del self._tickets[key]
            if len(self._tickets) >= self._max:
                raise RegistryError(Reason.NO_SPACE, "too many transfers are open on this party; try again later")
            self._tickets[ticket] = Ticket(_wire(expected), now + ttl_seconds)

    def claim(self, ticket: str, presented: ImportModelHeader | ExportModelRequest) -> None:
        """Start the transfer a ticket allows, or refuse with PERMISSION_DENIED."""
        with self._lock:
            found = self._tickets.get(ticket)
            if found is None or found.expires < time.monotonic():
                raise RegistryError(Reason.PERMISSION_DENIED, "the transfer ticket is unknown or expired")
            if found.state != TransferState.TRANSFER_STATE_PENDING:
                raise RegistryError(Reason.PERMISSION_DENIED, "the transfer ticket was used already")
            if found.expected != _wire(presented):
                raise RegistryError(Reason.PERMISSION_DENIED, "the transfer ticket was issued for another transfer")
            found.state = TransferState.TRANSFER_STATE_RUNNING
            found.expires = time.monotonic() + OUTCOME_KEEP_SECONDS

    def finish(self, ticket: str, result: ImportModelResult | None) -> None:
        with self._lock:
            found = self._tickets[ticket]
            found.state = TransferState.TRANSFER_STATE_DONE
            found.result_bytes = None if result is None else result.SerializeToString()

    def fail(self, ticket: str, error: RegistryError) -> None:
        with self._lock:
            found = self._tickets[ticket]
            found.state, found.error = TransferState.TRANSFER_STATE_FAILED, dataclasses.replace(error)

    def outcome(self, ticket: str) -> Ticket:
        with self._lock:
            found = self._tickets.get(ticket)
            if found is None:
                return Ticket(b"", 0.0)
            if found.state == TransferState.TRANSFER_STATE_PENDING:
                del self._tickets[ticket]  # asked about before use: the ticket is withdrawn
                return Ticket(found.expected, 0.0)
            return found
