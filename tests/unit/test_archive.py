"""Archives: extracted as they stream in, hostile entries refused, our exports readable by zipfile."""

from __future__ import annotations

import hashlib
import io
import random
import stat
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fate_registry.archives_conf import ArchivesConf
from fate_registry.errors import Reason, RegistryError
from party_agent import archive
from party_agent.manifest import MANIFEST_ENTRY, FileRecord, Manifest, scan
from party_agent.zipstream import INFLATE_THREAD
from tests.zipcraft import DEFLATED, DESCRIPTOR, Entry, MiB, zeros

LIMITS = archive.ArchiveLimits(max_bytes=10 * 1024 * 1024, max_entries=100, max_ratio=200)


def _zip_bytes(entries: list[tuple[zipfile.ZipInfo | str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression) as zf:
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names we write on purpose
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _pieces(data: bytes, size: int = 7) -> Iterator[bytes]:
    """Feed in awkward small pieces so every header straddles a boundary."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


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
        ([("a", b"1"), ("a/b", b"2")], "conflicts"),
        ([("bad\x01name", b"1")], "control character"),
    ],
)
def test_hostile_entries_are_refused(
    tmp_path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]], needle: str
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(RegistryError) as info:
        archive.unpack(_pieces(_zip_bytes(entries)), dest, LIMITS)
    assert info.value.reason is Reason.BAD_ARCHIVE
    assert needle in info.value.message
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_size_and_entry_limits_refuse_bombs(tmp_path: Path) -> None:
    bomb = _zip_bytes([("zeros", b"\0" * (LIMITS.max_bytes + 1))], zipfile.ZIP_DEFLATED)
    assert len(bomb) < 100_000  # a small archive that would expand past the limit
    with pytest.raises(RegistryError) as info:
        archive.unpack([bomb], tmp_path, LIMITS)
    assert info.value.reason is Reason.ARCHIVE_TOO_LARGE
    many = _zip_bytes([(f"f{i}", b"") for i in range(LIMITS.max_entries + 1)])
    with pytest.raises(RegistryError) as info:
        archive.unpack([many], tmp_path / "m", LIMITS)
    assert info.value.reason is Reason.ARCHIVE_TOO_LARGE


def test_truncated_and_corrupt_archives_are_data_loss(tmp_path: Path) -> None:
    data = _zip_bytes([("a", b"hello" * 1000)])
    with pytest.raises(RegistryError) as info:
        archive.unpack([data[: len(data) - 30]], tmp_path / "t", LIMITS)
    assert info.value.reason is Reason.DATA_LOSS
    flipped = bytearray(data)
    flipped[100] ^= 0xFF  # inside the stored content: the CRC no longer matches
    (tmp_path / "c").mkdir()
    with pytest.raises(RegistryError) as info:
        archive.unpack([bytes(flipped)], tmp_path / "c", LIMITS)
    assert info.value.reason is Reason.DATA_LOSS
    with pytest.raises(RegistryError) as info:
        archive.unpack([b"not a zip at all"], tmp_path / "n", LIMITS)
    assert info.value.reason is Reason.BAD_ARCHIVE


STORED = ArchivesConf(compression="stored")


def _version_dir(tmp_path: Path) -> Path:
    root = tmp_path / "v"
    (root / "variables/data/cpn/model").mkdir(parents=True)
    (root / "variables/data/cpn/model/Param").write_bytes(bytes(range(256)) * 5000)
    (root / "variables/data/cpn/model/Empty").write_bytes(b"")
    (root / "define").mkdir()
    (root / "define/define_meta.yaml").write_text("component_define: {}\n")
    (root / "import_model.json").write_text("{}")  # archive-only: never in a manifest
    return root


def test_stream_then_unpack_round_trips_bytes_and_manifest(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    assert [r.path for r in manifest.files] == [
        "define/define_meta.yaml",
        "variables/data/cpn/model/Empty",
        "variables/data/cpn/model/Param",
    ]
    pieces = list(archive.stream_archive(source, manifest, {MANIFEST_ENTRY: manifest.to_json().encode()}, 4096, STORED))
    data = b"".join(pieces)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # any reader can read what we write
        assert zf.testzip() is None
        assert all(i.compress_type == zipfile.ZIP_STORED and not i.flag_bits & 0x8 for i in zf.infolist())
        assert zf.read("variables/data/cpn/model/Param") == (source / "variables/data/cpn/model/Param").read_bytes()
    dest = tmp_path / "out"
    dest.mkdir()
    extracted = archive.unpack(_pieces(data, 1000), dest, LIMITS)
    assert extracted == manifest and extracted.digest == manifest.digest
    for record in manifest.files:
        assert (dest / record.path).read_bytes() == (source / record.path).read_bytes()


def _stored_archive(source: Path, manifest: Manifest, listed: Manifest | None) -> bytes:
    """The archive of ``source``, carrying ``listed`` as its manifest (none when None)."""
    extra = {} if listed is None else {MANIFEST_ENTRY: listed.to_json().encode()}
    return b"".join(archive.stream_archive(source, manifest, extra, 4096, STORED))


def test_a_verified_source_takes_the_manifest_over_without_hashing(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    dest = tmp_path / "out"
    dest.mkdir()
    extracted = archive.unpack(
        _pieces(_stored_archive(source, manifest, manifest), 1000), dest, LIMITS, verified_source=True
    )
    assert extracted == manifest and [r.crc32 for r in extracted.files] == [r.crc32 for r in manifest.files]
    assert (dest / "variables/data/cpn/model/Param").read_bytes() == (
        source / "variables/data/cpn/model/Param"
    ).read_bytes()


def test_a_verified_source_still_checks_sizes_and_crcs_against_the_manifest(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    param = manifest.by_path()["variables/data/cpn/model/Param"]
    wrong_crc = manifest.replace(FileRecord(param.path, param.size, param.sha256, param.crc32 ^ 1))
    (tmp_path / "crc").mkdir()
    with pytest.raises(RegistryError) as error:
        archive.unpack([_stored_archive(source, manifest, wrong_crc)], tmp_path / "crc", LIMITS, verified_source=True)
    assert error.value.reason is Reason.DATA_LOSS and "Param" in error.value.message
    (tmp_path / "bare").mkdir()
    with pytest.raises(RegistryError) as error:
        archive.unpack([_stored_archive(source, manifest, None)], tmp_path / "bare", LIMITS, verified_source=True)
    assert error.value.reason is Reason.DATA_LOSS and "manifest" in error.value.message


def test_a_verified_source_hashes_the_files_its_manifest_gives_no_crc(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    param = manifest.by_path()["variables/data/cpn/model/Param"]
    for sha256, ok in ((param.sha256, True), ("0" * 64, False)):
        old_style = manifest.replace(FileRecord(param.path, param.size, sha256, 0))
        data = _stored_archive(source, manifest, old_style)
        dest = tmp_path / f"old-{ok}"
        dest.mkdir()
        if ok:
            assert archive.unpack([data], dest, LIMITS, verified_source=True) == manifest
        else:
            with pytest.raises(RegistryError, match="Param"):
                archive.unpack([data], dest, LIMITS, verified_source=True)


def test_fate_style_deflated_archives_and_data_descriptors_unpack(tmp_path: Path) -> None:
    payload = b"weights " * 20_000
    fate = _zip_bytes([("define/", b""), ("define/define_meta.yaml", b"x: 1\n"), ("w", payload)], zipfile.ZIP_DEFLATED)
    dest = tmp_path / "fate"
    dest.mkdir()
    manifest = archive.unpack(_pieces(fate, 333), dest, LIMITS)
    assert (dest / "w").read_bytes() == payload
    assert manifest.by_path()["w"].sha256 == hashlib.sha256(payload).hexdigest()

    class Unseekable(io.RawIOBase):  # makes zipfile write data descriptors, as streaming writers do
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    out = Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("w", "w") as w:
        w.write(payload)
    dest2 = tmp_path / "dd"
    dest2.mkdir()
    archive.unpack(_pieces(bytes(out.data), 4096), dest2, LIMITS)
    assert (dest2 / "w").read_bytes() == payload


def test_a_file_changed_on_disk_stops_the_export(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    param = source / "variables/data/cpn/model/Param"
    param.write_bytes(b"\xff" + param.read_bytes()[1:])  # same size, other bytes
    with pytest.raises(RegistryError) as info:
        b"".join(archive.stream_archive(source, manifest, {}, 4096, ArchivesConf()))
    assert info.value.reason is Reason.DATA_LOSS
    assert "variables/data/cpn/model/Param" in info.value.message


def test_unpack_checks_files_against_the_embedded_manifest(tmp_path: Path) -> None:
    tampered = Manifest.from_json('{"files": [["data", 3, "' + hashlib.sha256(b"abd").hexdigest() + '"]]}')
    data = _zip_bytes([("data", b"abc"), (MANIFEST_ENTRY, tampered.to_json().encode())])
    with pytest.raises(RegistryError) as info:
        archive.unpack([data], tmp_path, LIMITS)
    assert info.value.reason is Reason.DATA_LOSS
    assert "does not match" in info.value.message


def _inflating() -> int:
    """Inflating threads still alive, once those ending have had 5 s to end."""
    deadline = time.monotonic() + 5
    while (count := sum(t.name == INFLATE_THREAD for t in threading.enumerate())) and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def _deflated(entries: list[tuple[str, bytes]]) -> bytes:
    return _zip_bytes([(name, data) for name, data in entries], zipfile.ZIP_DEFLATED)


@pytest.mark.parametrize("case", ["imported", "corrupt", "bad name", "bomb"])
def test_the_inflating_thread_ends_with_its_entry_whatever_happens(tmp_path: Path, case: str) -> None:
    """Deflated entries inflate on a thread of their own; an error there is the caller's, and no thread is left."""
    payload = random.Random(21).randbytes(512 * 1024) * 4  # deflates to about a quarter
    data = _deflated([("a", payload), ("b", payload)])
    if case == "corrupt":
        start = 30 + 1  # the first entry's compressed bytes, after its local header and name
        data = data[:start] + bytes([data[start] | 0b110]) + data[start + 1 :]  # a reserved block type
    elif case == "bad name":
        data = _deflated([("../a", payload)])
    elif case == "bomb":  # no sizes declared: only the inflated bytes tell
        data = Entry("a", zeros(256 * MiB), DEFLATED, size=0, csize=0, flags=DESCRIPTOR).local()
    assert _inflating() == 0
    if case == "imported":
        archive.unpack(_pieces(data, 64 * 1024), tmp_path, LIMITS)
        assert (tmp_path / "b").read_bytes() == payload
    else:
        with pytest.raises(RegistryError) as info:
            archive.unpack(_pieces(data, 64 * 1024), tmp_path, LIMITS)
        expected = {"corrupt": Reason.DATA_LOSS, "bad name": Reason.BAD_ARCHIVE, "bomb": Reason.ARCHIVE_TOO_LARGE}
        assert info.value.reason is expected[case], info.value.message
        if case == "corrupt":
            assert info.value.message == "archive entry 'a' is corrupt: its compressed data does not inflate"
    assert _inflating() == 0
