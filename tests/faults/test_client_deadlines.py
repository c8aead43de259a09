"""The SDK's deadlines: a call that rewrites whole models is waited for as long as the coordinator gives it.

The host stops at ``agent.prepare.built`` (a fault point), holding a deploy in prepare. A short call
to the held host ends at the SDK's short deadline, while the deploy, sent before it, is waited for
and answered with its outcome once the host resumes. A client that gives a deploy no longer than a
short call is told the operation may still finish, and the operation log shows that it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError
from fate_registry.faultpoints import ENV
from fate_registry.v1 import registry_pb2 as pb
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import PARTY_OF, ROLES, WAIT, import_everywhere
from tests.support.cluster import Cluster, agent_name, wait_until

SHORT = 0.5  # the SDK's deadline for short calls here
HOST = agent_name(PARTY_OF["host"])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Guest 9999, host 10000, arbiter 10001, each party given 30 s to prepare a deploy."""
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    with Cluster.start(tmp_path / "cluster", parties, {"deploy_timeout": 30, "call_timeout": 10}) as started:
        yield started


@pytest.fixture
def parent(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    """A model imported on every party; the host restarted to stop in its next deploy's prepare."""
    model = import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))
    cluster.restart(HOST, {ENV: "agent.prepare.built"})
    return model


def test_a_deploy_longer_than_the_short_deadline_is_answered_with_its_outcome(
    cluster: Cluster, parent: GeneratedModel
) -> None:
    request = pb.DeployModelRequest(model_id=parent.model_id, model_version=parent.version)
    # model info with ``detail`` asks the host's agent itself: a short call that reaches the held host
    detail = pb.GetModelInfoRequest(
        model_id=parent.model_id, model_version=parent.version, party_id=PARTY_OF["host"], detail=True
    )
    with RegistryClient(cluster.address, timeout=SHORT) as client, ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(client.deploy_model, request)
        cluster.wait_stopped(HOST)
        try:  # sent after the deploy, the short call ends at the short deadline...
            with pytest.raises(RegistryError) as refused:
                client.get_model_info(detail)
        finally:
            cluster.resume(HOST)
        answer = running.result(timeout=WAIT)  # ...which the deploy has outlived: it is answered all the same
        info = client.get_model_info(
            pb.GetModelInfoRequest(model_id=parent.model_id, model_version=answer.model_version)
        )
    assert refused.value.reason is Reason.DEADLINE_EXCEEDED, refused.value
    assert answer.model_version and [r.retcode for r in answer.results] == [0, 0, 0], answer
    assert {m.party_id for m in info.models} == set(PARTY_OF.values())


def test_a_long_call_past_its_own_deadline_says_the_operation_may_still_finish(
    cluster: Cluster, parent: GeneratedModel
) -> None:
    request = pb.DeployModelRequest(model_id=parent.model_id, model_version=parent.version, request_id="slow-1")
    with RegistryClient(cluster.address, timeout=SHORT, long_timeout=SHORT) as client:
        try:
            with pytest.raises(RegistryError) as gave_up:
                client.deploy_model(request)
        finally:
            cluster.wait_stopped(HOST)  # at the fault point: the deploy waits there, not for the client
            cluster.resume(HOST)
        # as the message says: the deploy goes on at the coordinator and its outcome is in the operation log
        logged = wait_until(
            lambda: [
                op
                for op in client.list_operations(pb.ListOperationsRequest(model_id=parent.model_id)).operations
                if op.operation_id == "slow-1" and op.status == "success"
            ],
            WAIT,
            "the deploy finished after the client gave up",
        )
    assert gave_up.value.reason is Reason.DEADLINE_EXCEEDED
    assert "may still finish there: flow operation list shows how it ended" in gave_up.value.message
    assert [r.retcode for r in logged[0].results] == [0, 0, 0]
