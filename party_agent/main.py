"""``fate-registry agent``: serve one party's agent until SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from fate_registry import config
from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.fate.model_service_pb2_grpc import add_ModelServiceServicer_to_server
from fate_registry.fate.proxy_pb2 import DESCRIPTOR as PROXY_DESCRIPTOR
from fate_registry.fate.proxy_pb2_grpc import add_DataTransferServiceServicer_to_server
from fate_registry.grpc_server import register_handlers, servicer_handlers, start_server, wait_for_signal
from party_agent.envelope import EnvelopeServicer
from party_agent.fate_model_service import SERVICE as FATE_SERVICE
from party_agent.fate_model_service import FateModelService
from party_agent.service import PartyAgent
from party_agent.servicer import AgentServicer
from party_agent.transfer_http import TransferServer

log = logging.getLogger(__name__)
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"].full_name
PROXY_SERVICE = PROXY_DESCRIPTOR.services_by_name["DataTransferService"].full_name


def serve(conf: config.ServiceConf, party_id: str, port_file: Path | None = None) -> None:
    party = conf.party(party_id)
    agent = PartyAgent(conf, party)
    servicer = AgentServicer(agent)  # type: ignore[abstract]  # the rest answer UNIMPLEMENTED
    fate_service = FateModelService(agent)  # type: ignore[abstract]  # FATE-Serving's other methods too
    transfer = TransferServer(party.transfer_address.host, party.transfer_address.port, agent.transfer_body)
    agent.transfer_host, agent.transfer_port = party.transfer_address.host, transfer.server_address[1]
    transfer.start()

    handlers = servicer_handlers(
        agent_pb2_grpc.add_PartyAgentServiceServicer_to_server, servicer, servicer.raw_handlers()
    )
    envelope = EnvelopeServicer(party_id, SERVICE_NAME, handlers)  # type: ignore[abstract]  # push, pull, polling too

    def register(server: grpc.Server) -> None:
        register_handlers(server, SERVICE_NAME, handlers)
        add_ModelServiceServicer_to_server(fate_service, server)
        add_DataTransferServiceServicer_to_server(envelope, server)

    names = [SERVICE_NAME, FATE_SERVICE.full_name, PROXY_SERVICE]
    running = start_server(party.address.host, party.address.port, register, names)
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
