"""Hostile and damaged archives imported for real (SDK → coordinator or straight → agent): each is refused
with retcode 102 and a message naming the entry and the limit, early, and leaves nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from client.sdk import RegistryClient, TransferMode
from fate_registry.config import LimitsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import PartyModelRef
from tests.conftest import GeneratedModel
from tests.support.federation import LocalFederation
from tests.zipcraft import DEFLATED, Entry, MiB, spliced, zeros

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
    with RegistryClient(federation.address, transfer=transfer) as client, pytest.raises(RegistryError) as info:
        client.import_model(archive, ref)
    cache = federation.model_cache(PARTY)
    assert not (cache / f"guest#{PARTY}#{model.model_id}" / version).exists()
    assert list((cache / ".staging").iterdir()) == []
    assert info.value.fate_retcode == 102, info.value.message
    return info.value


@pytest.mark.parametrize("transfer", ["direct", "relay"])
def test_a_zip_bomb_posing_as_a_model_buffer_is_refused_before_it_fills_the_disk(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, transfer: TransferMode
) -> None:
    bomb = zeros(1024 * MiB)  # 1 GiB of zeros in ~1 MB, its header claiming a buffer's size
    assert len(bomb) < 1.1 * MiB
    entry = Entry(BUFFER.replace("Param", "Param2"), bomb, DEFLATED, crc=0x1234, size=14_000)
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
