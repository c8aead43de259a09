"""A large model through the FATE-Flow HTTP API, import and export, streamed: the coordinator's peak RSS stays
far below the archive's size (real processes; the archive is a stored zip in FATE-Flow's layout)."""

from __future__ import annotations

import hashlib
import http.client
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.memory import MIB, status_kib
from fate_registry.fate_models import ModelSpec, write_party_model
from fate_registry.fate_models.fate_archive import build_stored_archive
from fate_registry.identity import archive_name
from tests.fate_http import import_archive
from tests.support.federation import LocalFederation

ARCHIVE_BYTES = 512 * MIB
MAX_COORDINATOR_RSS_KIB = 200 * 1024


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with LocalFederation.start(tmp_path_factory.mktemp("fed"), parties={"9999": {}}) as federation:
        yield federation


def _download(address: str, body: dict[str, str], target: Path) -> tuple[int, str]:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        connection.request(
            "GET", "/v1/model/export", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        digest = hashlib.sha256()
        with target.open("wb") as out:
            while piece := answer.read(1024 * 1024):
                digest.update(piece)
                out.write(piece)
        return answer.status, digest.hexdigest()
    finally:
        connection.close()


def test_a_large_import_and_export_are_streamed(fed: LocalFederation, tmp_path: Path) -> None:
    spec = ModelSpec(target_bytes=ARCHIVE_BYTES)
    version_dir = write_party_model(tmp_path / "source", spec, "guest", 9999)
    archive = tmp_path / archive_name(spec.party_model_id("guest", 9999), spec.version)
    ref = {"role": "guest", "party_id": "9999", "model_id": spec.model_id, "model_version": spec.version}
    build_stored_archive(version_dir, archive, {**ref, "file": str(archive), "force_update": False})
    assert archive.stat().st_size >= ARCHIVE_BYTES * 0.9

    imported = import_archive(fed.http_address, {**ref, "force_update": "0"}, archive)
    assert imported.status == 200 and imported.json()["retcode"] == 0, imported
    exported = tmp_path / "exported.zip"
    status, _ = _download(fed.http_address, ref, exported)
    assert status == 200
    with zipfile.ZipFile(exported) as zf:
        assert zf.testzip() is None
        sizes = sum(info.file_size for info in zf.infolist())
    assert sizes >= ARCHIVE_BYTES * 0.9

    peak = status_kib(fed.pids()["coordinator"], "VmHWM")
    print(
        f"coordinator peak RSS after a {archive.stat().st_size / MIB:.0f} MiB import and export: {peak / 1024:.0f} MiB"
    )
    assert peak < MAX_COORDINATOR_RSS_KIB
