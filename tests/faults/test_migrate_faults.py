"""Migrate is all or nothing under faults (issue 4), on separately started processes.

A coordinator and three agents (guest 9999, host 10000, arbiter 10001), each its own process
(:class:`Cluster`), with a generated HeteroSecureBoost model imported on every party. Migrate is
two-phase like deploy: every executing party prepares its rewritten slice and archive under
``model_local_cache/.staging/prep-<operation>-<role>/``; only a commit registers the slice under
the new party model id and moves the archive to ``<party data_dir>/migrated/``.

One agent is killed (SIGKILL) before the migrate, or while the others have prepared. After the
fault every party's disk is checked: no ``<role>#<new party>#<new model id>/`` directory in its
model_local_cache, no file in its ``migrated/`` directory, no ``.staging/prep-*`` once the abort
is confirmed; the imported model stays as it was. The operation log holds the migrate as
"aborting" while the dead party cannot confirm the abort, and "failed" once it is back and the
coordinator's maintenance loop (every second here) has resent it. Then the same migrate
succeeds: every party has exactly one migrated version and one archive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import (
    MULTI_PARTY_FAILED,
    NEW_MODEL_ID,
    NEW_PARTY_OF,
    PARTY_OF,
    ROLES,
    WAIT,
    all_prepared,
    assert_consistent,
    assert_results_as_answered,
    assert_rolled_back_answer,
    import_everywhere,
    operations,
    prepared_dirs,
    write_migrate_conf,
)
from tests.flow_cli import answer_of, flow, flow_in_background
from tests.support.cluster import Cluster, agent_name, wait_until

DEAD_REASONS = {"PARTY_UNAVAILABLE", "DEADLINE_EXCEEDED"}


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def source(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    """A HeteroSecureBoost + DataTransform + FeatureBinning model imported on every party."""
    return import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES, algorithm="hetero_secureboost"))


@pytest.fixture
def migrate_conf(source: GeneratedModel, tmp_path: Path) -> Path:
    """FATE's migrate conf: every old party executes, guest 99 initiates the new federation."""
    return write_migrate_conf(source, tmp_path / "migrate.json")


# -- driving `flow` ---------------------------------------------------------------------------------


def migrate(cluster: Cluster, conf: Path) -> tuple[int, dict[str, Any]]:
    return flow(cluster, "model", "migrate", "-c", str(conf))


def migrate_operations(cluster: Cluster, model: GeneratedModel) -> list[dict[str, Any]]:
    """The migrates of ``model`` in the coordinator's operation log, newest first."""
    return operations(cluster, model, "migrate")


# -- every party's state ----------------------------------------------------------------------------


def party_dir(cluster: Cluster, party: str) -> Path:
    return cluster.data_dir / "parties" / party


def migrated_versions(cluster: Cluster, role: str) -> set[str]:
    """The version directories under model_local_cache/<role>#<new party>#<new model id>/ of the role's party."""
    directory = cluster.model_cache(PARTY_OF[role]) / f"{role}#{NEW_PARTY_OF[role]}#{NEW_MODEL_ID}"
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def migrated_dir_exists(cluster: Cluster, role: str) -> bool:
    return (cluster.model_cache(PARTY_OF[role]) / f"{role}#{NEW_PARTY_OF[role]}#{NEW_MODEL_ID}").exists()


def archives(cluster: Cluster, party: str) -> list[str]:
    """Every file in the party's <data_dir>/migrated/ (archives, and anything half-written)."""
    directory = party_dir(cluster, party) / "migrated"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def source_versions(cluster: Cluster, model: GeneratedModel, role: str) -> set[str]:
    directory = cluster.model_cache(PARTY_OF[role]) / f"{role}#{PARTY_OF[role]}#{model.model_id}"
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def assert_nothing_migrated(cluster: Cluster, model: GeneratedModel, staged_allowed: frozenset[str]) -> None:
    """No party has a migrated version or archive; the source is untouched; nothing is staged except
    on the parties in ``staged_allowed`` (a dead party's disk can only be cleaned once it is back)."""
    assert_consistent(cluster, [model.model_id, NEW_MODEL_ID], prepared_allowed=staged_allowed)
    for role, party in PARTY_OF.items():
        assert not migrated_dir_exists(cluster, role), (role, party, migrated_versions(cluster, role))
        assert archives(cluster, party) == [], (role, party)
        assert source_versions(cluster, model, role) == {model.version}, (role, party)
        if party not in staged_allowed:
            assert prepared_dirs(cluster, party) == [], (role, party)


def assert_migrate_rolled_back(answer: dict[str, Any], failed_role: str) -> None:
    """Rolled back everywhere (the dead party's connection error, every other party aborted); no archive."""
    assert_rolled_back_answer(answer, failed_role, DEAD_REASONS)
    assert "archives" not in answer["data"] and answer["data"]["model_id"] == NEW_MODEL_ID, answer


def assert_logged(operation: dict[str, Any], answer: dict[str, Any], status: str) -> None:
    """The operation log holds the migrate with the status and the per-party results the caller got."""
    assert operation["operation"] == "migrate", operation
    assert operation["status"] == status and operation["retcode"] == MULTI_PARTY_FAILED, operation
    assert_results_as_answered(operation, answer)
    if status == "failed":
        assert operation["end_date"], operation


def assert_migrated_everywhere(cluster: Cluster, answer: dict[str, Any]) -> None:
    """Every party has exactly one migrated version and exactly one archive, where the answer says; the
    catalog lists every migrated slice under its new party id (and nothing else of the new model)."""
    states = assert_consistent(cluster, [NEW_MODEL_ID])
    assert all(len(state.versions(NEW_MODEL_ID)) == 1 for state in states.values()), states
    assert answer["retcode"] == 0, answer
    data = answer["data"]
    version = data["model_version"]
    assert data["model_id"] == NEW_MODEL_ID, answer
    for role, party in PARTY_OF.items():
        new_pmid = f"{role}#{NEW_PARTY_OF[role]}#{NEW_MODEL_ID}"
        assert data[role] == {party: 0}, answer
        assert migrated_versions(cluster, role) == {version}, (role, party)
        assert archives(cluster, party) == [f"{new_pmid}_{version}.zip"], (role, party)
        expected = party_dir(cluster, party) / "migrated" / f"{new_pmid}_{version}.zip"
        assert Path(data["archives"][role][party]) == expected, answer
        assert prepared_dirs(cluster, party) == [], (role, party)


# -- an agent killed --------------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "victim"), [("before", "host"), ("during", "arbiter")])
def test_agent_killed_migrate_leaves_no_migrated_version_then_succeeds_after_restart(
    cluster: Cluster, source: GeneratedModel, migrate_conf: Path, when: str, victim: str
) -> None:
    """``before``: the victim is dead when the migrate starts. ``during``: it is stopped so its prepare
    hangs, killed once every other party has prepared (its slice and archive staged)."""
    name = agent_name(PARTY_OF[victim])
    others = [role for role in PARTY_OF if role != victim]
    if when == "before":
        cluster.kill(name)
        code, answer = migrate(cluster, migrate_conf)
    else:
        cluster.pause(name)
        with flow_in_background(cluster, "model", "migrate", "-c", str(migrate_conf)) as running:
            prepared = wait_until(lambda: all_prepared(cluster, *others), WAIT, f"{' and '.join(others)} prepared")
            for marker in prepared:  # what they prepared: the new slice and its archive, staged only
                assert (marker.parent / "archive.zip").is_file(), marker
                assert (marker.parent / "model").is_dir(), marker
            assert_nothing_migrated(cluster, source, staged_allowed=frozenset(PARTY_OF.values()))
            cluster.kill(name)
            code, answer = answer_of(running)

    assert code != 0
    assert_migrate_rolled_back(answer, victim)
    failed_version = answer["data"]["model_version"]
    assert failed_version
    # every live party confirmed the abort: nothing staged there; the dead party never prepared
    assert_nothing_migrated(cluster, source, staged_allowed=frozenset())
    (operation,) = migrate_operations(cluster, source)
    assert_logged(operation, answer, "aborting")  # the dead party cannot confirm the abort

    cluster.restart(name)  # on its old port: the maintenance loop reaches it again
    wait_until(lambda: migrate_operations(cluster, source)[0]["status"] == "failed", WAIT, "the abort confirmed by all")
    (operation,) = migrate_operations(cluster, source)
    assert_logged(operation, answer, "failed")
    assert_nothing_migrated(cluster, source, staged_allowed=frozenset())  # the restarted party too

    code, again = migrate(cluster, migrate_conf)
    assert code == 0, again
    assert again["data"]["model_version"] != failed_version, again
    assert_migrated_everywhere(cluster, again)
    latest, first = migrate_operations(cluster, source)
    assert latest["status"] == "success" and latest["retcode"] == 0, latest
    assert first["operation_id"] == operation["operation_id"] and first["status"] == "failed", first
