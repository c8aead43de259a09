"""``fate-registry agent``: serve one party's agent until SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path

from fate_registry import config
from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.grpc_server import register_servicer, start_server, wait_for_signal
from party_agent.service import PartyAgent
from party_agent.servicer import AgentServicer

log = logging.getLogger(__name__)
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"].full_name


def serve(conf: config.ServiceConf, party_id: str, port_file: Path | None = None) -> None:
    party = conf.party(party_id)
    agent = PartyAgent(conf, party)
    servicer = AgentServicer(agent)  # type: ignore[abstract]  # the rest answer UNIMPLEMENTED
    running = start_server(
        party.address.host,
        party.address.port,
        lambda server: register_servicer(
            server,
            agent_pb2_grpc.add_PartyAgentServiceServicer_to_server,
            servicer,
            SERVICE_NAME,
            servicer.raw_handlers(),
        ),
        [SERVICE_NAME],
    )
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
        agent.close()
