"""A deployed child shares the parent's unchanged files (hard links), its manifest matches its files, and the
metadata store's own SQL runs on both engines."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from fate_registry import config
from fate_registry.config import DatabaseConf
from fate_registry.fate_models import MODEL_ALIAS, ModelSpec, write_party_model
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.agent import PartyAgent
from party_agent.deploy import DeployRequest
from party_agent.manifest import FileRecord, Manifest, scan
from party_agent.metadata import MetadataStore, PartyModelRecord, PendingPublish
from registry_server.predict_dsl import derive_predict_dsl
from tests.support import services

PARTY = "9999"
CPN = "hetero_lr_0"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[PartyAgent]:
    conf = config.parse({"parties": {PARTY: {}}}, data_dir=tmp_path)
    party_agent = PartyAgent(conf, conf.parties[PARTY])
    yield party_agent
    party_agent.close()


@pytest.fixture
def parent(agent: PartyAgent) -> PartyModelRef:
    """The guest's slice of a HeteroLR model with checkpoints 27, 28 and 29 of hetero_lr_0, adopted by the agent."""
    spec = ModelSpec(checkpoints=3)
    write_party_model(agent.cache.root, spec, "guest", int(PARTY))
    ref = PartyModelRef(role="guest", party_id=PARTY, model_id=spec.model_id, model_version=spec.version)
    agent.record(ref)
    return ref


def _deploy(
    agent: PartyAgent, parent: PartyModelRef, child: str, cpn_list: list[str] | None, steps: dict[str, dict[str, int]]
) -> PartyModelRef:
    train_dsl = json.loads(agent.record(parent).train_dsl_json)
    request = DeployRequest(parent, child, derive_predict_dsl(train_dsl, cpn_list), steps)
    agent.prepare_deploy(f"op-{child}", request)
    assert agent.lifecycle.commit(f"op-{child}")
    return PartyModelRef(role=parent.role, party_id=PARTY, model_id=parent.model_id, model_version=child)


def _exact(manifest: Manifest) -> list[tuple[str, int, str, int]]:
    """Every field, the CRC-32 included (FileRecord equality leaves it out)."""
    return [(r.path, r.size, r.sha256, r.crc32) for r in manifest.files]


def _assert_manifest_matches_files(agent: PartyAgent, ref: PartyModelRef) -> Manifest:
    record = agent.metadata.get(ref)
    assert record is not None
    assert _exact(record.manifest) == _exact(scan(agent.cache.version_dir(ref)))
    return record.manifest


def test_child_links_unchanged_files_and_its_manifest_matches_them(agent: PartyAgent, parent: PartyModelRef) -> None:
    child = _deploy(agent, parent, "child1", None, {CPN: {"step_index": 28}})
    manifest = _assert_manifest_matches_files(agent, child)
    parent_dir, child_dir = agent.cache.version_dir(parent), agent.cache.version_dir(child)
    substituted = f"variables/data/{CPN}/{MODEL_ALIAS}/"
    new_files = {"variables/data/pipeline/pipeline/Pipeline", "variables/data/pipeline/pipeline/Pipeline.json"}
    linked = [r.path for r in manifest.files if not r.path.startswith(substituted) and r.path not in new_files]
    assert "define/define_meta.yaml" in linked  # every component deployed: the proto index is the parent's
    for path in linked:
        assert (child_dir / path).stat().st_ino == (parent_dir / path).stat().st_ino, path
    for path in [r.path for r in manifest.files if r.path.startswith(substituted)] + sorted(new_files):
        assert (child_dir / path).stat().st_nlink == 1, path  # written for the child, not shared
    assert not (child_dir / "checkpoint").exists()
    _assert_manifest_matches_files(agent, parent)  # the parent is untouched


def test_a_child_of_some_components_gets_its_own_proto_index(agent: PartyAgent, parent: PartyModelRef) -> None:
    child = _deploy(agent, parent, "child2", ["reader_0", "data_transform_0"], {})
    manifest = _assert_manifest_matches_files(agent, child)
    parent_dir, child_dir = agent.cache.version_dir(parent), agent.cache.version_dir(child)
    meta = "define/define_meta.yaml"
    assert (child_dir / meta).stat().st_ino != (parent_dir / meta).stat().st_ino
    assert meta in manifest.by_path()
    assert any(r.path.startswith("variables/data/data_transform_0/") for r in manifest.files)
    assert not any(r.path.startswith(f"variables/data/{CPN}/") for r in manifest.files)


def test_a_deleted_child_leaves_the_parent_whole(agent: PartyAgent, parent: PartyModelRef) -> None:
    child = _deploy(agent, parent, "child3", None, {})
    agent.lifecycle.delete(child)
    _assert_manifest_matches_files(agent, parent)


def test_a_commit_stopped_after_its_rename_is_finished_from_the_prepared_record(
    tmp_path: Path, agent: PartyAgent, parent: PartyModelRef
) -> None:
    """The two-phase commit keeps no publish journal: ``prepared.json`` is it. A crash between the rename and
    the row leaves the version in place without a row; the restarted agent saves the row, and the resent
    commit finishes (removes the prepared place) and reports the version."""
    train_dsl = json.loads(agent.record(parent).train_dsl_json)
    agent.prepare_deploy("op-crash", DeployRequest(parent, "child4", derive_predict_dsl(train_dsl, None), {}))
    child = PartyModelRef(role=parent.role, party_id=PARTY, model_id=parent.model_id, model_version="child4")
    (place,) = agent.lifecycle._places("op-crash")
    prepared = agent.lifecycle.prepared(place)
    assert prepared is not None and not (place / "prepared.json.part").exists()
    target = agent.cache.version_dir(child)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(place / "model", target)  # what the commit did before the crash
    agent.close()

    conf = config.parse({"parties": {PARTY: {}}}, data_dir=tmp_path)
    restarted = PartyAgent(conf, conf.parties[PARTY])
    try:
        stored = restarted.metadata.get(child)
        assert stored is not None and stored.manifest == prepared.manifest
        assert restarted.lifecycle.commit("op-crash") == [child]  # the coordinator's resent commit
        assert not place.exists()
        _assert_manifest_matches_files(restarted, child)
    finally:
        restarted.close()


@pytest.mark.parametrize("engine", ["sqlite", "mysql"])
def test_the_metadata_statements_run_on_both_engines(tmp_path: Path, engine: str) -> None:
    """The journal and model rows, read and written by the store's own SQL, on SQLite and on MariaDB."""
    with contextlib.ExitStack() as stack:
        if engine == "mysql":
            db = stack.enter_context(services.mariadb(tmp_path / "mariadb", password="agent-test-pw"))
            conf = DatabaseConf(
                "mysql", name=db.database, user=db.user, password=SecretStr(db.password), host=db.host, port=db.port
            )
        else:
            conf = DatabaseConf("sqlite", path=tmp_path / "agent.db")
        store = MetadataStore(conf)
        stack.callback(store.close)
        manifest = Manifest.of([FileRecord("variables/w", 3, "ab" * 32, 7)])
        record = PartyModelRecord(
            "guest", PARTY, "m", "v1", job_id="v1", manifest=manifest, parent=False, loaded_times=2
        )
        ref = PartyModelRef(role="guest", party_id=PARTY, model_id="m", model_version="v1")
        assert store.get(ref) is None
        store.add_pending(PendingPublish("p1", "a/v1", ".staging/x", "", record))
        assert [p.id for p in store.pending()] == ["p1"] and store.pending()[0].record == record
        store.complete("p1", record)
        assert store.pending() == []
        stored = store.get(ref)
        assert stored is not None and stored.create_time_ms > 0
        assert dataclasses.replace(stored, create_time_ms=0) == record and not stored.parent
        assert _exact(stored.manifest) == _exact(manifest)
        store.set_archive_sha256(ref, "cd" * 32)
        store.complete("p2", dataclasses.replace(record, loaded_times=5))  # a publish replaces the row
        replaced = store.get(ref)
        assert replaced is not None and replaced.loaded_times == 5 and store.archive_sha256(ref) == ""
        assert [r.model_version for r in store.all_records()] == ["v1"]
        store.remove(ref, "")
        assert store.get(ref) is None
