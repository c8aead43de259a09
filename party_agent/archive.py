"""Model archives: FATE's zip of a version directory, checked before extraction, streamed on export.

An archive is stored (not deflated: weights do not compress). Ours also carries
``.fate_registry_manifest.json`` (path, size, SHA-256 per file) so the receiver can verify every
file; FATE-Flow ignores the extra file, and FATE's own archives simply lack it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fate_registry.errors import Reason, RegistryError
from fate_registry.identity import MAX_NAME_LENGTH
from party_agent.manifest import ARCHIVE_ONLY_FILES, HASH_BLOCK, MANIFEST_ENTRY, FileRecord, Manifest

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int
    max_entries: int


def _bad(message: str) -> RegistryError:
    return RegistryError(Reason.BAD_ARCHIVE, message)


def check_member_name(name: str) -> PurePosixPath:
    """A safe relative path for an archive entry, or a BAD_ARCHIVE error naming the entry."""
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _bad(f"archive entry {name!r} has an absolute or non-POSIX path")
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise _bad(f"archive entry {name!r} contains an empty, '.' or '..' path component")
        if any(ord(c) < 32 or ord(c) == 127 for c in part) or len(part) > MAX_NAME_LENGTH:
            raise _bad(f"archive entry {name!r} contains a control character or an over-long name")
    return PurePosixPath(*parts)


def inspect(zf: zipfile.ZipFile, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """Check every entry before anything is extracted; return the file entries."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise RegistryError(
            Reason.ARCHIVE_TOO_LARGE, f"the archive has {len(infos)} entries; at most {limits.max_entries} are allowed"
        )
    seen: set[str] = set()
    total = 0
    files = []
    for info in infos:
        path = check_member_name(info.filename).as_posix()
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _bad(f"archive entry {info.filename!r} is a symbolic link")
        if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise _bad(f"archive entry {info.filename!r} is a device, socket or pipe")
        if info.flag_bits & 0x1:
            raise _bad(f"archive entry {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(f"archive entry {info.filename!r} uses an unsupported compression method")
        if path in seen:
            raise _bad(f"archive entry {path!r} appears twice")
        seen.add(path)
        total += info.file_size
        if total > limits.max_bytes:
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE, f"the archive expands to more than {limits.max_bytes} bytes, the limit"
            )
        if not info.is_dir():
            files.append(info)
    file_paths = {check_member_name(i.filename).as_posix() for i in files}
    for p in file_paths:  # a file may not also be a directory of another entry
        parent = PurePosixPath(p).parent
        while parent != PurePosixPath("."):
            if parent.as_posix() in file_paths:
                raise _bad(f"archive entry {p!r} lies under {parent.as_posix()!r}, which is a file")
            parent = parent.parent
    return files


def _read_manifest(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> Manifest | None:
    for info in infos:
        if info.filename == MANIFEST_ENTRY:
            if info.file_size > MAX_MANIFEST_BYTES:
                raise _bad("the archive's manifest is too large")
            return Manifest.from_json(zf.read(info))
    return None


def extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path) -> Manifest:
    """Extract the checked entries into ``dest`` (new, empty), hashing and fsyncing each file.

    When the archive carries our manifest, every extracted file must match it exactly.
    """
    expected = _read_manifest(zf, infos)
    records = []
    for info in infos:
        rel = check_member_name(info.filename).as_posix()
        if rel in ARCHIVE_ONLY_FILES:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        try:
            with zf.open(info) as src, open(target, "xb") as out:
                while block := src.read(HASH_BLOCK):
                    h.update(block)
                    size += len(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except (zipfile.BadZipFile, EOFError) as exc:
            raise RegistryError(Reason.DATA_LOSS, f"archive entry {rel!r} is corrupt or truncated") from exc
        mtime = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(target, (mtime, mtime))
        records.append(FileRecord(rel, size, h.hexdigest()))
    manifest = Manifest.of(records)
    if expected is not None:
        _compare(expected, manifest)
    _fsync_tree(dest)
    return manifest


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


def _fsync_tree(root: Path) -> None:
    for directory, _dirs, _files in os.walk(root):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """A file's mtime as a zip timestamp (zip cannot go before 1980)."""
    if mtime < 315532800:
        return _ZIP_EPOCH
    t = time.localtime(mtime)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


class _Sink:
    """An unseekable file for zipfile that collects what it writes until taken."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def stream_archive(
    version_dir: Path, manifest: Manifest, extra: Mapping[str, bytes], chunk_bytes: int
) -> Iterator[bytes]:
    """Yield a stored zip of ``version_dir`` in pieces of about ``chunk_bytes``.

    Each file is checked against ``manifest`` as it is read; a difference ends the stream with
    DATA_LOSS, so the receiver throws away what it got. ``extra`` adds small archive-only files.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:  # type: ignore[call-overload]
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
            info = zipfile.ZipInfo(
                record.path, time.localtime(st.st_mtime)[:6] if st.st_mtime > 315532800 else _ZIP_EPOCH
            )
            info.file_size = record.size
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            h = hashlib.sha256()
            with path.open("rb") as src, zf.open(info, "w") as dst:
                while block := src.read(chunk_bytes):
                    h.update(block)
                    dst.write(block)
                    if len(sink.buf) >= chunk_bytes:
                        yield sink.take()
            if h.hexdigest() != record.sha256:
                raise RegistryError(
                    Reason.DATA_LOSS, f"file {record.path!r} no longer matches its manifest; the model is damaged"
                )
        for name, data in extra.items():
            info = zipfile.ZipInfo(name, time.localtime()[:6])
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    yield sink.take()
