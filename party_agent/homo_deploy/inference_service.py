"""The InferenceService body and the storage credentials secret, as plain JSON-ready dicts.

KServe (``serving.kserve.io/v1beta1``) gets the current predictor form, ``predictor.model`` with a
``modelFormat``; KFServing (``serving.kubeflow.org/v1beta1``, what FATE's kfserving 0.5.1 client
creates) gets the framework key FATE sets (``predictor.sklearn``, ``.lightgbm``, ``.pytorch``,
``.tensorflow``), with FATE's own sklearnserver image for the sklearn v1 protocol.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from party_agent.homo_deploy.frameworks import Framework
from party_agent.homo_deploy.params import Flavour

KIND = "InferenceService"
PLURAL = "inferenceservices"
ANNOTATION_PREFIX = "fate.fedai.org/"
# KFServing's sklearnserver pins scikit-learn 0.20.3; FATE serves its v1 models with this one.
FATE_SKLEARN_IMAGE = "federatedai/sklearnserver:v0.6.1-0.24.2"
STORAGE_SECRET = "fate-homo-serving-minio-secret"
DEFAULT_SERVICE_ACCOUNT = "default"


@dataclass(frozen=True)
class ServiceSpec:
    """What an InferenceService body is made of: the flavour, its name and namespace, and the model to serve."""

    flavour: Flavour
    name: str
    namespace: str
    framework: Framework
    storage_uri: str
    protocol_version: str
    party_model_id: str
    model_version: str


def _predictor(spec: ServiceSpec) -> dict[str, Any]:
    if spec.flavour is Flavour.KSERVE:
        model: dict[str, Any] = {"modelFormat": {"name": spec.framework.model_format}, "storageUri": spec.storage_uri}
        if spec.protocol_version == "v2":
            model["protocolVersion"] = "v2"
        return {"model": model}
    framework: dict[str, Any] = {"storageUri": spec.storage_uri}
    if spec.framework.name == "sklearn":
        framework["protocolVersion"] = spec.protocol_version
        if spec.protocol_version == "v1":
            framework["image"] = FATE_SKLEARN_IMAGE
    return {spec.framework.model_format: framework}


def inference_service(spec: ServiceSpec) -> dict[str, Any]:
    """The object to create; a fresh uuid annotation makes every deploy a new revision, as in FATE."""
    return {
        "apiVersion": spec.flavour.api_version,
        "kind": KIND,
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "annotations": {
                ANNOTATION_PREFIX + "uuid": str(uuid.uuid4()),
                ANNOTATION_PREFIX + "model_id": spec.party_model_id,
                ANNOTATION_PREFIX + "model_version": spec.model_version,
            },
        },
        "spec": {"predictor": _predictor(spec)},
    }


@dataclass(frozen=True)
class S3Access:
    """What KServe's storage initializer needs to download from an S3-compatible store."""

    endpoint: str  # host[:port]
    use_https: bool
    region: str
    access_key: str
    secret_key: str = field(repr=False)


def storage_secret(flavour: Flavour, namespace: str, access: S3Access) -> dict[str, Any]:
    """The secret FATE attaches to the service account: the S3 endpoint as annotations, the key pair as data."""
    annotations = {
        f"{flavour.group}/s3-endpoint": access.endpoint,
        f"{flavour.group}/s3-usehttps": "1" if access.use_https else "0",
    }
    if access.region:
        annotations[f"{flavour.group}/s3-region"] = access.region
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": STORAGE_SECRET, "namespace": namespace, "annotations": annotations},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": access.access_key, "AWS_SECRET_ACCESS_KEY": access.secret_key},
    }
