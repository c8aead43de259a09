"""Every party's state after a fault, read where it lives, and the checks every fault test makes.

A party's truth is three things that must agree: the version directories under its
``model_local_cache``, the rows of its agent's metadata database (each with the manifest of its
files) and the coordinator's catalog rows (each with the party's manifest digest). After any fault,
once the operation is resolved: no journalled publish is left unfinished, no staging or trash
directory is left behind (a version prepared for a two-phase operation waits there only while the
coordinator has not decided), every directory has its row and every row its directory, every file
matches its manifest, and the catalog lists exactly the versions the parties hold.

The databases are read with the product's own store classes, on the files the processes use
(SQLite in WAL mode: a reader beside the writer is safe).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.sdk import RegistryClient
from fate_registry.config import DatabaseConf
from fate_registry.identity import gen_model_id
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.lifecycle import ABORTED_PREFIX, PREPARED_MARKER, STAGING, TRASH
from party_agent.manifest import scan
from party_agent.metadata import MetadataStore
from registry_server.catalog import Catalog, ModelFilter
from registry_server.two_phase import ABORT_NOT_CONFIRMED
from tests.conftest import GeneratedModel
from tests.flow_cli import flow
from tests.support.cluster import Cluster
from tests.support.started import STARTED, StartedFederation

PARTY_OF = {"guest": "9999", "host": "10000", "arbiter": "10001"}
ROLES = {role: [int(party)] for role, party in PARTY_OF.items()}
NEW_PARTY_OF = {"guest": "99", "host": "100", "arbiter": "101"}  # where a migrate takes the model
NEW_ROLES = {role: [int(party)] for role, party in NEW_PARTY_OF.items()}
NEW_MODEL_ID = gen_model_id(NEW_ROLES)
DEPLOY_TIMEOUT = 3.0  # each party's deadline for prepare, commit and abort
CALL_TIMEOUT = 5.0
# maintenance every second: a decision a party did not confirm is resent within the test's time
TIMEOUTS = {"deploy_timeout": DEPLOY_TIMEOUT, "call_timeout": CALL_TIMEOUT, "maintenance_period": 1}
WAIT = 30.0  # bound of every wait for a state to appear
MULTI_PARTY_FAILED = 101
CONNECTION_ERROR = 105  # a party that did not answer (unreachable or past its deadline)
FEDERATED_ERROR = 104  # a party that prepared and was rolled back because another failed

Version = tuple[str, str]  # (party model id, model version)


# -- driving the federation -------------------------------------------------------------------------


def import_everywhere(cluster: Cluster, model: GeneratedModel) -> GeneratedModel:
    """Import every party's slice of ``model`` on its party (the parent of deploys and migrates)."""
    with RegistryClient(cluster.address) as client:
        for (role, party), archive in model.archives.items():
            target = PartyModelRef(role=role, party_id=party, model_id=model.model_id, model_version=model.version)
            client.import_model(archive, target)
    return model


def write_migrate_conf(model: GeneratedModel, path: Path) -> Path:
    """FATE's migrate conf: every old party executes, guest 99 initiates the new federation."""
    body = {
        "job_parameters": {"federated_mode": "MULTIPLE"},
        "role": ROLES,
        "execute_party": ROLES,
        "migrate_initiator": {"role": "guest", "party_id": int(NEW_PARTY_OF["guest"])},
        "migrate_role": NEW_ROLES,
        "model_id": model.model_id,
        "model_version": model.version,
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def operations(cluster: Cluster, model: GeneratedModel, operation: str) -> list[dict[str, Any]]:
    """The operations of ``model`` of one kind in the coordinator's operation log, newest first."""
    args = ["--model-id", model.model_id, "--model-version", model.version, "--operation", operation]
    code, answer = flow(cluster, "operation", "list", *args)
    assert code == 0, answer
    found: list[dict[str, Any]] = answer["data"]
    return found


# -- what the user saw ------------------------------------------------------------------------------


def assert_rolled_back_answer(answer: dict[str, Any], failed_role: str, reasons: set[str]) -> None:
    """Overall 101; the failed party's own error (one of ``reasons``), naming it; every other party rolled back."""
    assert answer["retcode"] == MULTI_PARTY_FAILED and answer["retmsg"] == "failed", answer
    data, detail = answer["data"], answer["data"]["detail"]
    for role, party in PARTY_OF.items():
        if role == failed_role:
            assert data[role] == {party: CONNECTION_ERROR}, answer
            assert detail[role][party]["reason"] in reasons, answer
            assert f"party {party}" in detail[role][party]["retmsg"], answer
        else:
            assert data[role] == {party: FEDERATED_ERROR}, answer
            assert detail[role][party]["reason"] == "ABORTED", answer
            assert "rolled back" in detail[role][party]["retmsg"], answer


def assert_results_as_answered(operation: dict[str, Any], answer: dict[str, Any]) -> None:
    """The operation log holds the per-party results the caller was given; once an abort a party could not
    be sent is confirmed (status "failed"), that party's result no longer says it is pending."""
    parties = operation["parties"]
    for role, party in PARTY_OF.items():
        assert parties[role] == answer["data"][role], operation
        given = dict(answer["data"]["detail"][role][party])
        if operation["status"] == "failed":
            given["retmsg"] = given["retmsg"].removesuffix(ABORT_NOT_CONFIRMED)
        assert parties["detail"][role][party] == given, operation


# -- staging ----------------------------------------------------------------------------------------


def prepared_dirs(cluster: Cluster, party: str) -> list[str]:
    return sorted(p.name for p in (cluster.model_cache(party) / STAGING).glob("prep-*"))


def has_prepared(cluster: Cluster, role: str) -> Path | None:
    """The prepared.json of a two-phase operation this role's party has prepared, if any."""
    found = sorted((cluster.model_cache(PARTY_OF[role]) / STAGING).glob(f"prep-*-{role}/{PREPARED_MARKER}"))
    return found[0] if found else None


def all_prepared(cluster: Cluster, *roles: str) -> list[Path]:
    """The prepared.json of each role, once every one of them has prepared (else empty)."""
    found = [has_prepared(cluster, role) for role in roles]
    return [p for p in found if p is not None] if all(found) else []


# -- one party ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyState:
    party: str
    on_disk: dict[Version, str]  # every version directory -> the digest of the files it holds now
    rows: dict[Version, str]  # every row of the agent's metadata database -> the digest of its manifest
    pending: int  # publishes journalled and not finished
    leftovers: list[str]  # what is in staging or trash besides abort markers and prepared versions
    prepared: list[str]  # versions prepared for a two-phase operation, awaiting the coordinator

    def versions(self, model_id: str) -> set[Version]:
        return {v for v in self.on_disk if v[0].endswith(f"#{model_id}")}


def party_state(cluster: StartedFederation, party: str) -> PartyState:
    cache = cluster.model_cache(party)
    on_disk = {
        (pmid.name, version.name): scan(version).digest
        for pmid in sorted(cache.iterdir())
        if pmid.is_dir() and pmid.name not in (STAGING, TRASH)
        for version in sorted(pmid.iterdir())
    }
    leftovers, prepared = [], []
    for sub in (STAGING, TRASH):
        for entry in sorted((cache / sub).iterdir()) if (cache / sub).is_dir() else []:
            if sub == STAGING and entry.name.startswith(ABORTED_PREFIX):
                continue
            if sub == STAGING and (entry / PREPARED_MARKER).exists():
                prepared.append(entry.name)
            else:
                leftovers.append(f"{sub}/{entry.name}")
    store = MetadataStore(DatabaseConf(path=cluster.data_dir / "parties" / party / "agent.db"))
    try:
        rows = {
            (f"{r.role}#{r.party_id}#{r.model_id}", r.model_version): r.manifest.digest for r in store.all_records()
        }
        pending = len(store.pending())
    finally:
        store.close()
    return PartyState(party, on_disk, rows, pending, leftovers, prepared)


# -- the federation -------------------------------------------------------------------------------


def catalog_rows(cluster: StartedFederation, model_ids: Iterable[str]) -> dict[tuple[str, Version], str]:
    """(agent's party, (party model id, version)) -> the digest the catalog records, for the given models;
    a migrated slice is held by the agent of the party that prepared it (the catalog's site of its party)."""
    catalog = Catalog(DatabaseConf(path=cluster.data_dir / "coordinator" / "registry.db"))
    try:
        return {
            (
                catalog.site_of(row.party_id) or row.party_id,
                (f"{row.role}#{row.party_id}#{row.model_id}", row.model_version),
            ): row.manifest_digest
            for model_id in model_ids
            for row in catalog.find(ModelFilter(model_id=model_id))
        }
    finally:
        catalog.close()


def assert_consistent(
    cluster: StartedFederation, model_ids: Iterable[str], prepared_allowed: Iterable[str] = ()
) -> dict[str, PartyState]:
    """Nothing lost, nothing half-written, every party's files, rows and catalog rows agree.

    ``model_ids`` are the models to compare (a migrated model's slices are catalogued under their new
    party ids and held by the agents that prepared them). A prepared version may
    wait in staging only on the parties in ``prepared_allowed``. Returns each party's state.
    """
    model_ids = list(model_ids)
    states = {party: party_state(cluster, party) for party in cluster.parties}
    for party, state in states.items():
        assert state.pending == 0, (party, "a publish was left half-done", state)
        assert state.leftovers == [], (party, "staging or trash left behind", state.leftovers)
        if party not in prepared_allowed:
            assert state.prepared == [], (party, "a prepared version nobody decided", state.prepared)
        assert set(state.on_disk) == set(state.rows), (party, "directories and rows differ", state)
        for version, digest in state.on_disk.items():
            assert digest == state.rows[version], (party, version, "files do not match their manifest")
    catalog = catalog_rows(cluster, model_ids)
    held = {(party, v): s.on_disk[v] for party, s in states.items() for m in model_ids for v in s.versions(m)}
    assert set(catalog) == set(held), ("catalog and parties differ", sorted(catalog), sorted(held))
    for key, digest in catalog.items():
        assert not digest or digest == held[key], (key, "the catalog's digest is not the party's")
    return states


def versions_of(states: dict[str, PartyState], model_id: str) -> dict[str, set[str]]:
    """Each party's versions of ``model_id``."""
    return {party: {v for _, v in state.versions(model_id)} for party, state in states.items()}


def all_model_ids(federation: StartedFederation) -> set[str]:
    """Every model id the catalog lists or a party's cache holds."""
    held = {
        pmid.name.split("#", 2)[-1]
        for party in federation.parties
        if federation.model_cache(party).is_dir()
        for pmid in federation.model_cache(party).iterdir()
        if pmid.is_dir() and pmid.name not in (STAGING, TRASH)
    }
    catalog = Catalog(DatabaseConf(path=federation.data_dir / "coordinator" / "registry.db"))
    try:
        return held | {row.model_id for row in catalog.find(ModelFilter())}
    finally:
        catalog.close()


CHECKED = ("tests/e2e/", "tests/faults/")
"""The suites whose federations the check after each test reads (by the test that started them)."""


def assert_every_started_federation_consistent() -> None:
    """The state check on every federation the tests started (a fixture runs it after each test of
    tests/e2e and tests/faults): its catalog lists exactly what its parties hold, nothing is half-done.
    Those that have stopped are forgotten once read."""
    for entry in list(STARTED):
        federation, started_by = entry
        if not federation.running():  # read one last time, whatever the outcome, then forgotten
            STARTED.remove(entry)
        if not started_by.startswith(CHECKED):  # another suite's (an integration test may leave it half-done)
            continue
        files = [federation.data_dir / "coordinator" / "registry.db"]
        files += [federation.data_dir / "parties" / party / "agent.db" for party in federation.parties]
        if all(f.exists() for f in files):  # SQLite databases where this check reads them (not a MySQL catalog)
            assert_consistent(federation, sorted(all_model_ids(federation)))
