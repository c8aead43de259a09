"""Zip archives as streams: written without seeking, read and extracted as the bytes arrive.

Python's :mod:`zipfile` needs the central directory, which sits at the end of an archive, so it
can only extract once the whole archive is on disk; for a stored archive that doubles the bytes
written and read. This module extracts each entry while it is received, then checks the central
directory against what was extracted. It reads what FATE-Flow writes (deflated, sizes in the
local headers), what we write (stored, sizes and CRC in the local headers) and what streaming
writers produce (data descriptors). The writer emits stored entries whose local headers carry
their final sizes and CRC, so our archives are streamable by any reader.

The reader refuses, before writing them, bytes past the limits of :class:`ArchiveLimits`: more than
``max_bytes`` or the room on the disk (declared by a header or inflated), and zip bombs, which it
tells by the bytes an entry actually inflates per compressed byte it takes (headers can lie).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fate_registry.checksums import BackgroundSha256, crc32
from fate_registry.direct_io import DirectWriter
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_tree

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
DESCRIPTOR_SIG = b"PK\x07\x08"
ZIP64_END_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50
END_SIG = 0x06054B50
ZIP64_EXTRA = 0x0001
STORED, DEFLATED = 0, 8
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800
MAX_32 = 0xFFFFFFFF
MAX_TRAILER_BYTES = 64 * 1024 * 1024
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_SIG_BYTES = {sig: struct.pack("<I", sig) for sig in (CENTRAL_SIG, END_SIG, ZIP64_END_SIG, ZIP64_LOCATOR_SIG)}
# An entry, and the deflated entries of an archive together, may always inflate to this many bytes:
# below it a ratio means little (a few KiB of JSON may deflate 100-fold), and checking only past it
# bounds what a bomb writes. FATE's buffers past 256 KiB deflate at most 3-fold (see LimitsConf).
EXPANSION_FLOOR = 1024 * 1024
# What an import leaves free on the disk it writes to, for the database, the logs and other writers:
# 1 GiB, or a twentieth of a disk smaller than 20 GiB.
DISK_MARGIN_BYTES = 1024**3
DISK_MARGIN_SHARE = 20


def _bad(message: str) -> RegistryError:
    return RegistryError(Reason.BAD_ARCHIVE, message)


def quoted(name: str) -> str:
    """An entry's name for a message: quoted, escaped, cut after 100 characters."""
    return repr(name) if len(name) <= 100 else f"{name[:100]!r}…"


def amount(size: int) -> str:
    """``size`` bytes as a person reads them: 512 B, 3.2 GiB."""
    if size < 1024:
        return f"{size} B"
    scaled, unit = size / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB", "PiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, larger
    return f"{scaled:.1f} {unit}"


@dataclass(frozen=True)
class DiskRoom:
    """What an extraction may write: the disk's free space when it starts, less a margin."""

    free: int
    margin: int
    disk: str  # whose disk, for messages: "party 9999's disk"

    @classmethod
    def of(cls, directory: Path, disk: str) -> DiskRoom:
        usage = shutil.disk_usage(directory)
        return cls(usage.free, min(DISK_MARGIN_BYTES, usage.total // DISK_MARGIN_SHARE), disk)

    @property
    def bytes(self) -> int:
        return max(0, self.free - self.margin)

    def refusal(self, what: str) -> RegistryError:
        """The error for ``what`` ("the archive is 3.0 GiB"), which does not fit."""
        return RegistryError(
            Reason.ARCHIVE_TOO_LARGE,
            f"{what}, but {self.disk} has {amount(self.free)} free (keeping a {amount(self.margin)} margin): "
            "no space left for it, nothing was imported",
        )


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may expand to: bytes in all, entries, bytes inflated per compressed byte (past
    :data:`EXPANSION_FLOOR`), and, when given, the room on the disk."""

    max_bytes: int
    max_entries: int
    max_ratio: int
    room: DiskRoom | None = None

    def check_expansion(self, given: int, taken: int, what: str, whose: str = "its") -> None:
        """Refuse ``taken`` compressed bytes that inflate to ``given`` past the ratio; ``what`` expands, ``whose``
        compressed size it is ("archive entry 'x' expands", "its")."""
        if given > max(EXPANSION_FLOOR, self.max_ratio * taken):
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE,
                f"{what} {given // max(taken, 1)}x {whose} compressed size (limit {self.max_ratio}x): "
                "a zip bomb? nothing was imported",
            )


def dos_time(mtime: float) -> tuple[int, int]:
    """(time, date) in MS-DOS format; zip cannot say anything before 1980."""
    t = time.localtime(max(mtime, 315532800))
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((t.tm_year - 1980) << 9) | (
        t.tm_mon << 5
    ) | t.tm_mday


def _mtime(dos_t: int, dos_d: int) -> float:
    fields = (
        (dos_d >> 9) + 1980,
        (dos_d >> 5) & 0xF,
        dos_d & 0x1F,
        dos_t >> 11,
        (dos_t >> 5) & 0x3F,
        (dos_t & 0x1F) * 2,
    )
    try:
        return time.mktime((*fields, 0, 0, -1))
    except (OverflowError, ValueError):
        return 315532800.0


# -- writing ----------------------------------------------------------------------------------


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
        local = _LOCAL.pack(LOCAL_SIG, version, flags, STORED, *dos, crc, shown, shown, len(name), len(extra))
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
                _CENTRAL.pack(
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
            tail = _ZIP64_END.pack(
                ZIP64_END_SIG, 44, (3 << 8) | 45, 45, 0, 0, count, count, len(directory), start
            ) + _ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIG, 0, zip64_end, 1)
        end = _END.pack(
            END_SIG, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), min(len(directory), MAX_32), min(start, MAX_32), 0
        )
        self.offset += len(directory) + len(tail) + len(end)
        return directory + tail + end


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractedFile:
    path: str
    size: int
    sha256: str  # "" when the unzip was told not to hash
    crc32: int


@dataclass
class _Entry:
    name: str
    flags: int
    method: int
    crc: int
    csize: int | None  # None: unknown until the data descriptor
    size: int | None
    zip64: bool
    mtime: float


class _Sink:
    """Where one entry's bytes go: a new file under the destination (SHA-256 hashed when ``hash_file``),
    or kept in memory. The CRC-32 is always computed."""

    def __init__(self, target: Path | None, keep_limit: int, hash_file: bool = True) -> None:
        self.sha = BackgroundSha256() if target is not None and hash_file else None
        self.crc = 0
        self.size = 0
        self.kept = bytearray()
        self.keep_limit = keep_limit
        self.fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644) if target is not None else None
        self.writer = DirectWriter(self.fd) if self.fd is not None else None

    def write(self, data: memoryview | bytes) -> None:
        self.size += len(data)
        self.crc = crc32(data, self.crc)
        if self.fd is None:
            if len(self.kept) + len(data) > self.keep_limit:
                raise _bad("an archive-only file (import_model.json or the manifest) is too large")
            self.kept += data
            return
        if self.sha is not None:
            self.sha.update(data)
        assert self.writer is not None
        self.writer.write(data)

    def close(self, sync: bool) -> None:
        if self.fd is not None:
            assert self.writer is not None
            try:
                if sync:
                    self.writer.finish()
                    os.fsync(self.fd)
            finally:
                self.writer.close()
                os.close(self.fd)
                self.fd = None

    def sha256(self) -> str:
        return self.sha.hexdigest() if self.sha is not None else ""


class StreamingUnzip:
    """Extract a zip archive into ``dest`` while its bytes are fed in; :meth:`finish` checks the end.

    ``keep`` names entries held in memory instead of written (archive-only files); their bytes
    end up in :attr:`kept`. Every entry name passes ``check_name`` before a byte is written, and
    the entry's declared sizes pass ``limits``; every byte inflated passes them again before it is
    written. Written files are SHA-256 hashed unless ``hash_files`` is false (their CRC-32 is
    checked either way).
    """

    def __init__(
        self,
        dest: Path,
        check_name: Callable[[str], str],
        keep: frozenset[str],
        limits: ArchiveLimits,
        hash_files: bool = True,
    ) -> None:
        self.dest = dest
        self.check_name = check_name
        self.hash_files = hash_files
        self.keep = keep
        self.limits = limits
        self.files: list[ExtractedFile] = []
        self.kept: dict[str, bytes] = {}
        self._extracted: list[tuple[_Entry, int, int]] = []  # entry, crc, size as read
        self._buf = bytearray()
        self._entry: _Entry | None = None
        self._sink: _Sink | None = None
        self._remaining = 0  # compressed bytes left in the current entry, when known
        self._inflate: zlib._Decompress | None = None
        self._fed = 0  # compressed bytes given to the current entry's ``_inflate``
        self._deflated = (0, 0)  # compressed bytes taken and bytes inflated by the finished deflated entries
        self._in_trailer = False
        self._awaiting_descriptor = False
        self._total = 0
        self._received = 0  # bytes of the archive fed in
        self._trailer_at = 0  # where the central directory begins in the archive
        self._dirs: set[Path] = set()

    # feeding -------------------------------------------------------------------------------------

    def feed(self, chunk: bytes | memoryview) -> None:
        data = memoryview(chunk)
        self._received += len(data)
        while data:
            if self._in_trailer:
                if len(self._buf) + len(data) > MAX_TRAILER_BYTES:
                    raise _bad("the archive's central directory is implausibly large")
                self._buf += data
                return
            if self._entry is None:
                data = self._take_header(data)
            elif self._awaiting_descriptor:
                data = self._take_descriptor(data)
            else:
                data = self._take_data(data)

    def _take_header(self, data: memoryview) -> memoryview:
        self._buf += data
        data = memoryview(b"")
        if len(self._buf) < 4:
            return data
        (sig,) = struct.unpack_from("<I", self._buf)
        if sig in (CENTRAL_SIG, END_SIG, ZIP64_END_SIG):
            self._in_trailer = True
            self._trailer_at = self._received - len(self._buf)
            return data
        if sig != LOCAL_SIG:
            raise _bad("the data is not a zip archive, or it is corrupt")
        if len(self._buf) < _LOCAL.size:
            return data
        _, _, flags, method, mt, md, crc, csize, size, nlen, xlen = _LOCAL.unpack_from(self._buf)
        end = _LOCAL.size + nlen + xlen
        if len(self._buf) < end:
            return data
        name_bytes = bytes(self._buf[_LOCAL.size : _LOCAL.size + nlen])
        extra = bytes(self._buf[_LOCAL.size + nlen : end])
        rest = memoryview(bytes(self._buf[end:]))
        self._buf.clear()
        self._start_entry(name_bytes, flags, method, mt, md, crc, csize, size, extra)
        return rest

    def _start_entry(
        self, raw_name: bytes, flags: int, method: int, mt: int, md: int, crc: int, csize: int, size: int, extra: bytes
    ) -> None:
        name = _decoded(raw_name, flags)
        if flags & FLAG_ENCRYPTED:
            raise _bad(f"archive entry {name!r} is encrypted")
        if method not in (STORED, DEFLATED):
            raise _bad(f"archive entry {name!r} uses an unsupported compression method")
        if len(self._extracted) >= self.limits.max_entries:
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE, f"the archive has more than {self.limits.max_entries} entries, the limit"
            )
        zip64_values = _zip64_values(extra)
        zip64 = zip64_values is not None
        if csize == MAX_32 or size == MAX_32:
            if not zip64_values or len(zip64_values) < 2:
                raise _bad(f"archive entry {name!r} lacks its zip64 sizes")
            size, csize = zip64_values[0], zip64_values[1]
        descriptor = bool(flags & FLAG_DESCRIPTOR)
        entry = _Entry(
            name,
            flags,
            method,
            crc,
            None if descriptor and not csize else csize,
            None if descriptor and not size else size,
            zip64,
            _mtime(mt, md),
        )
        path = self.check_name(name)
        self._check_declared(entry)
        try:
            sink = self._open(entry, path)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise _bad(f"archive entry {quoted(name)} cannot be extracted: {os.strerror(exc.errno)}") from None
        self._entry, self._sink = entry, sink
        self._remaining = entry.csize if entry.csize is not None else -1
        self._inflate = zlib.decompressobj(-15) if method == DEFLATED else None
        self._fed = 0
        if entry.method == STORED and entry.csize is None:
            raise _bad(f"archive entry {name!r} is stored with its size only after its data; it cannot be streamed")
        if self._remaining == 0 and self._inflate is None:
            self._data_done()

    def _check_declared(self, entry: _Entry) -> None:
        """Refuse an entry whose header declares a zip bomb, or more than the disk holds, before a byte is written."""
        if entry.size is None:
            return
        if entry.method == DEFLATED and entry.csize is not None:
            self.limits.check_expansion(
                entry.size, entry.csize, f"archive entry {quoted(entry.name)} declares that it expands"
            )
        room = self.limits.room
        if room is not None and self._total + entry.size > room.bytes:
            earlier = f" after {amount(self._total)} of earlier entries" if self._total else ""
            raise room.refusal(f"archive entry {quoted(entry.name)} declares {amount(entry.size)}{earlier}")

    def _open(self, entry: _Entry, path: str) -> _Sink | None:
        """Where the entry's bytes go: a new file, memory (``keep``), or nowhere (a directory, created here)."""
        if entry.name.endswith("/"):
            if entry.size:
                raise _bad(f"archive entry {entry.name!r} is a directory with content")
            self._mkdir(self.dest / path)
            return None
        if path in self.keep:
            return _Sink(None, MAX_TRAILER_BYTES)
        target = self.dest / path
        self._mkdir(target.parent)
        try:
            return _Sink(target, 0, self.hash_files)
        except FileExistsError:
            raise _bad(f"archive entry {path!r} appears twice") from None
        except (NotADirectoryError, IsADirectoryError):
            raise _bad(f"archive entry {path!r} conflicts with another entry") from None

    def _mkdir(self, directory: Path) -> None:
        if directory in self._dirs:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _bad(f"archive directory {directory.relative_to(self.dest)} conflicts with a file") from None
        self._dirs.add(directory)

    def _take_data(self, data: memoryview) -> memoryview:
        entry = self._entry
        assert entry is not None
        if self._remaining >= 0:
            piece, data = data[: self._remaining], data[self._remaining :]
            self._remaining -= len(piece)
            self._emit(piece)
            if self._remaining == 0:
                if self._inflate is not None:
                    tail = self._inflate.flush()
                    if tail:
                        self._write(tail)
                    if not self._inflate.eof:
                        raise RegistryError(Reason.DATA_LOSS, f"archive entry {entry.name!r} is truncated")
                self._data_done()
            return data
        # deflated with the size in a data descriptor: the deflate stream ends itself
        assert self._inflate is not None
        self._emit(data)
        if not self._inflate.eof:
            return memoryview(b"")
        rest = memoryview(self._inflate.unused_data)
        self._data_done()
        return rest

    def _emit(self, piece: memoryview) -> None:
        if self._inflate is None:
            self._write(piece)
            return
        self._fed += len(piece)
        try:
            out = self._inflate.decompress(piece, 4 * 1024 * 1024)
            while out:
                self._write(out)
                out = self._inflate.decompress(self._inflate.unconsumed_tail, 4 * 1024 * 1024)
        except zlib.error:
            raise RegistryError(Reason.DATA_LOSS, "an archive entry's compressed data is corrupt") from None

    def _write(self, data: memoryview | bytes) -> None:
        """Write the entry's next bytes, once they pass the limits."""
        self._total += len(data)
        if self._total > self.limits.max_bytes:
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE, f"the archive expands to more than {self.limits.max_bytes} bytes, the limit"
            )
        room = self.limits.room
        if room is not None and self._total > room.bytes:
            raise room.refusal(f"the archive expands to more than {amount(room.bytes)}")
        if self._inflate is not None:
            self._check_inflated(len(data))
        if self._sink is None:
            if len(data):
                assert self._entry is not None
                raise _bad(f"archive entry {self._entry.name!r} is a directory with content")
            return
        self._sink.write(data)

    def _taken(self) -> int:
        """The compressed bytes the current entry's inflater has used (not those it holds, nor those past its end)."""
        assert self._inflate is not None
        return self._fed - len(self._inflate.unconsumed_tail) - len(self._inflate.unused_data)

    def _check_inflated(self, more: int) -> None:
        """Refuse ``more`` inflated bytes that take the entry, or the archive's deflated entries, past the ratio."""
        entry = self._entry
        assert entry is not None
        taken, given = self._taken(), (self._sink.size if self._sink is not None else 0) + more
        self.limits.check_expansion(given, taken, f"archive entry {quoted(entry.name)} expands")
        done_taken, done_given = self._deflated
        self.limits.check_expansion(
            done_given + given, done_taken + taken, "the archive's deflated entries expand", "their"
        )

    def _data_done(self) -> None:
        """The current entry's data is complete: read its descriptor next, or close it now."""
        assert self._entry is not None
        if self._entry.flags & FLAG_DESCRIPTOR:
            self._awaiting_descriptor = True
        else:
            self._close_entry()

    def _take_descriptor(self, data: memoryview) -> memoryview:
        entry = self._entry
        assert entry is not None
        self._buf += data
        if len(self._buf) < 4:
            return memoryview(b"")
        offset = 4 if self._buf[:4] == DESCRIPTOR_SIG else 0
        fmt = "<IQQ" if entry.zip64 else "<III"
        end = offset + struct.calcsize(fmt)
        if len(self._buf) < end:
            return memoryview(b"")
        entry.crc, entry.csize, entry.size = struct.unpack_from(fmt, self._buf, offset)
        rest = memoryview(bytes(self._buf[end:]))
        self._buf.clear()
        self._awaiting_descriptor = False
        self._close_entry()
        return rest

    def _close_entry(self) -> None:
        entry, sink = self._entry, self._sink
        assert entry is not None
        read_crc = sink.crc if sink is not None else 0
        read_size = sink.size if sink is not None else 0
        if sink is not None:
            sink.close(sync=True)
            if (entry.size is not None and read_size != entry.size) or read_crc != entry.crc:
                raise RegistryError(Reason.DATA_LOSS, f"archive entry {entry.name!r} is corrupt (CRC or size mismatch)")
            path = self.check_name(entry.name)
            if path in self.keep:
                self.kept[path] = bytes(sink.kept)
            else:
                self.files.append(ExtractedFile(path, read_size, sink.sha256(), read_crc))
                os.utime(self.dest / path, (entry.mtime, entry.mtime))
        self._extracted.append((entry, read_crc, read_size))
        if self._inflate is not None:
            done_taken, done_given = self._deflated
            self._deflated = (done_taken + self._taken(), done_given + read_size)
        self._entry, self._sink, self._inflate = None, None, None

    # the end -------------------------------------------------------------------------------------

    def discard(self) -> None:
        """After a failure: close the entry being written (its file and its hashing thread)."""
        if self._sink is not None:
            self._sink.close(sync=False)
            self._sink = None

    def finish(self) -> None:
        """Check the central directory against the entries extracted; symbolic links and devices fail here."""
        if self._entry is not None or not self._in_trailer:
            raise RegistryError(Reason.DATA_LOSS, "the archive is truncated")
        central = _parse_trailer(bytes(self._buf), self._trailer_at)
        if len(central) != len(self._extracted):
            raise _bad("the archive's central directory does not list the entries it holds")
        for (name, crc, _csize, size, attrs), (entry, read_crc, read_size) in zip(
            central, self._extracted, strict=True
        ):
            if name != entry.name:
                raise _bad(f"the archive's central directory names {name!r} where the data holds {entry.name!r}")
            mode = attrs >> 16
            if stat.S_ISLNK(mode):
                raise _bad(f"archive entry {name!r} is a symbolic link")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _bad(f"archive entry {name!r} is a device, socket or pipe")
            if crc != read_crc or size != read_size:
                raise RegistryError(
                    Reason.DATA_LOSS, f"archive entry {name!r} differs from its central directory record"
                )
        fsync_tree(self.dest)


def _parse_trailer(data: bytes, offset: int) -> list[tuple[str, int, int, int, int]]:
    """The central directory records at the start of ``data`` (found at ``offset`` in the archive), once the
    end of central directory that follows them is whole and agrees with them on their size and offset."""
    records = []
    pos = 0
    while data[pos : pos + 4] == _SIG_BYTES[CENTRAL_SIG] and pos + _CENTRAL.size <= len(data):
        fields = _CENTRAL.unpack_from(data, pos)
        flags, crc, csize, size = fields[3], fields[7], fields[8], fields[9]
        nlen, xlen, clen, attrs = fields[10], fields[11], fields[12], fields[15]
        start = pos + _CENTRAL.size
        if start + nlen + xlen + clen > len(data):
            break
        extra = data[start + nlen : start + nlen + xlen]
        if size == MAX_32 or csize == MAX_32:
            values = _zip64_values(extra) or []
            if len(values) < (size == MAX_32) + (csize == MAX_32):
                raise _bad("an archive entry lacks its zip64 sizes")
            if size == MAX_32:
                size = values.pop(0)
            if csize == MAX_32:
                csize = values.pop(0)
        records.append((_decoded(data[start : start + nlen], flags), crc, csize, size, attrs))
        pos = start + nlen + xlen + clen
    if data[pos : pos + 4] == _SIG_BYTES[CENTRAL_SIG]:
        raise RegistryError(Reason.DATA_LOSS, "the archive is truncated: its central directory is incomplete")
    if _end_of_directory(data[pos:]) != (pos, offset):
        raise RegistryError(
            Reason.DATA_LOSS,
            "the archive is damaged: its end of central directory disagrees with its central directory",
        )
    return records


def _end_of_directory(data: bytes) -> tuple[int, int]:
    """(size, offset) of the central directory, as the end records at the start of ``data`` give them: the
    zip64 end record (with its locator) when there is one, then the end of central directory, which must be
    whole, its comment included. Bytes after it are left alone, as zipfile leaves them."""
    zip64: tuple[int, int] | None = None
    if data[:4] == _SIG_BYTES[ZIP64_END_SIG] and len(data) >= _ZIP64_END.size:
        _, length, *_, size, offset = _ZIP64_END.unpack_from(data)
        locator = 12 + length  # the record's length counts from after its length field
        if data[locator : locator + 4] == _SIG_BYTES[ZIP64_LOCATOR_SIG]:
            zip64, data = (size, offset), data[locator + _ZIP64_LOCATOR.size :]
    if len(data) < _END.size or data[:4] != _SIG_BYTES[END_SIG]:
        raise _cut_end()
    *_, size, offset, comment = _END.unpack_from(data)
    if len(data) < _END.size + comment:
        raise _cut_end()
    return zip64 or (size, offset)


def _cut_end() -> RegistryError:
    return RegistryError(
        Reason.DATA_LOSS, "the archive is damaged: its end of central directory is missing or cut (truncated?)"
    )


def _decoded(raw: bytes, flags: int) -> str:
    """An entry's name: UTF-8 when its flags say so, else the code page 437 of MS-DOS."""
    try:
        return raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437")
    except UnicodeDecodeError:
        raise _bad("an archive entry's name is marked UTF-8 but is not") from None


def _zip64_values(extra: bytes) -> list[int] | None:
    """The 8-byte values of the zip64 extra field, or None when there is none."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        if kind == ZIP64_EXTRA:
            count = min(length, len(extra) - pos - 4) // 8
            return list(struct.unpack_from(f"<{count}Q", extra, pos + 4))
        pos += 4 + length
    return None
