"""What the coordinator's dashboard asks of a party: the model store's copy of a version, and the party's state.

The stored copy's digest is compared with what this agent recorded when it last stored or restored the
version (its archive's SHA-256, kept beside the version's record): the same digest means the store still
holds the very copy this party put there or took from there. Both digests are records (the engine's is
written beside the bytes and checked on every read), so nothing is read or hashed to answer.

A party's state: the versions in its model cache, its data directory's disk, and whether each of its
FATE-Servings and its model store answers a probe, all probes at once, each bounded by the caller's timeout.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent import futures

import grpc

from fate_registry.agent.v1 import agent_pb2
from fate_registry.channels import open_channel
from fate_registry.errors import RegistryError
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.agent import PartyAgent
from party_agent.model_cache import party_model_id_of
from party_agent.storage import ModelStore, StoreKey

DEFAULT_PROBE_SECONDS = 1.0
# A key no version takes (FATE's party model ids hold '#'): asking the store for it tells whether it answers.
PROBE_KEY = StoreKey("fate-registry-probe", "reachability")


def stored_copy(agent: PartyAgent, ref: PartyModelRef) -> agent_pb2.GetStoredCopyResponse:
    """The model store's record of the version's copy and the SHA-256 this agent recorded when storing it."""
    agent.check_party(ref)
    if agent.model_store is None:
        return agent_pb2.GetStoredCopyResponse()
    stored = agent.model_store.stat(StoreKey(party_model_id_of(ref), ref.model_version))
    return agent_pb2.GetStoredCopyResponse(
        engine=agent.model_store_engine,
        present=stored is not None,
        size_bytes=stored.size if stored else 0,
        sha256=stored.sha256 if stored else "",
        recorded_sha256=agent.metadata.archive_sha256(ref),
    )


def describe(agent: PartyAgent, probe_timeout_ms: int) -> agent_pb2.DescribePartyResponse:
    """Versions held, the data directory's disk, and the probes of the FATE-Servings and the model store."""
    start = time.perf_counter()
    timeout = probe_timeout_ms / 1000 if probe_timeout_ms > 0 else DEFAULT_PROBE_SECONDS
    probes: dict[str, Callable[[], None]] = {
        address: _serving_probe(address, agent, timeout) for address in agent.party.servings
    }
    store = agent.model_store
    if store is not None:
        probes[agent.model_store_engine] = lambda: _store_probe(store)
    pool = futures.ThreadPoolExecutor(max_workers=max(1, len(probes)), thread_name_prefix="probe")
    try:
        running = {target: pool.submit(probe) for target, probe in probes.items()}
        versions = _versions_held(agent)
        disk = shutil.disk_usage(agent.party.data_dir)
        futures.wait(running.values(), timeout=max(0.0, timeout - (time.perf_counter() - start)))
        reached = {target: _outcome(target, future, timeout) for target, future in running.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a probe past its time ends with its own timeout
    answer = agent_pb2.DescribePartyResponse(
        versions_held=versions,
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        servings=[reached[address] for address in agent.party.servings],
    )
    if store is not None:
        answer.model_store.CopyFrom(reached[agent.model_store_engine])
    answer.answer_ms = int((time.perf_counter() - start) * 1000)
    return answer


def _versions_held(agent: PartyAgent) -> int:
    """The versions in the model cache of the parties this agent acts for (directories listed, none read)."""
    held = agent.cache.versions()
    acting = {party_id: agent.acts_for(party_id) for party_id in {ref.party_id for ref in held}}
    return sum(1 for ref in held if acting[ref.party_id])


def _store_probe(store: ModelStore) -> None:
    """The store answers a stat (of a copy it does not hold) within its engine's own timeouts."""
    store.stat(PROBE_KEY)


def _serving_probe(address: str, agent: PartyAgent, timeout: float) -> Callable[[], None]:
    """A connection to one FATE-Serving (over the party's ``serving_tls``) made within ``timeout``."""

    def probe() -> None:
        with open_channel(address, agent.party.serving_tls) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=timeout)
            except grpc.FutureTimeoutError:
                raise TimeoutError from None

    return probe


def _outcome(target: str, future: futures.Future[None], timeout: float) -> agent_pb2.Reachability:
    """What became of one probe, which had until now to finish."""
    if not future.done() or isinstance(future.exception(), TimeoutError):
        return agent_pb2.Reachability(target=target, message=f"not reached within {timeout:g} s")
    try:
        future.result()
    except RegistryError as exc:
        return agent_pb2.Reachability(target=target, message=exc.message)
    except (grpc.RpcError, OSError) as exc:
        return agent_pb2.Reachability(target=target, message=f"cannot be reached ({type(exc).__name__})")
    return agent_pb2.Reachability(target=target, reachable=True)
