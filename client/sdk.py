"""A typed client for the coordinator's ``RegistryService``.

Every method sends one request and returns the response message; every failure is a
:class:`~fate_registry.errors.RegistryError` carrying the server's reason and FATE retcode. Archives
move in chunks in both directions, so memory stays flat whatever the model size (DESIGN §5.4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

import grpc
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub

from client.archive_streams import ArchiveUpload, ExpectedSize, ExportResult, Progress, receive_archive, unwritable
from fate_registry.channels import CHANNEL_OPTIONS, TICKET_KEY, never_connected, open_channel
from fate_registry.config import PLAINTEXT, LimitsConf, TlsConf
from fate_registry.errors import Reason, RegistryError, from_rpc_error
from fate_registry.identity import party_model_id
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.registry_pb2_grpc import RegistryServiceStub

__all__ = [
    "AGENT_CONNECT_SECONDS",
    "AGENT_SERVICE",
    "LONG_CALL_SECONDS",
    "REGISTRY_SERVICE",
    "ExpectedSize",
    "ExportResult",
    "Progress",
    "RegistryClient",
    "TransferMode",
    "receive_archive",
]
"""The SDK's names; the archive streams themselves are :mod:`client.archive_streams`'s."""

TransferMode = Literal["auto", "direct", "relay"]
"""How archive bytes travel: one hop to the party's agent (direct), through the coordinator (relay),
or direct when the agent can be reached and relayed otherwise (auto)."""
AGENT_SERVICE = "/fate_registry.agent.v1.PartyAgentService/"
REGISTRY_SERVICE = "/fate_registry.v1.RegistryService/"
AGENT_CONNECT_SECONDS = 2.0
# The client's bound on a call that moves or rewrites whole models: only against a coordinator that never
# answers, as the coordinator ends such a call itself within its deploy_timeout per phase.
LONG_CALL_SECONDS = 3600.0

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


@dataclass(frozen=True)
class _Route:
    """A one-hop transfer the coordinator authorised: the agent's channel and the ticket to present."""

    channel: grpc.Channel
    address: str
    ticket: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((TICKET_KEY, self.ticket),)


class RegistryClient:
    """Channels to the coordinator at ``address``; use it as a context manager or call :meth:`close`.

    ``address`` may list several coordinator replicas, comma-separated (``h1:9360,h2:9360``). Calls go
    to the first that answers; on UNAVAILABLE the next one is tried: always for calls that are safe to
    repeat (reads, load, bind, unload, unbind, and deploy, which carries a request id), and for the
    others only when the replica could not be connected to at all, so the call never reached it and
    cannot have been done twice.

    ``timeout`` is the deadline of each short unary call, in seconds. The calls that move or rewrite
    whole models (deploy, migrate, store, restore, homo-convert, homo-deploy) get ``long_timeout``
    instead: the coordinator gives each party its ``deploy_timeout`` (600 s by default) for them, so a
    client deadline shorter than that would report a failure while the operation goes on and may well
    succeed. Archive transfers have no deadline by default (a large model may take long); pass
    ``timeout`` to :meth:`import_model` or :meth:`export_model` to bound them.

    ``tls`` (its ``ca``, and ``cert``/``key`` for mutual TLS) secures the channel to the coordinator and
    those to agents for one-hop transfers; plain text by default.
    """

    def __init__(
        self,
        address: str,
        timeout: float = 60.0,
        long_timeout: float = LONG_CALL_SECONDS,
        channel_options: Sequence[tuple[str, int]] = CHANNEL_OPTIONS,
        transfer: TransferMode = "auto",
        tls: TlsConf = PLAINTEXT,
    ) -> None:
        self.addresses = [a.strip() for a in address.split(",") if a.strip()] or [address]
        self.timeout = timeout
        self.long_timeout = long_timeout
        self.transfer = transfer
        self.tls = tls
        self._options = list(channel_options)
        self._channels = [open_channel(a, tls, self._options) for a in self.addresses]
        self._stubs = [RegistryServiceStub(c) for c in self._channels]
        self._current = 0  # the replica that answered last
        self._agent_channels: dict[str, grpc.Channel] = {}

    @property
    def address(self) -> str:
        """The coordinator replica calls go to now."""
        return self.addresses[self._current]

    @property
    def _channel(self) -> grpc.Channel:
        return self._channels[self._current]

    def close(self) -> None:
        for channel in self._agent_channels.values():
            channel.close()
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _error(
        self, exc: grpc.RpcError, route: _Route | None = None, party_id: str = "", long: bool = False
    ) -> RegistryError:
        """The server's own error, or one naming the server and its address when the call never got an answer.

        The server is the registry, or the party's agent on a one-hop ``route``. A ``long`` call's work goes on at the
        coordinator after the client's deadline: the message says where to see how it ended.
        """
        server = f"the agent of party {party_id}" if route else "the registry"
        address = route.address if route else self.address
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            context = f"cannot reach {server} at {address}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            context = f"{server} at {address} did not answer in time"
        else:
            context = f"{server} at {address} failed"
        error = from_rpc_error(exc, context, tls=self.tls.enabled)
        if long and code == grpc.StatusCode.DEADLINE_EXCEEDED:
            hint = "; the operation may still finish there: flow operation list shows how it ended"
            return dataclasses.replace(error, message=error.message + hint)
        return error

    # One-hop transfers -----------------------------------------------------------------------------

    def _route(self, begin: pb.BeginTransferRequest) -> _Route | None:
        """Where archive bytes go: straight to the party's agent with a ticket, or through the coordinator.

        ``auto`` takes the one hop when the coordinator offers it and the agent answers within a
        moment, else relays.
        """
        if self.transfer == "relay":
            return None
        try:
            granted = self._unary(lambda stub: stub.BeginTransfer, begin)
        except RegistryError as exc:
            if self.transfer == "auto" and exc.reason is Reason.NOT_IMPLEMENTED:  # an older coordinator
                return None
            raise
        channel = self._agent_channels.get(granted.agent_address)
        if channel is None:
            channel = open_channel(granted.agent_address, self.tls, self._options)
            self._agent_channels[granted.agent_address] = channel
        route = _Route(channel, granted.agent_address, granted.ticket)
        if self.transfer == "auto":
            try:
                HealthStub(channel).Check(HealthCheckRequest(), timeout=AGENT_CONNECT_SECONDS)
            except grpc.RpcError:
                self._end_quietly(route, begin)
                return None
        return route

    def _end(self, route: _Route, model: common.PartyModelRef) -> pb.EndTransferResponse:
        return self._unary(lambda stub: stub.EndTransfer, pb.EndTransferRequest(ticket=route.ticket, model=model))

    def _end_quietly(self, route: _Route, begin: pb.BeginTransferRequest) -> None:
        """Close a transfer that failed or was not made; the error the caller sees is the first one."""
        model = begin.import_header.target if begin.WhichOneof("transfer") == "import_header" else begin.export_model
        with contextlib.suppress(RegistryError):
            self._end(route, model)

    def _unary(
        self,
        method: Callable[[RegistryServiceStub], grpc.UnaryUnaryMultiCallable[_Request, _Response]],
        request: _Request,
        idempotent: bool = False,
        long: bool = False,
    ) -> _Response:
        """Call ``method`` (picked from a replica's stub) on the current replica, failing over to the next ones.

        It fails over on UNAVAILABLE as the class describes; within ``long_timeout`` if ``long``.
        """
        timeout = self.long_timeout if long else self.timeout
        for attempt in range(len(self._channels)):
            try:
                return method(self._stubs[self._current])(request, timeout=timeout)
            except grpc.RpcError as exc:
                last = attempt == len(self._channels) - 1
                if last or exc.code() != grpc.StatusCode.UNAVAILABLE or not (idempotent or never_connected(exc)):
                    raise self._error(exc, long=long) from None
                self._current = (self._current + 1) % len(self._channels)
        raise AssertionError("the last attempt returns or raises")

    # Archive transfers ---------------------------------------------------------------------------

    def import_model(
        self,
        path: Path,
        target: common.PartyModelRef,
        force_update: bool = False,
        sha256: str = "",
        progress: Progress | None = None,
        chunk_size: int = LimitsConf.upload_chunk_bytes,
        timeout: float | None = None,
    ) -> pb.ImportModelResponse:
        """``flow model import -c``: upload the archive at ``path`` to ``target``'s party.

        ``sha256`` is the archive's expected hash, checked by the party before anything becomes visible.
        Without it the party still checks every entry's CRC and, for archives we exported, every
        file's SHA-256 against the manifest the archive carries.
        """
        try:
            file = path.open("rb")
        except OSError as exc:
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"cannot read the model archive {path}: {exc.strerror or exc}"
            ) from None
        with file:
            header = common.ImportModelHeader(
                target=target,
                force_update=force_update,
                sha256=sha256,
                size=os.fstat(file.fileno()).st_size,
                file_name=path.name,
            )
            begin = pb.BeginTransferRequest(import_header=header)
            route = self._route(begin)
            upload = ArchiveUpload(file, header, chunk_size, progress)
            channel, service = (self._channel, REGISTRY_SERVICE) if route is None else (route.channel, AGENT_SERVICE)
            call = channel.stream_unary(
                service + "ImportModel",
                request_serializer=None,  # ArchiveUpload yields serialized messages
                response_deserializer=pb.ImportModelResponse.FromString,
            )
            # A blocking call, not a future: its events are taken on this thread, where a future's go
            # through the channel's polling thread (a thread hand-off per message: ~10 % of a 1 GiB import)
            failed: grpc.RpcError | None = None
            try:
                response: pb.ImportModelResponse = call(
                    iter(upload), timeout=timeout, metadata=route.metadata if route else None
                )
            except grpc.RpcError as exc:
                failed = exc
            # the upload's own failure comes first: the party's answer to a short archive only echoes it
            # (and a server that took one, which ours does not, would even answer OK)
            if failed is not None or upload.failure:
                if route is not None:
                    self._end_quietly(route, begin)
                if failed is not None and not upload.failure:
                    raise self._error(failed, route, target.party_id) from None
                raise RegistryError(Reason.INVALID_ARGUMENT, f"{path}: {upload.failure}") from None
        if route is None:
            return response
        return pb.ImportModelResponse(result=self._end(route, target).result)

    def export_model(
        self,
        model: common.PartyModelRef,
        output_dir: Path,
        stored: bool = False,
        progress: Progress | None = None,
        timeout: float | None = None,
        expected_size: ExpectedSize | None = None,
    ) -> ExportResult:
        """``flow model export -c``: download ``model``'s archive into ``output_dir``.

        The party writes each entry deflated when that pays, or every entry stored if ``stored``.

        The archive is written to a temporary file in ``output_dir``, checked against the trailer's
        size and sha256, fsynced and renamed to its final name, so ``output_dir`` never holds a
        partial or corrupt archive under that name. ``expected_size`` learns what to expect (for a
        progress bar's total) from the stream's header.
        """
        try:  # before a byte moves: the directory must exist and take a new file
            output_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=output_dir):
                pass
        except OSError as exc:
            raise unwritable(output_dir, exc) from None
        begin = pb.BeginTransferRequest(export_model=model, stored=stored)
        route = self._route(begin)
        channel, service = (self._channel, REGISTRY_SERVICE) if route is None else (route.channel, AGENT_SERVICE)
        call = channel.unary_stream(
            service + "ExportModel",
            request_serializer=pb.ExportModelRequest.SerializeToString,
            response_deserializer=None,  # receive_archive reads chunks without copying them
        )
        stream = call(
            pb.ExportModelRequest(model=model, stored=stored),
            timeout=timeout,
            metadata=route.metadata if route else None,
        )
        what = f"{party_model_id(model.role, model.party_id, model.model_id)} {model.model_version}"
        try:
            result = receive_archive(iter(stream), output_dir, what, progress, expected_size)
        except grpc.RpcError as exc:
            if route is not None:
                self._end_quietly(route, begin)
            raise self._error(exc, route, model.party_id) from None
        except RegistryError:
            if route is not None:
                self._end_quietly(route, begin)
            raise
        finally:
            # A no-op once the stream has ended; stops the sender after a local failure.
            stream.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves RpcContext.cancel untyped
        if route is not None:
            self._end(route, model)
        return result

    # Unary calls, one per RPC ----------------------------------------------------------------------

    def store_model(self, request: pb.StoreModelRequest) -> pb.StoreModelResponse:
        """``flow model export --to-database``."""
        return self._unary(lambda stub: stub.StoreModel, request, long=True)

    def restore_model(self, request: pb.RestoreModelRequest) -> pb.RestoreModelResponse:
        """``flow model import --from-database``."""
        return self._unary(lambda stub: stub.RestoreModel, request, long=True)

    def load_model(self, request: pb.LoadModelRequest) -> pb.LoadModelResponse:
        return self._unary(lambda stub: stub.LoadModel, request, idempotent=True)

    def bind_model(self, request: pb.BindModelRequest) -> pb.BindModelResponse:
        return self._unary(lambda stub: stub.BindModel, request, idempotent=True)

    def unload_model(self, request: pb.UnloadModelRequest) -> pb.UnloadModelResponse:
        return self._unary(lambda stub: stub.UnloadModel, request, idempotent=True)

    def unbind_model(self, request: pb.UnbindModelRequest) -> pb.UnbindModelResponse:
        return self._unary(lambda stub: stub.UnbindModel, request, idempotent=True)

    def migrate_model(self, request: pb.MigrateModelRequest) -> pb.MigrateModelResponse:
        return self._unary(lambda stub: stub.MigrateModel, request, long=True)

    def deploy_model(self, request: pb.DeployModelRequest) -> pb.DeployModelResponse:
        """Deploy under a request id (a fresh one unless given), so that it is safe to send again to another replica.

        The coordinators answer a repeat with the first deploy's outcome.
        """
        if not request.request_id:
            with_id = pb.DeployModelRequest()
            with_id.CopyFrom(request)
            with_id.request_id = uuid.uuid4().hex
            request = with_id
        return self._unary(lambda stub: stub.DeployModel, request, idempotent=True, long=True)

    def get_predict_dsl(self, request: pb.GetPredictDslRequest) -> pb.GetPredictDslResponse:
        return self._unary(lambda stub: stub.GetPredictDsl, request, idempotent=True)

    def get_predict_conf(self, request: pb.GetPredictConfRequest) -> pb.GetPredictConfResponse:
        return self._unary(lambda stub: stub.GetPredictConf, request, idempotent=True)

    def get_model_info(self, request: pb.GetModelInfoRequest) -> pb.GetModelInfoResponse:
        return self._unary(lambda stub: stub.GetModelInfo, request, idempotent=True)

    def list_model_versions(self, request: pb.ListModelVersionsRequest) -> pb.ListModelVersionsResponse:
        return self._unary(lambda stub: stub.ListModelVersions, request, idempotent=True)

    def list_model_tags(self, request: pb.ListModelTagsRequest) -> pb.ListModelTagsResponse:
        return self._unary(lambda stub: stub.ListModelTags, request, idempotent=True)

    def all_model_tags(self, job_id: str, max_pages: int = 10_000) -> pb.ListModelTagsResponse:
        """Every tag of a model version, page after page, as one response."""
        everything = pb.ListModelTagsResponse()
        token = ""
        for _ in range(max_pages):
            page = self.list_model_tags(pb.ListModelTagsRequest(job_id=job_id, page_token=token))
            everything.tags.extend(page.tags)
            token = page.next_page_token
            if not token:
                return everything
        raise RegistryError(Reason.INTERNAL, f"the tags of {job_id} did not end within {max_pages} pages")

    def add_model_tag(self, request: pb.AddModelTagRequest) -> pb.AddModelTagResponse:
        return self._unary(lambda stub: stub.AddModelTag, request)

    def remove_model_tag(self, request: pb.RemoveModelTagRequest) -> pb.RemoveModelTagResponse:
        return self._unary(lambda stub: stub.RemoveModelTag, request)

    def homo_convert_model(self, request: pb.HomoConvertModelRequest) -> pb.HomoConvertModelResponse:
        return self._unary(lambda stub: stub.HomoConvertModel, request, long=True)

    def homo_deploy_model(self, request: pb.HomoDeployModelRequest) -> pb.HomoDeployModelResponse:
        return self._unary(lambda stub: stub.HomoDeployModel, request, long=True)

    def list_checkpoints(self, request: pb.ListCheckpointsRequest) -> pb.ListCheckpointsResponse:
        return self._unary(lambda stub: stub.ListCheckpoints, request, idempotent=True)

    def get_checkpoint(self, request: pb.GetCheckpointRequest) -> pb.GetCheckpointResponse:
        return self._unary(lambda stub: stub.GetCheckpoint, request, idempotent=True)

    def delete_model(self, request: pb.DeleteModelRequest) -> pb.DeleteModelResponse:
        return self._unary(lambda stub: stub.DeleteModel, request)

    def list_operations(self, request: pb.ListOperationsRequest) -> pb.ListOperationsResponse:
        return self._unary(lambda stub: stub.ListOperations, request, idempotent=True)
