"""Archive checks: everything hostile is refused before a byte is extracted."""

from __future__ import annotations

import hashlib
import io
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from fate_registry.errors import Reason, RegistryError
from party_agent import archive
from party_agent.manifest import MANIFEST_ENTRY, Manifest, scan

LIMITS = archive.ArchiveLimits(max_bytes=10 * 1024 * 1024, max_entries=100)


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names we write on purpose
        for info, data in entries:
            zf.writestr(info, data)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([("../evil", b"x")], "'..'"),
        ([("a/../../evil", b"x")], "'..'"),
        ([("/etc/passwd", b"x")], "absolute"),
        ([("C:/x", b"x")], "absolute"),
        ([("a\\b", b"x")], "absolute"),
        ([(_symlink("link"), b"/etc/passwd")], "symbolic link"),
        ([("a", b"1"), ("a", b"2")], "twice"),
        ([("a", b"1"), ("a/b", b"2")], "which is a file"),
        ([("bad\x01name", b"1")], "control character"),
    ],
)
def test_hostile_entries_are_refused(entries: list[tuple[zipfile.ZipInfo | str, bytes]], needle: str) -> None:
    zf = _zip(entries)
    with pytest.raises(RegistryError) as info:
        archive.inspect(zf, LIMITS)
    assert info.value.reason is Reason.BAD_ARCHIVE
    assert needle in info.value.message


def test_size_and_entry_limits_refuse_bombs() -> None:
    bomb = _zip([("zeros", b"\0" * (LIMITS.max_bytes + 1))])
    with pytest.raises(RegistryError) as info:
        archive.inspect(bomb, LIMITS)
    assert info.value.reason is Reason.ARCHIVE_TOO_LARGE
    many = _zip([(f"f{i}", b"") for i in range(LIMITS.max_entries + 1)])
    with pytest.raises(RegistryError) as info:
        archive.inspect(many, LIMITS)
    assert info.value.reason is Reason.ARCHIVE_TOO_LARGE


def _version_dir(tmp_path: Path) -> Path:
    root = tmp_path / "v"
    (root / "variables/data/cpn/model").mkdir(parents=True)
    (root / "variables/data/cpn/model/Param").write_bytes(bytes(range(256)) * 5000)
    (root / "define").mkdir()
    (root / "define/define_meta.yaml").write_text("component_define: {}\n")
    (root / "import_model.json").write_text("{}")  # archive-only: never in a manifest
    return root


def test_stream_then_extract_round_trips_bytes_and_manifest(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    assert [r.path for r in manifest.files] == ["define/define_meta.yaml", "variables/data/cpn/model/Param"]
    data = b"".join(
        archive.stream_archive(source, manifest, {MANIFEST_ENTRY: manifest.to_json().encode()}, chunk_bytes=4096)
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        dest = tmp_path / "out"
        dest.mkdir()
        extracted = archive.extract(zf, archive.inspect(zf, LIMITS), dest)
    assert extracted == manifest
    assert extracted.digest == manifest.digest
    for record in manifest.files:
        assert (dest / record.path).read_bytes() == (source / record.path).read_bytes()


def test_a_file_changed_on_disk_stops_the_export(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    param = source / "variables/data/cpn/model/Param"
    param.write_bytes(b"\xff" + param.read_bytes()[1:])  # same size, other bytes
    with pytest.raises(RegistryError) as info:
        b"".join(archive.stream_archive(source, manifest, {}, chunk_bytes=4096))
    assert info.value.reason is Reason.DATA_LOSS
    assert "variables/data/cpn/model/Param" in info.value.message


def test_extract_checks_files_against_the_embedded_manifest(tmp_path: Path) -> None:
    tampered = Manifest.from_json('{"files": [["data", 3, "' + hashlib.sha256(b"abd").hexdigest() + '"]]}')
    zf = _zip([("data", b"abc"), (MANIFEST_ENTRY, tampered.to_json().encode())])
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(RegistryError) as info:
        archive.extract(zf, archive.inspect(zf, LIMITS), dest)
    assert info.value.reason is Reason.DATA_LOSS
    assert "does not match" in info.value.message
