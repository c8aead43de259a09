"""Publishing is atomic and a crash at any step is finished or undone on restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fate_registry.config import DatabaseConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.lifecycle import VersionLifecycle
from party_agent.manifest import scan
from party_agent.metadata import MetadataStore, PartyModelRecord, PendingPublish
from party_agent.model_cache import ModelCache

REF = PartyModelRef(role="guest", party_id="9999", model_id="guest-9999#host-10000#model", model_version="v1")


def _cache(tmp_path: Path) -> VersionLifecycle:
    store = MetadataStore(DatabaseConf(engine="sqlite", path=tmp_path / "agent.db"))
    return VersionLifecycle(ModelCache(tmp_path / "model_local_cache"), store)


def _staged(cache: VersionLifecycle, content: bytes) -> tuple[Path, PartyModelRecord]:
    staged = cache.new_staging() / "model"
    (staged / "variables").mkdir(parents=True)
    (staged / "variables" / "w").write_bytes(content)
    record = PartyModelRecord("guest", "9999", REF.model_id, "v1", job_id="j", manifest=scan(staged))
    return staged, record


def test_publish_then_refuse_without_replace(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    staged, record = _staged(cache, b"old")
    cache.publish(staged, record, replace=False)
    assert (cache.cache.version_dir(REF) / "variables" / "w").read_bytes() == b"old"
    stored = cache.metadata.get(REF)
    assert stored is not None and stored.manifest == record.manifest
    again, record2 = _staged(cache, b"new")
    with pytest.raises(RegistryError) as info:
        cache.publish(again, record2, replace=False)
    assert info.value.reason is Reason.MODEL_EXISTS
    cache.publish(again, record2, replace=True)
    assert (cache.cache.version_dir(REF) / "variables" / "w").read_bytes() == b"new"
    assert list((cache.cache.root / ".trash").iterdir()) == []


def test_crash_before_rename_rolls_back_to_the_old_version(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    old, old_record = _staged(cache, b"old")
    cache.publish(old, old_record, replace=False)
    staged, record = _staged(cache, b"new")
    target = cache.cache.version_dir(REF)
    trash = cache.cache.root / ".trash" / "t1"
    # the crash: journalled, old version moved aside, new one not yet renamed in
    cache.metadata.add_pending(
        PendingPublish(
            "p1", cache.cache.relative(target), cache.cache.relative(staged), cache.cache.relative(trash), record
        )
    )
    os.rename(target, trash)
    actions = _cache(tmp_path).recover()
    assert actions == [f"rolled back {cache.cache.relative(target)}"]
    assert (target / "variables" / "w").read_bytes() == b"old"
    assert not staged.exists() and not trash.exists()
    stored = cache.metadata.get(REF)
    assert stored is not None and stored.manifest == old_record.manifest


def test_crash_after_rename_completes_the_row(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    staged, record = _staged(cache, b"new")
    target = cache.cache.version_dir(REF)
    cache.metadata.add_pending(
        PendingPublish("p1", cache.cache.relative(target), cache.cache.relative(staged), "", record)
    )
    target.parent.mkdir(parents=True)
    os.rename(staged, target)  # the crash: renamed in, row not yet written
    assert cache.metadata.get(REF) is None
    assert _cache(tmp_path).recover() == [f"completed {cache.cache.relative(target)}"]
    stored = cache.metadata.get(REF)
    assert stored is not None and stored.manifest == record.manifest
    assert cache.metadata.pending() == []


def test_delete_and_a_crash_half_way_through_it(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    staged, record = _staged(cache, b"v1")
    cache.publish(staged, record, replace=False)
    cache.delete(REF)
    assert not cache.cache.version_dir(REF).exists() and cache.metadata.get(REF) is None
    staged, record = _staged(cache, b"v1")
    cache.publish(staged, record, replace=False)
    target = cache.cache.version_dir(REF)
    trash = cache.cache.root / ".trash" / "t1"
    # the crash: journalled and renamed aside, the row not yet deleted
    cache.metadata.add_pending(
        PendingPublish("d1", cache.cache.relative(target), "", cache.cache.relative(trash), None)
    )
    os.rename(target, trash)
    assert _cache(tmp_path).recover() == [f"deleted {cache.cache.relative(target)}"]
    assert cache.metadata.get(REF) is None and not trash.exists() and cache.metadata.pending() == []


def test_an_operation_id_names_only_its_own_prepared_versions(tmp_path: Path) -> None:
    """A '*' (or '?', '[') in an operation id is a character, not a pattern over other operations."""
    phases = _cache(tmp_path)
    staged, record = _staged(phases, b"w")
    place = phases.place("op1", "guest")
    phases.start("op1", place).rmdir()
    os.rename(staged, place / "model")
    phases.seal("op1", place, record)
    assert phases.commit("*") == [] and phases.abort("op?") == 0 and phases.abort("[o]p1") == 0
    assert (place / "model").exists()
    with pytest.raises(RegistryError) as info:
        phases.abort("../escape")
    assert info.value.reason is Reason.INVALID_ID
    assert not (phases.cache.root / "escape").exists() and not (phases.cache.root / ".staging" / "aborted-..").exists()
    assert phases.commit("op1") == [REF]
