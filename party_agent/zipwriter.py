"""Zip archives written as a stream, without seeking.

Stored entries whose local headers carry their final sizes and CRC, so any reader can extract them as they arrive.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass, field

from party_agent.zipformat import (
    CENTRAL,
    CENTRAL_SIG,
    END,
    END_SIG,
    FLAG_UTF8,
    LOCAL,
    LOCAL_SIG,
    MAX_32,
    STORED,
    ZIP64_END,
    ZIP64_END_SIG,
    ZIP64_EXTRA,
    ZIP64_LOCATOR,
    ZIP64_LOCATOR_SIG,
    dos_time,
)


@dataclass
class _Written:
    name: bytes
    flags: int
    crc: int
    size: int
    offset: int
    dos: tuple[int, int]


@dataclass
class ZipWriter:
    """Produces a stored zip piece by piece: ``header()`` before each file's bytes, ``finish()`` last."""

    offset: int = 0
    _entries: list[_Written] = field(default_factory=list)

    def header(self, path: str, size: int, crc: int, mtime: float) -> bytes:
        name = path.encode("utf-8")
        flags = 0 if name.isascii() else FLAG_UTF8
        dos = dos_time(mtime)
        zip64 = size >= MAX_32
        extra = struct.pack("<HHQQ", ZIP64_EXTRA, 16, size, size) if zip64 else b""
        shown = MAX_32 if zip64 else size
        version = 45 if zip64 else 20
        local = LOCAL.pack(LOCAL_SIG, version, flags, STORED, *dos, crc, shown, shown, len(name), len(extra))
        self._entries.append(_Written(name, flags, crc, size, self.offset, dos))
        self.offset += len(local) + len(name) + len(extra) + size
        return local + name + extra

    def finish(self) -> bytes:
        parts = []
        start = self.offset
        for e in self._entries:
            values = [e.size, e.size] if e.size >= MAX_32 else []
            if e.offset >= MAX_32:
                values.append(e.offset)
            extra = struct.pack(f"<HH{len(values)}Q", ZIP64_EXTRA, 8 * len(values), *values) if values else b""
            size = min(e.size, MAX_32)
            attrs = (stat.S_IFREG | 0o644) << 16
            parts.append(
                CENTRAL.pack(
                    CENTRAL_SIG,
                    (3 << 8) | 45,
                    45 if values else 20,
                    e.flags,
                    STORED,
                    *e.dos,
                    e.crc,
                    size,
                    size,
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    attrs,
                    min(e.offset, MAX_32),
                )
                + e.name
                + extra
            )
        directory = b"".join(parts)
        count = len(self._entries)
        tail = b""
        if count >= 0xFFFF or start >= MAX_32 or len(directory) >= MAX_32:
            zip64_end = start + len(directory)
            tail = ZIP64_END.pack(
                ZIP64_END_SIG, 44, (3 << 8) | 45, 45, 0, 0, count, count, len(directory), start
            ) + ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIG, 0, zip64_end, 1)
        end = END.pack(
            END_SIG, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), min(len(directory), MAX_32), min(start, MAX_32), 0
        )
        self.offset += len(directory) + len(tail) + len(end)
        return directory + tail + end
