"""The InferenceService bodies homo-deploy builds, against KServe's published CRD schema.

The schema is the subset of KServe's CRD kept in ``tests/support/data`` (its header says
which file, commit and parts); the fake Kubernetes API server validates with the same validator.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fate_registry.errors import RegistryError
from party_agent.homo_convert.frameworks import ALIASES
from party_agent.homo_deploy.frameworks import FRAMEWORKS, framework_for
from party_agent.homo_deploy.inference_service import ServiceSpec, inference_service
from party_agent.homo_deploy.params import DeploymentParameters, Flavour
from tests.support.kube_api import inference_service_validator

VALIDATOR = inference_service_validator()


def _body(flavour: Flavour, framework: str, protocol: str = "v1") -> dict[str, Any]:
    spec = ServiceSpec(
        flavour, "svc", "ns", FRAMEWORKS[framework], "s3://fate-models/p/v/svc", protocol, "guest#9999#m", "2022"
    )
    return inference_service(spec)


def _errors(body: dict[str, Any]) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(body)]


@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_every_body_we_build_is_valid(flavour: Flavour, framework: str) -> None:
    body = _body(flavour, framework)
    assert _errors(body) == []
    assert body["apiVersion"] == f"{flavour.value}/v1beta1"
    predictor = body["spec"]["predictor"]
    if flavour is Flavour.KSERVE:
        assert predictor["model"]["modelFormat"] == {"name": FRAMEWORKS[framework].model_format}
    else:
        assert list(predictor) == [FRAMEWORKS[framework].model_format]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b["spec"]["predictor"]["model"].update(storageURI="s3://x"), "'storageURI' was unexpected"),
        (lambda b: b["spec"]["predictor"]["model"]["modelFormat"].pop("name"), "'name' is a required property"),
        (lambda b: b["spec"]["predictor"]["model"].update(protocolVersion=2), "2 is not of type 'string'"),
        (lambda b: b["spec"].pop("predictor"), "'predictor' is a required property"),
        (lambda b: b["spec"]["predictor"].update(sklaern={}), "'sklaern' was unexpected"),
    ],
)
def test_the_schema_rejects_what_the_api_server_would(damage: Any, message: str) -> None:
    body = copy.deepcopy(_body(Flavour.KSERVE, "sklearn"))
    damage(body)
    assert any(message in e for e in _errors(body)), _errors(body)


def test_sklearn_on_kfserving_is_fates_own_server_for_v1_and_the_stock_one_for_v2() -> None:
    v1 = _body(Flavour.KFSERVING, "sklearn")["spec"]["predictor"]["sklearn"]
    v2 = _body(Flavour.KFSERVING, "sklearn", "v2")["spec"]["predictor"]["sklearn"]
    assert v1["image"] == "federatedai/sklearnserver:v0.6.1-0.24.2" and v1["protocolVersion"] == "v1"
    assert "image" not in v2 and v2["protocolVersion"] == "v2"


def test_frameworks_follow_fates_defaults_and_aliases() -> None:
    assert framework_for("HomoLR", "").name == "sklearn"
    assert framework_for("HomoNN", "").name == "pytorch"
    assert framework_for("HomoSecureboost", "").name == "lightgbm"  # FATE's alias, matched case-insensitively
    assert {alias: framework_for("HomoLR", alias).name for alias in ALIASES} == ALIASES
    with pytest.raises(RegistryError, match="framework_name 'caffe' is not supported"):
        framework_for("HomoLR", "caffe")


def test_deployment_parameters_never_show_their_secrets() -> None:
    parameters = DeploymentParameters.parse(
        '{"config_file_content": "token: kube-secret", "model_storage_parameters": '
        '{"endpoint": "minio:9000", "access_key": "ak", "secret_key": "s3-secret", "secure": false}}'
    )
    assert parameters.storage.bucket == "fate-models" and parameters.protocol_version == "v1"
    assert "kube-secret" not in repr(parameters) and "s3-secret" not in repr(parameters)
