"""A version's state on a real federation (coordinator, agents, a FATE-Serving test server per party): deployed,
loaded, bound, then back through unbind and unload; a load that one party refuses (and is rolled back) leaves it
deployed. The state is what ListModelVersions answers and filters on."""

from __future__ import annotations

from pathlib import Path

from client.sdk import RegistryClient
from fate_registry.v1 import registry_pb2 as pb
from tests.conftest import generate_model
from tests.fate_http import call, import_archive
from tests.support.federation import LocalFederation
from tests.support.serving import Faults
from tests.support.serving_process import ServingTestServer

ROLES = {"guest": [9999], "host": [10000], "arbiter": [10000]}


def _state(client: RegistryClient, model_id: str, version: str) -> str:
    """The version's state as listed, checked against the state filter (it lists the version, and only there)."""
    listed = client.list_model_versions(pb.ListModelVersionsRequest(model_id=model_id)).versions
    state = next(v.state for v in listed if v.model_version == version)
    for other in ("parent", "deployed", "loaded", "bound"):
        among = client.list_model_versions(pb.ListModelVersionsRequest(model_id=model_id, state=other)).versions
        assert (version in [v.model_version for v in among]) == (other == state), (other, state)
    return state


def test_deployed_loaded_bound_then_unbound_and_unloaded(
    serving_federation: LocalFederation, servings: dict[str, ServingTestServer], tmp_path: Path
) -> None:
    fed = serving_federation
    model = generate_model(tmp_path / "model", checkpoints=1)
    for (role, party), archive in model.archives.items():
        fields = {"role": role, "party_id": party, "model_id": model.model_id, "model_version": model.version}
        assert import_archive(fed.http_address, fields, archive).json()["retcode"] == 0
    ref = {"model_id": model.model_id, "model_version": model.version}
    deployed = call(fed.http_address, "/v1/model/deploy", {**ref, "cpn_list": ["data_transform_0", "hetero_lr_0"]})
    child = deployed.json()["data"]["model_version"]
    published = {
        "initiator": {"role": "guest", "party_id": 9999},
        "role": ROLES,
        "job_parameters": {"model_id": model.model_id, "model_version": child},
    }
    with RegistryClient(fed.address) as client:
        assert (_state(client, model.model_id, model.version), _state(client, model.model_id, child)) == (
            "parent",
            "deployed",
        )
        servings["10000"].set_control(Faults(fail_load=123, fail_load_message="model init failed"))
        try:
            refused = call(fed.http_address, "/v1/model/load", published).json()
        finally:
            servings["10000"].clear_control()
        assert refused["retcode"] != 0, refused
        assert _state(client, model.model_id, child) == "deployed"  # the guest's load was rolled back
        assert call(fed.http_address, "/v1/model/load", published).json()["retcode"] == 0
        assert _state(client, model.model_id, child) == "loaded"
        bound = call(fed.http_address, "/v1/model/bind", {**published, "service_id": "svc-state"}).json()
        assert bound["retcode"] == 0, bound
        assert _state(client, model.model_id, child) == "bound"
        guest = client.list_model_versions(pb.ListModelVersionsRequest(party_id="9999", role="guest", state="bound"))
        assert [v.model_version for v in guest.versions] == [child]
        unbound = client.unbind_model(
            pb.UnbindModelRequest(**ref | {"model_version": child}, service_ids=["svc-state"])
        )
        assert [r.retcode for r in unbound.results] == [0]
        assert _state(client, model.model_id, child) == "loaded"
        unloaded = client.unload_model(pb.UnloadModelRequest(model_id=model.model_id, model_version=child))
        assert [r.retcode for r in unloaded.results] == [0, 0]
        assert _state(client, model.model_id, child) == "deployed"
        assert _state(client, model.model_id, model.version) == "parent"
