"""Archives written with each entry deflated or stored, as a sample decides: read by Python's zipfile and by ours."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fate_registry.archives_conf import ArchivesConf
from party_agent import archive, deflate
from party_agent.deflate import deflate_segments, worth_deflating
from party_agent.manifest import MANIFEST_ENTRY, scan
from party_agent.zipwriter import ZipWriter

SIDECAR = "variables/data/cpn/model/Param.json"
BUFFER = "variables/data/cpn/model/Param"
EMPTY = "variables/data/cpn/model/Empty"
DEFINE = "define/define_meta.yaml"


def _version_dir(tmp_path: Path) -> Path:
    root = tmp_path / "v"
    (root / "variables/data/cpn/model").mkdir(parents=True)
    weights = {"weight": {f"x{i}": i * 0.12345 for i in range(40_000)}, "intercept": 0.5}
    (root / SIDECAR).write_text(json.dumps(weights, indent=2))  # ~1 MiB of JSON: several segments
    (root / BUFFER).write_bytes(os.urandom(700 * 1024))  # incompressible, sampled
    (root / EMPTY).write_bytes(b"")
    (root / "define").mkdir()
    (root / DEFINE).write_text("component_define: {}\n")  # 21 bytes: deflate would not shrink it
    return root


def _archive(source: Path, archives: ArchivesConf) -> bytes:
    manifest = scan(source)
    extra = {MANIFEST_ENTRY: manifest.to_json().encode()}
    return b"".join(archive.stream_archive(source, manifest, extra, 64 * 1024, archives))


def _methods(data: bytes, source: Path) -> dict[str, int]:
    """Each entry's method, once Python's zipfile has checked every CRC and every file's bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        for info in zf.infolist():
            if info.filename != MANIFEST_ENTRY:
                assert zf.read(info) == (source / info.filename).read_bytes(), info.filename
            assert bool(info.flag_bits & 0x8) == (info.compress_type == zipfile.ZIP_DEFLATED), info.filename
        return {info.filename: info.compress_type for info in zf.infolist()}


def test_each_entry_is_deflated_only_when_its_sample_shrinks(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    data = _archive(source, ArchivesConf())
    assert _methods(data, source) == {
        DEFINE: zipfile.ZIP_STORED,
        EMPTY: zipfile.ZIP_STORED,
        BUFFER: zipfile.ZIP_STORED,
        SIDECAR: zipfile.ZIP_DEFLATED,
        MANIFEST_ENTRY: zipfile.ZIP_STORED,
    }
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        sidecar = zf.getinfo(SIDECAR)
        assert sidecar.compress_size < sidecar.file_size / 3


def test_compression_stored_writes_every_entry_stored(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    methods = _methods(_archive(source, ArchivesConf(compression="stored")), source)
    assert set(methods.values()) == {zipfile.ZIP_STORED}


def test_a_deflated_archive_unpacks_to_its_manifest(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    manifest = scan(source)
    data = _archive(source, ArchivesConf(threads=3))
    dest = tmp_path / "out"
    dest.mkdir()
    pieces = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
    limits = archive.ArchiveLimits(max_bytes=1 << 30, max_entries=100, max_ratio=200)
    assert archive.unpack(pieces, dest, limits) == manifest
    assert archive.unpack(pieces, tmp_path / "verified", limits, verified_source=True) == manifest


def test_the_same_version_gives_the_same_archive(tmp_path: Path) -> None:
    source = _version_dir(tmp_path)
    assert _archive(source, ArchivesConf(threads=1)) == _archive(source, ArchivesConf(threads=4))


def test_a_zip64_entry_ends_with_an_8_byte_descriptor_that_zipfile_reads(tmp_path: Path) -> None:
    text = b"a model's JSON sidecar, " * 50_000
    writer = ZipWriter(zip64_from=0)  # every entry zip64, as one of 4 GiB would be
    out = writer.header("sidecar.json", len(text), zlib.crc32(text), 1.7e9, deflated=True)
    with ThreadPoolExecutor(2) as pool:
        pieces = [text[i : i + 100_000] for i in range(0, len(text), 100_000)]
        deflated = b"".join(deflate_segments(pieces, 1, pool, 2))
    out += deflated
    descriptor = writer.descriptor(len(deflated))
    assert len(descriptor) == 24 and descriptor.startswith(b"PK\x07\x08")  # signature, CRC, two 8-byte sizes
    out += descriptor + writer.header("raw", 3, zlib.crc32(b"abc"), 1.7e9) + b"abc" + writer.finish()
    with zipfile.ZipFile(io.BytesIO(out)) as zf:
        assert zf.testzip() is None
        assert zf.read("sidecar.json") == text and zf.read("raw") == b"abc"
        info = zf.getinfo("sidecar.json")
        assert (info.compress_type, info.compress_size, info.file_size) == (8, len(deflated), len(text))


def test_segments_compress_on_threads_with_a_bounded_read_ahead() -> None:
    segment = b"0.123456789, " * 80_000
    pulled = 0

    def pieces() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(20):
            pulled += 1
            yield segment

    with ThreadPoolExecutor(2) as pool:
        stream = deflate_segments(pieces(), 1, pool, 2)
        first = next(stream)
        assert pulled <= 4  # two segments per thread in flight, never the whole file
        rest = b"".join(stream)
    assert zlib.decompress(first + rest, -15) == segment * 20


def test_the_sample_decides(tmp_path: Path) -> None:
    text, noise = tmp_path / "text", tmp_path / "noise"
    text.write_bytes(b"0.5, " * 200_000)
    noise.write_bytes(os.urandom(1_000_000))
    assert worth_deflating(text, text.stat().st_size, ArchivesConf())
    assert not worth_deflating(text, text.stat().st_size, ArchivesConf(compression="stored"))
    assert not worth_deflating(noise, noise.stat().st_size, ArchivesConf())
    assert not worth_deflating(noise, noise.stat().st_size, ArchivesConf(min_saving=0.0))  # it would grow


def test_a_deflated_entry_inflating_past_a_piece_of_output_unpacks_from_large_pieces(tmp_path: Path) -> None:
    # a deflated entry's stream ends while its reader is draining input held back by the output bound
    # (4 MiB a call): what follows the stream (its descriptor, the next entry) is read once, not twice
    source = tmp_path / "v"
    (source / "data").mkdir(parents=True)
    rows = random.Random(7)
    (source / "data/a.json").write_text(json.dumps([rows.random() for _ in range(600_000)]))  # ~12 MiB, 2.2:1
    (source / "data/b.json").write_text(json.dumps(list(range(1000))))
    manifest = scan(source)
    extra = {MANIFEST_ENTRY: manifest.to_json().encode()}
    data = b"".join(archive.stream_archive(source, manifest, extra, 1024 * 1024, ArchivesConf()))
    limits = archive.ArchiveLimits(max_bytes=1 << 30, max_entries=100, max_ratio=200)
    for size in (len(data), 4 * 1024 * 1024, 3 * 1024 * 1024):
        dest = tmp_path / f"out-{size}"
        dest.mkdir()
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        assert archive.unpack(pieces, dest, limits, verified_source=True) == manifest


def test_a_file_the_archive_holds_twice_is_deflated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FATE model's last checkpoint is its model's buffers again: the second copy reuses the first's deflate."""
    source = _version_dir(tmp_path)
    again = source / "checkpoint/cpn/9#step/Param.json"
    again.parent.mkdir(parents=True)
    again.write_bytes((source / SIDECAR).read_bytes())
    compressed: list[int] = []
    segment = deflate._segment

    def counted(data: bytes, level: int) -> bytes:
        compressed.append(len(data))
        return segment(data, level)

    monkeypatch.setattr(deflate, "_segment", counted)
    data = _archive(source, ArchivesConf())
    methods = _methods(data, source)  # both copies read back byte for byte, every CRC checked
    assert methods[SIDECAR] == methods[str(again.relative_to(source))] == zipfile.ZIP_DEFLATED
    assert sum(compressed) == (source / SIDECAR).stat().st_size  # the sidecar's bytes compressed once, not twice
