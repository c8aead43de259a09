"""The fan-out: parallel calls, retries of idempotent calls while a party is unavailable, once per operation."""

from __future__ import annotations

import threading
import time

import pytest

from fate_registry.agent.v1.agent_pb2 import ExportModelRequest
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import ImportModelResult, PartyModelRef
from party_agent.idempotency import OnceByOperation
from party_agent.tickets import TicketBook
from registry_server.fanout import REACH_SECONDS, FanOut, PartyCall


class Flaky:
    """Unavailable for the first ``failures`` calls, then answers with the number of calls made."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, timeout: float) -> int:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise RegistryError(Reason.PARTY_UNAVAILABLE, "party 9999 did not answer")
            return self.calls


@pytest.fixture
def fanout() -> FanOut:
    return FanOut(max_parallel=8)


def test_idempotent_calls_are_retried_while_unavailable(fanout: FanOut) -> None:
    flaky = Flaky(failures=2)
    (answer,) = fanout.parties([PartyCall("guest", "9999", flaky, retry_for=REACH_SECONDS)], deadline=10)
    assert answer == 3 and flaky.calls == 3


def test_other_calls_and_other_errors_are_not_retried(fanout: FanOut) -> None:
    flaky = Flaky(failures=1)
    (answer,) = fanout.parties([PartyCall("guest", "9999", flaky, retry_for=0)], deadline=10)
    assert isinstance(answer, RegistryError) and answer.reason is Reason.PARTY_UNAVAILABLE and flaky.calls == 1

    calls = 0

    def refused(timeout: float) -> int:
        nonlocal calls
        calls += 1
        raise RegistryError(Reason.MODEL_NOT_FOUND, "no such model")

    (answer,) = fanout.parties([PartyCall("guest", "9999", refused, retry_for=REACH_SECONDS)], deadline=10)
    assert isinstance(answer, RegistryError) and answer.reason is Reason.MODEL_NOT_FOUND and calls == 1


def test_retries_stop_at_the_deadline(fanout: FanOut) -> None:
    flaky = Flaky(failures=10_000)
    start = time.monotonic()
    (answer,) = fanout.parties([PartyCall("host", "10000", flaky, retry_for=REACH_SECONDS)], deadline=1.0)
    assert isinstance(answer, RegistryError) and time.monotonic() - start < 5


def test_an_unreachable_party_is_tried_for_retry_for_not_the_whole_deadline(fanout: FanOut) -> None:
    """A long deadline (a deploy's 600 s) is for a party that works: one that stays unreachable fails within
    ``retry_for``, after more than one try."""
    flaky = Flaky(failures=10_000)
    start = time.monotonic()
    (answer,) = fanout.parties([PartyCall("host", "10000", flaky, retry_for=1.0)], deadline=600)
    took = time.monotonic() - start
    assert isinstance(answer, RegistryError) and answer.reason is Reason.PARTY_UNAVAILABLE
    assert 0.5 <= took < 3 and flaky.calls > 1


def test_parties_run_at_once(fanout: FanOut) -> None:
    """Six calls meet at a barrier: it only opens if all six are running at the same time."""
    barrier = threading.Barrier(6, timeout=10)

    def meet(timeout: float) -> int:
        return barrier.wait()

    answers = fanout.parties([PartyCall("host", str(i), meet) for i in range(6)], deadline=30)
    assert sorted(a for a in answers if isinstance(a, int)) == list(range(6))


def test_a_repeated_operation_is_done_once() -> None:
    once = OnceByOperation()
    done: list[int] = []

    def load() -> str:
        done.append(1)
        return "loaded"

    assert once.run("op-1", "LoadModel", b"req", load) == "loaded"
    assert once.run("op-1", "LoadModel", b"req", load) == "loaded"
    assert len(done) == 1
    assert once.run("op-2", "LoadModel", b"req", load) == "loaded" and len(done) == 2
    assert once.run("", "LoadModel", b"req", load) == "loaded" and len(done) == 3  # no operation id: no memory

    def fails() -> str:
        raise RegistryError(Reason.MODEL_NOT_FOUND, "gone")

    for _ in range(2):
        with pytest.raises(RegistryError, match="gone"):
            once.run("op-3", "LoadModel", b"req", fails)


def test_a_full_ticket_book_makes_room_from_its_oldest_finished_outcomes() -> None:
    book = TicketBook(max_tickets=3)
    models = [PartyModelRef(role="guest", party_id="9999", model_id="m", model_version=str(i)) for i in range(6)]
    exports = [ExportModelRequest(model=model) for model in models]
    for i in range(3):
        book.expect(f"t{i}", exports[i], 60)
        book.claim(f"t{i}", exports[i])
        book.finish(f"t{i}", ImportModelResult(model=models[i]))
    book.expect("t3", exports[3], 60)  # full of finished outcomes: the oldest one goes
    assert book.outcome("t0").result is None and book.outcome("t1").result == ImportModelResult(model=models[1])
    book.expect("t4", exports[4], 60)
    book.expect("t5", exports[5], 60)  # t1 and t2 went; now three open transfers (t3, t4, t5)
    with pytest.raises(RegistryError) as refused:
        book.expect("t6", exports[0], 60)
    assert refused.value.reason is Reason.NO_SPACE
