"""Archive chunks on the wire, without protobuf copies.

Every streamed archive message (``ImportModelRequest`` and ``ExportModelResponse``, the
coordinator's and the agent's alike) carries archive bytes in field 2, ``bytes chunk``. Such a
message is the tag byte 0x12, the length as a varint, then the bytes; building and reading it by
hand costs one copy instead of protobuf's two, which shows at a gigabyte per transfer. Every other
message (headers, trailers) goes through protobuf as usual.
"""

from __future__ import annotations

CHUNK_TAG = 0x12  # field 2, wire type 2 (length-delimited)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk(data: bytes | memoryview) -> bytes:
    """The serialized message ``{chunk: data}``."""
    return b"".join((bytes((CHUNK_TAG,)), _varint(len(data)), data))


def chunk_payload(raw: bytes) -> memoryview | None:
    """The bytes of a message that holds only a chunk, without copying them; None for any other message."""
    if len(raw) < 2 or raw[0] != CHUNK_TAG:
        return None
    length = shift = 0
    pos = 1
    while pos < len(raw) and pos <= 10:
        byte = raw[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return memoryview(raw)[pos:] if pos + length == len(raw) else None
        shift += 7
    return None
