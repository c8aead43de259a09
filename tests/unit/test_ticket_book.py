"""The agent's book of one-hop transfer tickets: what it keeps, and that keeping it stays cheap."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import ImportModelHeader, ImportModelResult, PartyModelRef
from party_agent.tickets import TicketBook

MODEL_ID = "arbiter-10000#guest-9999#host-10000#model"


def _announcement(index: int) -> bytes:
    """An ExpectTransfer request as the coordinator sends it, serialized."""
    target = PartyModelRef(role="guest", party_id="9999", model_id=MODEL_ID, model_version=f"v{index:07d}")
    request = agent_pb2.ExpectTransferRequest(ticket=f"op{index:07d}.{'x' * 32}", ttl_seconds=300)
    request.import_header.CopyFrom(ImportModelHeader(target=target, size=14426, sha256="a" * 64, file_name="m.zip"))
    return request.SerializeToString()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_an_outcome_comes_back_as_it_was_finished_and_a_ticket_names_its_kind() -> None:
    book = TicketBook()
    header = agent_pb2.ExpectTransferRequest.FromString(_announcement(1)).import_header
    result = ImportModelResult(model=header.target, job_id="202611281015", roles_json='{"guest": ["9999"]}')
    book.expect("t1", header, 60)
    book.claim("t1", ImportModelHeader.FromString(header.SerializeToString()))  # equal, not the same object
    book.finish("t1", result)
    assert book.outcome("t1").result == result
    # An empty header and an empty export request serialize alike: the kind still tells them apart.
    book.expect("t2", agent_pb2.ExportModelRequest(), 60)
    with pytest.raises(RegistryError) as refused:
        book.claim("t2", ImportModelHeader())
    assert refused.value.reason is Reason.PERMISSION_DENIED


def test_an_export_ticket_allows_only_the_archive_form_it_was_issued_for() -> None:
    book = TicketBook()
    model = PartyModelRef(model_id="m")
    book.expect("t", agent_pb2.ExportModelRequest(model=model, stored=True), 60)
    with pytest.raises(RegistryError) as refused:
        book.claim("t", agent_pb2.ExportModelRequest(model=model))
    assert refused.value.reason is Reason.PERMISSION_DENIED
    book.claim("t", agent_pb2.ExportModelRequest(model=model, stored=True))


def test_a_failed_transfer_keeps_its_error_without_the_failed_calls_frames() -> None:
    book = TicketBook()
    book.expect("t", agent_pb2.ExportModelRequest(model=PartyModelRef(model_id="m")), 60)
    book.claim("t", agent_pb2.ExportModelRequest(model=PartyModelRef(model_id="m")))
    try:
        raise RegistryError(Reason.DATA_LOSS, "hash mismatch")
    except RegistryError as exc:
        book.fail("t", exc)
    kept = book.outcome("t").error
    assert kept is not None and kept.reason is Reason.DATA_LOSS and kept.message == "hash mismatch"
    assert kept.__traceback__ is None


def test_a_full_book_of_finished_imports_stays_small() -> None:
    """Kept as protobuf messages, each outcome held some KiB of native memory (its request's arena)
    for a day: the agent's RSS grew under load. Kept as bytes, 5,000 outcomes take a few MiB."""
    count = 5000
    announcements = [_announcement(i) for i in range(count)]
    book = TicketBook(max_tickets=count)
    gc.collect()
    before = _rss_kib()
    for raw in announcements:
        request = agent_pb2.ExpectTransferRequest.FromString(raw)
        book.expect(request.ticket, request.import_header, 300)
        book.claim(request.ticket, agent_pb2.ExpectTransferRequest.FromString(raw).import_header)
        book.finish(
            request.ticket,
            ImportModelResult(model=request.import_header.target, manifest_digest="b" * 64, roles_json="{}"),
        )
    gc.collect()
    per_ticket_kib = (_rss_kib() - before) / count
    assert per_ticket_kib < 1.5, f"{per_ticket_kib:.2f} KiB of RSS per kept outcome"
