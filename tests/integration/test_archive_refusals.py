"""Hostile and damaged archives imported for real (SDK → coordinator or straight → agent): each is refused
with retcode 102 and a message naming the entry and the limit, early, and leaves nothing behind."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from client.sdk import RegistryClient, TransferMode
from fate_registry.config import LimitsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import PartyModelRef
from tests.conftest import GeneratedModel, generate_model
from tests.support.federation import LocalFederation
from tests.zipcraft import DEFLATED, DESCRIPTOR, Entry, MiB, spliced, zeros

PARTY = "9999"
BUFFER = "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam"


def _agent_writes(federation: LocalFederation) -> int:
    """Bytes the party's agent has written so far, to files and sockets alike (``wchar`` of /proc/<pid>/io)."""
    stats = Path(f"/proc/{federation.pids()[f'agent-{PARTY}']}/io").read_text()
    return int(next(line for line in stats.splitlines() if line.startswith("wchar:")).split()[1])


def _refused(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, data: bytes, transfer: TransferMode = "auto"
) -> RegistryError:
    """Import ``data`` as a new version of the guest's model; check that it is refused and that nothing is left."""
    archive = tmp_path / "archive.zip"
    archive.write_bytes(data)
    version = f"refused{time.monotonic_ns()}"
    ref = PartyModelRef(role="guest", party_id=PARTY, model_id=model.model_id, model_version=version)
    with RegistryClient(federation.address, transfer=transfer) as client:
        with pytest.raises(RegistryError) as info:
            client.import_model(archive, ref)
        with pytest.raises(RegistryError) as lookup:
            client.get_model_info(pb.GetModelInfoRequest(model_id=model.model_id, model_version=version))
    assert lookup.value.reason is Reason.MODEL_NOT_FOUND  # no catalog record
    cache = federation.model_cache(PARTY)
    assert not (cache / f"guest#{PARTY}#{model.model_id}" / version).exists()
    assert list((cache / ".staging").iterdir()) == []
    assert info.value.fate_retcode == 102, info.value.message
    return info.value


@pytest.mark.parametrize("transfer", ["direct", "relay"])
@pytest.mark.parametrize("header", ["lying", "descriptor"])
def test_a_zip_bomb_posing_as_a_model_buffer_is_refused_before_it_fills_the_disk(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, transfer: TransferMode, header: str
) -> None:
    """Its header claims a buffer's size, or none (a data descriptor would follow): only the inflated bytes tell."""
    bomb = zeros(1024 * MiB)  # 1 GiB of zeros in ~1 MB
    assert len(bomb) < 1.1 * MiB
    name = BUFFER.replace("Param", "Param2")
    if header == "lying":
        entry = Entry(name, bomb, DEFLATED, crc=0x1234, size=14_000)
    else:
        entry = Entry(name, bomb, DEFLATED, size=0, csize=0, flags=DESCRIPTOR)
    data = spliced(model.archives["guest", PARTY].read_bytes(), entry)
    written, started = _agent_writes(federation), time.monotonic()
    error = _refused(federation, model, tmp_path, data, transfer)
    assert time.monotonic() - started < 10
    assert _agent_writes(federation) - written < 2 * MiB  # the model's own entries, then nothing of the bomb
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    ratio = LimitsConf.max_expansion_ratio
    assert error.message.startswith(f"archive entry {entry.name!r} expands ")
    assert error.message.endswith(f"x its compressed size (limit {ratio}x): a zip bomb? nothing was imported")


def test_an_entry_larger_than_the_free_disk_is_refused(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    huge = 10 * 1024**5
    entry = Entry(BUFFER + "2", b"weights", size=huge, csize=huge)
    error = _refused(federation, model, tmp_path, spliced(model.archives["guest", PARTY].read_bytes(), entry))
    assert error.reason is Reason.ARCHIVE_TOO_LARGE
    assert error.message.startswith(f"archive entry {entry.name!r} declares 10.0 PiB after ")
    assert "KiB of earlier entries, but party 9999's disk has " in error.message
    assert error.message.endswith("margin): no space left for it, nothing was imported")


def test_an_entry_name_the_file_system_cannot_take_is_refused(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    entry = Entry("variables/data/" + "é" * 200, b"x")
    error = _refused(federation, model, tmp_path, spliced(model.archives["guest", PARTY].read_bytes(), entry))
    assert error.reason is Reason.BAD_ARCHIVE
    assert error.message.startswith("archive entry 'variables/data/ééé")
    assert "has a name of 400 bytes; the file system takes at most 255" in error.message


def test_an_archive_whose_end_is_cut_is_refused(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    error = _refused(federation, model, tmp_path, model.archives["guest", PARTY].read_bytes()[:-10])
    assert error.reason is Reason.DATA_LOSS
    assert error.message == "the archive is damaged: its end of central directory is missing or cut (truncated?)"


def _damaged(data: bytes, name: str, damage: str) -> bytes:
    """``data`` with a byte of deflated entry ``name``'s compressed stream changed, nothing else.

    "flipped": a byte in the middle (the inflater may not notice; the CRC does); "block type": the first
    block's type made the reserved one, which no inflater takes.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size > 1000
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    out = bytearray(data)
    if damage == "flipped":
        out[start + info.compress_size // 2] ^= 0x55
    else:
        out[start] |= 0b110  # BTYPE, the two bits after BFINAL: 11 is reserved
    return bytes(out)


@pytest.mark.parametrize("transfer", ["direct", "relay"])
@pytest.mark.parametrize("damage", ["flipped", "block type"])
def test_a_corrupt_deflate_stream_is_refused_and_nothing_is_written(
    federation: LocalFederation, tmp_path: Path, transfer: TransferMode, damage: str
) -> None:
    """A FATE-Flow archive (deflated) whose buffer's compressed bytes were damaged: its inflater fails, or its CRC."""
    model = generate_model(tmp_path / "model", checkpoints=2, target_bytes=2 * MiB)  # buffers of ~150 KB deflated
    data = _damaged(model.archives["guest", PARTY].read_bytes(), BUFFER, damage)
    error = _refused(federation, model, tmp_path, data, transfer)
    assert error.reason is Reason.DATA_LOSS
    assert error.message in (
        f"archive entry {BUFFER!r} is corrupt: its compressed data does not inflate",
        f"archive entry {BUFFER!r} is corrupt (CRC or size mismatch)",
    )
    if damage == "block type":
        assert error.message == f"archive entry {BUFFER!r} is corrupt: its compressed data does not inflate"
