"""`flow model homo-deploy -c` through the real coordinator and agent, to KServe.

The Kubernetes API server here is a FAKE (``tests.support.kube_api``): no Kubernetes
cluster, let alone KServe, can run on our machines. It serves the REST paths the official client
uses over real HTTP and validates every InferenceService against KServe's published CRD schema.
The object store is real: the COS-compatible S3 server of the storage tests (moto behind the COS
shim, signatures checked) and, for FATE's ``minio`` storage type, moto's S3 server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fate_registry.fate_models import build_fate_archive
from fate_registry.identity import party_model_id
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow, write_conf
from tests.support.federation import LocalFederation
from tests.support.kube_api import FakeKubeApi, fake_kube_api
from tests.support.services import CosEmulator, S3Server, cos_emulator, free_port, s3_server

BUCKET = "fate-models"
CONVERTED = "variables/data/homo_lr_0/model/converted_model"
NAMESPACE = "fate-serving"


@pytest.fixture(scope="module")
def cos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosEmulator]:
    with cos_emulator(tmp_path_factory.mktemp("cos"), bucket=BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with fake_kube_api() as api:
        yield api


def _imported_guest(
    federation: LocalFederation, tmp_path: Path, algorithm: str = "homo_lr", converted: dict[str, bytes] | None = None
) -> GeneratedModel:
    """A generated model whose guest (9999) slice, with ``converted`` files written in, is imported."""
    model = generate_model(tmp_path, algorithm=algorithm)
    version_dir = model.version_dirs[("guest", "9999")]
    for name, data in (converted or {}).items():
        target = version_dir / CONVERTED / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    archive = build_fate_archive(version_dir, tmp_path / "guest", "guest", 9999, model.model_id, model.version)
    conf = {
        "role": "guest",
        "party_id": 9999,
        "model_id": model.model_id,
        "model_version": model.version,
        "file": str(archive),
    }
    code, answer = flow(federation, "model", "import", "-c", write_conf(tmp_path, "import.json", conf))
    assert code == 0 and answer["retcode"] == 0, answer
    return model


def _deploy_conf(
    tmp_path: Path, model: GeneratedModel, kube: FakeKubeApi, storage: dict[str, Any], **overrides: Any
) -> str:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(kube.kubeconfig())
    parameters = {"namespace": NAMESPACE, "config_file": str(kubeconfig), **storage}
    parameters.update(overrides.pop("deployment_parameters", {}))
    conf = {
        "service_id": "homo-lr-guest",
        "model_id": model.model_id,
        "model_version": model.version,
        "role": "guest",
        "party_id": 9999,
        "component_name": "homo_lr_0",
        "deployment_type": "kserve",
        "deployment_parameters": parameters,
        **overrides,
    }
    return write_conf(tmp_path, "homo_deploy.json", conf)


def _cos_storage(cos: CosEmulator) -> dict[str, Any]:
    return {"model_storage_type": "tencent_cos", "model_storage_parameters": cos.settings()}


def _prefix(model: GeneratedModel, service_id: str = "homo-lr-guest") -> str:
    return f"{party_model_id('guest', 9999, model.model_id)}/{model.version}/{service_id}".replace("#", "^")


def _cos_objects(cos: CosEmulator, prefix: str) -> dict[str, bytes]:
    client = cos.client()
    listed = client.list_objects(Bucket=BUCKET, Prefix=prefix).get("Contents") or []
    return {
        item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].get_raw_stream().read()
        for item in listed
    }


def test_kserve_deploy_uploads_to_cos_and_creates_a_valid_inference_service(
    federation: LocalFederation, cos: CosEmulator, kube: FakeKubeApi, tmp_path: Path
) -> None:
    joblib = b"sklearn joblib stand-in: the deploy uploads bytes, it does not read them\n" * 50
    model = _imported_guest(federation, tmp_path, converted={"sklearn.joblib": joblib})

    code, answer = flow(
        federation, "model", "homo-deploy", "-c", _deploy_conf(tmp_path, model, kube, _cos_storage(cos))
    )

    assert code == 0 and answer["retcode"] == 0, answer
    assert answer["retmsg"] == "An online serving service is started in the kfserving system."
    prefix = _prefix(model)
    assert _cos_objects(cos, prefix) == {f"{prefix}/model.joblib": joblib}
    stored = kube.inference_service(NAMESPACE, "homo-lr-guest")
    assert stored is not None and answer["data"] == stored
    assert stored["apiVersion"] == "serving.kserve.io/v1beta1"
    assert stored["spec"]["predictor"] == {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"s3://{BUCKET}/{prefix}"}
    }
    annotations = stored["metadata"]["annotations"]
    assert annotations["fate.fedai.org/model_id"] == party_model_id("guest", 9999, model.model_id)
    assert annotations["fate.fedai.org/model_version"] == model.version
    assert len(annotations["fate.fedai.org/uuid"]) == 36
    secret = kube.objects[("v1/secrets", NAMESPACE, "fate-homo-serving-minio-secret")]
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == f"127.0.0.1:{cos.port}"
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "0"
    assert base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == cos.secret_key
    account = kube.objects[("v1/serviceaccounts", NAMESPACE, "default")]
    assert account["secrets"] == [{"name": "fate-homo-serving-minio-secret"}]
    # Neither the kubeconfig's token nor the storage key reaches a log line of the federation.
    logs = "".join(p.read_text(errors="replace") for p in federation.root.rglob("*.log"))
    assert kube.token not in logs and cos.secret_key not in logs


def test_kfserving_spelling_replaces_only_when_asked(
    federation: LocalFederation, s3: S3Server, kube: FakeKubeApi, tmp_path: Path
) -> None:
    """FATE's own conf: deployment_type kfserving, minio storage; a second deploy needs replace."""
    model = _imported_guest(federation, tmp_path, converted={"sklearn.joblib": b"v1 model"})
    storage = {"model_storage_type": "minio", "model_storage_parameters": s3.minio_parameters()}
    conf = _deploy_conf(tmp_path, model, kube, storage, deployment_type="kfserving")

    code, answer = flow(federation, "model", "homo-deploy", "-c", conf)

    assert code == 0 and answer["retcode"] == 0, answer
    prefix = _prefix(model)
    assert s3.objects(BUCKET, prefix) == {f"{prefix}/model.joblib": b"v1 model"}
    first = kube.inference_service(NAMESPACE, "homo-lr-guest", group="serving.kubeflow.org")
    assert first is not None and first["apiVersion"] == "serving.kubeflow.org/v1beta1"
    assert first["spec"]["predictor"] == {
        "sklearn": {
            "storageUri": f"s3://{BUCKET}/{prefix}",
            "protocolVersion": "v1",
            "image": "federatedai/sklearnserver:v0.6.1-0.24.2",
        }
    }
    secret = kube.objects[("v1/secrets", NAMESPACE, "fate-homo-serving-minio-secret")]
    assert secret["metadata"]["annotations"]["serving.kubeflow.org/s3-endpoint"] == s3.endpoint

    s3.delete(BUCKET, f"{prefix}/model.joblib")
    writes = len(kube.writes())
    code, answer = flow(federation, "model", "homo-deploy", "-c", conf)
    assert code == 1 and answer["retcode"] == 100
    assert f"InferenceService {NAMESPACE}/homo-lr-guest already exists" in answer["retmsg"]
    assert len(kube.writes()) == writes and s3.objects(BUCKET, prefix) == {}  # nothing uploaded, nothing written

    replace = _deploy_conf(
        tmp_path, model, kube, storage, deployment_type="kfserving", deployment_parameters={"replace": True}
    )
    code, answer = flow(federation, "model", "homo-deploy", "-c", replace)
    assert code == 0 and answer["retcode"] == 0, answer
    replaced = kube.inference_service(NAMESPACE, "homo-lr-guest", group="serving.kubeflow.org")
    assert replaced is not None and replaced["metadata"]["generation"] == 2
    assert (
        replaced["metadata"]["annotations"]["fate.fedai.org/uuid"]
        != first["metadata"]["annotations"]["fate.fedai.org/uuid"]
    )
    assert s3.objects(BUCKET, prefix) == {f"{prefix}/model.joblib": b"v1 model"}


def test_each_framework_is_uploaded_where_its_model_server_looks(
    federation: LocalFederation, cos: CosEmulator, kube: FakeKubeApi, tmp_path: Path
) -> None:
    """One model holding every converted form; framework_name picks one. No namespace: the kubeconfig's."""
    files = {
        "sklearn.joblib": b"joblib",
        "pytorch.pth": b"state dict",
        "lgb.txt": b"tree\nversion=v3\n",
        "tensorflow_saved_model/saved_model.pb": b"graph",
        "tensorflow_saved_model/variables/variables.index": b"index",
    }
    model = _imported_guest(federation, tmp_path, converted=files)
    expected = {
        "scikit-learn": ("sklearn", {"model.joblib": b"joblib"}),
        "torch": ("pytorch", {"model.pth": b"state dict"}),
        "lightgbm": ("lightgbm", {"model.bst": b"tree\nversion=v3\n"}),
        "tf": ("tensorflow", {"1/saved_model.pb": b"graph", "1/variables/variables.index": b"index"}),
    }
    for framework_name, (model_format, uploaded) in expected.items():
        service = f"homo-{model_format}"
        conf = _deploy_conf(
            tmp_path,
            model,
            kube,
            _cos_storage(cos),
            service_id=service,
            framework_name=framework_name,
            deployment_parameters={"namespace": ""},
        )
        code, answer = flow(federation, "model", "homo-deploy", "-c", conf)
        assert code == 0 and answer["retcode"] == 0, answer
        prefix = _prefix(model, service)
        assert _cos_objects(cos, prefix) == {f"{prefix}/{name}": data for name, data in uploaded.items()}
        stored = kube.inference_service("default", service)
        assert stored is not None and stored["spec"]["predictor"]["model"] == {
            "modelFormat": {"name": model_format},
            "storageUri": f"s3://{BUCKET}/{prefix}",
        }


@pytest.fixture(scope="module")
def converted(federation: LocalFederation, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    """One imported HomoLR guest slice converted to sklearn, shared by the refused deploys (they change nothing)."""
    return _imported_guest(federation, tmp_path_factory.mktemp("converted"), converted={"sklearn.joblib": b"m"})


def _refused(federation: LocalFederation, cos: CosEmulator, kube: FakeKubeApi, conf: str, model: GeneratedModel) -> str:
    """Run the deploy; check it failed with retcode 100 and changed nothing. Its retmsg."""
    code, answer = flow(federation, "model", "homo-deploy", "-c", conf)
    assert code == 1 and answer["retcode"] == 100, answer
    assert "Traceback" not in json.dumps(answer) and kube.token not in json.dumps(answer)
    assert _cos_objects(cos, _prefix(model, "refused")) == {}
    assert kube.writes() == []
    return str(answer["retmsg"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"framework_name": "caffe"}, "framework_name 'caffe' is not supported"),
        ({"framework_name": "lightgbm"}, "converted_model holds no lgb.txt (lightgbm)"),
        ({"deployment_type": "seldon"}, "deployment_type 'seldon' is not supported: use 'kserve' or 'kfserving'"),
        ({"component_name": "no_such_0"}, "does not contain component no_such_0"),
        ({"service_id": "Homo_LR"}, "service_id 'Homo_LR' cannot name an InferenceService"),
        (
            {"deployment_parameters": {"config_file": None}},
            "config_file_content (or config_file, read by the CLI) must hold the kubeconfig",
        ),
        ({"deployment_parameters": {"tls": True}}, "unknown keys deployment_parameters.tls"),
        (
            {"deployment_parameters": {"model_storage_parameters": {"Region": "ap-guangzhou"}}},
            "deployment_parameters.model_storage_parameters (tencent_cos): SecretId is required",
        ),
    ],
)
def test_a_refused_conf_is_a_clear_error_and_changes_nothing(
    federation: LocalFederation,
    cos: CosEmulator,
    kube: FakeKubeApi,
    converted: GeneratedModel,
    tmp_path: Path,
    overrides: dict[str, Any],
    expected: str,
) -> None:
    conf = _deploy_conf(tmp_path, converted, kube, _cos_storage(cos), **{"service_id": "refused", **overrides})
    assert expected in _refused(federation, cos, kube, conf, converted)


@pytest.mark.parametrize("algorithm", ["hetero_lr", "homo_lr"])
def test_a_hetero_or_unconverted_component_is_refused(
    federation: LocalFederation, cos: CosEmulator, kube: FakeKubeApi, tmp_path: Path, algorithm: str
) -> None:
    model = _imported_guest(federation, tmp_path, algorithm=algorithm)
    component = "hetero_lr_0" if algorithm == "hetero_lr" else "homo_lr_0"
    conf = _deploy_conf(tmp_path, model, kube, _cos_storage(cos), service_id="refused", component_name=component)
    message = _refused(federation, cos, kube, conf, model)
    if algorithm == "hetero_lr":
        assert "hetero_lr_0 of model" in message and "is HeteroLR, not a homo (horizontally trained) model" in message
    else:
        assert message.startswith("Component homo_lr_0 in Model guest#9999#") and "isn't converted" in message


def _kubeconfig_with(kube: FakeKubeApi, **user: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(kube.kubeconfig())
    config["users"][0]["user"] = user
    return config


@pytest.mark.parametrize("case", ["exec plugin", "wrong token", "unreachable server"])
def test_a_kubeconfig_that_cannot_serve_changes_nothing(
    federation: LocalFederation,
    cos: CosEmulator,
    kube: FakeKubeApi,
    converted: GeneratedModel,
    tmp_path: Path,
    case: str,
) -> None:
    marker = tmp_path / "exec-ran"
    if case == "exec plugin":  # a kubeconfig from a request must not make the agent run a command
        config = _kubeconfig_with(
            kube, exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "touch", "args": [str(marker)]}
        )
        expected = "user 'fate' uses exec, which would make the agent run a command or read its own files"
    elif case == "wrong token":
        config = _kubeconfig_with(kube, token="not-the-token")
        expected = (
            f"reading InferenceService {NAMESPACE}/refused: the Kubernetes API server at {kube.server} answered 401"
        )
    else:
        config = yaml.safe_load(kube.kubeconfig())
        config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"
        expected = "cannot reach the Kubernetes API server at http://127.0.0.1:"
    conf = _deploy_conf(tmp_path, converted, kube, _cos_storage(cos), service_id="refused")
    (tmp_path / "kubeconfig.yaml").write_text(yaml.safe_dump(config))
    message = _refused(federation, cos, kube, conf, converted)
    assert expected in message and "not-the-token" not in message
    assert not marker.exists()


def test_a_converted_file_that_no_longer_matches_the_manifest_is_not_uploaded(
    federation: LocalFederation, cos: CosEmulator, kube: FakeKubeApi, tmp_path: Path
) -> None:
    model = _imported_guest(federation, tmp_path, converted={"sklearn.joblib": b"the converted model"})
    pmid = party_model_id("guest", 9999, model.model_id)
    stored = federation.model_cache("9999") / pmid / model.version / CONVERTED / "sklearn.joblib"
    stored.write_bytes(b"the converted model, altered")
    try:
        conf = _deploy_conf(tmp_path, model, kube, _cos_storage(cos), service_id="refused")
        code, answer = flow(federation, "model", "homo-deploy", "-c", conf)
    finally:  # the damage is this test's own: undone, so the check after each test sees the party whole
        stored.write_bytes(b"the converted model")
    assert code == 1 and answer["retcode"] == 102, answer
    assert answer["retmsg"] == f"{CONVERTED}/sklearn.joblib does not match the model's manifest"
    assert _cos_objects(cos, _prefix(model, "refused")) == {} and kube.writes() == []
