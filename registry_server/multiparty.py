"""The coordinator's multi-party operations, put together.

FATE-Serving's (:mod:`serving_ops`), the two-phase ones (:mod:`deploys`, :mod:`migrates` on the engine of
:mod:`two_phase`), and the catalog kept in line with the parties' accounts (:mod:`accounts`).
"""

from __future__ import annotations

import peewee

from fate_registry.config import ServiceConf
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import PartyModelRef
from registry_server.accounts import Accounts
from registry_server.adoption import Adoption
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog
from registry_server.deploys import Deploys, catalog_deployed
from registry_server.fanout import FanOut
from registry_server.migrates import Migrates, catalog_migrated
from registry_server.plan import PlanKind
from registry_server.serving_ops import ServingOps
from registry_server.two_phase import Deadlines, Services, TwoPhase

FINISHERS = {PlanKind.DEPLOY: catalog_deployed, PlanKind.MIGRATE: catalog_migrated}
"""How each kind of two-phase operation catalogs what it committed."""


class MultiParty:
    """The coordinator's multi-party operations, on one catalog, agents and fan-out."""

    def __init__(
        self, conf: ServiceConf, catalog: Catalog, agents: AgentClients, fanout: FanOut, adoption: Adoption
    ) -> None:
        self.adoption = adoption  # the catalog's lookups, asking the parties on a miss
        self.accounts = Accounts(catalog, agents)
        services = Services(catalog, agents, fanout, Deadlines.of(conf.coordinator))
        self.engine = TwoPhase(services, FINISHERS)
        self.serving = ServingOps(services, adoption, self.accounts.learn)
        self.deploys = Deploys(self.engine, adoption)
        self.migrates = Migrates(self.engine, frozenset(conf.parties))

    def learn(self, ref: PartyModelRef) -> None:
        self.accounts.learn(ref)

    def settle_in_doubt(self) -> None:
        self.accounts.settle_in_doubt()

    def recover(self, at_start: bool, live: peewee.SelectQuery) -> None:
        self.engine.recover(at_start, live)

    def load(self, request: pb.LoadModelRequest, caller: str) -> pb.LoadModelResponse:
        return self.serving.load(request, caller)

    def bind(self, request: pb.BindModelRequest, caller: str) -> pb.BindModelResponse:
        return self.serving.bind(request, caller)

    def unload(self, request: pb.UnloadModelRequest, caller: str) -> pb.UnloadModelResponse:
        return self.serving.unload(request, caller)

    def unbind(self, request: pb.UnbindModelRequest, caller: str) -> pb.UnbindModelResponse:
        return self.serving.unbind(request, caller)

    def deploy(self, request: pb.DeployModelRequest, caller: str) -> pb.DeployModelResponse:
        return self.deploys.deploy(request, caller)

    def migrate(self, request: pb.MigrateModelRequest, caller: str) -> pb.MigrateModelResponse:
        return self.migrates.migrate(request, caller)
