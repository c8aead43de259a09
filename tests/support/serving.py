"""A FATE-Serving 2.1 stand-in for tests: a real gRPC ``ModelService`` in its own process.

Run it as ``python -m tests.support.serving --port-file F [options]``, or from a test with
:class:`tests.support.serving_process.ServingTestServer`. It listens on a loopback address
only, writes ``host:port`` to the port file once it serves, and stops on SIGTERM or SIGINT.

It answers as FATE-Serving 2.1's ``ModelManager`` does (fate_serving.md §2.4, §5.4, §6.4):

* ``publishLoad`` checks the request, POSTs ``{"name": tableName, "namespace": namespace}`` to
  ``filePath`` (URL-decoded; when empty, ``--transfer-url``, FATE-Serving's ``model.transfer.url``),
  decodes the ``"<cpn>.<alias>:<ModelName>"`` → base64 map it gets back and parses
  ``pipeline.pipeline:Pipeline``. The model is kept in memory under ``"{tableName}_{namespace}"``.
  Any failed pull is MODEL_INIT_ERROR 123 with FATE-Serving's message; the cause is logged.
* ``publishBind`` and ``publishOnline`` (identical in 2.x) bind a serviceId to a loaded model.
* ``unload``, ``unbind`` and ``queryModel`` as FATE-Serving; ``fetchModel`` and ``modelTransfer``
  answer 130, as FATE-Serving does with ``model.synchronize`` off (its default).

``queryModel`` fills ``ModelInfoEx.content`` with this server's JSON summary of a model: the fields
of FATE-Serving's ``Model`` (role, partId, federationModelMap, resourceAdress, serviceIds) plus
``pipeline`` (the identity fields of the parsed Pipeline) and ``components`` (the pulled map's keys).

Test hooks:

* ``--record FILE``: every ModelService request is appended to FILE as one JSON line
  ``{"method", "request", "raw", "metadata", "time"}``: ``request`` is
  ``MessageToDict(request, preserving_proto_field_name=True)`` (fields left at their default are
  absent, so a test sees exactly what was set), ``raw`` the base64 of the serialized request,
  ``metadata`` the text metadata of the call.
* :class:`Faults`, given with ``--fail-load``, ``--fail-bind``, ``--delay``, ``--drop`` … at start.
* ``--control FILE``: while FILE exists, the :class:`Faults` it holds (``Faults.to_json``; every key
  optional) replace the start-up ones. It is re-read on every request, so one running server can be
  switched mid-test; write it atomically (temporary file, then rename) and delete it to go back to
  the start-up faults. Each switch of the faults in force (a new file, its removal) restarts the
  ``drop_times`` count. An invalid control file fails every call with gRPC UNKNOWN until fixed.

Per request, in this order: record, read the faults, delay, drop, injected failure, the real work.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import ipaddress
import json
import logging
import math
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast, get_args

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from fate_registry.config import PLAINTEXT, TlsConf
from fate_registry.fate import model_service_pb2 as pb
from fate_registry.fate import model_service_pb2_grpc, pipeline_pb2
from fate_registry.grpc_server import StopFlag, server_credentials

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Message)

# FATE-Serving's StatusCode values that this server answers with.
SUCCESS: Final = 0
MODEL_NULL: Final = 104
SYSTEM_ERROR: Final = 110
MODEL_INIT_ERROR: Final = 123
MODEL_SYNC_ERROR: Final = 130

PIPELINE_KEY: Final = "pipeline.pipeline:Pipeline"
DEFAULT_TRANSFER_URL: Final = "http://127.0.0.1:9380/v1/model/transfer"
"""FATE-Serving's default ``model.transfer.url``, used when a load request's filePath is empty."""
TRANSFER_CONTENT_TYPE: Final = "application/json;charset=UTF-8"
SERVICE_ID_FORBIDDEN: Final = ("?", ":", "/", "&")
CRASH_EXIT_CODE: Final = 3
"""Exit status of the process when a ``drop="crash"`` fault ends it."""

MODEL_INIT_MESSAGE: Final = (
    "model initialization error, please check if the model exists and the configuration of the "
    "FATEFLOW load model process is correct."
)
MODEL_NOT_LOADED_MESSAGE: Final = " found model info, please check if the model is already loaded."
"""FATE-Serving's own text (leading space included) for unload/unbind of a model it does not hold."""

DropMode = Literal["unavailable", "crash"]
"""``unavailable`` aborts the call with UNAVAILABLE; ``crash`` ends the process mid-call (no answer)."""

_MAX_INT32: Final = 2**31 - 1
_DELAY_SLICE: Final = 0.05


@dataclass(frozen=True)
class Faults:
    """Misbehaviour on demand. Zero, empty and None mean "behave"."""

    fail_load: int = 0
    """When non-zero, publishLoad answers this statusCode with ``fail_load_message`` and loads nothing."""
    fail_load_message: str = "injected load failure"
    fail_bind: int = 0
    """When non-zero, publishBind and publishOnline answer this statusCode and bind nothing."""
    fail_bind_message: str = "injected bind failure"
    delay: float = 0.0
    """Seconds every ModelService call waits before it is handled (cut short if the caller gives up)."""
    drop: DropMode | None = None
    drop_times: int = 0
    """With ``drop``: 0 drops every call; N drops only the next N calls, then the server behaves."""

    def __post_init__(self) -> None:
        for name in ("fail_load", "fail_bind", "drop_times"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT32:
                raise ValueError(f"{name} must be an integer from 0 to {_MAX_INT32}, not {value!r}")
        for name in ("fail_load_message", "fail_bind_message"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        delay = self.delay
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        if self.drop is not None and self.drop not in get_args(DropMode):
            raise ValueError(f"drop must be one of {get_args(DropMode)} or null, not {self.drop!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Faults:
        """Parse a control document: a JSON object with some of the fields; the others keep their defaults."""
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("the control document must be a JSON object")
        unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        return cls(**value)

    def to_args(self) -> list[str]:
        """The command-line flags that give these faults at start."""
        args = [
            f"--fail-load={self.fail_load}",
            f"--fail-load-message={self.fail_load_message}",
            f"--fail-bind={self.fail_bind}",
            f"--fail-bind-message={self.fail_bind_message}",
            f"--delay={self.delay}",
            f"--drop-times={self.drop_times}",
        ]
        return [*args, f"--drop={self.drop}"] if self.drop else args


@dataclass(frozen=True)
class ServingOptions:
    """How the test server runs: where it listens, what it records, and how it misbehaves."""

    host: str = "127.0.0.1"
    port: int = 0
    record: Path | None = None
    control: Path | None = None
    faults: Faults = field(default_factory=Faults)
    transfer_url: str = DEFAULT_TRANSFER_URL
    pull_timeout: float = 30.0
    """Socket timeout of the model pull, in seconds (for the connect and for each read)."""
    tls: TlsConf = PLAINTEXT
    """With a cert: gRPC over TLS (with ``require_client_cert``, callers need a certificate signed by
    ``ca``); the same cert, key and ca serve the HTTPS model pull as its client side."""

    def __post_init__(self) -> None:
        if self.host != "localhost":
            try:
                loopback = ipaddress.IPv4Address(self.host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(f"the test server listens on an IPv4 loopback address only, not {self.host!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if not math.isfinite(self.pull_timeout) or self.pull_timeout <= 0:
            raise ValueError("pull_timeout must be a positive number of seconds")


class ServingError(Exception):
    """A FATE-Serving answer other than success: its statusCode and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PullError(Exception):
    """The model could not be pulled or decoded; FATE-Serving then has no processor (123)."""


def model_key(table_name: str, namespace: str) -> str:
    """FATE-Serving's ``getNameSpaceKey``."""
    return f"{table_name}_{namespace}"


def _json_or_text(data: bytes) -> Any:
    """A JSON field of the Pipeline, parsed; its text when it is not JSON, None when empty."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class PartnerModel:
    """One entry of FATE-Serving's ``federationModelMap``: the other side's model of a party."""

    party_id: str
    role: str
    table_name: str
    namespace: str


@dataclass(frozen=True)
class LoadedModel:
    """What a successful publishLoad keeps: the request's identity and the parsed Pipeline."""

    table_name: str
    namespace: str
    role: str
    """FATE-Serving's normalisation: ``guest``, or ``host`` for any other local role."""
    party_id: str
    roles: Mapping[str, tuple[str, ...]]
    partners: tuple[PartnerModel, ...]
    pipeline: pipeline_pb2.Pipeline
    components: tuple[str, ...]
    """The keys of the pulled map, sorted."""
    resource_address: str
    """``host:port`` of the transfer URL, FATE-Serving's ``resourceAdress``."""
    loaded_at: float

    @property
    def key(self) -> str:
        return model_key(self.table_name, self.namespace)

    def content(self, service_ids: Sequence[str]) -> str:
        pipeline = self.pipeline
        summary = {
            "tableName": self.table_name,
            "namespace": self.namespace,
            "role": self.role,
            "partId": self.party_id,
            "serviceIds": list(service_ids),
            "rolePartyMap": {role: list(ids) for role, ids in self.roles.items()},
            "federationModelMap": {
                p.party_id: {"partId": p.party_id, "role": p.role, "tableName": p.table_name, "namespace": p.namespace}
                for p in self.partners
            },
            "resourceAdress": self.resource_address,
            "timestamp": int(self.loaded_at * 1000),
            "components": list(self.components),
            "pipeline": {
                "fate_version": pipeline.fate_version,
                "model_id": pipeline.model_id,
                "model_version": pipeline.model_version,
                "parent": pipeline.parent,
                "loaded_times": pipeline.loaded_times,
                "roles": _json_or_text(pipeline.roles),
                "initiator_role": pipeline.initiator_role,
                "initiator_party_id": pipeline.initiator_party_id,
                "parent_info": _json_or_text(pipeline.parent_info),
                "inference_components": sorted(json.loads(pipeline.inference_dsl).get("components", {})),
            },
        }
        return json.dumps(summary, sort_keys=True)


def _https_context(tls: TlsConf) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca)
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    return context


def pull_model(url: str, table_name: str, namespace: str, timeout: float, tls: TlsConf = PLAINTEXT) -> dict[str, bytes]:
    """POST FATE-Serving's model request to ``url``; return the decoded ``key → buffer`` map.

    Raises :class:`PullError` on anything FATE-Serving's ``FateFlowModelLoader`` treats as a failed
    load: a transport or HTTP error, a non-JSON body, a non-zero ``retcode``, an empty ``data``, or a
    value that is not base64. Environment proxies are ignored, as FATE-Serving's HTTP client does.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PullError(f"the transfer URL {url!r} is not http(s)")
    body = json.dumps({"name": table_name, "namespace": namespace}).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": TRANSFER_CONTENT_TYPE})
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if tls.enabled:
        handlers.append(urllib.request.HTTPSHandler(context=_https_context(tls)))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise PullError(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise PullError(f"cannot reach {url}: {exc}") from None
    try:
        answer = json.loads(payload)
    except ValueError:
        raise PullError(f"{url} did not answer JSON") from None
    if not isinstance(answer, dict):
        raise PullError(f"{url} did not answer a JSON object")
    retcode = answer.get("retcode")
    if retcode is not None and (not isinstance(retcode, int) or retcode != 0):
        raise PullError(f"{url} answered retcode {retcode!r}: {answer.get('retmsg')!r}")
    data = answer.get("data")
    if not isinstance(data, dict) or not data:
        raise PullError(f"{url} answered no model data")
    buffers: dict[str, bytes] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise PullError(f"the value of {key!r} is not a base64 string")
        try:
            buffers[key] = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise PullError(f"the value of {key!r} is not valid base64") from None
    return buffers


def parse_pipeline(buffers: Mapping[str, bytes]) -> pipeline_pb2.Pipeline:
    """The Pipeline of a pulled map, with an inference DSL FATE-Serving could build a processor from."""
    if PIPELINE_KEY not in buffers:
        raise PullError(f"the model has no {PIPELINE_KEY}")
    pipeline = pipeline_pb2.Pipeline()
    try:
        pipeline.ParseFromString(buffers[PIPELINE_KEY])
    except DecodeError:
        raise PullError(f"{PIPELINE_KEY} is not a Pipeline buffer") from None
    try:
        dsl = json.loads(pipeline.inference_dsl)
    except ValueError:
        raise PullError("the Pipeline's inference_dsl is not JSON") from None
    if not isinstance(dsl, dict) or not isinstance(dsl.get("components", {}), dict):
        raise PullError("the Pipeline's inference_dsl has no components object")
    return pipeline


def _own_role(request: pb.PublishRequest) -> str:
    return "guest" if request.local.role == "guest" else "host"


def _model_info(request: pb.PublishRequest, role: str, party_id: str) -> pb.ModelInfo | None:
    """``request.model[role].roleModelInfo[party_id]`` without inserting anything into the maps."""
    if role not in request.model or party_id not in request.model[role].roleModelInfo:
        return None
    return request.model[role].roleModelInfo[party_id]


def _parties(request: pb.PublishRequest, role: str) -> list[str]:
    """``request.role[role].partyId``; FATE-Serving dereferences a missing role (NPE → 110)."""
    if role not in request.role:
        raise ServingError(SYSTEM_ERROR, f"the request's role map has no {role}")
    return list(request.role[role].partyId)


class Recorder:
    """Appends one JSON line per request to the record file (nothing when there is none)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()

    def append(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        if self._path is None:
            return
        entry = {
            "method": method,
            "request": json_format.MessageToDict(request, preserving_proto_field_name=True),
            "raw": base64.b64encode(request.SerializeToString()).decode("ascii"),
            "metadata": {key: value for key, value in context.invocation_metadata() if isinstance(value, str)},
            "time": time.time(),
        }
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, self._path.open("a", encoding="utf-8") as out:
            out.write(line)


class FaultSource:
    """The faults in force: the control file's while it exists, else the start-up ones."""

    def __init__(self, initial: Faults, control: Path | None) -> None:
        self._initial = initial
        self._control = control
        self._lock = threading.Lock()
        self._generation: tuple[int, int] | None = None
        self._drops_left = initial.drop_times

    def _read(self) -> tuple[Faults, tuple[int, int] | None]:
        if self._control is None:
            return self._initial, None
        try:
            with self._control.open("rb") as source:
                stat = os.fstat(source.fileno())
                data = source.read()
        except FileNotFoundError:
            return self._initial, None
        try:
            return Faults.from_json(data.decode("utf-8")), (stat.st_ino, stat.st_mtime_ns)
        except ValueError as exc:
            raise ValueError(f"the control file {self._control} is invalid: {exc}") from None

    def current(self) -> tuple[Faults, bool]:
        """The faults for this call, and whether this call is dropped."""
        faults, generation = self._read()
        with self._lock:
            if generation != self._generation:
                self._generation = generation
                self._drops_left = faults.drop_times
            if faults.drop is None:
                return faults, False
            if faults.drop_times == 0:
                return faults, True
            if self._drops_left > 0:
                self._drops_left -= 1
                return faults, True
            return faults, False


def _wait(seconds: float, context: grpc.ServicerContext) -> None:
    """Sleep ``seconds``, or less if the caller cancels or its deadline passes."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and context.is_active():
        time.sleep(min(left, _DELAY_SLICE))


class ServingServicer(model_service_pb2_grpc.ModelServiceServicer):
    """FATE-Serving 2.1's model management, in memory."""

    def __init__(self, options: ServingOptions) -> None:
        self._options = options
        self._recorder = Recorder(options.record)
        self._faults = FaultSource(options.faults, options.control)
        self._lock = threading.Lock()  # FATE-Serving's methods are synchronized
        self._models: dict[str, LoadedModel] = {}
        self._bindings: dict[str, str] = {}  # serviceId → model key

    # -- the common path of every call ---------------------------------------------------------

    def _enter(self, method: str, request: Message, context: grpc.ServicerContext) -> Faults:
        """Record the call, then apply the delay and drop faults; return the faults in force."""
        self._recorder.append(method, request, context)
        faults, dropped = self._faults.current()
        if faults.delay:
            _wait(faults.delay, context)
        if dropped:
            if faults.drop == "crash":
                log.warning("%s: crashing as asked (drop=crash)", method)
                os._exit(CRASH_EXIT_CODE)
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped by the FATE-Serving test server")
        return faults

    @staticmethod
    def _answer(
        method: str, build: Callable[[int, str], R], work: Callable[[], None], success_message: str = "success"
    ) -> R:
        """Run ``work`` and answer as FATE-Serving: its own code for a :class:`ServingError`, 110 otherwise."""
        try:
            work()
        except ServingError as exc:
            log.info("%s: %s %s", method, exc.code, exc.message)
            return build(exc.code, exc.message)
        except Exception as exc:  # FATE-Serving's ErrorMessageUtil: any other exception is 110
            log.error("%s: unexpected %s: %s", method, exc.__class__.__name__, exc)
            return build(SYSTEM_ERROR, str(exc))
        return build(SUCCESS, success_message)

    @staticmethod
    def _publish_response(code: int, message: str) -> pb.PublishResponse:
        return pb.PublishResponse(statusCode=code, message=message, data=b"{}")

    # -- load ----------------------------------------------------------------------------------

    def publishLoad(self, request: pb.PublishRequest, context: grpc.ServicerContext) -> pb.PublishResponse:
        faults = self._enter("publishLoad", request, context)
        if faults.fail_load:
            return self._publish_response(faults.fail_load, faults.fail_load_message)
        return self._answer("publishLoad", self._publish_response, lambda: self._load(request))

    def _load(self, request: pb.PublishRequest) -> None:
        role = _own_role(request)
        party_id = request.local.partyId
        if role not in request.model:
            raise ServingError(SYSTEM_ERROR, f"the request's model map has no {role}")
        remote = "host" if role == "guest" else "guest"
        partners = []
        for partner_id in _parties(request, remote):
            info = _model_info(request, remote, partner_id)
            if info is None:
                raise ServingError(SYSTEM_ERROR, f"the request's model map has no {remote} {partner_id}")
            partners.append(PartnerModel(partner_id, remote, info.tableName, info.namespace))
        if not _parties(request, role):
            raise ServingError(SYSTEM_ERROR, f"the request's role map lists no {role} party")
        own = _model_info(request, role, party_id)
        if own is None:
            raise ServingError(SYSTEM_ERROR, "model info is invalid")
        if request.loadType not in ("", "FATEFLOW"):
            raise ServingError(SYSTEM_ERROR, f"load type {request.loadType!r} is not supported by this test server")
        url = urllib.parse.unquote(request.filePath) if request.filePath.strip() else self._options.transfer_url
        try:
            buffers = pull_model(url, own.tableName, own.namespace, self._options.pull_timeout, self._options.tls)
            pipeline = parse_pipeline(buffers)
        except PullError as exc:
            log.warning("publishLoad %s: %s", model_key(own.tableName, own.namespace), exc)
            raise ServingError(MODEL_INIT_ERROR, MODEL_INIT_MESSAGE) from None
        model = LoadedModel(
            table_name=own.tableName,
            namespace=own.namespace,
            role=role,
            party_id=party_id,
            roles={name: tuple(party.partyId) for name, party in sorted(request.role.items())},
            partners=tuple(partners),
            pipeline=pipeline,
            components=tuple(sorted(buffers)),
            resource_address=urllib.parse.urlsplit(url).netloc,
            loaded_at=time.time(),
        )
        with self._lock:
            self._models[model.key] = model

    # -- bind ----------------------------------------------------------------------------------

    def publishBind(self, request: pb.PublishRequest, context: grpc.ServicerContext) -> pb.PublishResponse:
        return self._publish_bind("publishBind", request, context)

    def publishOnline(self, request: pb.PublishRequest, context: grpc.ServicerContext) -> pb.PublishResponse:
        return self._publish_bind("publishOnline", request, context)

    def _publish_bind(
        self, method: str, request: pb.PublishRequest, context: grpc.ServicerContext
    ) -> pb.PublishResponse:
        faults = self._enter(method, request, context)
        if faults.fail_bind:
            return self._publish_response(faults.fail_bind, faults.fail_bind_message)
        return self._answer(method, self._publish_response, lambda: self._bind(request))

    def _bind(self, request: pb.PublishRequest) -> None:
        service_id = request.serviceId
        if not service_id.strip():
            raise ServingError(SYSTEM_ERROR, "param service id is blank")
        if any(char in service_id for char in SERVICE_ID_FORBIDDEN):
            forbidden = json.dumps(list(SERVICE_ID_FORBIDDEN), separators=(",", ":"))
            raise ServingError(SYSTEM_ERROR, f"Service id contains special characters, {forbidden}")
        role = _own_role(request)
        if role not in request.model:
            raise ServingError(SYSTEM_ERROR, f"the request's model map has no {role}")
        parties = _parties(request, role)
        if not parties:
            raise ServingError(SYSTEM_ERROR, f"the request's role map lists no {role} party")
        info = _model_info(request, role, parties[0])  # the role's first party, not local.partyId
        if info is None:
            raise ServingError(SYSTEM_ERROR, f"the request's model map has no {role} {parties[0]}")
        key = model_key(info.tableName, info.namespace)
        with self._lock:
            if key not in self._models:
                raise ServingError(MODEL_NULL, f"model {key} is not exist ")
            self._bindings[service_id] = key

    # -- unload, unbind ------------------------------------------------------------------------

    def unload(self, request: pb.UnloadRequest, context: grpc.ServicerContext) -> pb.UnloadResponse:
        self._enter("unload", request, context)

        def work() -> None:
            key = model_key(request.tableName, request.namespace)
            with self._lock:
                if key not in self._models:
                    raise ServingError(MODEL_NULL, MODEL_NOT_LOADED_MESSAGE)
                del self._models[key]
                for service_id in [s for s, bound in self._bindings.items() if bound == key]:
                    del self._bindings[service_id]

        return self._answer("unload", lambda code, message: pb.UnloadResponse(statusCode=code, message=message), work)

    def unbind(self, request: pb.UnbindRequest, context: grpc.ServicerContext) -> pb.UnbindResponse:
        self._enter("unbind", request, context)

        def work() -> None:
            if not request.serviceIds:
                raise ServingError(SYSTEM_ERROR, "param service id is blank")
            key = model_key(request.tableName, request.namespace)
            with self._lock:
                if key not in self._models:
                    raise ServingError(MODEL_NULL, MODEL_NOT_LOADED_MESSAGE)
                if any(self._bindings.get(service_id) != key for service_id in request.serviceIds):
                    raise ServingError(MODEL_NULL, "unbind request info is error")
                for service_id in request.serviceIds:
                    self._bindings.pop(service_id, None)

        return self._answer("unbind", lambda code, message: pb.UnbindResponse(statusCode=code, message=message), work)

    # -- queries -------------------------------------------------------------------------------

    def queryModel(self, request: pb.QueryModelRequest, context: grpc.ServicerContext) -> pb.QueryModelResponse:
        self._enter("queryModel", request, context)
        with self._lock:
            bound: dict[str, list[str]] = {}
            for service_id, key in sorted(self._bindings.items()):
                bound.setdefault(key, []).append(service_id)
            if request.queryType == 0:
                models = [self._models[key] for key in sorted(self._models)]
            elif request.queryType == 1:
                wanted = request.serviceId.lower()
                models = [
                    self._models[key]
                    for key in sorted(self._models)
                    if any(wanted in service_id.lower() for service_id in bound.get(key, []))
                ]
            elif request.queryType == 2:
                key = model_key(request.tableName, request.namespace)
                models = [self._models[key]] if key in self._models else []
            else:
                models = []
        infos = [
            pb.ModelInfoEx(
                tableName=model.table_name,
                namespace=model.namespace,
                serviceIds=bound.get(model.key, []),
                content=model.content(bound.get(model.key, [])),
                index=index,
                resourceAdress=model.resource_address,
            )
            for index, model in enumerate(models)
        ]
        return pb.QueryModelResponse(retcode=SUCCESS, message="success", modelInfos=infos)

    def fetchModel(self, request: pb.FetchModelRequest, context: grpc.ServicerContext) -> pb.FetchModelResponse:
        self._enter("fetchModel", request, context)
        return pb.FetchModelResponse(statusCode=MODEL_SYNC_ERROR, message="model synchronization is disabled")

    def modelTransfer(
        self, request: pb.ModelTransferRequest, context: grpc.ServicerContext
    ) -> pb.ModelTransferResponse:
        self._enter("modelTransfer", request, context)
        return pb.ModelTransferResponse(statusCode=MODEL_SYNC_ERROR, message="model synchronization is disabled")


def serve(options: ServingOptions, port_file: Path) -> None:
    """Serve until SIGTERM/SIGINT; ``host:port`` goes to ``port_file`` (atomically) once serving."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="serving"))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ServingServicer(options), server)
    target = f"{options.host}:{options.port}"
    tls = options.tls
    port = server.add_secure_port(target, server_credentials(tls)) if tls.cert else server.add_insecure_port(target)
    if port == 0:
        raise OSError(f"cannot listen on {options.host}:{options.port}")
    stop = StopFlag.install()
    server.start()
    port_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(f"{options.host}:{port}\n", encoding="utf-8")
    tmp.replace(port_file)
    log.info("FATE-Serving test server listening on %s:%s", options.host, port)
    stop.wait()
    log.info("stopping")
    server.stop(grace=1.0).wait()


def parse_args(argv: Sequence[str] | None = None) -> tuple[ServingOptions, Path]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.serving", description="A FATE-Serving 2.1 stand-in for tests."
    )
    parser.add_argument("--port-file", type=Path, required=True, help="where host:port is written once serving")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--record", type=Path, help="append every request to this JSON-lines file")
    parser.add_argument("--control", type=Path, help="JSON faults file, re-read on every request")
    parser.add_argument("--transfer-url", default=DEFAULT_TRANSFER_URL, help="model pull URL when filePath is empty")
    parser.add_argument("--pull-timeout", type=float, default=30.0, help="seconds a model pull may take")
    parser.add_argument("--tls-cert", type=Path, help="serve gRPC over TLS with this certificate (and --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="the key of --tls-cert")
    parser.add_argument("--tls-ca", type=Path, help="require client certificates of this CA; verify HTTPS pulls")
    defaults = Faults()
    parser.add_argument("--fail-load", type=int, default=0, metavar="CODE", help="publishLoad answers CODE")
    parser.add_argument("--fail-load-message", default=defaults.fail_load_message)
    parser.add_argument("--fail-bind", type=int, default=0, metavar="CODE", help="publishBind/Online answer CODE")
    parser.add_argument("--fail-bind-message", default=defaults.fail_bind_message)
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="every call waits S seconds")
    parser.add_argument("--drop", choices=get_args(DropMode), help="abort calls with UNAVAILABLE, or crash")
    parser.add_argument("--drop-times", type=int, default=0, metavar="N", help="drop only the next N calls")
    args = parser.parse_args(argv)
    try:
        faults = Faults(
            fail_load=args.fail_load,
            fail_load_message=args.fail_load_message,
            fail_bind=args.fail_bind,
            fail_bind_message=args.fail_bind_message,
            delay=args.delay,
            drop=cast(DropMode | None, args.drop),
            drop_times=args.drop_times,
        )
        options = ServingOptions(
            host=args.host,
            port=args.port,
            record=args.record,
            control=args.control,
            faults=faults,
            transfer_url=args.transfer_url,
            pull_timeout=args.pull_timeout,
            tls=TlsConf(
                cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca, require_client_cert=args.tls_ca is not None
            ),
        )
    except ValueError as exc:
        parser.error(str(exc))
    return options, args.port_file


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options, port_file = parse_args(argv)
    serve(options, port_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
