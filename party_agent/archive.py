"""Model archives: FATE's zip of a version directory, extracted as it arrives, streamed on export.

Each entry of an archive we write is deflated when that pays (JSON sidecars shrink to a third, float
buffers to about half) and stored otherwise (:mod:`party_agent.deflate`). Ours also carries
``.fate_registry_manifest.json`` (path, size, SHA-256 per file) so the receiver can verify every
file; FATE-Flow ignores the extra file, and FATE's own archives simply lack it.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fate_registry.archives_conf import ArchivesConf
from fate_registry.checksums import BackgroundSha256, crc32
from fate_registry.direct_io import DirectWriter, read_pieces
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_tree
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.archive_limits import ArchiveLimits as ArchiveLimits  # the limits unpack() takes, for its callers
from party_agent.archive_limits import quoted
from party_agent.deflate import DeflatedCopies, deflate_segments, worth_deflating
from party_agent.manifest import ARCHIVE_ONLY_FILES, MANIFEST_ENTRY, FileRecord, Manifest, hash_file
from party_agent.zipstream import ZipEntry, read_zip
from party_agent.zipwriter import ZipWriter

# The most bytes an archive-only file (import_model.json, the manifest) may have: it is held in memory.
ARCHIVE_ONLY_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class NameLimits:
    """How long the file system lets an entry's name be (``os.pathconf``).

    A name, and a path below the directories it is extracted to and published in.
    """

    name_bytes: int
    path_bytes: int

    @classmethod
    def below(cls, *directories: Path) -> NameLimits:
        """The limits below ``directories``, on the file system of the first (or of its closest existing parent).

        A path's length counts the directory's, a separator and the final NUL.
        """
        found = next(d for d in (directories[0].absolute(), *directories[0].absolute().parents) if d.exists())
        longest = max(len(os.fsencode(directory.absolute())) for directory in directories)
        return cls(_pathconf(found, "PC_NAME_MAX"), _pathconf(found, "PC_PATH_MAX") - longest - 2)


def _pathconf(directory: Path, name: str) -> int:
    """``os.pathconf``, a file system without that limit (-1) being unlimited."""
    value = os.pathconf(directory, name)
    return value if value > 0 else sys.maxsize


def _bad(message: str) -> RegistryError:
    return RegistryError(Reason.BAD_ARCHIVE, message)


def check_member_name(name: str, limits: NameLimits) -> PurePosixPath:
    """A safe relative path for an archive entry, which the file system takes, or a BAD_ARCHIVE error naming it."""
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _bad(f"archive entry {quoted(name)} has an absolute or non-POSIX path")
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise _bad(f"archive entry {quoted(name)} contains an empty, '.' or '..' path component")
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            raise _bad(f"archive entry {quoted(name)} contains a control character")
        size = len(os.fsencode(part))
        if size > limits.name_bytes:
            raise _bad(
                f"archive entry {quoted(name)} has a name of {size} bytes; "
                f"the file system takes at most {limits.name_bytes}"
            )
    size = len(os.fsencode("/".join(parts)))
    if size > limits.path_bytes:
        raise _bad(
            f"archive entry {quoted(name)} is {size} bytes long; "
            f"the file system takes paths of at most {limits.path_bytes} bytes here"
        )
    return PurePosixPath(*parts)


def unpack(
    chunks: Iterable[bytes | memoryview],
    dest: Path,
    limits: ArchiveLimits,
    verified_source: bool = False,
    home: Path | None = None,
) -> Manifest:
    """Extract an archive from its byte stream into ``dest`` (new, empty) while it arrives.

    Names are checked before a byte is written (they must fit the file system below ``dest`` and
    below ``home``, where the version will be published), and sizes as :class:`ArchiveLimits` says;
    the central directory is checked at the end (symbolic links, devices and mismatches fail there,
    and the caller discards ``dest``). When the archive carries our manifest, every extracted file
    must match it exactly.

    ``verified_source`` is for streams whose bytes are checked as a whole by their source before
    they end (a stored copy read back against the SHA-256 recorded when it was stored, which was
    taken over an archive this registry wrote from verified files). Its files are not hashed a
    second time: the archive must carry our manifest, each file's size and CRC-32 must match it,
    and the manifest's SHA-256 are taken (a file the manifest gives no CRC-32 is hashed).
    """
    names = NameLimits.below(dest, *([home] if home is not None else []))
    extraction = _Extraction(dest, names, hash_files=not verified_source)
    try:
        for entry in read_zip(chunks, limits):
            extraction.take(entry)
    finally:
        extraction.discard()
    fsync_tree(dest)
    embedded = extraction.kept.get(MANIFEST_ENTRY)
    if verified_source:
        if embedded is None:
            raise RegistryError(Reason.DATA_LOSS, "the stored archive lacks the manifest this registry writes")
        return _taken_over(Manifest.from_json(embedded), extraction.files, dest)
    manifest = Manifest.of(FileRecord(f.path, f.size, f.sha256, f.crc32) for f in extraction.files)
    if embedded is not None:
        _compare(Manifest.from_json(embedded), manifest)
    return manifest


@dataclass(frozen=True)
class ExtractedFile:
    """A file an import wrote: its path in the version, size, SHA-256 and the CRC-32 the archive gave."""

    path: str
    size: int
    sha256: str  # "" when the extraction was told not to hash
    crc32: int


class _Extraction:
    """Where an archive's entries go.

    Files under ``dest`` (SHA-256 hashed when ``hash_files``), directories, and archive-only files kept in memory. Every
    entry's name passes :func:`check_member_name` before a byte of it is written.
    """

    def __init__(self, dest: Path, names: NameLimits, hash_files: bool) -> None:
        self.dest = dest
        self.names = names
        self.hash_files = hash_files
        self.files: list[ExtractedFile] = []
        self.kept: dict[str, bytes] = {}
        self._dirs: set[Path] = set()
        self._fd: int | None = None  # the file being written
        self._writer: DirectWriter | None = None

    def take(self, entry: ZipEntry) -> None:
        path = check_member_name(entry.name, self.names).as_posix()
        try:
            if entry.is_dir:
                if entry.size:
                    raise _bad(f"archive entry {entry.name!r} is a directory with content")
                self._mkdir(self.dest / path)
            elif path not in ARCHIVE_ONLY_FILES:
                self._mkdir((self.dest / path).parent)
                self._open(path)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise _bad(f"archive entry {quoted(entry.name)} cannot be extracted: {os.strerror(exc.errno)}") from None
        if entry.is_dir:
            for piece in entry.chunks:
                if len(piece):
                    raise _bad(f"archive entry {entry.name!r} is a directory with content")
        elif path in ARCHIVE_ONLY_FILES:
            self.kept[path] = self._kept(entry)
        else:
            self._write(path, entry)

    def _open(self, path: str) -> None:
        try:
            self._fd = os.open(self.dest / path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise _bad(f"archive entry {path!r} appears twice") from None
        except (NotADirectoryError, IsADirectoryError):
            raise _bad(f"archive entry {path!r} conflicts with another entry") from None
        self._writer = DirectWriter(self._fd)

    def _write(self, path: str, entry: ZipEntry) -> None:
        assert self._writer is not None
        sha = BackgroundSha256() if self.hash_files else None
        for piece in entry.chunks:
            if sha is not None:
                sha.update(piece)
            self._writer.write(piece)
        self._close(sync=True)
        self.files.append(ExtractedFile(path, entry.size or 0, sha.hexdigest() if sha is not None else "", entry.crc32))
        os.utime(self.dest / path, (entry.mtime, entry.mtime))

    @staticmethod
    def _kept(entry: ZipEntry) -> bytes:
        kept = bytearray()
        for piece in entry.chunks:
            if len(kept) + len(piece) > ARCHIVE_ONLY_MAX_BYTES:
                raise _bad("an archive-only file (import_model.json or the manifest) is too large")
            kept += piece
        return bytes(kept)

    def _mkdir(self, directory: Path) -> None:
        if directory in self._dirs:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _bad(f"archive directory {directory.relative_to(self.dest)} conflicts with a file") from None
        self._dirs.add(directory)

    def _close(self, sync: bool) -> None:
        if self._fd is None:
            return
        assert self._writer is not None
        try:
            if sync:
                self._writer.finish()
                os.fsync(self._fd)
        finally:
            self._writer.close()
            os.close(self._fd)
            self._fd, self._writer = None, None

    def discard(self) -> None:
        """After a failure: close the file being written."""
        self._close(sync=False)


def _taken_over(expected: Manifest, files: Iterable[ExtractedFile], dest: Path) -> Manifest:
    """``expected`` once every extracted file matches it by path, size and CRC-32 (or SHA-256 without one)."""
    listed, read = expected.by_path(), {f.path: f for f in files}
    records = []
    for path in sorted(listed.keys() | read.keys()):
        want, got = listed.get(path), read.get(path)
        if want is None or got is None:
            where = "the archive's manifest" if want is None else "the archive"
            raise RegistryError(Reason.DATA_LOSS, f"file {path!r} is missing from {where}")
        if want.crc32 or not want.size:
            matches = (got.size, got.crc32) == (want.size, want.crc32)
        else:
            size, sha256, _ = hash_file(dest / path)
            matches = (size, sha256) == (want.size, want.sha256)
        if not matches:
            raise RegistryError(Reason.DATA_LOSS, f"file {path!r} does not match the archive's manifest")
        records.append(FileRecord(path, got.size, want.sha256, got.crc32))
    return Manifest.of(records)


def _compare(expected: Manifest, actual: Manifest) -> None:
    want, got = expected.by_path(), actual.by_path()
    for path in sorted(want.keys() | got.keys()):
        if path not in got:
            raise RegistryError(Reason.DATA_LOSS, f"file {path!r} is listed in the archive's manifest but missing")
        if path not in want:
            raise RegistryError(Reason.DATA_LOSS, f"file {path!r} is in the archive but not in its manifest")
        if want[path] != got[path]:
            raise RegistryError(
                Reason.DATA_LOSS,
                f"file {path!r} does not match the archive's manifest "
                f"(expected sha256 {want[path].sha256}, got {got[path].sha256})",
            )


def stream_archive(
    version_dir: Path, manifest: Manifest, extra: Mapping[str, bytes], chunk_bytes: int, archives: ArchivesConf
) -> Iterator[bytes]:
    """Yield a zip of ``version_dir`` in pieces of about ``chunk_bytes``, reading each file once.

    Each file is deflated or stored as :func:`~party_agent.deflate.worth_deflating` decides under ``archives``; a
    file whose content (its SHA-256 in ``manifest``) an earlier deflated entry had is not read: that entry's deflate
    stream is written again (:class:`~party_agent.deflate.DeflatedCopies`).
    Its CRC-32 is checked against ``manifest`` as it is read (its SHA-256 was checked when the version
    was written; the CRC catches damage since at a twentieth of the cost); a difference ends the
    stream with DATA_LOSS before the entry ends, so the receiver throws away what it got. ``extra``
    adds small archive-only files, stored.
    """
    with ThreadPoolExecutor(archives.threads, thread_name_prefix="deflate") as pool:
        yield from _coalesced(_archive_parts(version_dir, manifest, extra, chunk_bytes, archives, pool), chunk_bytes)


def _archive_parts(
    version_dir: Path,
    manifest: Manifest,
    extra: Mapping[str, bytes],
    chunk_bytes: int,
    archives: ArchivesConf,
    pool: ThreadPoolExecutor,
) -> Iterator[bytes]:
    """The archive's headers, entry bytes and central directory, in order."""
    writer = ZipWriter()
    newest = 0.0
    copies = DeflatedCopies.of((record.sha256 for record in manifest.files if record.size), version_dir.parent)
    try:
        for record in manifest.files:
            path = version_dir / record.path
            try:
                st = path.stat()
            except FileNotFoundError:
                raise RegistryError(Reason.DATA_LOSS, f"file {record.path!r} of the model is missing") from None
            if st.st_size != record.size:
                raise RegistryError(
                    Reason.DATA_LOSS, f"file {record.path!r} has {st.st_size} bytes; its manifest says {record.size}"
                )
            crc = record.crc32 if record.crc32 or not record.size else hash_file(path)[2]
            newest = max(newest, st.st_mtime)
            kept = copies.kept(record.sha256)
            if kept is not None:  # an earlier entry, checked as it was read, had these very bytes: its stream again
                yield writer.header(record.path, record.size, crc, st.st_mtime, True)
                yield from copies.replay(record.sha256, chunk_bytes)
                yield writer.descriptor(kept)
                continue
            deflated = worth_deflating(path, record.size, archives)
            yield writer.header(record.path, record.size, crc, st.st_mtime, deflated)
            pieces = _crc_checked(read_pieces(path, chunk_bytes), record.path, crc)
            if deflated:
                compressed = 0
                segments = deflate_segments(pieces, archives.deflate_level, pool, archives.threads)
                for segment in copies.keeping(record.sha256, segments):
                    compressed += len(segment)
                    yield segment
                yield writer.descriptor(compressed)
            else:
                yield from pieces
    finally:
        copies.close()
    for name, data in extra.items():  # dated like the newest file, so the same version gives the same bytes
        yield writer.header(name, len(data), crc32(data), newest) + data
    yield writer.finish()


def _crc_checked(pieces: Iterable[bytes], path: str, crc: int) -> Iterator[bytes]:
    """``pieces``, then DATA_LOSS if their CRC-32 is not ``crc``."""
    read_crc = 0
    for piece in pieces:
        read_crc = crc32(piece, read_crc)
        yield piece
    if read_crc != crc:
        raise RegistryError(Reason.DATA_LOSS, f"file {path!r} no longer matches its manifest; the model is damaged")


def _coalesced(parts: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """``parts`` joined into pieces of at least ``chunk_bytes`` (the last one shorter); a large part goes as it is."""
    pending = bytearray()
    for part in parts:
        if not pending and len(part) >= chunk_bytes:
            yield part
            continue
        pending += part
        if len(pending) >= chunk_bytes:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def import_model_json(ref: PartyModelRef, file_name: str) -> bytes:
    """FATE's ``import_model.json``, written into every archive (fate_flow.md §3.4)."""
    party: int | str = int(ref.party_id) if ref.party_id.isdigit() else ref.party_id
    body = {
        "role": ref.role,
        "party_id": party,
        "model_id": ref.model_id,
        "model_version": ref.model_version,
        "file": file_name,
        "force_update": False,
    }
    return json.dumps(body, indent=4).encode()
