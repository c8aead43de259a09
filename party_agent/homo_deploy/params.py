"""FATE's ``deployment_type`` and ``deployment_parameters`` of ``flow model homo-deploy``, typed.

Keys are FATE's (``fate_flow.md`` §6.15): ``namespace``, ``config_file_content`` (the kubeconfig text;
the CLI reads ``config_file`` into it), ``replace``, ``skip_create_storage_secret``,
``protocol_version``, ``model_storage_type`` and ``model_storage_parameters``. An unknown key is an
error, as it is in FATE (its deployer takes them as keyword arguments). Errors name the key, never
its value: the kubeconfig and the storage keys are secrets.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from fate_registry.errors import Reason, RegistryError, Retcode
from party_agent.storage.config import CosConfigSettings

PARAMETER_KEYS = (
    "namespace",
    "config_file_content",
    "replace",
    "skip_create_storage_secret",
    "protocol_version",
    "model_storage_type",
    "model_storage_parameters",
)
MINIO_KEYS = ("endpoint", "access_key", "secret_key", "secure", "region", "bucket")
DEFAULT_BUCKET = "fate-models"
# FATE's fallbacks when model_storage_parameters names no endpoint.
MINIO_ENV_ENDPOINT, MINIO_DEFAULT_ENDPOINT = "MINIO_ENDPOINT_URL", "http://minio:9000"
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def invalid(message: str) -> RegistryError:
    """A bad conf: FATE answers these with retcode 100."""
    return RegistryError(Reason.INVALID_ARGUMENT, message, retcode=Retcode.EXCEPTION_ERROR)


class Flavour(enum.Enum):
    """Which serving system: KServe, or KFServing (its name before 0.7), which FATE targets."""

    KSERVE = "serving.kserve.io"
    KFSERVING = "serving.kubeflow.org"

    @property
    def group(self) -> str:
        return self.value

    @property
    def api_version(self) -> str:
        return f"{self.value}/v1beta1"

    @classmethod
    def of(cls, deployment_type: str) -> Flavour:
        known = {"kserve": cls.KSERVE, "kfserving": cls.KFSERVING}
        if deployment_type not in known:
            raise invalid(f"deployment_type {deployment_type!r} is not supported: use 'kserve' or 'kfserving'")
        return known[deployment_type]


def check_service_id(service_id: str) -> str:
    """The InferenceService's name: a DNS-1035 label, as Kubernetes requires."""
    if not service_id:
        raise invalid("service_id is required")
    if len(service_id) > 63 or not _DNS_1035_LABEL.fullmatch(service_id):
        raise invalid(
            f"service_id {service_id!r} cannot name an InferenceService: use at most 63 lower-case letters, "
            "digits and '-', starting with a letter and ending with a letter or digit"
        )
    return service_id


def _flag(data: Mapping[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise invalid(f"{where}{key} must be a boolean")


def _text(data: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid(f"{where}{key} must be a string")
    return value


@dataclass(frozen=True)
class MinioSettings:
    """``model_storage_type: minio``: FATE's keys, its bucket default and its environment fallbacks."""

    endpoint: str  # host[:port], as the MinIO client takes it
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = True
    region: str = ""
    bucket: str = DEFAULT_BUCKET

    @classmethod
    def from_parameters(cls, data: Mapping[str, Any]) -> MinioSettings:
        where = "deployment_parameters.model_storage_parameters."
        unknown = sorted(set(data) - set(MINIO_KEYS))
        if unknown:
            raise invalid(f"unknown keys {where}{', '.join(unknown)}; expected {', '.join(MINIO_KEYS)}")
        bucket = _text(data, "bucket", where, DEFAULT_BUCKET) or DEFAULT_BUCKET
        endpoint = _text(data, "endpoint", where)
        if endpoint:
            settings = cls(
                endpoint=endpoint,
                access_key=_text(data, "access_key", where),
                secret_key=_text(data, "secret_key", where),
                secure=_flag(data, "secure", where, default=True),
                region=_text(data, "region", where),
                bucket=bucket,
            )
        else:  # FATE reads the whole connection from the environment then
            url = urlparse(os.environ.get(MINIO_ENV_ENDPOINT, MINIO_DEFAULT_ENDPOINT))
            settings = cls(
                endpoint=url.netloc,
                access_key=os.environ.get("MINIO_ACCESS_KEY_ID", ""),
                secret_key=os.environ.get("MINIO_SECRET_ACCESS_KEY", ""),
                secure=url.scheme == "https",
                region=os.environ.get("MINIO_REGION", ""),
                bucket=bucket,
            )
        if not settings.access_key or not settings.secret_key:
            raise invalid(f"{where}access_key and secret_key are required for the minio model storage")
        return settings

    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


StorageSettings = MinioSettings | CosConfigSettings


def _storage(data: Mapping[str, Any]) -> StorageSettings:
    kind = _text(data, "model_storage_type", "deployment_parameters.", "minio") or "minio"
    parameters = data.get("model_storage_parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid("deployment_parameters.model_storage_parameters must be an object")
    if kind == "minio":
        return MinioSettings.from_parameters(parameters)
    if kind == "tencent_cos":
        try:
            return CosConfigSettings.from_settings(parameters)
        except RegistryError as exc:  # the engine's message names model_store_address, not this conf
            raise invalid(
                exc.message.replace("model_store_address", "deployment_parameters.model_storage_parameters", 1)
            ) from None
    raise invalid(f"deployment_parameters.model_storage_type {kind!r} is not supported: use 'minio' or 'tencent_cos'")


@dataclass(frozen=True)
class DeploymentParameters:
    """FATE's ``deployment_parameters``, checked; the kubeconfig is kept out of the repr."""

    kubeconfig: str = field(repr=False)
    namespace: str
    replace: bool
    skip_create_storage_secret: bool
    protocol_version: str
    storage: StorageSettings

    @classmethod
    def parse(cls, parameters_json: str) -> DeploymentParameters:
        try:
            data = json.loads(parameters_json or "{}")
        except ValueError:
            raise invalid("deployment_parameters is not valid JSON") from None
        if not isinstance(data, dict):
            raise invalid("deployment_parameters must be an object")
        where = "deployment_parameters."
        unknown = sorted(set(data) - set(PARAMETER_KEYS))
        if unknown:
            raise invalid(f"unknown keys {where}{', '.join(unknown)}; expected {', '.join(PARAMETER_KEYS)}")
        kubeconfig = _text(data, "config_file_content", where)
        if not kubeconfig.strip():
            raise invalid(
                "deployment_parameters.config_file_content (or config_file, read by the CLI) must hold the "
                "kubeconfig of the cluster to deploy to"
            )
        protocol = _text(data, "protocol_version", where, "v1") or "v1"
        if protocol not in ("v1", "v2"):
            raise invalid(f"deployment_parameters.protocol_version must be 'v1' or 'v2', got {protocol!r}")
        namespace = _text(data, "namespace", where)
        if namespace and (len(namespace) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace)):
            raise invalid(f"deployment_parameters.namespace {namespace!r} is not a Kubernetes namespace name")
        return cls(
            kubeconfig=kubeconfig,
            namespace=namespace,
            replace=_flag(data, "replace", where),
            skip_create_storage_secret=_flag(data, "skip_create_storage_secret", where),
            protocol_version=protocol,
            storage=_storage(data),
        )
