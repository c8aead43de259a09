"""A corrupted stored copy is refused on restore (DATA_LOSS) and nothing local changes, on every engine.

Each engine runs on a real server on loopback. The stored object is corrupted behind the registry's
back through the engine's raw client, the way a disk or a careless operator would: a byte flipped
inside one MySQL slice's ``f_content``, a byte overwritten inside one Redis chunk key, a COS object
re-put with one byte changed but its ``x-cos-meta-sha256`` metadata kept. The recorded digest and
size still describe the original bytes, so only the registry's own check can catch it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError
from fate_registry.identity import party_model_id
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import delete_version, flow, import_slices, store_version, write_conf
from tests.support import services
from tests.support.federation import LocalFederation

ROLE = "guest"
PARTY = "9999"
DATA_ERROR = 102
MYSQL_TABLE = "t_machine_learning_model"
REDIS_PREFIX = "FATEFlow:PipelinedModel"
COS_PREFIX = "FATEFlow/PipelinedModel"
COS_SHA256_META = "x-cos-meta-sha256"

# Where in the stored bytes the flipped byte goes, as a fraction of the object's size: the middle
# (inside a file's content) and the very end (the zip's end-of-central-directory record, which an
# unpacker that stops early would never look at).
POSITIONS = {"middle": 0.5, "end": 1.0}


@pytest.fixture(scope="module", params=["mysql", "redis", "tencent_cos"])
def stored_federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, services.EngineServer, LocalFederation]]:
    engine: str = request.param
    root = tmp_path_factory.mktemp(f"corrupt-{engine}")
    with services.engine_server(engine, root / "server", "corruption-test-pw") as server:
        settings = {"storage": engine, **server.settings()}
        with LocalFederation.start(root / "fed", extra_conf={"model_store_address": settings}) as fed:
            yield engine, server, fed


# -- corrupting the stored object through the raw clients ---------------------------------------


def _flip(data: bytes, fraction: float) -> bytes:
    """``data`` with one byte (at ``fraction`` of its length, clamped to the last byte) inverted."""
    at = min(len(data) - 1, int(len(data) * fraction))
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _corrupt_mysql(server: services.MariaDB, pmid: str, version: str, fraction: float) -> None:
    conn = server.root_connection()
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT f_slice_index, f_size FROM {MYSQL_TABLE} WHERE f_model_id = %s AND f_model_version = %s"
            " AND f_slice_index >= 0 ORDER BY f_slice_index",
            (pmid, version),
        )
        slices: list[tuple[int, int]] = [(int(i), int(s)) for i, s in cur.fetchall()]
        assert slices, f"no data slices stored for {pmid} {version}"
        total = sum(size for _, size in slices)
        target = min(total - 1, int(total * fraction))
        index = 0
        for index, size in slices:  # noqa: B007 - the slice holding byte ``target``, and the offset inside it
            if target < size:
                break
            target -= size
        cur.execute(
            f"SELECT f_content FROM {MYSQL_TABLE}"
            " WHERE f_model_id = %s AND f_model_version = %s AND f_slice_index = %s",
            (pmid, version, index),
        )
        row = cur.fetchone()
        assert row is not None
        content = bytes(row[0])
        changed = content[:target] + bytes([content[target] ^ 0xFF]) + content[target + 1 :]
        cur.execute(
            f"UPDATE {MYSQL_TABLE} SET f_content = %s"
            " WHERE f_model_id = %s AND f_model_version = %s AND f_slice_index = %s",
            (changed, pmid, version, index),
        )
        assert cur.rowcount == 1


def _corrupt_redis(server: services.RedisServer, pmid: str, version: str, fraction: float) -> None:
    client = redis.Redis(host=server.host, port=server.port, password=server.password, socket_timeout=10)
    with client:
        raw_header = client.get(f"{REDIS_PREFIX}:{pmid}:{version}")
        assert raw_header is not None, f"no header stored for {pmid} {version}"
        header = json.loads(raw_header)
        size, chunk_size = int(header["size"]), int(header["chunk_size"])
        target = min(size - 1, int(size * fraction))
        name = f"{REDIS_PREFIX}:{pmid}:{version}:chunk:{header['generation']}:{target // chunk_size}"
        offset = target % chunk_size
        old = client.getrange(name, offset, offset)
        assert isinstance(old, bytes)
        assert len(old) == 1, f"{name} has no byte {offset}"
        client.setrange(name, offset, bytes([old[0] ^ 0xFF]))  # overwrite part of the chunk in place


def _corrupt_cos(server: services.CosEmulator, pmid: str, version: str, fraction: float) -> None:
    client = server.client()
    key = f"{COS_PREFIX}/{pmid}/{version}.zip"
    answer = client.get_object(Bucket=server.bucket, Key=key)
    sha256 = {k.lower(): v for k, v in answer.items() if isinstance(v, str)}[COS_SHA256_META]
    data = answer["Body"].get_raw_stream().read()
    client.put_object(Bucket=server.bucket, Key=key, Body=_flip(data, fraction), Metadata={COS_SHA256_META: sha256})
    head = {k.lower(): v for k, v in client.head_object(Bucket=server.bucket, Key=key).items()}
    assert head[COS_SHA256_META] == sha256 and int(head["content-length"]) == len(data)


def _corrupt(server: services.EngineServer, pmid: str, version: str, fraction: float) -> None:
    if isinstance(server, services.MariaDB):
        _corrupt_mysql(server, pmid, version, fraction)
    elif isinstance(server, services.RedisServer):
        _corrupt_redis(server, pmid, version, fraction)
    else:
        _corrupt_cos(server, pmid, version, fraction)


# -- the flow side ------------------------------------------------------------------------------


def _keys(model: GeneratedModel) -> dict[str, Any]:
    return {"role": ROLE, "party_id": int(PARTY), "model_id": model.model_id, "model_version": model.version}


def _stored_then_corrupted(
    fed: LocalFederation, server: services.EngineServer, tmp_path: Path, position: str
) -> tuple[GeneratedModel, Path]:
    """A new model imported on ``PARTY`` and stored, then its stored copy corrupted at ``position``; the model and
    its local version directory."""
    model = generate_model(tmp_path)
    import_slices(fed, {(ROLE, PARTY): model.archives[ROLE, PARTY]}, model.model_id, model.version, tmp_path)
    code, stored = store_version(fed, _keys(model), tmp_path)
    assert code == 0 and stored["retcode"] == 0, stored
    pmid = party_model_id(ROLE, PARTY, model.model_id)
    _corrupt(server, pmid, model.version, POSITIONS[position])
    return model, fed.model_cache(PARTY) / pmid / model.version


def _delete_local(fed: LocalFederation, model: GeneratedModel) -> None:
    code, deleted = delete_version(fed, _keys(model))
    assert code == 0, deleted


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path (``.lock`` too: it must not change either)."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _staging(fed: LocalFederation) -> list[str]:
    staging = fed.model_cache(PARTY) / ".staging"
    return sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []


def _info(fed: LocalFederation, model: GeneratedModel) -> tuple[int, dict[str, Any]]:
    return flow(fed, "model", "get-model-info", "--model-id", model.model_id, "--model-version", model.version)


def _listed_versions(fed: LocalFederation, model: GeneratedModel) -> str:
    """What ``flow model list-versions`` answers for the model id, as text (an error answer included)."""
    _, answer = flow(fed, "model", "list-versions", "--model-id", model.model_id)
    return json.dumps(answer.get("data"))


def _assert_data_loss(answer: dict[str, Any], code: int, engine: str, reason: Reason) -> None:
    """A corrupted stored copy: ``flow`` exits non-zero with retcode 102 and a message that blames the stored
    copy (sha256 mismatch or corruption, naming the engine's model store); the SDK sees DATA_LOSS."""
    message = str(answer.get("retmsg", ""))
    problems = [
        *(["flow exited 0"] if code == 0 else []),
        *([f"retcode {answer.get('retcode')}, not {DATA_ERROR}"] if answer.get("retcode") != DATA_ERROR else []),
        *(["the message says neither sha256 nor corrupt"] if not re.search("sha256|corrupt", message, re.I) else []),
        *([f"the message does not name the {engine} model store"] if f"{engine} model store" not in message else []),
        *([f"the SDK's reason is {reason.name}, not DATA_LOSS"] if reason != Reason.DATA_LOSS else []),
    ]
    assert not problems, f"{'; '.join(problems)}: {answer}"


def _sdk_restore_reason(fed: LocalFederation, model: GeneratedModel, force: bool) -> Reason:
    """The reason the coordinator gives the SDK (the gRPC status; ``flow`` shows only the retcode)."""
    ref = common.PartyModelRef(role=ROLE, party_id=PARTY, model_id=model.model_id, model_version=model.version)
    with RegistryClient(fed.address, timeout=60.0) as client, pytest.raises(RegistryError) as caught:
        client.restore_model(pb.RestoreModelRequest(model=ref, force_update=force))
    return caught.value.reason


@pytest.mark.parametrize("position", list(POSITIONS))
def test_corrupted_copy_is_refused_and_nothing_local_appears(
    stored_federation: tuple[str, services.EngineServer, LocalFederation], tmp_path: Path, position: str
) -> None:
    engine, server, fed = stored_federation
    model, version_dir = _stored_then_corrupted(fed, server, tmp_path, position)
    _delete_local(fed, model)
    assert not version_dir.exists()
    staging_before = _staging(fed)
    listed_before = _listed_versions(fed, model)

    code, restored = flow(fed, "model", "import", "-c", write_conf(tmp_path, "r.json", _keys(model)), "--from-database")

    _assert_data_loss(restored, code, engine, _sdk_restore_reason(fed, model, force=False))
    assert not version_dir.exists()
    assert _staging(fed) == staging_before == []
    code, info = _info(fed, model)
    assert code != 0 or not info.get("data"), info  # not registered
    assert _listed_versions(fed, model) == listed_before
    assert model.version not in listed_before


@pytest.mark.parametrize("position", list(POSITIONS))
def test_corrupted_forced_restore_leaves_the_local_copy_identical(
    stored_federation: tuple[str, services.EngineServer, LocalFederation], tmp_path: Path, position: str
) -> None:
    engine, server, fed = stored_federation
    model, version_dir = _stored_then_corrupted(fed, server, tmp_path, position)
    before = _tree(version_dir)
    assert before
    code, info_before = _info(fed, model)
    assert code == 0 and info_before["data"], info_before

    code, restored = flow(
        fed,
        "model",
        "import",
        "-c",
        write_conf(tmp_path, "r.json", {**_keys(model), "force_update": True}),
        "--from-database",
    )

    _assert_data_loss(restored, code, engine, _sdk_restore_reason(fed, model, force=True))
    assert _tree(version_dir) == before
    assert _staging(fed) == []
    code, info_after = _info(fed, model)
    assert code == 0 and info_after["data"] == info_before["data"], info_after
