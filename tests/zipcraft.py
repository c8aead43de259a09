"""Zip entries written by hand, as a hostile archive writes them: every size, CRC and flag is what the test says."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

STORED, DEFLATED = 0, 8
DESCRIPTOR, UTF8 = 0x8, 0x800
MiB = 1024 * 1024
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")


def zeros(size: int) -> bytes:
    """``size`` zero bytes (whole MiB) as raw deflate, about a thousandth as large, in milliseconds: one MiB
    compressed and flushed to a byte boundary with its state reset, repeated, then an empty final block."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = packer.compress(bytes(MiB)) + packer.flush(zlib.Z_FULL_FLUSH)
    return one * (size // MiB) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


@dataclass(frozen=True)
class Entry:
    """One entry: ``payload`` follows its local header as it is; the sizes declared default to its length."""

    name: str
    payload: bytes
    method: int = STORED
    crc: int = 0
    size: int | None = None
    csize: int | None = None
    flags: int = 0

    def _fields(self) -> tuple[tuple[int, ...], bytes, bytes]:
        """(flags, method, time, date, crc, csize, size), the name and the zip64 extra (sizes past 4 GiB)."""
        name = self.name.encode()
        size = len(self.payload) if self.size is None else self.size
        csize = len(self.payload) if self.csize is None else self.csize
        extra = b""
        if max(size, csize) >= 0xFFFFFFFF:
            extra = struct.pack("<HHQQ", 1, 16, size, csize)
            size = csize = 0xFFFFFFFF
        flags = self.flags | (0 if name.isascii() else UTF8)
        return (flags, self.method, 0, 0x21, self.crc, csize, size), name, extra

    def local(self) -> bytes:
        fields, name, extra = self._fields()
        return _LOCAL.pack(0x04034B50, 45, *fields, len(name), len(extra)) + name + extra + self.payload

    def central(self, offset: int) -> bytes:
        fields, name, extra = self._fields()
        mode = 0o100644 << 16
        return _CENTRAL.pack(0x02014B50, 0x031E, 45, *fields, len(name), len(extra), 0, 0, 0, mode, offset) + (
            name + extra
        )


def spliced(archive: bytes, *entries: Entry) -> bytes:
    """``archive`` (a zip without comment) with ``entries`` after its own, its central directory and end rewritten."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        start, count = zf.start_dir, len(zf.infolist())
    body, central = bytearray(archive[:start]), bytearray(archive[start : len(archive) - _END.size])
    for entry in entries:
        central += entry.central(len(body))
        body += entry.local()
    count += len(entries)
    return bytes(body + central + _END.pack(0x06054B50, 0, 0, count, count, len(central), len(body), 0))
