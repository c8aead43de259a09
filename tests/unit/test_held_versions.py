"""What an agent reports holding: the version directories of its model_local_cache, those FATE-Flow wrote
included, listed and described from their Pipelines without hashing a file (that waits for first use)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fate_registry import config
from fate_registry.config import DatabaseConf
from fate_registry.fate_models import ModelSpec, write_party_model
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent import manifest
from party_agent.agent import PartyAgent
from party_agent.lifecycle import VersionLifecycle
from party_agent.manifest import scan
from party_agent.metadata import MetadataStore
from party_agent.model_cache import ModelCache

PARTY = "9999"
MODEL = "guest-9999#host-10000#model"


def _ref(role: str, party: str, model_id: str, version: str) -> PartyModelRef:
    return PartyModelRef(role=role, party_id=party, model_id=model_id, model_version=version)


def _version(cache: ModelCache, ref: PartyModelRef, *names: str) -> None:
    directory = cache.root / f"{ref.role}#{ref.party_id}#{ref.model_id}" / ref.model_version
    directory.mkdir(parents=True)
    for name in names:
        (directory / name).write_bytes(b"x")


def test_versions_lists_the_directories_holding_a_model(tmp_path: Path) -> None:
    store = MetadataStore(DatabaseConf(engine="sqlite", path=tmp_path / "agent.db"))
    cache = VersionLifecycle(ModelCache(tmp_path / "model_local_cache"), store).cache
    try:
        guest_v1, host_v1 = _ref("guest", PARTY, MODEL, "v1"), _ref("host", PARTY, MODEL, "v1")
        other_model = _ref("guest", PARTY, "guest-9999#host-1#model", "v1")
        for ref in (guest_v1, host_v1, other_model):
            _version(cache, ref, "file")
        _version(cache, _ref("guest", PARTY, MODEL, "v2"), ".lock")  # FATE's "model exists" is false here
        (cache.root / "not-a-party-model-id" / "v1").mkdir(parents=True)
        (cache.root / "guest#9999#x" / "v1..v2").mkdir(parents=True)  # no name a path can take
        (cache.root / "stray.zip").write_bytes(b"zip")
        (cache.root / ".staging" / "stage-1").mkdir()

        assert cache.versions() == [other_model, guest_v1, host_v1]
        assert cache.versions(model_id=MODEL) == [guest_v1, host_v1]
        assert cache.versions(model_version="v1") == [other_model, guest_v1, host_v1]
        assert cache.versions(MODEL, "v1") == [guest_v1, host_v1]
        assert cache.versions(MODEL, "v2") == []
        assert cache.versions(model_version="nosuch") == []
        assert cache.versions(model_version="../v1") == []
        assert cache.versions(MODEL, skip={("guest", PARTY, MODEL, "v1")}) == [host_v1]
    finally:
        store.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[PartyAgent]:
    conf = config.parse({"parties": {PARTY: {}}}, data_dir=tmp_path)
    party_agent = PartyAgent(conf, conf.parties[PARTY])
    yield party_agent
    party_agent.close()


def test_a_version_fate_flow_wrote_is_described_without_hashing_it(
    agent: PartyAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ModelSpec(checkpoints=2)
    directory = write_party_model(agent.cache.root, spec, "guest", int(PARTY))
    (directory / "import_model.json").write_text("{}")  # left by a FATE-Flow export; not part of the version
    ref = _ref("guest", PARTY, spec.model_id, spec.version)
    files = scan(directory)

    def no_hashing(path: Path) -> tuple[int, str, int]:
        raise AssertionError(f"{path} was hashed")

    with monkeypatch.context() as patch:
        patch.setattr(manifest, "hash_file", no_hashing)
        (held,) = agent.held_versions(spec.model_id, spec.version)
        assert agent.held_versions(unrecorded_only=True) == [held]
    assert (held.role, held.party_id, held.model_id, held.model_version) == (
        "guest",
        PARTY,
        spec.model_id,
        spec.version,
    )
    assert held.parent and held.job_id == spec.version and not held.imported
    assert held.roles_json == '{"guest": [9999], "host": [10000], "arbiter": [10000]}'
    assert held.manifest_digest == ""  # not hashed yet
    assert (held.size_bytes, held.file_count) == (files.total_size, len(files.files))
    assert agent.metadata.get(ref) is None  # nothing recorded: adopted on first use

    record = agent.record(ref)  # the first use hashes it
    (again,) = agent.held_versions(model_version=spec.version)
    assert again.manifest_digest == record.manifest.digest == files.digest
    assert (again.size_bytes, again.file_count) == (files.total_size, len(files.files))
    assert agent.held_versions(unrecorded_only=True) == []  # recorded now


def test_what_is_not_a_model_of_this_party_is_left_out(agent: PartyAgent) -> None:
    spec = ModelSpec()
    other = write_party_model(agent.cache.root, spec, "host", 10000)  # another party's slice in this cache
    assert other.is_dir()
    being_written = write_party_model(agent.cache.root, spec, "guest", int(PARTY))
    shutil.rmtree(being_written / "variables")  # FATE-Flow has not written its Pipeline yet
    assert agent.held_versions(spec.model_id) == []
