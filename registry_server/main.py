"""``fate-registry server``: serve the coordinator until SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path

from fate_registry import config, metrics
from fate_registry.authz import CallerAllowList
from fate_registry.grpc_server import bind_server, register_servicer, wait_for_signal
from fate_registry.v1 import registry_pb2_grpc
from registry_server.adoption import Adoption
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog
from registry_server.fanout import FanOut
from registry_server.fate_http.server import FateHttpServer
from registry_server.maintenance import Maintenance
from registry_server.multiparty import MultiParty
from registry_server.replicas import Leases, replica_name
from registry_server.required import RequiredFields
from registry_server.servicer import SERVICE, RegistryServicer
from registry_server.transfers import TransferDesk

log = logging.getLogger(__name__)


def serve(conf: config.ServiceConf, port_file: Path | None = None) -> None:
    """Serve the coordinator until SIGTERM, writing its address to ``port_file`` once it serves."""
    address = conf.coordinator.address
    running = bind_server(  # first: a coordinator that cannot have its port must not recover anything
        address.host,
        address.port,
        [SERVICE.full_name],
        tls=conf.coordinator.tls,
        interceptors=[  # a caller is authorised before its request is looked at
            *([CallerAllowList(conf.coordinator.tls.allow)] if conf.coordinator.tls.require_client_cert else []),
            RequiredFields(SERVICE.full_name),
        ],
        max_workers=conf.coordinator.rpc_workers,
    )
    fate_http = FateHttpServer(conf) if conf.coordinator.http.enabled else None  # bound now, served below
    replica = replica_name(conf.coordinator)
    catalog = Catalog(conf.coordinator.database, owner=replica)
    metrics.watch_catalog(catalog.count_versions)
    leases = Leases(catalog.db, replica, conf.coordinator.lease_seconds)
    leases.renew()
    heartbeat = Maintenance([leases.renew], conf.coordinator.lease_seconds / 3)
    agents = AgentClients(conf, catalog.site_of)
    fanout = FanOut()
    adoption = Adoption(catalog, agents, fanout)
    multiparty = MultiParty(conf, catalog, agents, fanout, adoption)
    transfers = TransferDesk(catalog, agents, multiparty.learn)
    multiparty.recover(at_start=True, live=leases.live())
    transfers.settle_orphans(leases.live())
    multiparty.settle_in_doubt()
    servicer = RegistryServicer(catalog, agents, fanout, transfers, multiparty)  # type: ignore[abstract]
    running.serve(
        lambda server: register_servicer(
            server,
            registry_pb2_grpc.add_RegistryServiceServicer_to_server,
            servicer,
            SERVICE.full_name,
            servicer.raw_handlers(),
        )
    )
    if fate_http is not None:
        fate_http.start(servicer, port_file)  # before the gRPC port file: a launcher finds both once that is there
    log.info(
        "coordinator replica %s listening on %s:%s with %d parties",
        replica,
        address.host,
        running.port,
        len(conf.parties),
    )
    adopting = adoption.start(conf.coordinator.maintenance_period)  # what the parties hold, FATE-Flow's too
    maintenance = Maintenance(
        [
            lambda: transfers.settle_orphans(leases.live()),  # before the sweep: an orphan may be old too
            transfers.sweep,
            lambda: multiparty.recover(at_start=False, live=leases.live()),
            multiparty.settle_in_doubt,
        ],
        conf.coordinator.maintenance_period,
    )
    try:
        wait_for_signal(running, port_file, address.host)
    finally:
        if fate_http is not None:
            fate_http.stop()
        heartbeat.stop()
        maintenance.stop()
        adopting.stop()
        leases.release()  # the running calls have ended: no one need wait for this lease to expire
        fanout.close()
        agents.close()
        catalog.close()
