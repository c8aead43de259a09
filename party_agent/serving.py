"""The party's FATE-Serving instances, called as FATE-Flow calls them (fate_flow.md §10)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from fate_registry import metrics
from fate_registry.channels import open_channel
from fate_registry.config import TlsConf
from fate_registry.errors import Retcode
from fate_registry.fate import model_service_pb2 as ms
from fate_registry.fate.model_service_pb2_grpc import ModelServiceStub
from fate_registry.identity import party_model_id
from fate_registry.v1.common_pb2 import PartyModelRef

SERVING_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ServingAnswer:
    """FATE's (retcode, retmsg) for one party: FATE-Serving's statusCode and message, or ours."""

    retcode: int
    retmsg: str


def publish_request(
    model: PartyModelRef, roles: Mapping[str, Sequence[str]], *, only_own_model: bool = False
) -> ms.PublishRequest:
    """The PublishRequest FATE-Flow builds.

    ``local`` = this party; the whole role map; the model of every role and party (load), or only this party's own
    (bind).
    """
    request = ms.PublishRequest(local=ms.LocalInfo(role=model.role, partyId=model.party_id))
    for role, parties in roles.items():
        request.role[role].partyId.extend(str(p) for p in parties)
        for party in parties:
            if only_own_model and (role, str(party)) != (model.role, model.party_id):
                continue
            request.model[role].roleModelInfo[str(party)].CopyFrom(
                ms.ModelInfo(tableName=model.model_version, namespace=party_model_id(role, party, model.model_id))
            )
    return request


Answer = ms.PublishResponse | ms.UnloadResponse | ms.UnbindResponse


def call_servings(servings: Sequence[str], tls: TlsConf, call: Callable[[ModelServiceStub], Answer]) -> ServingAnswer:
    """Call each serving in turn (over the party's ``serving_tls``), counted by outcome.

    The first non-zero statusCode stops and answers for the party (:mod:`fate_registry.metrics`).
    """
    answer = _call_each(servings, tls, call)
    metrics.SERVING_CALLS.labels("success" if answer.retcode == 0 else "failure").inc()
    return answer


def _call_each(servings: Sequence[str], tls: TlsConf, call: Callable[[ModelServiceStub], Answer]) -> ServingAnswer:
    if not servings:
        return ServingAnswer(Retcode.EXCEPTION_ERROR, "Please configure servings address")
    for address in servings:
        with open_channel(address, tls) as channel:
            try:
                answer = call(ModelServiceStub(channel))
            except grpc.RpcError as exc:
                code = exc.code()
                return ServingAnswer(
                    Retcode.CONNECTION_ERROR, f"FATE-Serving at {address} did not answer ({code.name.lower()})"
                )
        if answer.statusCode != 0:
            error = getattr(answer, "error", "")
            return ServingAnswer(answer.statusCode, f"{answer.message} {error}".strip())
    return ServingAnswer(0, "success")


def load(servings: Sequence[str], tls: TlsConf, request: ms.PublishRequest) -> ServingAnswer:
    """FATE-Serving's ``publishLoad`` on each serving in turn."""
    return call_servings(servings, tls, lambda stub: stub.publishLoad(request, timeout=SERVING_TIMEOUT_SECONDS))


def bind(servings: Sequence[str], tls: TlsConf, request: ms.PublishRequest) -> ServingAnswer:
    """FATE-Serving's ``publishBind`` on each serving in turn."""
    return call_servings(servings, tls, lambda stub: stub.publishBind(request, timeout=SERVING_TIMEOUT_SECONDS))


def unload(servings: Sequence[str], tls: TlsConf, model: PartyModelRef) -> ServingAnswer:
    """FATE-Serving's ``unload`` of ``model`` on each serving in turn."""
    request = ms.UnloadRequest(
        tableName=model.model_version, namespace=party_model_id(model.role, model.party_id, model.model_id)
    )
    return call_servings(servings, tls, lambda stub: stub.unload(request, timeout=SERVING_TIMEOUT_SECONDS))


def unbind(servings: Sequence[str], tls: TlsConf, model: PartyModelRef, service_ids: Sequence[str]) -> ServingAnswer:
    """FATE-Serving's ``unbind`` of ``service_ids`` from ``model`` on each serving in turn."""
    request = ms.UnbindRequest(
        serviceIds=list(service_ids),
        tableName=model.model_version,
        namespace=party_model_id(model.role, model.party_id, model.model_id),
    )
    return call_servings(servings, tls, lambda stub: stub.unbind(request, timeout=SERVING_TIMEOUT_SECONDS))
