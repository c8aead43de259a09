"""Malformed model archives imported through the real coordinator (relayed) and straight to the agent.

Each case starts from a real FATE-Flow archive of a generated model and damages it: hostile entry
names (``..``, absolute, backslashes, control characters), symbolic links and devices, duplicate
and conflicting names, lying sizes and CRCs, zip bombs (a deflated entry that expands past the
limit, more entries than allowed), broken deflate data, a garbage ``import_model.json``, manifest
or Pipeline, and then perhaps truncates it or flips a byte. Oracles: the import either succeeds
or fails with a clean error of the registry (never an internal one); a failed import leaves no
version behind and nothing in staging; no file appears outside the model cache; the servers keep
serving.
"""

from __future__ import annotations

import functools
import itertools
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.sdk import RegistryClient, TransferMode
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import common_pb2 as common
from party_agent.manifest import MANIFEST_ENTRY
from tests.fuzz.conftest import FUZZ, MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES, Fuzzed, count
from tests.fuzz.oracles import MODEL_CACHE, STAGING_DIRS, check_text
from tests.fuzz.strategies import ESCAPE_MARKER, PATH_TRICKS

CASES_PER_MODE = 150
STORED, DEFLATED = 0, 8
ROLE, PARTY = "guest", "9999"
HOSTILE_NAMES = (
    *PATH_TRICKS,
    f"../{ESCAPE_MARKER}",
    f"variables/../../{ESCAPE_MARKER}",
    f"/{ESCAPE_MARKER}",
    f"\\{ESCAPE_MARKER}",
    f"D:{ESCAPE_MARKER}",
    f"variables//{ESCAPE_MARKER}",
    f"./{ESCAPE_MARKER}",
    f"{ESCAPE_MARKER}\x01",
    "a" * 300,
    "é/ü/模型",
    "variables/data/pipeline/pipeline/Pipeline/",
)


@dataclass(frozen=True)
class Entry:
    """One zip entry as this test writes it: every field may lie."""

    name: bytes
    data: bytes
    method: int = STORED
    mode: int = stat.S_IFREG | 0o644
    flags: int = 0
    crc: int | None = None  # None: the true CRC of the uncompressed data
    size: int | None = None  # None: the true uncompressed size
    payload: bytes | None = None  # None: ``data`` stored or deflated as ``method`` says

    def raw(self) -> bytes:
        if self.payload is not None:
            return self.payload
        if self.method == DEFLATED:
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            return packer.compress(self.data) + packer.flush()
        return self.data


def build(entries: Sequence[Entry]) -> bytes:
    """A zip archive of ``entries`` exactly as they say, lies included."""
    body, central = bytearray(), bytearray()
    for entry in entries:
        raw = entry.raw()
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc & 0xFFFFFFFF
        size = len(entry.data) if entry.size is None else entry.size
        fields = (entry.flags, entry.method, 0, 0x21, crc, len(raw) & 0xFFFFFFFF, size & 0xFFFFFFFF)
        offset = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *fields, len(entry.name), 0) + entry.name + raw
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, *fields, len(entry.name), 0, 0, 0, 0,
            (entry.mode << 16) & 0xFFFFFFFF, offset,
        ) + entry.name  # fmt: skip
    count_ = min(len(entries), 0xFFFF)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count_, count_, len(central), len(body), 0)
    return bytes(body + central + end)


@functools.cache
def bomb() -> bytes:
    """Deflated zeros that expand to 8 times the archive limit."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    return b"".join(packer.compress(block) for _ in range(8 * MAX_ARCHIVE_BYTES // len(block))) + packer.flush()


def base_entries(archive: Path) -> list[Entry]:
    with zipfile.ZipFile(archive) as zf:
        return [Entry(i.filename.encode(), zf.read(i), DEFLATED if i.compress_type else STORED) for i in zf.infolist()]


Mutation = Callable[[st.DrawFn, list[Entry]], list[Entry]]


def _pick(draw: st.DrawFn, entries: list[Entry]) -> int:
    return draw(st.integers(0, len(entries) - 1)) if entries else 0


def _files(entries: list[Entry]) -> list[int]:
    return [i for i, e in enumerate(entries) if not e.name.endswith(b"/")] or [0]


def _changed(draw: st.DrawFn, entries: list[Entry], change: Callable[[Entry], Entry]) -> list[Entry]:
    files = _files(entries)
    i = files[draw(st.integers(0, len(files) - 1))]
    return [*entries[:i], change(entries[i]), *entries[i + 1 :]] if entries else entries


def _name(draw: st.DrawFn) -> bytes:
    return draw(st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=30))).encode("utf-8", "replace")


def _device(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    mode = draw(st.sampled_from([stat.S_IFCHR, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFBLK]))
    return _changed(draw, entries, lambda e: replace(e, mode=mode))


def _replaced(name: bytes, data: st.SearchStrategy[bytes]) -> Mutation:
    """Replace the data of entries whose name ends with ``name``."""
    return lambda d, es: [replace(e, data=d(data)) if e.name.endswith(name) else e for e in es]


def _bad_crc(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    flip = draw(st.integers(1, 2**32 - 1))
    return _changed(draw, entries, lambda e: replace(e, crc=zlib.crc32(e.data) ^ flip))


def _bad_size(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    size = draw(st.sampled_from([0, 1, 2**31, 0xFFFFFFFF, -1]))
    return _changed(draw, entries, lambda e: replace(e, size=len(e.data) + 1 if size < 0 else size))


def _bad_deflate(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    payload = draw(st.binary(min_size=1, max_size=64))
    return _changed(draw, entries, lambda e: replace(e, method=DEFLATED, payload=payload))


def _method(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    method = draw(st.sampled_from([1, 12, 14, 99, 0xFFFF]))
    return _changed(draw, entries, lambda e: replace(e, method=method))


def _bomb(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    return [*entries, Entry(b"variables/data/bomb", b"", DEFLATED, crc=0, size=8 * MAX_ARCHIVE_BYTES, payload=bomb())]


def _many(draw: st.DrawFn, entries: list[Entry]) -> list[Entry]:
    return [*entries, *(Entry(f"variables/many/{i}".encode(), b"") for i in range(MAX_ARCHIVE_ENTRIES + 1))]


IMPORT_JSONS = [b"", b"{", b"[]", b'{"role": 1}', b"\xff" * 10, b'{"file": "../../x", "model_id": "../.."}']
MANIFESTS = [b"", b"{}", b'{"files": [["../x", 1, "00", 0]]}', b'{"files": 7}', b"\x00" * 8, b'{"files": [[1]]}']

MUTATIONS: dict[str, Mutation] = {
    "rename": lambda d, es: _changed(d, es, lambda e: replace(e, name=_name(d))),
    "add": lambda d, es: [*es, Entry(_name(d), d(st.binary(max_size=64)))],
    "symlink": lambda d, es: _changed(d, es, lambda e: replace(e, mode=stat.S_IFLNK | 0o777, data=b"/etc/passwd")),
    "device": _device,
    "duplicate": lambda d, es: [*es, es[_files(es)[0]]] if es else es,
    "conflict": lambda d, es: [*es, Entry(es[_files(es)[-1]].name + b"/inner", b"x")] if es else es,
    "drop": lambda d, es: [e for i, e in enumerate(es) if i != _pick(d, es)],
    "drop-pipeline": lambda d, es: [e for e in es if not e.name.endswith(b"Pipeline")],
    "garbage": lambda d, es: _changed(d, es, lambda e: replace(e, data=d(st.binary(max_size=256)))),
    "garbage-pipeline": _replaced(b"/Pipeline", st.binary(max_size=64)),
    "bad-crc": _bad_crc,
    "bad-size": _bad_size,
    "deflate": lambda d, es: _changed(d, es, lambda e: replace(e, method=DEFLATED)),
    "bad-deflate": _bad_deflate,
    "method": _method,
    "encrypted": lambda d, es: _changed(d, es, lambda e: replace(e, flags=e.flags | 0x1)),
    "descriptor": lambda d, es: _changed(d, es, lambda e: replace(e, flags=e.flags | 0x8, crc=0, size=0)),
    "bomb": _bomb,
    "many-entries": _many,
    "big-entry": lambda d, es: [*es, Entry(b"variables/data/big", bytes(MAX_ARCHIVE_BYTES + 1))],
    "import-json": _replaced(b"import_model.json", st.sampled_from(IMPORT_JSONS)),
    "manifest": lambda d, es: [*es, Entry(MANIFEST_ENTRY.encode(), d(st.sampled_from(MANIFESTS)))],
}


@st.composite
def archives(draw: st.DrawFn, base: Sequence[Entry]) -> tuple[str, bytes]:
    """A damaged archive and what was done to it."""
    entries = list(base)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(MUTATIONS)))
        entries = MUTATIONS[name](draw, entries)
        done.append(name)
    data = build(entries)
    cut = draw(st.sampled_from(["whole", "whole", "truncated", "flipped", "junk-after", "junk-before", "empty"]))
    if cut == "truncated":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif cut == "flipped" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif cut == "junk-after":
        data += draw(st.binary(min_size=1, max_size=64))
    elif cut == "junk-before":
        data = draw(st.binary(min_size=1, max_size=64)) + data
    elif cut == "empty":
        data = b""
    return "+".join([*done, cut]), data


versions = itertools.count()


@pytest.mark.parametrize("transfer", ["relay", "direct"])
def test_malformed_archive(fuzzed: Fuzzed, tmp_path: Path, transfer: TransferMode) -> None:
    base = base_entries(fuzzed.model.archives[ROLE, PARTY])
    cache = fuzzed.federation.model_cache(PARTY)
    archive = tmp_path / "archive.zip"

    @settings(FUZZ, max_examples=CASES_PER_MODE)
    @given(damaged=archives(base))
    def case(damaged: tuple[str, bytes]) -> None:
        what, data = damaged
        archive.write_bytes(data)
        version = f"fuzz{transfer}{next(versions)}"
        target = common.PartyModelRef(role=ROLE, party_id=PARTY, model_id=fuzzed.model.model_id, model_version=version)
        version_dir = cache / f"{ROLE}#{PARTY}#{fuzzed.model.model_id}" / version
        try:
            client.import_model(archive, target, timeout=120)
        except RegistryError as error:
            assert error.reason is not Reason.INTERNAL, f"{what}: {error.message}"
            check_text(error.message, what)
            assert not version_dir.exists(), f"{what}: a failed import left {version_dir}"
            count(f"archive:{transfer}", error.reason.name)
        else:
            assert version_dir.is_dir(), f"{what}: imported, but {version_dir} is missing"
            count(f"archive:{transfer}", "imported")
        for staging in STAGING_DIRS:
            left = list((cache / staging).iterdir())
            assert not left, f"{what}: {MODEL_CACHE}/{staging} keeps {left[:5]}"

    with RegistryClient(fuzzed.federation.address, timeout=120, transfer=transfer) as client:
        case()
    fuzzed.check_after()
