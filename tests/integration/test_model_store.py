"""Store → delete local → restore through `flow`, on every engine, each on a real server on loopback."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from fate_registry import config
from fate_registry.fate_models import ModelSpec, write_party_model
from fate_registry.fate_models.fate_archive import build_stored_archive, sha256_file
from fate_registry.identity import archive_name
from party_agent.storage import open_store
from party_agent.storage.base import StoreKey
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow, write_conf
from tests.support import services
from tests.support.federation import LocalFederation

SECRET = "s3cret-pw-that-must-not-leak"
BIG_BYTES = 512 * 1024 * 1024
DATA_ERROR = 102  # FATE's retcode for DATA_LOSS


def _server(engine: str, root: Path) -> AbstractContextManager[Any]:
    if engine == "mysql":
        return services.mariadb(root, password=SECRET)
    if engine == "redis":
        return services.redis_server(root, password=SECRET)
    return services.cos_emulator(root)


@pytest.fixture(scope="module", params=["mysql", "redis", "tencent_cos"])
def stored_federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LocalFederation]]:
    engine: str = request.param
    root = tmp_path_factory.mktemp(engine)
    with _server(engine, root / "server") as server:
        settings = {"storage": engine, **server.settings()}
        with LocalFederation.start(root / "fed", extra_conf={"model_store_address": settings}) as fed:
            yield engine, fed


def _keys(model: GeneratedModel) -> dict[str, Any]:
    return {"role": "guest", "party_id": 9999, "model_id": model.model_id, "model_version": model.version}


def _files(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n != "import_model.json"}


def _imported_guest(fed: LocalFederation, tmp_path: Path) -> tuple[GeneratedModel, dict[str, Any]]:
    """A fresh model's guest slice, imported with flow; the model and its keys."""
    model = generate_model(tmp_path)
    keys = _keys(model)
    conf = write_conf(tmp_path, "i.json", {**keys, "file": str(model.archives["guest", "9999"]), "force_update": False})
    code, answer = flow(fed, "model", "import", "-c", conf)
    assert code == 0, answer
    return model, keys


def test_store_delete_restore_gives_the_same_files(
    stored_federation: tuple[str, LocalFederation], tmp_path: Path
) -> None:
    engine, fed = stored_federation
    model, keys = _imported_guest(fed, tmp_path)
    code, first = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "e1.json", {**keys, "output_path": str(tmp_path / "a")})
    )
    assert code == 0, first

    code, stored = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "s.json", {**keys, "force_update": False}), "--to-database"
    )
    assert code == 0 and len(stored["data"]["sha256"]) == 64, stored
    assert stored["data"]["location"].startswith(engine) and SECRET not in json.dumps(stored)
    code, again = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "s.json", {**keys, "force_update": False}), "--to-database"
    )
    assert code != 0 and again["retcode"] == 409, again  # no overwrite without force_update

    code, deleted = flow(
        fed,
        "model",
        "delete",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "guest",
        "-p",
        "9999",
    )
    assert code == 0, deleted
    version_dir = fed.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version
    assert not version_dir.exists()

    pinned_elsewhere = write_conf(tmp_path, "r0.json", {**keys, "sha256": "ab" * 32})
    code, refused = flow(fed, "model", "import", "-c", pinned_elsewhere, "--from-database")
    assert code != 0 and refused["retcode"] == DATA_ERROR and "hash mismatch" in refused["retmsg"], refused
    assert not version_dir.exists()
    pinned = write_conf(tmp_path, "r.json", {**keys, "sha256": stored["data"]["sha256"]})
    code, restored = flow(fed, "model", "import", "-c", pinned, "--from-database")
    assert code == 0 and restored["data"]["sha256"] == stored["data"]["sha256"], restored
    assert version_dir.is_dir()
    code, info = flow(fed, "model", "get-model-info", "--model-id", model.model_id, "--model-version", model.version)
    assert code == 0 and [r["f_party_id"] for r in info["data"]] == ["9999"], info  # registered, unlike FATE
    code, second = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "e2.json", {**keys, "output_path": str(tmp_path / "b")})
    )
    assert code == 0, second
    assert _files(Path(second["file"])) == _files(Path(first["file"]))

    code, refused = flow(fed, "model", "import", "-c", write_conf(tmp_path, "r.json", keys), "--from-database")
    assert code != 0 and refused["retcode"] == 409, refused  # the local copy exists: force_update needed

    code, both = flow(
        fed,
        "model",
        "delete",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "guest",
        "-p",
        "9999",
        "--from-store",
    )
    assert code == 0, both
    code, gone = flow(fed, "model", "import", "-c", write_conf(tmp_path, "r2.json", keys), "--from-database")
    assert code != 0 and gone["retcode"] in (100, 404), gone
    assert not version_dir.exists()
    for log in (fed.root / "data" / "logs").glob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log


def _stored_size(fed: LocalFederation, model: GeneratedModel) -> int:
    """The size of the engine's copy of the guest's version, asked of the engine itself."""
    store_conf = config.load(fed.root / "service_conf.yaml").model_store
    assert store_conf is not None
    store = open_store(store_conf.storage, store_conf.settings)
    try:
        found = store.stat(StoreKey(f"guest#9999#{model.model_id}", model.version))
    finally:
        store.close()
    assert found is not None
    return found.size


def test_the_engine_holds_a_deflated_archive_unless_stored_is_asked(
    stored_federation: tuple[str, LocalFederation], tmp_path: Path
) -> None:
    fed = stored_federation[1]
    model, keys = _imported_guest(fed, tmp_path)
    version_dir = fed.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version
    content = sum(p.stat().st_size for p in version_dir.rglob("*") if p.is_file())
    before = {p.relative_to(version_dir): p.read_bytes() for p in version_dir.rglob("*") if p.is_file()}
    store = write_conf(tmp_path, "s.json", {**keys, "force_update": True})
    restore = write_conf(tmp_path, "r.json", {**keys, "force_update": True})
    code, deflated = flow(fed, "model", "export", "-c", store, "--to-database")
    assert code == 0 and _stored_size(fed, model) < 0.7 * content, deflated
    code, restored = flow(fed, "model", "import", "-c", restore, "--from-database")
    assert code == 0 and restored["data"]["sha256"] == deflated["data"]["sha256"], restored
    assert {p.relative_to(version_dir): p.read_bytes() for p in version_dir.rglob("*") if p.is_file()} == before
    code, stored = flow(fed, "model", "export", "-c", store, "--to-database", "--stored")
    assert code == 0 and _stored_size(fed, model) > content, stored
    code, restored = flow(fed, "model", "import", "-c", restore, "--from-database")
    assert code == 0 and restored["data"]["sha256"] == stored["data"]["sha256"], restored


@pytest.fixture(scope="session")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSpec, Path]:
    """A 512 MiB guest slice in a stored archive (FATE's layout), written once for every engine."""
    root = tmp_path_factory.mktemp("big")
    spec = ModelSpec(target_bytes=BIG_BYTES)
    version_dir = write_party_model(root / "model_local_cache", spec, "guest", 9999)
    archive = root / archive_name(spec.party_model_id("guest", 9999), spec.version)
    conf = {"role": "guest", "party_id": 9999, "model_id": spec.model_id, "model_version": spec.version}
    build_stored_archive(version_dir, archive, {**conf, "file": str(archive), "force_update": False})
    shutil.rmtree(version_dir)
    return spec, archive


def _tree_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_512_mib_model_store_delete_restore_is_byte_identical(
    stored_federation: tuple[str, LocalFederation], big_model: tuple[ModelSpec, Path], tmp_path: Path
) -> None:
    engine, fed = stored_federation
    spec, archive = big_model
    keys = {"role": "guest", "party_id": 9999, "model_id": spec.model_id, "model_version": spec.version}
    code, answer = flow(
        fed,
        "model",
        "import",
        "-c",
        write_conf(tmp_path, "i.json", {**keys, "file": str(archive), "force_update": True}),
    )
    assert code == 0, answer
    version_dir = fed.model_cache("9999") / spec.party_model_id("guest", 9999) / spec.version
    before = _tree_digests(version_dir)
    assert sum((version_dir / p).stat().st_size for p in before) > BIG_BYTES * 0.99

    code, stored = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "s.json", {**keys, "force_update": True}), "--to-database"
    )
    assert code == 0, stored
    assert stored["data"]["location"].startswith(engine)
    delete = ["model", "delete", "--model-id", spec.model_id, "--model-version", spec.version, "-r", "guest"]
    code, deleted = flow(fed, *delete, "-p", "9999")
    assert code == 0 and not version_dir.exists(), deleted

    code, restored = flow(fed, "model", "import", "-c", write_conf(tmp_path, "r.json", keys), "--from-database")
    assert code == 0, restored
    assert _tree_digests(version_dir) == before
    code, both = flow(fed, *delete, "-p", "9999", "--from-store")  # leave the engine's disk to the next test
    assert code == 0, both


def test_enable_model_store_uploads_downloads_and_leaves_identical_copies(
    synced_federation: LocalFederation, tmp_path: Path
) -> None:
    fed = synced_federation
    model = generate_model(tmp_path)
    keys = _keys(model)
    version_dir = fed.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version
    code, answer = flow(
        fed,
        "model",
        "import",
        "-c",
        write_conf(tmp_path, "i.json", {**keys, "file": str(model.archives["guest", "9999"]), "force_update": False}),
    )
    assert code == 0, answer

    # only here: an export uploads it first
    code, first = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "e1.json", {**keys, "output_path": str(tmp_path / "a")})
    )
    assert code == 0, first
    code, stored = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "s.json", {**keys, "force_update": False}), "--to-database"
    )
    assert code != 0 and stored["retcode"] == 409, stored  # it is in the store already

    # identical in both places: left alone (the same directory, not a re-downloaded one)
    inode = version_dir.stat().st_ino
    code, again = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "e2.json", {**keys, "output_path": str(tmp_path / "b")})
    )
    assert code == 0 and version_dir.stat().st_ino == inode, again

    # only in the store: the export downloads it, verified, and registers it
    code, deleted = flow(
        fed,
        "model",
        "delete",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "guest",
        "-p",
        "9999",
    )
    assert code == 0 and not version_dir.exists(), deleted
    code, third = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "e3.json", {**keys, "output_path": str(tmp_path / "c")})
    )
    assert code == 0 and version_dir.is_dir(), third
    assert _files(Path(third["file"])) == _files(Path(first["file"]))
    code, info = flow(fed, "model", "get-model-info", "--model-id", model.model_id, "--model-version", model.version)
    assert code == 0 and len(info["data"]) == 1, info
