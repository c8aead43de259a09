"""FATE's migrate (fate_flow.md §6.8), all or nothing across parties.

The plan and each executing party's prepare request (its rewritten slice and its archive); the two-phase engine carries
it out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError, missing_keys
from fate_registry.identity import gen_model_id, validate_name
from fate_registry.migration_roles import party_map
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import Party, PartyModelRef, PartyResult
from registry_server.agent_rpc import AgentRpc
from registry_server.agents import party_info
from registry_server.plan import Plan, PlanKind, Prepared
from registry_server.two_phase import PrepareStep, Services, TwoPhase

log = logging.getLogger(__name__)


class Migrates:
    """``federation``: the party ids of this federation (a migrated slice may not take one of them)."""

    def __init__(self, engine: TwoPhase, federation: Collection[str]) -> None:
        self.engine = engine
        self.catalog = engine.services.catalog
        self.federation = federation

    def migrate(self, request: pb.MigrateModelRequest, caller: str) -> pb.MigrateModelResponse:
        """Every executing party prepares its rewritten slice and its archive.

        Only when all have are they committed.
        """
        missing = [
            k
            for k, present in (
                ("migrate_initiator", request.migrate_initiator.role and request.migrate_initiator.party_id),
                ("role", request.role),
                ("migrate_role", request.migrate_role),
                ("model_id", request.model_id),
                ("model_version", request.model_version),
                ("execute_party", request.execute_party),
            )
            if not present
        ]
        if missing:
            raise missing_keys(missing)
        old = {r: list(p.party_ids) for r, p in request.role.items()}
        new = {r: list(p.party_ids) for r, p in request.migrate_role.items()}
        moves = party_map(old, new)  # FATE's checks of the two role maps, with FATE's messages
        execute = {r: list(dict.fromkeys(p.party_ids)) for r, p in request.execute_party.items()}
        for role, ids in execute.items():
            outside = [i for i in ids if i not in old.get(role, [])]
            if outside:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    f"execute_party {role} {', '.join(outside)} is not in the model's role {role}: {old.get(role, [])}",
                )
        self._check_new_sites({moves[r][p]: p for r, ids in execute.items() for p in ids if p in moves.get(r, {})})
        job_id = self.catalog.new_version_id()
        unify = request.unify_model_version or job_id
        validate_name(unify, "unify_model_version")
        plan = Plan(
            kind=PlanKind.MIGRATE,
            model_id=request.model_id,
            model_version=request.model_version,
            child=unify,
            parties=[(r, p) for r, ids in execute.items() for p in ids],
            new_model_id=gen_model_id(new),
        )
        step = PrepareStep(
            AgentRpc.PREPARE_MIGRATE,
            lambda role, party: agent_pb2.PrepareMigrateRequest(
                model=PartyModelRef(
                    role=role, party_id=party, model_id=request.model_id, model_version=request.model_version
                ),
                role=request.role,
                migrate_role=request.migrate_role,
                migrate_initiator=request.migrate_initiator,
                new_model_version=unify,
            ),
            lambda answer: Prepared(
                digest=answer.manifest_digest, archive=answer.archive_path, new_party_id=answer.new_model.party_id
            ),
        )
        results = self.engine.run(caller, plan, step)
        committed = plan.prepared is not None and all(x.retcode == 0 for x in results)
        archives = [
            pb.MigratedArchive(party=Party(role=r, party_id=p), path=plan.prepared_by((r, p)).archive)
            for r, p in plan.parties
            if committed
        ]
        return pb.MigrateModelResponse(
            job_id=job_id, model_id=plan.new_model_id, model_version=unify, results=results, archives=archives
        )

    def _check_new_sites(self, sites: Mapping[str, str]) -> None:
        """A migrated slice stays with the agent that prepares it, under its new party id, and is reached through it.

        So the new id must not be a party of this federation (whose agent would be asked instead), nor one whose slices
        another party's agent holds already.
        """
        for new_party, site in sites.items():
            if new_party == site:
                continue
            if new_party in self.federation:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    f"cannot migrate party {site}'s slice to party {new_party}: {new_party} is a party of this "
                    f"federation, and the slice would stay on the agent of {site}; migrate to party ids this "
                    "federation does not use",
                )
            holder = self.catalog.site_of(new_party)
            if holder is not None and holder != site:
                raise RegistryError(
                    Reason.INVALID_ARGUMENT,
                    f"cannot migrate party {site}'s slice to party {new_party}: the agent of {holder} already "
                    f"holds migrated slices of party {new_party}",
                )


def catalog_migrated(services: Services, operation_id: str, plan: Plan) -> list[PartyResult]:
    """Catalog the committed slices, each as its party tells it, then FATE's answer text per party.

    The slices stay on the agents that prepared them, under the new party ids.
    """
    slices = [
        (party, PartyModelRef(role=role, party_id=new_party, model_id=plan.new_model_id, model_version=plan.child))
        for role, party in plan.parties
        if (new_party := plan.prepared_by((role, party)).new_party_id)
    ]
    timeout = services.deadlines.call_timeout
    infos = services.fanout.run(
        [functools.partial(party_info, services.agents, site, ref, timeout) for site, ref in slices]
    )
    services.catalog.record_all(
        [info for info in infos if not isinstance(info, RegistryError)],
        {ref.party_id: site for site, ref in slices if ref.party_id != site},
    )
    for (site, ref), info in zip(slices, infos, strict=True):
        if isinstance(info, RegistryError):  # committed, but its account is not to be had now: learnt later
            log.info(
                "migrate %s: slice %s of %s not catalogued yet: %s", operation_id, ref.party_id, site, info.message
            )
    return [
        PartyResult(
            role=role,
            party_id=party,
            retcode=0,
            retmsg="Migrating model successfully. The configuration of model has been modified automatically. "
            f"New model id is: {plan.new_model_id}, model version is: {plan.child}. "
            f"Model files can be found at '{plan.prepared_by((role, party)).archive}'.",
        )
        for role, party in plan.parties
    ]
