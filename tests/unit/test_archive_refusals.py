"""Archives refused whole, saying why: zip bombs, more than the disk holds, over-long names, a cut end.

Every refusal is FATE's retcode 102 and names the entry and the limit; the bytes written before it
stay small (the caller then discards the staging directory).
"""

from __future__ import annotations

import errno
import io
import os
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fate_registry import config
from fate_registry.errors import Reason, RegistryError
from fate_registry.fate_models import ModelSpec, build_fate_archive, write_federation
from fate_registry.v1.common_pb2 import ImportModelHeader, PartyModelRef
from party_agent import archive
from party_agent.agent import PartyAgent
from party_agent.archive_limits import DiskRoom
from tests.zipcraft import DEFLATED, DESCRIPTOR, Entry, MiB, deflate, zeros

RATIO = config.LimitsConf.max_expansion_ratio
LIMITS = archive.ArchiveLimits(max_bytes=64 * 1024**3, max_entries=1000, max_ratio=RATIO)
BOMB_NAME = "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam"


def _written(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def _refused(
    data: bytes, dest: Path, limits: archive.ArchiveLimits = LIMITS, home: Path | None = None
) -> RegistryError:
    dest.mkdir(exist_ok=True)
    with pytest.raises(RegistryError) as info:
        archive.unpack(_pieces(data), dest, limits, home=home)
    assert info.value.fate_retcode == 102, info.value.message
    return info.value


def _pieces(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    """As an import arrives: in 256 KiB messages."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _zip(entries: list[tuple[str, bytes]], comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        zf.comment = comment
    return buf.getvalue()


# -- zip bombs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["lying", "descriptor"])
def test_a_bomb_is_refused_while_it_inflates_before_much_is_written(tmp_path: Path, header: str) -> None:
    """Its header claims a small size, or none (a data descriptor follows): only the inflated bytes tell."""
    payload = zeros(256 * MiB)
    assert len(payload) < 300_000
    lying = Entry(BOMB_NAME, payload, DEFLATED, size=1000)
    bomb = lying if header == "lying" else Entry(BOMB_NAME, payload, DEFLATED, size=0, csize=0, flags=DESCRIPTOR)
    error = _refused(bomb.local(), tmp_path / "dest")
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    assert error.message.startswith(f"archive entry {BOMB_NAME!r} expands ")
    assert f"its compressed size (limit {RATIO}x): a zip bomb? nothing was imported" in error.message
    assert _written(tmp_path / "dest") <= MiB


def test_a_bomb_that_declares_its_sizes_is_refused_before_its_file_is_created(tmp_path: Path) -> None:
    error = _refused(Entry(BOMB_NAME, zeros(16 * MiB), DEFLATED, size=16 * MiB).local(), tmp_path / "dest")
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    assert error.message.startswith(f"archive entry {BOMB_NAME!r} declares that it expands ")
    assert not (tmp_path / "dest" / BOMB_NAME).exists()


def test_many_small_bombs_are_refused_as_a_whole(tmp_path: Path) -> None:
    crc = zlib.crc32(bytes(MiB))  # each entry alone stays under the size where its ratio counts
    small = (Entry(f"variables/data/x/model/b{i}", zeros(MiB), DEFLATED, crc, MiB) for i in range(64))
    data = b"".join(entry.local() for entry in small)
    error = _refused(data, tmp_path / "dest")
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    assert "the archive's deflated entries expand" in error.message and f"(limit {RATIO}x)" in error.message
    assert _written(tmp_path / "dest") <= 2 * MiB


def test_small_entries_and_realistic_models_expand_freely(tmp_path: Path) -> None:
    small = _zip([("define/define_meta.yaml", b" " * 512 * 1024), ("import_model.json", b"{}")])
    (tmp_path / "small").mkdir()
    archive.unpack(_pieces(small), tmp_path / "small", LIMITS)
    # HeteroSecureBoost's host slice holds the most compressible buffers measured (14.6x at level 9)
    spec = ModelSpec(algorithm="hetero_secureboost")
    written = write_federation({"9999": tmp_path / "g", "10000": tmp_path / "h"}, spec)
    packed = build_fate_archive(written["host", "10000"], tmp_path / "out", "host", 10000, spec.model_id, spec.version)
    (tmp_path / "model").mkdir()
    archive.unpack(_pieces(packed.read_bytes()), tmp_path / "model", LIMITS)


def test_the_ratio_limit_is_the_configured_one(tmp_path: Path) -> None:
    text = random.Random(0).randbytes(3 * MiB).translate(bytes(b"ACGT"[i % 4] for i in range(256)))  # ~3.5x
    data = _zip([("variables/data/x/model/Param", text)])
    strict = archive.ArchiveLimits(LIMITS.max_bytes, LIMITS.max_entries, max_ratio=2)
    error = _refused(data, tmp_path / "strict", strict)
    assert "(limit 2x)" in error.message and "variables/data/x/model/Param" in error.message
    (tmp_path / "default").mkdir()
    archive.unpack(_pieces(data), tmp_path / "default", LIMITS)
    assert config.parse({"limits": {"max_expansion_ratio": 50}}).limits.max_expansion_ratio == 50


# -- the party's free disk ---------------------------------------------------------------------------


def test_an_entry_declaring_more_than_the_free_disk_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    room = DiskRoom.of(dest, "party 9999's disk")
    assert room.margin == min(1024**3, os.statvfs(dest).f_blocks * os.statvfs(dest).f_frsize // 20)
    limits = archive.ArchiveLimits(2**62, 1000, RATIO, room)
    huge = 10 * 1024**5  # a stored entry that says so, cut short: its size alone refuses it
    error = _refused(Entry(BOMB_NAME, b"weights", size=huge, csize=huge).local(), dest, limits)
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    assert error.message.startswith(f"archive entry {BOMB_NAME!r} declares 10.0 PiB, but party 9999's disk has ")
    assert (
        error.message.endswith("margin): no space left for it, nothing was imported")
        and "free (keeping a " in error.message
    )
    assert list(dest.iterdir()) == []


def test_bytes_past_the_free_disk_are_refused_when_no_size_was_declared(tmp_path: Path) -> None:
    noise = random.Random(1).randbytes(3 * MiB)
    data = Entry("variables/data/x/model/Param", deflate(noise), DEFLATED, size=0, csize=0, flags=DESCRIPTOR).local()
    room = DiskRoom(free=3 * MiB, margin=MiB, disk="party 9999's disk")
    error = _refused(data, tmp_path / "dest", archive.ArchiveLimits(2**62, 1000, RATIO, room))
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    assert error.message == (
        "the archive expands to more than 2.0 MiB, but party 9999's disk has 3.0 MiB free "
        "(keeping a 1.0 MiB margin): no space left for it, nothing was imported"
    )
    assert _written(tmp_path / "dest") <= 2 * MiB


def test_an_import_announcing_more_than_the_free_disk_is_refused_before_staging(tmp_path: Path) -> None:
    conf = config.parse({"parties": {"9999": {}}, "limits": {"max_archive_bytes": 2**62}}, data_dir=tmp_path)
    agent = PartyAgent(conf, conf.parties["9999"])
    try:
        header = ImportModelHeader(
            target=PartyModelRef(role="guest", party_id="9999", model_id="m", model_version="v"), size=10 * 1024**5
        )
        with pytest.raises(RegistryError) as info:
            agent.import_archive(header, iter([b"PK\x03\x04"]))
        assert info.value.reason is Reason.ARCHIVE_TOO_LARGE and info.value.fate_retcode == 102
        assert info.value.message.startswith("the archive is 10.0 PiB, but party 9999's disk has ")
        assert info.value.message.endswith("margin): no space left for it, nothing was imported")
        assert list((agent.cache.root / ".staging").iterdir()) == []
    finally:
        agent.close()


# -- names the file system cannot take ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("variables/data/" + "é" * 200, "a name of 400 bytes; the file system takes at most 255"),
        ("/".join(["a" * 200] * 25), "is 5024 bytes long"),
    ],
)
def test_a_name_the_file_system_cannot_take_is_refused(tmp_path: Path, name: str, needle: str) -> None:
    error = _refused(_zip([(name, b"x")]), tmp_path / "dest")
    assert error.reason is Reason.BAD_ARCHIVE
    assert needle in error.message and error.message.startswith(f"archive entry {name[:40]!r}"[:-1])
    assert list((tmp_path / "dest").iterdir()) == []


def test_a_name_must_fit_where_the_version_is_published_too(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    home = tmp_path / ("h" * 250) / ("v" * 250)
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    fits_dest_only = "/".join(["n" * 100] * ((path_max - len(os.fsencode(home)) - 1) // 101 + 1))
    assert len(os.fsencode(dest / fits_dest_only)) < path_max
    error = _refused(_zip([(fits_dest_only, b"x")]), dest, home=home)
    assert error.reason is Reason.BAD_ARCHIVE and "bytes long" in error.message


def test_a_name_too_long_that_passes_the_checks_is_still_a_bad_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "pathconf", lambda path, name: 1_000_000)  # a file system that misreports its limits
    error = _refused(_zip([("variables/" + "a" * 300, b"x")]), tmp_path / "dest")
    assert error.reason is Reason.BAD_ARCHIVE
    assert (
        error.message.startswith("archive entry 'variables/aaaa") and os.strerror(errno.ENAMETOOLONG) in error.message
    )


# -- the end of the central directory ----------------------------------------------------------------

END_BYTES = 22


def _zip64_tail(data: bytes) -> bytes:
    """``data`` (a zip without comment) with a zip64 end record and locator before its end record."""
    start, count = len(data) - END_BYTES, struct.unpack_from("<H", data, len(data) - END_BYTES + 10)[0]
    cd_size, cd_offset = struct.unpack_from("<II", data, len(data) - END_BYTES + 12)
    zip64_end = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, start, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:start] + zip64_end + locator + end


def _cuts(data: bytes, tail: int) -> list[bytes]:
    return [data[:-cut] for cut in range(1, tail + 1)]


def test_an_archive_whose_end_is_cut_is_refused(tmp_path: Path) -> None:
    entries = [("define/define_meta.yaml", b"x: 1\n" * 100), ("variables/data/x/model/Param", os.urandom(5000))]
    plain, commented = _zip(entries), _zip(entries, comment=b"made by FATE")
    zip64 = _zip64_tail(plain)
    for whole in (plain, commented, zip64, plain + b"\0" * 16):  # trailing bytes after the end are FATE's business
        dest = tmp_path / f"whole{len(whole)}"
        dest.mkdir()
        archive.unpack(_pieces(whole, 7), dest, LIMITS)
    damaged = [*_cuts(plain, END_BYTES), *_cuts(commented, END_BYTES + 12), *_cuts(zip64, END_BYTES + 20 + 56)]
    for i, data in enumerate(damaged):
        error = _refused(data, tmp_path / f"cut{i}")
        assert error.reason is Reason.DATA_LOSS
        assert error.message == "the archive is damaged: its end of central directory is missing or cut (truncated?)"


def test_an_end_record_that_disagrees_with_the_central_directory_is_refused(tmp_path: Path) -> None:
    data = _zip([("a", b"1"), ("b", b"2")])
    end = len(data) - END_BYTES
    for offset, value in ((12, 0), (16, 3)):  # the directory's size, its offset: what zipfile reads it by
        bad = bytearray(data)
        struct.pack_into("<I", bad, end + offset, value)
        error = _refused(bytes(bad), tmp_path / f"bad{offset}")
        assert error.reason is Reason.DATA_LOSS
        assert (
            error.message == "the archive is damaged: its end of central directory disagrees with its central directory"
        )
