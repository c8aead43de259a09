"""The manifest of a party model version: path, size and SHA-256 of every file, and its digest."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fate_registry.checksums import crc32
from fate_registry.errors import Reason, RegistryError

HASH_BLOCK = 1024 * 1024
# Files that belong to the archive, not to the version: FATE's packer rewrites import_model.json on
# every export, and our archives carry their manifest under this name.
ARCHIVE_ONLY_FILES = frozenset({"import_model.json", ".fate_registry_manifest.json"})
MANIFEST_ENTRY = ".fate_registry_manifest.json"


@dataclass(frozen=True)
class FileRecord:
    """One file of a version: its path in the version directory, size and SHA-256."""

    path: str
    size: int
    sha256: str
    # The zip CRC-32, kept so an export can write each entry's header before its bytes. Not in the digest.
    crc32: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Manifest:
    """Every file of a version, in path order; :meth:`digest` stands for them all."""

    files: tuple[FileRecord, ...]

    @classmethod
    def of(cls, records: Iterable[FileRecord]) -> Manifest:
        return cls(tuple(sorted(records, key=lambda r: r.path)))

    @property
    def total_size(self) -> int:
        return sum(r.size for r in self.files)

    @property
    def digest(self) -> str:
        r"""SHA-256 over one ``path\tsize\tsha256`` line per file, in path order."""
        h = hashlib.sha256()
        for r in self.files:
            h.update(f"{r.path}\t{r.size}\t{r.sha256}\n".encode())
        return h.hexdigest()

    def by_path(self) -> dict[str, FileRecord]:
        return {r.path: r for r in self.files}

    def to_json(self) -> str:
        return json.dumps({"files": [[r.path, r.size, r.sha256, r.crc32] for r in self.files]}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
            return cls.of(
                FileRecord(str(f[0]), int(f[1]), str(f[2]), int(f[3]) if len(f) > 3 else 0) for f in data["files"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                Reason.BAD_ARCHIVE, "the archive's manifest is not valid JSON of the expected shape"
            ) from exc

    def replace(self, record: FileRecord) -> Manifest:
        return Manifest.of([*(r for r in self.files if r.path != record.path), record])


def hash_file(path: Path) -> tuple[int, str, int]:
    """Size, SHA-256 and CRC-32 of one file, read in blocks (never whole)."""
    h = hashlib.sha256()
    crc = 0
    size = 0
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
            crc = crc32(block, crc)
            size += len(block)
    return size, h.hexdigest(), crc


def scan(version_dir: Path) -> Manifest:
    """Hash every file of a version directory (for directories written by FATE-Flow)."""
    return scan_reusing(version_dir, None, Manifest(()))


def scan_reusing(
    version_dir: Path, base_dir: Path | None, base: Manifest, on_directory: Callable[[str], None] | None = None
) -> Manifest:
    """:func:`scan`, reusing ``base``'s record of a file hard-linked to ``base_dir``'s file at the same path.

    Such a file takes ``base``'s record (``base`` is ``base_dir``'s manifest) instead of being read and hashed.

    Same inode means same bytes; the size is compared too, so a stale record is not taken over.
    ``on_directory`` is called with each directory of the tree (a deploy fsyncs them in the same walk).
    """
    known = base.by_path()
    records = []
    top = os.fspath(version_dir)
    for root, _dirs, files in os.walk(top):
        if on_directory is not None:
            on_directory(root)
        for name in files:
            full = os.path.join(root, name)
            rel = full[len(top) + 1 :].replace(os.sep, "/")  # os.walk's paths all start with top
            if rel in ARCHIVE_ONLY_FILES:
                continue
            record = known.get(rel)
            if record is None or base_dir is None or not _same_file(full, os.path.join(base_dir, rel), record.size):
                record = FileRecord(rel, *hash_file(Path(full)))
            records.append(record)
    return Manifest.of(records)


def _same_file(path: str, base_path: str, size: int) -> bool:
    try:
        mine, theirs = os.stat(path), os.stat(base_path)
    except FileNotFoundError:
        return False
    return (mine.st_ino, mine.st_dev, mine.st_size) == (theirs.st_ino, theirs.st_dev, size)
