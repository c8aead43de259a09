"""Zip archives written as a stream, without seeking.

Stored entries carry their final sizes and CRC in their local headers, so any reader can extract them as they
arrive. Deflated entries, whose compressed size is known only at their end, carry them in a data descriptor after
their bytes (flag bit 3); its sizes take 8 bytes when the local header has a zip64 extra field.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass, field

from party_agent.zipformat import (
    CENTRAL,
    CENTRAL_SIG,
    DEFLATED,
    DESCRIPTOR_SIG,
    END,
    END_SIG,
    FLAG_DESCRIPTOR,
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
    method: int
    crc: int
    size: int
    csize: int
    offset: int
    dos: tuple[int, int]
    zip64: bool


def _deflated_bound(size: int) -> int:
    """More than the deflated size of ``size`` bytes in 1 MiB segments can be (5 bytes a 64 KiB stored block)."""
    return size + size // 1000 + 1024 * 1024


@dataclass
class ZipWriter:
    """Produces a zip piece by piece: ``header()`` before each file's bytes, ``finish()`` last.

    A deflated entry's bytes are followed by ``descriptor()``. ``zip64_from`` is the entry size from which
    entries take zip64 fields (4 GiB; lower only to exercise them on small entries).
    """

    offset: int = 0
    zip64_from: int = MAX_32
    _entries: list[_Written] = field(default_factory=list)

    def header(self, path: str, size: int, crc: int, mtime: float, deflated: bool = False) -> bytes:
        """The local header of a file of ``size`` bytes; a deflated one's sizes and CRC come in its descriptor."""
        name = path.encode("utf-8")
        flags = (0 if name.isascii() else FLAG_UTF8) | (FLAG_DESCRIPTOR if deflated else 0)
        dos = dos_time(mtime)
        zip64 = (_deflated_bound(size) if deflated else size) >= self.zip64_from
        known = 0 if deflated else size
        extra = struct.pack("<HHQQ", ZIP64_EXTRA, 16, known, known) if zip64 else b""
        shown = MAX_32 if zip64 else known
        method = DEFLATED if deflated else STORED
        local = LOCAL.pack(
            LOCAL_SIG,
            45 if zip64 else 20,
            flags,
            method,
            *dos,
            0 if deflated else crc,
            shown,
            shown,
            len(name),
            len(extra),
        )
        self._entries.append(_Written(name, flags, method, crc, size, size, self.offset, dos, zip64))
        self.offset += len(local) + len(name) + len(extra) + known
        return local + name + extra

    def descriptor(self, compressed_size: int) -> bytes:
        """The data descriptor that ends the deflated entry just written, of ``compressed_size`` bytes."""
        entry = self._entries[-1]
        assert entry.flags & FLAG_DESCRIPTOR, "only a deflated entry ends with a descriptor"
        entry.csize = compressed_size
        sizes = "QQ" if entry.zip64 else "II"
        record = DESCRIPTOR_SIG + struct.pack(f"<I{sizes}", entry.crc, compressed_size, entry.size)
        self.offset += compressed_size + len(record)
        return record

    def finish(self) -> bytes:
        parts = []
        start = self.offset
        for e in self._entries:
            sizes_64 = e.zip64 or e.size >= MAX_32 or e.csize >= MAX_32
            values = [e.size, e.csize] if sizes_64 else []
            if e.offset >= MAX_32:
                values.append(e.offset)
            extra = struct.pack(f"<HH{len(values)}Q", ZIP64_EXTRA, 8 * len(values), *values) if values else b""
            attrs = (stat.S_IFREG | 0o644) << 16
            parts.append(
                CENTRAL.pack(
                    CENTRAL_SIG,
                    (3 << 8) | 45,
                    45 if values else 20,
                    e.flags,
                    e.method,
                    *e.dos,
                    e.crc,
                    MAX_32 if sizes_64 else e.csize,
                    MAX_32 if sizes_64 else e.size,
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
