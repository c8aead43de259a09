from __future__ import annotations

import pytest

from fate_registry.agent.v1 import agent_pb2
from fate_registry.chunks import chunk_payload, encode_chunk
from fate_registry.v1 import registry_pb2
from fate_registry.v1.common_pb2 import ExportModelTrailer


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_384, 262_144, 1_048_576])
def test_hand_made_chunks_are_what_protobuf_makes(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    raw = encode_chunk(data)
    assert raw == registry_pb2.ImportModelRequest(chunk=data).SerializeToString()
    assert agent_pb2.ExportModelResponse.FromString(raw).chunk == data
    payload = chunk_payload(raw)
    assert payload is not None and bytes(payload) == data


def test_other_messages_are_not_taken_for_chunks() -> None:
    trailer = registry_pb2.ExportModelResponse(trailer=ExportModelTrailer(crc32=0xAB, size=3)).SerializeToString()
    assert chunk_payload(trailer) is None
    assert chunk_payload(b"") is None
    assert chunk_payload(encode_chunk(b"abc")[:-1]) is None  # truncated
    assert chunk_payload(encode_chunk(b"abc") + b"\x1a\x00") is None  # a chunk and something else
