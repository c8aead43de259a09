"""A FAKE Kubernetes API server: the few REST paths homo-deploy uses, on 127.0.0.1.

This is a fake because no Kubernetes cluster (nor KServe on one) can run on our machines: there is
no container runtime, and the tests must not reach outside the loopback. It answers what the
official ``kubernetes`` client sends, over real HTTP, as the API server does for these calls:

- ``/apis/{serving.kserve.io,serving.kubeflow.org}/v1beta1/namespaces/<ns>/inferenceservices[/<name>]``:
  GET, POST, PUT (``metadata.resourceVersion`` required and checked, as for every custom
  resource), PATCH (merge), DELETE. Every InferenceService body written is validated against
  KServe's published CRD schema (``data/kserve_inferenceservice_v1beta1.yaml``: its source,
  version and what of it is kept are written at its top) with ``jsonschema``, strictly: an unknown
  field is a 422, as with the API server's ``fieldValidation=Strict``.
- ``/api/v1/namespaces/<ns>/{secrets,serviceaccounts}[/<name>]``: GET, POST, PATCH (merge), DELETE;
  a secret's ``stringData`` is stored base64-encoded under ``data``, as the API server does.

Requests need ``Authorization: Bearer <token>`` (401 otherwise). Errors are ``Status`` objects.
Nothing is scheduled: an InferenceService never becomes ready.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "data" / "kserve_inferenceservice_v1beta1.yaml"
ISVC_GROUPS = ("serving.kserve.io", "serving.kubeflow.org")
_ISVC = re.compile(r"/apis/([^/]+)/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/]+))?")
_CORE = re.compile(r"/api/v1/namespaces/([^/]+)/(secrets|serviceaccounts)(?:/([^/]+))?")
_KINDS = {"inferenceservices": "InferenceService", "secrets": "Secret", "serviceaccounts": "ServiceAccount"}


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever properties are listed."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def inference_service_validator() -> jsonschema.Draft7Validator:
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(_strict(schema))


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): objects merge, null deletes, anything else replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any


@dataclass
class FakeKubeApi:
    """The server's state: objects by (resource path, namespace, name), and every request received."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _version: int = 0
    _validator: jsonschema.Draft7Validator = field(default_factory=inference_service_validator)

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, namespace: str = "", token: str | None = None) -> str:
        """A kubeconfig text for this server (``token`` to present a wrong one)."""
        context: dict[str, Any] = {"cluster": "fake", "user": "fate"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.server}}],
            "users": [{"name": "fate", "user": {"token": self.token if token is None else token}}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
        }
        return yaml.safe_dump(config)

    def inference_service(self, namespace: str, name: str, group: str = "serving.kserve.io") -> dict[str, Any] | None:
        return self.objects.get((f"{group}/inferenceservices", namespace, name))

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # -- request handling --------------------------------------------------------------------------

    def handle(self, method: str, path: str, authorization: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(Request(method, path, copy.deepcopy(body)))
            try:
                if authorization != f"Bearer {self.token}":
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                return self._route(method, path, body)
            except ApiError as exc:
                return exc.code, exc.status()

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        found = _ISVC.fullmatch(path)
        if found is not None:
            group, namespace, name = found.groups()
            if group not in ISVC_GROUPS:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group})")
            resource = f"{group}/inferenceservices"
        else:
            core = _CORE.fullmatch(path)
            if core is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            namespace, plural, name = core.groups()
            resource = f"v1/{plural}"
        if name is None:
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"{method} on a collection is not served by this fake")
            return 201, self._create(resource, namespace, body)
        key = (resource, namespace, name)
        if method == "GET":
            return 200, self._existing(key)
        if method == "DELETE":
            self._existing(key)
            del self.objects[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "PUT":
            return 200, self._replace(key, body)
        if method == "PATCH":
            merged = _merge(self._existing(key), body if isinstance(body, dict) else {})
            return 200, self._store(key, merged, self._existing(key))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not served by this fake")

    def _kind(self, resource: str) -> str:
        return _KINDS[resource.rsplit("/", 1)[1]]

    def _existing(self, key: tuple[str, str, str]) -> dict[str, Any]:
        found = self.objects.get(key)
        if found is None:
            resource, _, name = key
            raise ApiError(404, "NotFound", f'{resource.rsplit("/", 1)[1]} "{name}" not found')
        return found

    def _check(self, resource: str, namespace: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body is not a JSON object")
        metadata = body.get("metadata") or {}
        if metadata.get("namespace") not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace of the URL")
        if resource.endswith("/inferenceservices"):
            group = resource.split("/", 1)[0]
            if body.get("apiVersion") != f"{group}/v1beta1" or body.get("kind") != "InferenceService":
                raise ApiError(400, "BadRequest", f"the body is not a {group}/v1beta1 InferenceService")
            problems = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
            if problems:
                where = ".".join(str(p) for p in problems[0].absolute_path) or "<root>"
                raise ApiError(
                    422,
                    "Invalid",
                    f'InferenceService.{group} "{metadata.get("name", "")}" is invalid: {where}: {problems[0].message}',
                )
        return body

    def _store(
        self, key: tuple[str, str, str], body: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        resource, namespace, name = key
        stored = copy.deepcopy(body)
        if resource == "v1/secrets" and "stringData" in stored:
            data = stored.setdefault("data", {})
            for k, v in stored.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        self._version += 1
        metadata = stored.setdefault("metadata", {})
        metadata.update(name=name, namespace=namespace, resourceVersion=str(self._version))
        if previous is None:
            metadata.update(uid=str(uuid.uuid4()), creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            metadata["generation"] = 1
        else:
            for kept in ("uid", "creationTimestamp"):
                metadata[kept] = previous["metadata"][kept]
            metadata["generation"] = int(previous["metadata"].get("generation", 1)) + 1
        stored.setdefault("kind", self._kind(resource))
        stored.setdefault("apiVersion", "v1" if resource.startswith("v1/") else f"{resource.split('/')[0]}/v1beta1")
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def _create(self, resource: str, namespace: str, body: Any) -> dict[str, Any]:
        checked = self._check(resource, namespace, body)
        name = (checked.get("metadata") or {}).get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name is required")
        key = (resource, namespace, str(name))
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{resource.rsplit("/", 1)[1]} "{name}" already exists')
        return self._store(key, checked, None)

    def _replace(self, key: tuple[str, str, str], body: Any) -> dict[str, Any]:
        resource, namespace, name = key
        previous = self._existing(key)
        checked = self._check(resource, namespace, body)
        version = (checked.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise ApiError(
                422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            )
        if version != previous["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.rsplit("/", 1)[1]} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        return self._store(key, checked, previous)


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi

    def log_message(self, format: str, *args: Any) -> None:  # the server stays quiet
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            code, answer = 400, ApiError(400, "BadRequest", "the body is not JSON").status()
        else:
            path = self.path.split("?", 1)[0]
            code, answer = self.api.handle(self.command, path, self.headers.get("Authorization", ""), body)
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


@contextlib.contextmanager
def fake_kube_api() -> Iterator[FakeKubeApi]:
    """The fake API server on a free loopback port, in a thread of this process; stopped on exit."""
    api = FakeKubeApi()
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-kube-api", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
