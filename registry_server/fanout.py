"""Call several parties at once; the answer takes as long as the slowest party, not the sum.

Each call has its own deadline, for a party that answers and works. A party that cannot be reached
(UNAVAILABLE: the connection is refused, the handshake or the route fails, the proxy has no route to
it) is no reason to wait that long: a call that may be repeated is retried with backoff (tenacity)
only within its ``retry_for`` seconds from its start (a restarting agent comes back within them),
then the party's failure is the answer. The operation id a call carries makes the agent answer a
repeat with the first answer, so nothing is done twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from fate_registry.errors import Reason, RegistryError
from registry_server.transport import UNREACHABLE_KEY

T = TypeVar("T")
FIRST_WAIT = 0.1
"""Seconds before an unavailable party's call is retried the first time; each later wait doubles."""
REACH_SECONDS = 3.0
"""How long a call that may be repeated keeps trying a party it cannot reach (about three connection
attempts at the channels' reconnect backoff of one second)."""


@dataclass(frozen=True)
class PartyCall(Generic[T]):
    """One party's part of an operation: ``call(timeout)`` must finish within ``timeout`` seconds.

    ``retry_for``: seconds from the start within which the call is tried again while the party is
    unavailable (0: once; only for calls the agent answers once per operation id).
    """

    role: str
    party_id: str
    call: Callable[[float], T]
    retry_for: float = 0.0


def _unavailable(exc: BaseException) -> bool:
    """A party that answered UNAVAILABLE, or whose connection broke.

    Worth another try. One that could not be reached at all has been tried again by its transport already
    (:func:`transport.reconnecting`).
    """
    return (
        isinstance(exc, RegistryError)
        and exc.reason is Reason.PARTY_UNAVAILABLE
        and UNREACHABLE_KEY not in exc.metadata
    )


class FanOut:
    """A thread pool that calls up to ``max_parallel`` parties at once."""

    def __init__(self, max_parallel: int = 64) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="fanout")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self, calls: Sequence[Callable[[], T]]) -> list[T | RegistryError]:
        """Run every call in parallel; each result is the value or the RegistryError it raised."""
        return self._collect([self._pool.submit(call) for call in calls])

    def parties(self, calls: Sequence[PartyCall[T]], deadline: float) -> list[T | RegistryError]:
        """Every party's call at once, each within ``deadline`` seconds (retries included)."""
        return self._collect([self._pool.submit(self._one, call, deadline) for call in calls])

    @staticmethod
    def _one(call: PartyCall[T], deadline: float) -> T:
        start = time.monotonic()
        end = start + deadline
        give_up = start + min(deadline, call.retry_for)
        if not call.retry_for:
            return call.call(deadline)
        try:  # the first attempt outside tenacity: it answers almost always, and a Retrying per call costs CPU
            return call.call(deadline)
        except RegistryError as exc:
            if not _unavailable(exc) or time.monotonic() + FIRST_WAIT >= give_up:
                raise
        time.sleep(FIRST_WAIT)
        retrying = Retrying(  # the waits go on from FIRST_WAIT: 0.2 s, 0.4 s, ... up to 2 s
            retry=retry_if_exception(_unavailable),
            stop=stop_after_delay(max(0.0, give_up - time.monotonic())),
            wait=wait_exponential(multiplier=2 * FIRST_WAIT, max=2.0),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return call.call(max(0.1, end - time.monotonic()))
        raise AssertionError("tenacity ends by returning or raising")  # pragma: no cover

    @staticmethod
    def _collect(submitted: list[futures.Future[T]]) -> list[T | RegistryError]:
        results: list[T | RegistryError] = []
        for future in submitted:
            try:
                results.append(future.result())
            except RegistryError as exc:
                results.append(exc)
            except Exception as exc:  # a bug in one party's call must not lose the others' results
                results.append(RegistryError(Reason.INTERNAL, f"internal error ({exc.__class__.__name__})"))
        return results
