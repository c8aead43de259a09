"""Uploading a converted model to the object store KServe downloads it from.

Objects go to ``<bucket>/<party_model_id>/<model_version>/<service_id>/...`` with ``#`` written
``^`` (KServe's storage initializer cuts a URI at ``#``), and the storage URI is
``s3://<bucket>/<that prefix>``, as FATE does. Two stores:

- ``minio`` (FATE's): any S3-compatible server, through boto3 (AWS signature v4, path-style
  addressing); the bucket is created when missing, as FATE's MinIO client does.
- ``tencent_cos``: the COS engine of ``party_agent.storage`` with FATE's COS keys (``Endpoint`` /
  ``IP``/``Port``/``Scheme`` reach a COS-compatible server); the bucket must exist. KServe reads COS
  through its S3-compatible endpoint.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError

from fate_registry.errors import Reason, RegistryError, Retcode
from party_agent.homo_deploy.inference_service import S3Access
from party_agent.homo_deploy.params import MinioSettings, StorageSettings
from party_agent.storage.config import CosConfigSettings
from party_agent.storage.cos import CosModelStore

TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Upload:
    """A local file and the object key it is uploaded to."""

    key: str  # object key under the bucket
    path: Path  # local file


def object_prefix(party_model_id: str, model_version: str, service_id: str) -> str:
    """Where a deployment's files go in the bucket: ``#`` (a URI's fragment mark) becomes ``^``."""
    return f"{party_model_id}/{model_version}/{service_id}".replace("#", "^")


class ObjectStore(abc.ABC):
    """The bucket a homo-deploy uploads the converted model to, for the InferenceService to read."""

    bucket: str

    @abc.abstractmethod
    def upload(self, uploads: Sequence[Upload]) -> None:
        """Put every file; any failure is a RegistryError naming the store, never its keys."""

    @abc.abstractmethod
    def access(self) -> S3Access:
        """The endpoint and key pair KServe's storage initializer uses."""

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


class _MinioStore(ObjectStore):
    def __init__(self, settings: MinioSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            region_name=settings.region or "us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=TIMEOUT_SECONDS,
                read_timeout=TIMEOUT_SECONDS,
                retries={"max_attempts": 2},
            ),
        )

    def _failure(self, exc: Exception) -> RegistryError:
        where = f"the minio model storage at {self.settings.endpoint_url} (access key {self.settings.access_key!r})"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            reason = Reason.PERMISSION_DENIED if status == 403 else Reason.INTERNAL
            return RegistryError(
                reason, f"{where}: HTTP {status} {error.get('Code', '')}", retcode=Retcode.EXCEPTION_ERROR
            )
        return RegistryError(
            Reason.PARTY_UNAVAILABLE,
            f"{where} cannot be reached ({type(exc).__name__})",
            retcode=Retcode.EXCEPTION_ERROR,
        )

    def upload(self, uploads: Sequence[Upload]) -> None:
        try:
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                self._client.create_bucket(Bucket=self.bucket)
            for item in uploads:
                self._client.upload_file(str(item.path), self.bucket, item.key)
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc) from None

    def access(self) -> S3Access:
        s = self.settings
        return S3Access(s.endpoint, s.secure, s.region, s.access_key, s.secret_key)


class _CosStore(ObjectStore):
    def __init__(self, settings: CosConfigSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._store = CosModelStore(settings)

    def upload(self, uploads: Sequence[Upload]) -> None:
        for item in uploads:
            self._store.upload_file(item.key, item.path)

    def access(self) -> S3Access:
        s = self.settings
        return S3Access(s.address, s.scheme != "http", s.region, s.secret_id, s.secret_key.get_secret_value())


def open_object_store(settings: StorageSettings) -> ObjectStore:
    """The MinIO/S3 or Tencent COS store the deployment parameters name."""
    return _MinioStore(settings) if isinstance(settings, MinioSettings) else _CosStore(settings)
