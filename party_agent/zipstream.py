"""Zip archives read as a stream: each entry's bytes given out as they arrive.

Python's :mod:`zipfile` needs the central directory, which sits at the end of an archive, so it
can only extract once the whole archive is on disk; for a stored archive that doubles the bytes
written and read. :func:`read_zip` gives out each entry, and its bytes, while the archive is
received, then checks the central directory against what it gave out; its caller decides where
the bytes go (and hashes them). It reads what FATE-Flow writes (deflated, sizes in the local
headers), what :mod:`party_agent.zipwriter` writes (stored entries with their sizes and CRC in the
local headers, deflated ones followed by data descriptors) and what other streaming writers produce.

The reader refuses, before giving them out, bytes past the limits of :class:`ArchiveLimits`: more than
``max_bytes`` or the room on the disk (declared by a header or inflated), and zip bombs, which it
tells by the bytes an entry actually inflates per compressed byte it takes (headers can lie). Each
entry's CRC-32 and size are checked once its bytes are given out, and the central directory at the end.

Deflated entries are inflated by ISA-L (about twice zlib's speed) on a thread of their own, a few pieces
ahead of the caller, who hashes and writes meanwhile; an entry's deflate stream is serial, so entries are
inflated one after the other.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from isal import isal_zlib

from fate_registry.checksums import crc32
from fate_registry.errors import Reason, RegistryError
from fate_registry.prefetch import prefetch
from party_agent.archive_limits import ArchiveLimits, amount, quoted
from party_agent.zipformat import (
    CENTRAL,
    CENTRAL_SIG,
    DEFLATED,
    DESCRIPTOR_SIG,
    END,
    END_SIG,
    FLAG_DESCRIPTOR,
    FLAG_ENCRYPTED,
    LOCAL,
    LOCAL_SIG,
    MAX_32,
    SIG_BYTES,
    STORED,
    ZIP64_END,
    ZIP64_END_SIG,
    ZIP64_LOCATOR,
    ZIP64_LOCATOR_SIG,
    bad,
    decoded_name,
    dos_mtime,
    zip64_values,
)

MAX_TRAILER_BYTES = 64 * 1024 * 1024
#: The most bytes one inflate step gives out; pieces this size keep ISA-L at full speed.
INFLATE_PIECE_BYTES = 1024 * 1024
#: Inflated pieces that may wait for the consumer: memory stays flat while both sides run.
INFLATE_AHEAD = 4
INFLATE_THREAD = "inflate"
#: What ISA-L raises for a corrupt deflate stream (its stubs type it as an instance, not a class).
_INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]
_TRAILER_SIGS = (SIG_BYTES[CENTRAL_SIG], SIG_BYTES[END_SIG], SIG_BYTES[ZIP64_END_SIG])
_LOCAL_SIG_BYTES = struct.pack("<I", LOCAL_SIG)
_EMPTY = memoryview(b"")


@dataclass
class ZipEntry:
    """One entry of an archive being read.

    ``chunks`` gives out its bytes (inflated) as they arrive, each piece held to the limits first; once it
    is exhausted, ``size`` and ``crc32`` are those of the bytes given out, checked against the archive's.
    Before that, ``size`` is what the local header declares (None: only a data descriptor after the bytes
    says it). The next entry is read once this one's bytes are all given out (or skipped).
    """

    name: str
    size: int | None
    mtime: float
    crc32: int = 0
    chunks: Iterator[memoryview | bytes] = field(init=False, repr=False)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass
class _Header:
    """What an entry's local header (and data descriptor) says of it."""

    name: str
    flags: int
    method: int
    crc: int
    csize: int | None  # None: unknown until the data descriptor
    size: int | None
    zip64: bool


class _Source:
    """The archive's bytes as they arrive, taken a piece at a time."""

    def __init__(self, chunks: Iterable[bytes | memoryview]) -> None:
        self._chunks = iter(chunks)
        self._head = _EMPTY
        self.position = 0  # bytes of the archive taken

    def piece(self, most: int = -1) -> memoryview:
        """The next bytes, at most ``most`` (-1: any number); empty at the end of the archive."""
        while not self._head:
            try:
                self._head = memoryview(next(self._chunks))
            except StopIteration:
                return _EMPTY
        if 0 <= most < len(self._head):
            out, self._head = self._head[:most], self._head[most:]
        else:
            out, self._head = self._head, _EMPTY
        self.position += len(out)
        return out

    def exactly(self, count: int) -> bytes:
        """The next ``count`` bytes (a header's), which must be there."""
        taken = bytearray()
        while len(taken) < count:
            piece = self.piece(count - len(taken))
            if not piece:
                raise RegistryError(Reason.DATA_LOSS, "the archive is truncated")
            taken += piece
        return bytes(taken)

    def give_back(self, data: bytes) -> None:
        """Bytes taken past the end of a deflate stream, to be taken again."""
        if data:
            self._head = memoryview(data + bytes(self._head)) if self._head else memoryview(data)
            self.position -= len(data)


def read_zip(chunks: Iterable[bytes | memoryview], limits: ArchiveLimits) -> Iterator[ZipEntry]:
    """The entries of the archive arriving as ``chunks``, each given out before its bytes are read.

    The central directory is checked once the last entry is done (symbolic links, devices and mismatches fail there).
    """
    return _Reader(chunks, limits).entries()


class _Reader:
    def __init__(self, chunks: Iterable[bytes | memoryview], limits: ArchiveLimits) -> None:
        self._source = _Source(chunks)
        self.limits = limits
        self._read: list[tuple[_Header, int, int]] = []  # entry, crc, size as read
        self._total = 0  # bytes given out
        self._deflated = (0, 0)  # compressed bytes taken and bytes inflated by the finished deflated entries

    def entries(self) -> Iterator[ZipEntry]:
        source = self._source
        while True:
            sig = source.exactly(4)
            if sig in _TRAILER_SIGS:
                break
            if sig != _LOCAL_SIG_BYTES:
                raise bad("the data is not a zip archive, or it is corrupt")
            entry = self._start_entry(sig + source.exactly(LOCAL.size - 4))
            yield entry
            for _ in entry.chunks:  # what the caller left unread
                pass
        trailer_at = source.position - 4
        trailer = bytearray(sig)
        while piece := source.piece():
            if len(trailer) + len(piece) > MAX_TRAILER_BYTES:
                raise bad("the archive's central directory is implausibly large")
            trailer += piece
        self._check_trailer(_parse_trailer(bytes(trailer), trailer_at))

    def _start_entry(self, local: bytes) -> ZipEntry:
        _, _, flags, method, mt, md, crc, csize, size, nlen, xlen = LOCAL.unpack(local)
        raw = self._source.exactly(nlen + xlen)
        name, extra = decoded_name(raw[:nlen], flags), raw[nlen:]
        if flags & FLAG_ENCRYPTED:
            raise bad(f"archive entry {name!r} is encrypted")
        if method not in (STORED, DEFLATED):
            raise bad(f"archive entry {name!r} uses an unsupported compression method")
        if len(self._read) >= self.limits.max_entries:
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE, f"the archive has more than {self.limits.max_entries} entries, the limit"
            )
        zip64 = zip64_values(extra)
        if csize == MAX_32 or size == MAX_32:
            if not zip64 or len(zip64) < 2:
                raise bad(f"archive entry {name!r} lacks its zip64 sizes")
            size, csize = zip64[0], zip64[1]
        descriptor = bool(flags & FLAG_DESCRIPTOR)
        header = _Header(
            name,
            flags,
            method,
            crc,
            None if descriptor and not csize else csize,
            None if descriptor and not size else size,
            zip64 is not None,
        )
        self._check_declared(header)
        if method == STORED and header.csize is None:
            raise bad(f"archive entry {name!r} is stored with its size only after its data; it cannot be streamed")
        entry = ZipEntry(name, header.size, dos_mtime(mt, md))
        chunks = self._entry_bytes(header, entry)
        entry.chunks = _ahead(chunks) if method == DEFLATED else chunks
        return entry

    def _check_declared(self, header: _Header) -> None:
        """Refuse an entry whose header declares a zip bomb, or more than the disk holds, before a byte is read."""
        if header.size is None:
            return
        if header.method == DEFLATED and header.csize is not None:
            self.limits.check_expansion(
                header.size, header.csize, f"archive entry {quoted(header.name)} declares that it expands"
            )
        room = self.limits.room
        if room is not None and self._total + header.size > room.bytes:
            earlier = f" after {amount(self._total)} of earlier entries" if self._total else ""
            raise room.refusal(f"archive entry {quoted(header.name)} declares {amount(header.size)}{earlier}")

    def _entry_bytes(self, header: _Header, entry: ZipEntry) -> Iterator[memoryview | bytes]:
        """The entry's bytes, each piece held to the limits.

        Its descriptor is read and its CRC-32 and size checked after the last.
        """
        given = _Given(isal_zlib.decompressobj(-15) if header.method == DEFLATED else None)
        source = self._source
        if header.csize is not None:
            remaining = header.csize
            while remaining:
                piece = source.piece(remaining)
                if not piece:
                    raise RegistryError(Reason.DATA_LOSS, "the archive is truncated")
                remaining -= len(piece)
                yield from self._inflated(piece, header, given)
            if given.inflate is not None:
                tail = given.inflate.flush()
                if tail:
                    yield self._passed(tail, header, given)
                if not given.inflate.eof:
                    raise RegistryError(Reason.DATA_LOSS, f"archive entry {header.name!r} is truncated")
        else:  # deflated with the size in a data descriptor: the deflate stream ends itself
            inflate = given.inflate
            assert inflate is not None
            while not inflate.eof:
                piece = source.piece()
                if not piece:
                    raise RegistryError(Reason.DATA_LOSS, "the archive is truncated")
                yield from self._inflated(piece, header, given)
            source.give_back(inflate.unused_data)
        if header.flags & FLAG_DESCRIPTOR:
            self._take_descriptor(header)
        self._close_entry(header, entry, given)

    def _inflated(self, piece: memoryview, header: _Header, given: _Given) -> Iterator[memoryview | bytes]:
        inflate = given.inflate
        if inflate is None:
            yield self._passed(piece, header, given)
            return
        given.fed += len(piece)
        try:
            out = inflate.decompress(piece, INFLATE_PIECE_BYTES)
            while out:
                yield self._passed(out, header, given)
                out = inflate.decompress(inflate.unconsumed_tail, INFLATE_PIECE_BYTES)
        except _INFLATE_ERROR:
            raise RegistryError(
                Reason.DATA_LOSS,
                f"archive entry {quoted(header.name)} is corrupt: its compressed data does not inflate",
            ) from None

    def _passed(self, data: memoryview | bytes, header: _Header, given: _Given) -> memoryview | bytes:
        """The entry's next bytes, once they pass the limits."""
        self._total += len(data)
        if self._total > self.limits.max_bytes:
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE, f"the archive expands to more than {self.limits.max_bytes} bytes, the limit"
            )
        room = self.limits.room
        if room is not None and self._total > room.bytes:
            raise room.refusal(f"the archive expands to more than {amount(room.bytes)}")
        if given.inflate is not None:
            self._check_inflated(header, given, len(data))
        given.size += len(data)
        given.crc = crc32(data, given.crc)
        return data

    def _check_inflated(self, header: _Header, given: _Given, more: int) -> None:
        """Refuse ``more`` inflated bytes that take the entry, or the archive's deflated entries, past the ratio."""
        taken, inflated = given.taken(), given.size + more
        self.limits.check_expansion(inflated, taken, f"archive entry {quoted(header.name)} expands")
        done_taken, done_inflated = self._deflated
        self.limits.check_expansion(
            done_inflated + inflated, done_taken + taken, "the archive's deflated entries expand", "their"
        )

    def _take_descriptor(self, header: _Header) -> None:
        first = self._source.exactly(4)
        fmt = "<IQQ" if header.zip64 else "<III"
        if first == DESCRIPTOR_SIG:
            body = self._source.exactly(struct.calcsize(fmt))
        else:
            body = first + self._source.exactly(struct.calcsize(fmt) - 4)
        header.crc, header.csize, header.size = struct.unpack(fmt, body)

    def _close_entry(self, header: _Header, entry: ZipEntry, given: _Given) -> None:
        """Check the entry's bytes against its header or descriptor and count it among those read.

        A directory's bytes are checked by the caller, who refuses any.
        """
        if not entry.is_dir and ((header.size is not None and given.size != header.size) or given.crc != header.crc):
            raise RegistryError(Reason.DATA_LOSS, f"archive entry {header.name!r} is corrupt (CRC or size mismatch)")
        entry.size, entry.crc32 = given.size, given.crc
        self._read.append((header, given.crc, given.size))
        if given.inflate is not None:
            done_taken, done_inflated = self._deflated
            self._deflated = (done_taken + given.taken(), done_inflated + given.size)

    def _check_trailer(self, central: list[tuple[str, int, int, int, int]]) -> None:
        """Check the central directory against the entries read; symbolic links and devices fail here."""
        if len(central) != len(self._read):
            raise bad("the archive's central directory does not list the entries it holds")
        for (name, crc, _csize, size, attrs), (header, read_crc, read_size) in zip(central, self._read, strict=True):
            if name != header.name:
                raise bad(f"the archive's central directory names {name!r} where the data holds {header.name!r}")
            mode = attrs >> 16
            if stat.S_ISLNK(mode):
                raise bad(f"archive entry {name!r} is a symbolic link")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise bad(f"archive entry {name!r} is a device, socket or pipe")
            if crc != read_crc or size != read_size:
                raise RegistryError(
                    Reason.DATA_LOSS, f"archive entry {name!r} differs from its central directory record"
                )


def _ahead(pieces: Iterator[memoryview | bytes]) -> Iterator[memoryview | bytes]:
    """A deflated entry's ``pieces`` (inflated and checked) produced on a thread of their own, a few ahead.

    Inflating is the costliest step of an import; ISA-L releases the GIL, so it overlaps with the consumer, who
    hashes and writes. The thread starts when the first piece is asked for, and while it runs it alone reads the
    archive: the reader goes on once the last piece (after the entry's checks) is handed over. It stops once the
    consumer stops asking; its errors are raised to the consumer.
    """
    yield from prefetch(pieces, INFLATE_AHEAD, INFLATE_THREAD)


@dataclass
class _Given:
    """What an entry has given out so far: its bytes and their CRC-32, and the compressed bytes inflated."""

    inflate: isal_zlib.Decompress | None
    size: int = 0
    crc: int = 0
    fed: int = 0  # compressed bytes given to ``inflate``

    def taken(self) -> int:
        """The compressed bytes ``inflate`` has used (not those it holds, nor those past its end)."""
        assert self.inflate is not None
        return self.fed - len(self.inflate.unconsumed_tail) - len(self.inflate.unused_data)


def _parse_trailer(data: bytes, offset: int) -> list[tuple[str, int, int, int, int]]:
    """The central directory records at the start of ``data`` (found at ``offset`` in the archive).

    They are given once the end of central directory that follows them is whole and agrees with them on their size and
    offset.
    """
    records = []
    pos = 0
    while data[pos : pos + 4] == SIG_BYTES[CENTRAL_SIG] and pos + CENTRAL.size <= len(data):
        fields = CENTRAL.unpack_from(data, pos)
        flags, crc, csize, size = fields[3], fields[7], fields[8], fields[9]
        nlen, xlen, clen, attrs = fields[10], fields[11], fields[12], fields[15]
        start = pos + CENTRAL.size
        if start + nlen + xlen + clen > len(data):
            break
        extra = data[start + nlen : start + nlen + xlen]
        if size == MAX_32 or csize == MAX_32:
            values = zip64_values(extra) or []
            if len(values) < (size == MAX_32) + (csize == MAX_32):
                raise bad("an archive entry lacks its zip64 sizes")
            if size == MAX_32:
                size = values.pop(0)
            if csize == MAX_32:
                csize = values.pop(0)
        records.append((decoded_name(data[start : start + nlen], flags), crc, csize, size, attrs))
        pos = start + nlen + xlen + clen
    if data[pos : pos + 4] == SIG_BYTES[CENTRAL_SIG]:
        raise RegistryError(Reason.DATA_LOSS, "the archive is truncated: its central directory is incomplete")
    if _end_of_directory(data[pos:]) != (pos, offset):
        raise RegistryError(
            Reason.DATA_LOSS,
            "the archive is damaged: its end of central directory disagrees with its central directory",
        )
    return records


def _end_of_directory(data: bytes) -> tuple[int, int]:
    """(size, offset) of the central directory, as the end records at the start of ``data`` give them.

    The zip64 end record (with its locator) when there is one, then the end of central directory, which must be whole,
    its comment included. Bytes after it are left alone, as zipfile leaves them.
    """
    zip64: tuple[int, int] | None = None
    if data[:4] == SIG_BYTES[ZIP64_END_SIG] and len(data) >= ZIP64_END.size:
        _, length, *_, size, offset = ZIP64_END.unpack_from(data)
        locator = 12 + length  # the record's length counts from after its length field
        if data[locator : locator + 4] == SIG_BYTES[ZIP64_LOCATOR_SIG]:
            zip64, data = (size, offset), data[locator + ZIP64_LOCATOR.size :]
    if len(data) < END.size or data[:4] != SIG_BYTES[END_SIG]:
        raise _cut_end()
    *_, size, offset, comment = END.unpack_from(data)
    if len(data) < END.size + comment:
        raise _cut_end()
    return zip64 or (size, offset)


def _cut_end() -> RegistryError:
    return RegistryError(
        Reason.DATA_LOSS, "the archive is damaged: its end of central directory is missing or cut (truncated?)"
    )
