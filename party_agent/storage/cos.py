"""Tencent COS engine (cos-python-sdk-v5): one object per version, FATE's key, our sha256 in its metadata.

Key: ``FATEFlow/PipelinedModel/<party_model_id>/<model_version>.zip`` (FATE-Flow's own), metadata
``x-cos-meta-sha256``. An object appears whole or not at all, so the object itself is the commit
marker: a put that fails never touches the previous object.

- Up to ``part_bytes``: one PUT with the digest in its metadata.
- Larger, with ``expected_sha256``: a multipart upload straight to the key, the expected digest as
  metadata, two parts in flight; it is completed only when the bytes hash to it, and aborted
  otherwise. The agent hashes the archive in a first pass to give it (:meth:`digest_first`).
- Larger, without: a multipart upload to ``FATEFlow/Staging/<party_model_id>/<model_version>.<gen>.zip``,
  then a server-side copy to the key with the digest as metadata (single-request copy: up to 5 GB
  on COS), then the staging object is deleted.

The check that refuses to overwrite without ``force`` is a HEAD before the upload: COS has no
conditional PUT, so two puts racing on one version may both pass it.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from fate_registry.errors import Reason, RegistryError
from party_agent.storage.base import (
    HashingCounter,
    ModelStore,
    SendAhead,
    StoredObject,
    StoreKey,
    access_denied,
    already_exists,
    check_expected,
    check_pinned,
    check_stored,
    misconfigured,
    not_found,
    rechunk,
    skip_prefix,
    unavailable,
)
from party_agent.storage.config import CosConfigSettings

MODEL_PREFIX = "FATEFlow/PipelinedModel"
STAGING_PREFIX = "FATEFlow/Staging"
SHA256_META = "x-cos-meta-sha256"
PART_BYTES = 8 * 1024 * 1024
# Parts uploaded at once: the next part is sent while the server takes the last one.
PARTS_IN_FLIGHT = 2
READ_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 60
_MISSING_OBJECT = {"NoSuchKey", "NoSuchResource"}


def _object_key(key: StoreKey) -> str:
    return f"{MODEL_PREFIX}/{key.party_model_id}/{key.model_version}.zip"


class CosModelStore(ModelStore):
    """Versions in a Tencent COS bucket, uploaded in parts of ``part_bytes``."""

    engine = "tencent_cos"

    def __init__(self, config: CosConfigSettings, part_bytes: int = PART_BYTES) -> None:
        self.config = config
        self.part_bytes = part_bytes
        try:
            cos_config = CosConfig(Timeout=TIMEOUT_SECONDS, **config.cos_config_kwargs())
        except CosClientError as exc:
            raise misconfigured(self.engine, str(exc)) from None
        self._client = CosS3Client(cos_config, retry=1)
        self._bucket_checked = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SDK errors become registry errors naming the endpoint and SecretId, never the SecretKey."""
        address = self.config.address
        try:
            yield
        except CosServiceError as exc:
            status, code = exc.get_status_code(), exc.get_error_code()
            if code == "NoSuchBucket":
                raise self._no_bucket() from None
            if status == 403:
                raise access_denied(self.engine, address, f"SecretId {self.config.secret_id!r} ({code})") from None
            if status >= 500:
                raise unavailable(self.engine, address, f"HTTP {status} {code}") from None
            raise RegistryError(
                Reason.INTERNAL, f"tencent_cos model store at {address}: HTTP {status} {code}"
            ) from None
        except (CosClientError, requests.RequestException) as exc:
            raise unavailable(self.engine, address, type(exc).__name__) from None

    def _no_bucket(self) -> RegistryError:
        return misconfigured(self.engine, f"bucket {self.config.bucket!r} does not exist at {self.config.address}")

    def _check_bucket(self) -> None:
        with self._lock:
            if self._bucket_checked:
                return
            try:
                self._client.head_bucket(Bucket=self.config.bucket)
            except CosServiceError as exc:
                if exc.get_status_code() == 404:
                    raise self._no_bucket() from None
                raise
            self._bucket_checked = True

    def _head(self, name: str) -> dict[str, str] | None:
        try:
            headers = self._client.head_object(Bucket=self.config.bucket, Key=name)
        except CosServiceError as exc:
            if exc.get_status_code() == 404 and exc.get_error_code() in _MISSING_OBJECT:
                return None
            raise
        return {k.lower(): v for k, v in headers.items()}

    def _stored(self, key: StoreKey, headers: dict[str, str]) -> StoredObject:
        sha256 = headers.get(SHA256_META)
        if not sha256:
            raise RegistryError(
                Reason.DATA_LOSS,
                f"{_object_key(key)} in the tencent_cos model store has no sha256 metadata "
                "(not written by this registry)",
            )
        return StoredObject(int(headers["content-length"]), sha256)

    def exists(self, key: StoreKey) -> bool:
        with self._errors():
            self._check_bucket()
            return self._head(_object_key(key)) is not None

    def stat(self, key: StoreKey) -> StoredObject | None:
        with self._errors():
            self._check_bucket()
            headers = self._head(_object_key(key))
        return None if headers is None else self._stored(key, headers)

    def digest_first(self, size: int) -> bool:
        """Above one part, the digest saves the staging object and its server-side copy."""
        return size > self.part_bytes

    def put(
        self, key: StoreKey, chunks: Iterable[bytes], expected_sha256: str | None = None, force: bool = False
    ) -> StoredObject:
        name = _object_key(key)
        with self._errors():
            self._check_bucket()
            if not force and self._head(name) is not None:
                raise already_exists(self.engine, key)
            digest = HashingCounter()
            parts = rechunk(chunks, self.part_bytes)
            first = next(parts, b"")
            second = next(parts, None)
            if second is None:
                digest.update(first)
                check_expected(self.engine, key, expected_sha256, digest)
                self._client.put_object(
                    Bucket=self.config.bucket, Key=name, Body=first, Metadata={SHA256_META: digest.hexdigest()}
                )
            elif expected_sha256 is not None:
                self._multipart(name, [first, second], parts, digest, {SHA256_META: expected_sha256.lower()}, key)
            else:
                staging = f"{STAGING_PREFIX}/{key.party_model_id}/{key.model_version}.{secrets.token_hex(8)}.zip"
                try:
                    self._multipart(staging, [first, second], parts, digest, {}, key)
                    source = {"Bucket": self.config.bucket, "Key": staging, "Region": self.config.region}
                    if self.config.appid:
                        source["Appid"] = self.config.appid
                    if self.config.endpoint:
                        source["Endpoint"] = self.config.endpoint
                    self._client.copy_object(
                        Bucket=self.config.bucket,
                        Key=name,
                        CopySource=source,
                        CopyStatus="Replaced",
                        Metadata={SHA256_META: digest.hexdigest()},
                    )
                finally:
                    with contextlib.suppress(CosServiceError, CosClientError):
                        self._client.delete_object(Bucket=self.config.bucket, Key=staging)
        return StoredObject(digest.size, digest.hexdigest())

    def _multipart(
        self,
        name: str,
        head: list[bytes],
        rest: Iterator[bytes],
        digest: HashingCounter,
        metadata: dict[str, str],
        key: StoreKey,
    ) -> None:
        """Upload ``head`` then ``rest`` as parts of ``name``; completed only when the digest matches ``metadata``'s."""
        bucket = self.config.bucket
        upload_id = self._client.create_multipart_upload(Bucket=bucket, Key=name, Metadata=metadata)["UploadId"]

        def upload(number: int, part: bytes) -> dict[str, Any]:
            answer = self._client.upload_part(Bucket=bucket, Key=name, Body=part, PartNumber=number, UploadId=upload_id)
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            with SendAhead[dict[str, Any]](PARTS_IN_FLIGHT, PARTS_IN_FLIGHT - 1, "cos-part") as parts:
                for number, part in enumerate(_chain(head, rest), start=1):
                    digest.update(part)
                    parts.submit(functools.partial(upload, number, part))
                done = parts.finish()
            check_expected(self.engine, key, metadata.get(SHA256_META), digest)
            self._client.complete_multipart_upload(
                Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Part": done}
            )
        except BaseException:
            with contextlib.suppress(CosServiceError, CosClientError):
                self._client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            raise

    def _stream(self, key: StoreKey, offset: int, pinned: str | None) -> Iterator[bytes]:
        with self._errors():
            try:
                answer = self._client.get_object(Bucket=self.config.bucket, Key=_object_key(key))
            except CosServiceError as exc:
                if exc.get_status_code() == 404 and exc.get_error_code() in _MISSING_OBJECT:
                    raise not_found(self.engine, key, "deleted before it was read") from None
                raise
            # The digest comes with the bytes, from the same response: no race with a concurrent put.
            stored = self._stored(key, {k.lower(): v for k, v in answer.items() if isinstance(v, str)})
            check_pinned(self.engine, key, stored, pinned)
            digest = HashingCounter()
            yield from skip_prefix(answer["Body"].get_stream(chunk_size=READ_BYTES), offset, digest)
        check_stored(self.engine, key, stored, digest)

    def delete(self, key: StoreKey) -> bool:
        with self._errors():
            self._check_bucket()
            if self._head(_object_key(key)) is None:
                return False
            self._client.delete_object(Bucket=self.config.bucket, Key=_object_key(key))
        return True

    def upload_file(self, name: str, path: Path) -> None:
        """Put the local file ``path`` at the object key ``name`` of the bucket (homo-deploy's upload)."""
        with self._errors():
            self._check_bucket()
            self._client.upload_file(Bucket=self.config.bucket, Key=name, LocalFilePath=str(path), PartSize=8)


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest
