"""``fate-registry agent``: serve one party's agent until SIGTERM."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from fate_registry import config, metrics
from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.authz import HEALTH_SERVICE, REFLECTION_SERVICES, CallerAllowList, PartyGuard, guarded
from fate_registry.fate.model_service_pb2_grpc import add_ModelServiceServicer_to_server
from fate_registry.fate.proxy_pb2 import DESCRIPTOR as PROXY_DESCRIPTOR
from fate_registry.fate.proxy_pb2_grpc import add_DataTransferServiceServicer_to_server
from fate_registry.grpc_server import (
    Interceptor,
    bind_problem,
    bind_server,
    http_port_file,
    register_handlers,
    servicer_handlers,
    wait_for_signal,
    write_port_file,
)
from party_agent.agent import PartyAgent
from party_agent.envelope import EnvelopeServicer
from party_agent.fate_model_service import SERVICE as FATE_SERVICE
from party_agent.fate_model_service import FateModelService
from party_agent.servicer import AgentServicer
from party_agent.transfer_http import TransferServer

log = logging.getLogger(__name__)
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"].full_name
PROXY_SERVICE = PROXY_DESCRIPTOR.services_by_name["DataTransferService"].full_name
# A client's one-hop archive transfer: admitted from any certificate of the CA with the coordinator's ticket.
TICKETED_METHODS = (f"/{SERVICE_NAME}/ImportModel", f"/{SERVICE_NAME}/ExportModel")


def party_guard(party: config.PartyConf, hosted: Callable[[str], bool]) -> PartyGuard:
    """With or without TLS, the agent acts only for its own party id and those ``hosted`` admits.

    Those are the new party ids of slices it migrated; on direct calls and in Packets alike.
    """
    decoders = {TICKETED_METHODS[0]: agent_pb2.ImportModelRequest.FromString}
    return PartyGuard(party.party_id, [SERVICE_NAME], decoders, hosted)


def authorisation(party: config.PartyConf, hosted: Callable[[str], bool]) -> list[Interceptor]:
    """The agent's interceptors.

    With mutual TLS, only ``tls.allow`` calls its API (the coordinator, and the proxy that forwards Packets when the
    agent sits behind one), while FATE's read-only ModelService, health and reflection stay open to any caller the CA
    vouches for.
    """
    guard = party_guard(party, hosted)
    if not party.tls.require_client_cert:
        return [guard]
    open_services = (HEALTH_SERVICE, *REFLECTION_SERVICES, FATE_SERVICE.full_name)
    return [CallerAllowList(party.tls.allow, open_services, TICKETED_METHODS), guard]


def serve(conf: config.ServiceConf, party_id: str, port_file: Path | None = None) -> None:
    """Serve ``party_id``'s agent until SIGTERM, writing its address to ``port_file`` once it serves."""
    party = conf.party(party_id)

    def hosted(other: str) -> bool:  # asked only once the agent below serves
        return agent.acts_for(other)

    # Both ports first: an agent that cannot have them must not recover anything (another may own that state).
    running = bind_server(
        party.address.host,
        party.address.port,
        [SERVICE_NAME, FATE_SERVICE.full_name, PROXY_SERVICE],
        tls=party.tls,
        interceptors=authorisation(party, hosted),
    )
    transfer_at = party.transfer_address
    try:
        transfer = TransferServer(transfer_at.host, transfer_at.port, lambda ref: agent.transfer_body(ref), party.tls)
    except OSError as exc:
        running.stop(grace=0)
        problem = bind_problem(transfer_at.host, transfer_at.port)
        raise OSError(f"cannot listen on {transfer_at} (the transfer endpoint): {problem}") from exc
    agent = PartyAgent(conf, party)
    metrics.watch_disk(party.model_cache_dir)
    servicer = AgentServicer(agent)  # type: ignore[abstract]  # the rest answer UNIMPLEMENTED
    fate_service = FateModelService(agent)  # type: ignore[abstract]  # FATE-Serving's other methods too
    agent.transfer_host, agent.transfer_port = party.transfer_address.host, transfer.server_address[1]
    transfer.start()
    if port_file is not None:  # the transfer endpoint (and /metrics) beside the gRPC port file, written before it
        write_port_file(http_port_file(port_file), f"{party.transfer_address.host}:{transfer.server_address[1]}")

    handlers = servicer_handlers(
        agent_pb2_grpc.add_PartyAgentServiceServicer_to_server, servicer, servicer.raw_handlers()
    )
    envelope = EnvelopeServicer(party_id, SERVICE_NAME, guarded(party_guard(party, hosted), SERVICE_NAME, handlers))  # type: ignore[abstract]  # push, pull, polling too

    def register(server: grpc.Server) -> None:
        register_handlers(server, SERVICE_NAME, handlers)
        add_ModelServiceServicer_to_server(fate_service, server)
        add_DataTransferServiceServicer_to_server(envelope, server)

    running.serve(register)
    log.info(
        "agent of party %s listening on %s:%s, models in %s",
        party_id,
        party.address.host,
        running.port,
        party.model_cache_dir,
    )
    try:
        wait_for_signal(running, port_file, party.address.host)
    finally:
        transfer.stop()
        agent.close()
