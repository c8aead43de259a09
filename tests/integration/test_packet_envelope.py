"""The agent's DataTransferService envelope, spoken to as FATE's proxy would: same answers as the
direct API, errors with their code and reason, streams checked by sequence and sha256."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fate_registry import packets
from fate_registry.agent.v1 import agent_pb2
from fate_registry.config import PLAINTEXT, Address
from fate_registry.errors import Reason, RegistryError
from fate_registry.fate import proxy_pb2
from fate_registry.v1.common_pb2 import ImportModelHeader, PartyModelRef
from registry_server.transport import DirectTransport, PacketTransport
from tests.conftest import GeneratedModel
from tests.support.federation import LocalFederation

SERVICE = "/fate_registry.agent.v1.PartyAgentService/"
CHUNK = 64 * 1024


def _address(federation: LocalFederation, party: str = "9999") -> Address:
    host, _, port = federation.agent_address(party).rpartition(":")
    return Address(host, int(port))


def _packet_transport(federation: LocalFederation, party: str = "9999") -> PacketTransport:
    """Packets sent straight to the agent's port, which is where a proxy delivers them."""
    return PacketTransport(
        "9999", party, _address(federation, party), call_timeout=10, stream_timeout=30, tls=PLAINTEXT
    )


def _import_messages(model: GeneratedModel, version: str) -> Iterator[bytes]:
    archive = model.archives["guest", "9999"]
    ref = PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version=version)
    header = ImportModelHeader(target=ref, size=archive.stat().st_size)
    yield agent_pb2.ImportModelRequest(header=header).SerializeToString()
    data = archive.read_bytes()
    for at in range(0, len(data), CHUNK):
        yield agent_pb2.ImportModelRequest(chunk=data[at : at + CHUNK]).SerializeToString()


def _info_request(model: GeneratedModel, version: str) -> bytes:
    ref = PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version=version)
    return agent_pb2.GetModelInfoRequest(model=ref).SerializeToString()


def test_stream_and_unary_answers_match_the_direct_api(federation: LocalFederation, model: GeneratedModel) -> None:
    through, direct = _packet_transport(federation), DirectTransport("9999", _address(federation), PLAINTEXT, 30.0)
    try:
        imported = agent_pb2.ImportModelResponse.FromString(
            through.client_stream(SERVICE + "ImportModel", _import_messages(model, model.version), {})
        )
        assert imported.result.manifest_digest
        request = _info_request(model, model.version)
        assert through.unary(SERVICE + "GetModelInfo", request, {}, 10) == direct.unary(
            SERVICE + "GetModelInfo", request, {}, 10
        )
        ref = PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version=model.version)
        export = agent_pb2.ExportModelRequest(model=ref).SerializeToString()
        via_packets = [
            agent_pb2.ExportModelResponse.FromString(m)
            for m in through.server_stream(SERVICE + "ExportModel", export, {})
        ]
        direct_first = agent_pb2.ExportModelResponse.FromString(
            next(iter(direct.server_stream(SERVICE + "ExportModel", export, {})))
        )
        header, *chunks, trailer = via_packets  # one Packet each
        assert header.header == direct_first.header and header.header.manifest_digest
        zipped = b"".join(c.chunk for c in chunks)
        assert (trailer.trailer.crc32, trailer.trailer.size) == (zlib.crc32(zipped), len(zipped))

        # an error keeps its code, reason and message through the envelope
        missing = _info_request(model, "nosuch")
        with pytest.raises(RegistryError) as enveloped:
            through.unary(SERVICE + "GetModelInfo", missing, {}, 10)
        with pytest.raises(RegistryError) as plain:
            direct.unary(SERVICE + "GetModelInfo", missing, {}, 10)
        assert enveloped.value.reason is plain.value.reason is Reason.MODEL_NOT_FOUND
        assert enveloped.value.message == plain.value.message and enveloped.value.metadata["party_id"] == "9999"
    finally:
        through.close()
        direct.close()


def _send(federation: LocalFederation, packet: proxy_pb2.Packet) -> RegistryError | None:
    with grpc.insecure_channel(federation.agent_address("9999")) as channel:
        call = channel.unary_unary(
            packets.UNARY_CALL,
            request_serializer=proxy_pb2.Packet.SerializeToString,
            response_deserializer=proxy_pb2.Packet.FromString,
        )
        answer: proxy_pb2.Packet = call(packet, timeout=30)
    assert answer.header.src.partyId == packet.header.dst.partyId  # answered with src and dst swapped
    return packets.failure_of(answer)


def _stream_packet(operator: str, seq: int, value: bytes, key: str = "") -> proxy_pb2.Packet:
    headers = {packets.STREAM_ID_KEY: "stream-1", "x-operation-id": ""}
    method = SERVICE + "ImportModel"
    return packets.request_packet("9999", "9999", method, operator, headers, 30_000, value=value, seq=seq, key=key)


def test_an_import_whose_bytes_differ_from_the_digest_is_refused(
    federation: LocalFederation, model: GeneratedModel
) -> None:
    version = model.version + "7"
    messages = list(_import_messages(model, version))
    for seq, message in enumerate(messages, start=1):
        assert _send(federation, _stream_packet(packets.PUT_DATA, seq, message)) is None
    wrong = hashlib.sha256(b"other bytes").hexdigest().encode()
    error = _send(federation, _stream_packet(packets.STOP, len(messages) + 1, wrong, packets.DIGEST_KEY))
    assert error is not None and error.reason is Reason.DATA_LOSS and "sha256" in error.message
    transport = _packet_transport(federation)
    with pytest.raises(RegistryError) as info:
        transport.unary(SERVICE + "GetModelInfo", _info_request(model, version), {}, 10)
    transport.close()
    assert info.value.reason is Reason.MODEL_NOT_FOUND  # nothing of the refused import was kept


def test_out_of_order_packets_and_foreign_parties_are_refused(
    federation: LocalFederation, model: GeneratedModel
) -> None:
    messages = list(_import_messages(model, model.version + "8"))
    assert _send(federation, _stream_packet(packets.PUT_DATA, 1, messages[0])) is None
    error = _send(federation, _stream_packet(packets.PUT_DATA, 3, messages[1]))
    assert error is not None and error.reason is Reason.DATA_LOSS and "Packet 3" in error.message

    foreign = packets.request_packet("9999", "10000", SERVICE + "GetModelInfo", packets.RUN, {}, 10_000)
    error = _send(federation, foreign)
    assert error is not None and error.reason is Reason.PERMISSION_DENIED and "party 10000" in error.message


def test_an_unreachable_proxy_names_the_party_and_the_proxy(tmp_path: Path) -> None:
    transport = PacketTransport(
        "9999", "10000", Address("127.0.0.1", 9), call_timeout=2, stream_timeout=2, tls=PLAINTEXT
    )
    with pytest.raises(RegistryError) as info:
        transport.unary(SERVICE + "GetModelInfo", b"", {}, 2)
    transport.close()
    assert info.value.reason in (Reason.PARTY_UNAVAILABLE, Reason.DEADLINE_EXCEEDED)
    assert "party 10000" in info.value.message and "127.0.0.1:9" in info.value.message
    assert info.value.metadata["party_id"] == "10000"
