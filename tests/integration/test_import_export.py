"""Import and export on real processes: coordinator + agents over real gRPC channels."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from client.sdk import RegistryClient, TransferMode
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import PartyModelRef
from tests.conftest import GeneratedModel, generate_model
from tests.support.federation import LocalFederation

ARCHIVE_ONLY = {"import_model.json", ".fate_registry_manifest.json"}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _ref(model: GeneratedModel, role: str, party_id: str) -> PartyModelRef:
    return PartyModelRef(role=role, party_id=party_id, model_id=model.model_id, model_version=model.version)


@pytest.mark.parametrize("transfer", ["direct", "relay"])
def test_import_every_party_then_info_then_byte_identical_export(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, transfer: TransferMode
) -> None:
    with RegistryClient(federation.address, transfer=transfer) as client:
        for (role, party_id), archive in model.archives.items():
            result = client.import_model(archive, _ref(model, role, party_id)).result
            assert (result.model.role, result.model.party_id) == (role, party_id)
            assert result.file_count == len(_files(model.version_dirs[role, party_id])) - 1  # minus import_model.json

        info = client.get_model_info(pb.GetModelInfoRequest(model_id=model.model_id, model_version=model.version))
        assert sorted((m.role, m.party_id) for m in info.models) == sorted(model.archives)
        detail = client.get_model_info(pb.GetModelInfoRequest(model_version=model.version, detail=True))
        assert not detail.failures
        guest = next(m for m in detail.models if m.role == "guest")
        assert json.loads(guest.train_runtime_conf_json)["role"] == {
            "guest": [9999],
            "host": [10000],
            "arbiter": [10000],
        }
        assert "hetero_lr_0" in json.loads(guest.train_dsl_json)["components"]
        assert guest.parent and guest.fate_version == "1.11.4" and guest.imported

        for (role, party_id), source in model.version_dirs.items():
            out = tmp_path / f"{role}-{party_id}"
            exported = client.export_model(_ref(model, role, party_id), out)
            assert exported.path.name == f"{role}#{party_id}#{model.model_id}_{model.version}.zip"
            with zipfile.ZipFile(exported.path) as zf:
                inside = {n: zf.read(n) for n in zf.namelist()}
            expected = {k: v for k, v in _files(source).items() if k not in ARCHIVE_ONLY}
            assert {k: v for k, v in inside.items() if k not in ARCHIVE_ONLY} == expected
            import_json = json.loads(inside["import_model.json"])
            assert import_json == {
                "role": role,
                "party_id": int(party_id),
                "model_id": model.model_id,
                "model_version": model.version,
                "file": exported.path.name,
                "force_update": False,
            }


def _methods(archive: Path) -> dict[str, int]:
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        return {i.filename: i.compress_type for i in zf.infolist()}


@pytest.mark.parametrize("transfer", ["direct", "relay"])
def test_an_export_deflates_what_pays_or_stores_all_and_imports_back(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, transfer: TransferMode
) -> None:
    ref = _ref(model, "guest", "9999")
    with RegistryClient(federation.address, transfer=transfer) as client:
        imported = client.import_model(model.archives["guest", "9999"], ref, force_update=True).result
        deflated = client.export_model(ref, tmp_path / "auto")
        stored = client.export_model(ref, tmp_path / "stored", stored=True)
        methods = _methods(deflated.path)
        sidecars = [name for name in methods if name.endswith(".json") and name.startswith("variables/")]
        assert sidecars and all(methods[name] == zipfile.ZIP_DEFLATED for name in sidecars), methods
        assert set(_methods(stored.path).values()) == {zipfile.ZIP_STORED}
        assert deflated.path.stat().st_size < stored.path.stat().st_size
        # our own export, deflated, imports back (its manifest checked against every file) as the same version
        again = client.import_model(deflated.path, ref, force_update=True).result
    assert again.manifest_digest == imported.manifest_digest and again.size_bytes == imported.size_bytes


class _Unseekable(io.RawIOBase):
    """A file zipfile cannot seek back in: it writes a data descriptor after each entry, as streaming writers do."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()
        super().close()


@pytest.mark.parametrize("transfer", ["direct", "relay"])
def test_deflated_entries_with_data_descriptors_import(
    tmp_path: Path, federation: LocalFederation, transfer: TransferMode
) -> None:
    """Entries whose sizes and CRC come only after their deflate stream: each stream ends itself."""
    model = generate_model(tmp_path / "model", checkpoints=2, target_bytes=2 * 1024 * 1024)
    source = model.version_dirs["guest", "9999"]
    archive = tmp_path / "streamed.zip"
    with _Unseekable(archive) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(_files(source).items()):
            with zf.open(name, "w") as entry:
                entry.write(data)
    with zipfile.ZipFile(archive) as zf:
        assert all(info.flag_bits & 0x8 and info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())
        assert max(info.compress_size for info in zf.infolist()) > 100_000
    with RegistryClient(federation.address, transfer=transfer) as client:
        result = client.import_model(archive, _ref(model, "guest", "9999")).result
    imported = federation.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version
    assert result.file_count == len(_files(source)) - 1  # minus import_model.json
    assert _files(imported) == {k: v for k, v in _files(source).items() if k not in ARCHIVE_ONLY}


def test_files_land_in_fate_layout_on_the_right_agent(federation: LocalFederation, model: GeneratedModel) -> None:
    with RegistryClient(federation.address) as client:
        client.import_model(model.archives["host", "10000"], _ref(model, "host", "10000"))
    version_dir = federation.model_cache("10000") / f"host#10000#{model.model_id}" / model.version
    assert (version_dir / "variables/data/pipeline/pipeline/Pipeline").is_file()
    assert (version_dir / "define/define_meta.yaml").is_file()
    assert not (federation.model_cache("9999") / f"host#10000#{model.model_id}").exists()


def test_import_may_rename_model_id_and_version_as_fate_does(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    renamed = PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version="foobar")
    with RegistryClient(federation.address) as client:
        client.import_model(model.archives["guest", "9999"], renamed)
        exported = client.export_model(renamed, tmp_path)
    with zipfile.ZipFile(exported.path) as zf:
        from fate_registry.fate.pipeline_pb2 import Pipeline

        pipeline = Pipeline.FromString(zf.read("variables/data/pipeline/pipeline/Pipeline"))
        conf = json.loads(pipeline.train_runtime_conf)
    assert pipeline.model_version == "foobar"
    assert conf["job_parameters"]["common"]["model_version"] == "foobar"


@pytest.mark.parametrize("transfer", ["direct", "relay"])
def test_errors_change_nothing(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, transfer: TransferMode
) -> None:
    cache = federation.model_cache("9999")
    guest = model.archives["guest", "9999"]
    with RegistryClient(federation.address, transfer=transfer) as client:
        before = sorted(p.as_posix() for p in cache.rglob("*") if ".staging" not in p.parts)
        cases: list[tuple[PartyModelRef, Path, str, Reason]] = [
            (_ref(model, "host", "9999"), guest, "", Reason.PARTY_NOT_IN_ROLE),
            (_ref(model, "guest", "12345"), guest, "", Reason.UNKNOWN_PARTY),
            (
                PartyModelRef(role="guest", party_id="9999", model_id="a/b", model_version="v"),
                guest,
                "",
                Reason.INVALID_ID,
            ),
            (
                PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version=".."),
                guest,
                "",
                Reason.INVALID_ID,
            ),
            (_ref(model, "guest", "9999"), guest, "0" * 64, Reason.DATA_LOSS),
        ]
        for ref, archive, sha, reason in cases:
            with pytest.raises(RegistryError) as info:
                client.import_model(archive, ref, sha256=sha)
            assert info.value.reason is reason, info.value.message
        after = sorted(p.as_posix() for p in cache.rglob("*") if ".staging" not in p.parts)
        assert after == before
        assert list((cache / ".staging").iterdir()) == []
        with pytest.raises(RegistryError) as info:
            client.get_model_info(pb.GetModelInfoRequest(model_version=model.version))
        assert info.value.reason is Reason.MODEL_NOT_FOUND
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(RegistryError) as info:
            client.export_model(_ref(model, "guest", "9999"), out)
        assert info.value.reason is Reason.MODEL_NOT_FOUND and info.value.fate_retcode == 404
        assert list(out.iterdir()) == []


def test_existing_model_needs_force_update(federation: LocalFederation, model: GeneratedModel) -> None:
    ref = _ref(model, "guest", "9999")
    with RegistryClient(federation.address) as client:
        first = client.import_model(model.archives["guest", "9999"], ref).result
        with pytest.raises(RegistryError) as info:
            client.import_model(model.archives["guest", "9999"], ref)
        assert info.value.reason is Reason.MODEL_EXISTS and info.value.fate_retcode == 409
        again = client.import_model(model.archives["guest", "9999"], ref, force_update=True).result
    assert again.manifest_digest == first.manifest_digest and again.job_id != first.job_id


def _tamper(data: bytes, name: str) -> bytes:
    """Flip one byte of a stored entry's content and fix nothing else: CRC and manifest now disagree."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    out = bytearray(data)
    out[start] ^= 0xFF
    return bytes(out)


def test_a_tampered_export_is_refused_on_import(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    ref = _ref(model, "guest", "9999")
    with RegistryClient(federation.address) as client:
        client.import_model(model.archives["guest", "9999"], ref)
        exported = client.export_model(ref, tmp_path / "out")
        bad = tmp_path / "tampered.zip"
        bad.write_bytes(
            _tamper(exported.path.read_bytes(), "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam")
        )
        other = PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version="tampered")
        with pytest.raises(RegistryError) as info:
            client.import_model(bad, other)
        assert info.value.reason is Reason.DATA_LOSS
        with pytest.raises(RegistryError):
            client.get_model_info(pb.GetModelInfoRequest(model_version="tampered"))


def test_delete_removes_files_row_and_catalog_entry(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    ref = _ref(model, "guest", "9999")
    version_dir = federation.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version
    with RegistryClient(federation.address) as client:
        client.import_model(model.archives["guest", "9999"], ref)
        assert version_dir.is_dir()
        deleted = client.delete_model(pb.DeleteModelRequest(model=ref))
        assert deleted.deleted_local and not deleted.deleted_store
        assert not version_dir.exists()
        with pytest.raises(RegistryError) as info:
            client.get_model_info(pb.GetModelInfoRequest(model_id=model.model_id, model_version=model.version))
        assert info.value.reason is Reason.MODEL_NOT_FOUND
        with pytest.raises(RegistryError) as info:
            client.delete_model(pb.DeleteModelRequest(model=ref))
        assert info.value.reason is Reason.MODEL_NOT_FOUND
        client.import_model(model.archives["guest", "9999"], ref)  # and it can come back
        assert version_dir.is_dir()
