"""Export archives packed exactly as FATE-Flow 1.11 packs them, independent of any exporter of ours.

FATE's ``PipelinedModel.packaging_model`` first writes ``import_model.json`` into the version
directory, then runs ``shutil.make_archive(<TEMP>/<party_model_id>_<model_version>, "zip",
<version dir>)``: a ZIP_DEFLATED zip of the whole directory, paths relative to it, directory entries
included. The version directory's ``.lock`` (FATE's filelock, held while packing) goes in too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fate_registry.identity import PartyId, archive_name, party_model_id

_HASH_CHUNK = 1024 * 1024
_COPY_BLOCK = 1024 * 1024


def build_fate_archive(
    version_dir: Path, out_dir: Path, role: str, party_id: PartyId, model_id: str, model_version: str
) -> Path:
    """Pack ``version_dir`` into ``out_dir/<party_model_id>_<model_version>.zip`` as FATE-Flow does; return its path.

    ``model_id`` is the federation's model id (no ``role#party_id#`` prefix). Like FATE, this leaves
    ``import_model.json`` and ``.lock`` in the version directory, overwrites an archive of the same
    name, and needs a numeric ``party_id`` (FATE writes it as an int).
    """
    version_dir, out_dir = Path(version_dir), Path(out_dir)
    if not version_dir.is_dir():
        raise FileNotFoundError(f"no version directory at {version_dir}")
    archive = out_dir / archive_name(party_model_id(role, party_id, model_id), model_version)
    if archive.resolve().is_relative_to(version_dir.resolve()):
        raise ValueError("the archive cannot be written inside the directory it packs")
    import_config = {
        "role": role,
        "party_id": int(party_id),
        "model_id": model_id,
        "model_version": model_version,
        "file": str(archive),
        "force_update": False,
    }
    (version_dir / "import_model.json").write_text(json.dumps(import_config, indent=4), encoding="utf-8")
    (version_dir / ".lock").touch()
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.make_archive(str(archive.with_name(archive.name.removesuffix(".zip"))), "zip", root_dir=version_dir)
    return archive


def walk_sorted(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` in a stable order (FATE's ``make_archive`` walks the same way, unsorted)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        yield Path(dirpath), dirnames, sorted(filenames)


def build_stored_archive(version_dir: Path, archive: Path, import_config: Mapping[str, Any]) -> None:
    """Zip ``version_dir`` as FATE-Flow does (paths relative to it, directory entries, ``import_model.json``
    at the top) but stored, not deflated, and streamed: each file is copied in blocks into its entry."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        info = zipfile.ZipInfo("import_model.json", date_time=time.localtime()[:6])
        info.external_attr = 0o644 << 16
        zf.writestr(info, json.dumps(dict(import_config), indent=4), compress_type=zipfile.ZIP_STORED)
        for dirpath, dirnames, filenames in walk_sorted(version_dir):
            for name in dirnames:
                path = dirpath / name
                zf.write(path, path.relative_to(version_dir).as_posix())  # a directory entry, no content
            for name in filenames:
                path = dirpath / name
                entry = zipfile.ZipInfo.from_file(path, path.relative_to(version_dir).as_posix())
                entry.compress_type = zipfile.ZIP_STORED
                # file_size is known from stat, so zipfile picks zip64 by itself for entries over 2 GiB.
                with path.open("rb") as source, zf.open(entry, "w") as target:
                    shutil.copyfileobj(source, target, _COPY_BLOCK)


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
