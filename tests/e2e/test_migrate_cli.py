"""Migrate through `flow` on real processes, then a round trip into a second federation that knows
only the new party ids: import the archives there, deploy, and load against FATE-Serving test servers."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from fate_registry.fate_models import BUFFER_CLASSES
from fate_registry.identity import gen_model_id
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow, import_slices, write_conf
from tests.support.federation import LocalFederation
from tests.support.serving_process import ServingTestServer

OLD = {"guest": [9999], "host": [10000], "arbiter": [10000]}
NEW = {"guest": [99], "host": [100], "arbiter": [100]}
OLD_IDS = ("9999", "10000")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalFederation, GeneratedModel]]:
    root = tmp_path_factory.mktemp("source")
    model = generate_model(root, algorithm="hetero_secureboost")
    with LocalFederation.start(root / "fed") as fed:
        import_slices(fed, model.archives, model.model_id, model.version, root)
        yield fed, model


def _migrate_conf(model: GeneratedModel, **overrides: Any) -> dict[str, Any]:
    return {
        "job_parameters": {"federated_mode": "MULTIPLE"},
        "role": OLD,
        "execute_party": OLD,
        "migrate_initiator": {"role": "guest", "party_id": 99},
        "migrate_role": NEW,
        "model_id": model.model_id,
        "model_version": model.version,
        **overrides,
    }


def _migrated_dirs(fed: LocalFederation) -> list[Path]:
    return [p for party in ("9999", "10000") for p in fed.model_cache(party).glob(f"*#{gen_model_id(NEW)}/*")]


def test_validation_gives_fates_messages_and_changes_nothing(
    source: tuple[LocalFederation, GeneratedModel], tmp_path: Path
) -> None:
    fed, model = source
    structure = (
        "The structure of roles data of local configuration is different from model runtime configuration's. "
        "Migration aborting."
    )
    cases: list[tuple[dict[str, Any], str]] = [
        (_migrate_conf(model, migrate_role={"guest": [99], "host": [100]}), structure),
        (_migrate_conf(model, migrate_role={"guest": [99, 98], "host": [100], "arbiter": [100]}), structure),
        (_migrate_conf(model, migrate_role=OLD), "There is no need to migrate model."),
        (_migrate_conf(model, model_version="nosuch"), "does not exist"),
        (_migrate_conf(model, execute_party={"guest": [12345]}), "12345"),
        ({k: v for k, v in _migrate_conf(model).items() if k != "migrate_role"}, "migrate_role"),
    ]
    for body, needle in cases:
        code, answer = flow(fed, "model", "migrate", "-c", write_conf(tmp_path, "m.json", body))
        assert code != 0 and answer["retcode"] != 0, (body, answer)
        assert needle in json.dumps(answer), (body, answer)
    assert _migrated_dirs(fed) == []


def _buffers_json(archive: Path) -> dict[str, dict[str, Any]]:
    """Every buffer of an archive decoded with its class from the proto index, as JSON."""
    out: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(archive) as zf:
        meta = yaml.safe_load(zf.read("define/define_meta.yaml"))
        for component, aliases in meta["model_proto"].items():
            for alias, names in aliases.items():
                for name, class_name in names.items():
                    data = zf.read(f"variables/data/{component}/{alias}/{name}")
                    message = BUFFER_CLASSES[class_name].FromString(data)
                    out[f"{component}/{name}"] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


PARTY_SHAPED = re.compile(r"(guest|host|arbiter)\W{0,2}(9999|10000)\b")


def _old_party_ids(document: Any, path: str = "") -> Iterator[str]:
    """Where an old party id still stands: a party-id field, or a value shaped like ``host:10000``,
    ``host_10000_x3`` or ``(guest, 9999)``. Plain numbers that happen to be 10000 (a binning
    ``head_size``) are not party ids."""
    if isinstance(document, dict):
        for key, value in document.items():
            if "party" in key.lower() and not isinstance(value, (dict, list)) and str(value) in OLD_IDS:
                yield f"{path}/{key}"
            yield from _old_party_ids(key, f"{path}/<key>")
            yield from _old_party_ids(value, f"{path}/{key}")
    elif isinstance(document, list):
        for i, item in enumerate(document):
            if str(item) in OLD_IDS and "party" in path.lower():
                yield f"{path}[{i}]"
            yield from _old_party_ids(item, f"{path}[{i}]")
    elif isinstance(document, str) and PARTY_SHAPED.search(document):
        yield f"{path}: {document}"


def test_round_trip_into_a_federation_of_the_new_party_ids(
    source: tuple[LocalFederation, GeneratedModel], tmp_path_factory: pytest.TempPathFactory
) -> None:
    fed, model = source
    tmp = tmp_path_factory.mktemp("migrate")
    code, answer = flow(fed, "model", "migrate", "-c", write_conf(tmp, "migrate.json", _migrate_conf(model)))
    assert code == 0 and answer["retcode"] == 0, answer
    new_model_id = gen_model_id(NEW)
    version = answer["data"]["model_version"]
    assert answer["data"]["model_id"] == new_model_id == "arbiter-100#guest-99#host-100#model"
    detail = answer["data"]["detail"]["guest"]["9999"]["retmsg"]
    assert detail.startswith(
        "Migrating model successfully. The configuration of model has been modified automatically."
    )
    archives = {
        (role, party): Path(path)
        for role, parties in answer["data"]["archives"].items()
        for party, path in parties.items()
    }
    assert sorted(archives) == [("arbiter", "10000"), ("guest", "9999"), ("host", "10000")]

    for (role, old_party), archive in archives.items():
        new_party = str(NEW[role][0])
        assert archive.name == f"{role}#{new_party}#{new_model_id}_{version}.zip"
        stale = list(_old_party_ids(_buffers_json(archive)))
        assert stale == [], (role, stale)
        with zipfile.ZipFile(archive) as zf, zipfile.ZipFile(model.archives[role, old_party]) as original:
            for name in zf.namelist():
                if "hetero_secure_boost" in name or "binning" in name or "data_transform" in name:
                    continue
                if name.startswith("variables/data/") and "/pipeline/" not in name and name in original.namelist():
                    assert zf.read(name) == original.read(name), name  # buffers without party ids: unchanged

    # the second federation knows only the new party ids
    servings = {p: ServingTestServer.start(tmp / f"serving-{p}") for p in ("99", "100")}
    try:
        parties = {p: {"servings": [s.address]} for p, s in servings.items()}
        with LocalFederation.start(tmp / "new", parties=parties) as new_fed:
            new_archives = {(role, str(NEW[role][0])): archive for (role, _old), archive in archives.items()}
            import_slices(new_fed, new_archives, new_model_id, version, tmp)
            code, deployed = flow(new_fed, "model", "deploy", "--model-id", new_model_id, "--model-version", version)
            assert code == 0, deployed
            child = deployed["data"]["model_version"]
            load = {
                "initiator": {"party_id": "99", "role": "guest"},
                "role": {r: [str(p) for p in ids] for r, ids in NEW.items()},
                "job_parameters": {"model_id": new_model_id, "model_version": child},
            }
            code, loaded = flow(new_fed, "model", "load", "-c", write_conf(tmp, "load.json", load))
            assert code == 0 and loaded["data"]["guest"] == {"99": 0} and loaded["data"]["host"] == {"100": 0}
    finally:
        for server in servings.values():
            server.stop()


def test_a_unify_version_that_exists_is_refused(source: tuple[LocalFederation, GeneratedModel], tmp_path: Path) -> None:
    fed, model = source
    body = _migrate_conf(model, unify_model_version="unified-1")
    code, first = flow(fed, "model", "migrate", "-c", write_conf(tmp_path, "m1.json", body))
    assert code == 0, first
    before = sorted(_migrated_dirs(fed))
    code, again = flow(fed, "model", "migrate", "-c", write_conf(tmp_path, "m2.json", body))
    assert code != 0 and again["retcode"] == 101, again
    assert "Unify model version unified-1 has been occupied" in json.dumps(again), again
    assert sorted(_migrated_dirs(fed)) == before
