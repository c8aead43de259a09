"""A version's slice on each party, asked of the parties' agents at once: its files and its model-store copy.

Each party's agent is called twice, the parties at once (the coordinator's fan-out, each call within its call
timeout): ``GetModelInfo`` (the version's columns and its manifest: each file's path, size and SHA-256) and
``GetStoredCopy`` (the model store's record of the version's archive beside the SHA-256 the agent recorded
when it last stored or restored it). A party that does not answer is shown with its message.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import RegistryError
from fate_registry.v1.common_pb2 import ManifestEntry, PartyModelInfo
from registry_server.agent_rpc import AgentRpc
from registry_server.agents import NO_ANSWER, AgentClients, ref_of
from registry_server.dashboard.html import table, text
from registry_server.servicer import RegistryServicer


@dataclass(frozen=True)
class PartySlice:
    """One party's slice: ``info`` is its agent's account, or the catalog's row when the agent did not answer."""

    info: PartyModelInfo
    manifest: Sequence[ManifestEntry] | RegistryError
    stored: agent_pb2.GetStoredCopyResponse | RegistryError


def party_slices(servicer: RegistryServicer, rows: Sequence[PartyModelInfo]) -> list[PartySlice]:
    """Each catalog row's slice, the parties' agents asked all at once (each within the call timeout)."""
    agents, timeout = servicer.agents, servicer.agents.conf.coordinator.call_timeout
    answers = servicer.fanout.run([functools.partial(_party_slice, agents, row, timeout) for row in rows])
    return [
        PartySlice(row, answer, answer) if isinstance(answer, RegistryError) else answer
        for row, answer in zip(rows, answers, strict=True)
    ]


def _party_slice(agents: AgentClients, row: PartyModelInfo, timeout: float) -> PartySlice:
    """One party's slice; an agent that did not answer the first call is not asked the second."""
    ref = ref_of(row)
    try:
        described = agent_pb2.GetModelInfoRequest(model=ref)
        detail = agents.call(row.party_id, AgentRpc.GET_MODEL_INFO, described, "", timeout)
    except RegistryError as exc:
        if exc.reason in NO_ANSWER:
            return PartySlice(row, exc, exc)
        manifest: Sequence[ManifestEntry] | RegistryError = exc
        info = row
    else:
        manifest, info = detail.manifest, detail.info
        info.loaded_times = max(info.loaded_times, row.loaded_times)  # the catalog counts loads too
    try:
        asked = agent_pb2.GetStoredCopyRequest(model=ref)
        copy = agents.call(row.party_id, AgentRpc.GET_STORED_COPY, asked, "", timeout)
    except RegistryError as exc:
        return PartySlice(info, manifest, exc)
    return PartySlice(info, manifest, copy)


def files_table(part: PartySlice) -> str:
    """The party's files (path, bytes, SHA-256) from its manifest, or why its agent did not give them."""
    if isinstance(part.manifest, RegistryError):
        return f"<p class='failed'>files: {text(part.manifest.message)}</p>"
    rows = ([text(f.path), text(f.size), f"<code>{text(f.sha256)}</code>"] for f in part.manifest)
    return table(["file", "bytes", "SHA-256"], rows, f"files-{part.info.role}-{part.info.party_id}")


def stored_copies_table(slices: Sequence[PartySlice]) -> str:
    """Per party, the model store's copy of the version: present or not, and its digest compared."""
    rows = []
    for part in slices:
        engine, present, size, verdict = _stored_copy(part.stored)
        rows.append([text(part.info.role), text(part.info.party_id), engine, present, size, verdict])
    return table(["role", "party", "model store", "copy", "bytes", "digest"], rows, "stored-copies")


def _stored_copy(stored: agent_pb2.GetStoredCopyResponse | RegistryError) -> tuple[str, str, str, str]:
    """The cells (HTML) of one party's stored copy: engine, present, bytes, digest verdict."""
    if isinstance(stored, RegistryError):
        return "", "<span class='failed'>unknown</span>", "", f"<span class='failed'>{text(stored.message)}</span>"
    if not stored.engine:
        return "none configured", "", "", ""
    if not stored.present:
        return text(stored.engine), "absent", "", ""
    sha = f"<code>{text(stored.sha256)}</code>"
    if not stored.recorded_sha256:
        verdict = f"{sha} (this party recorded no SHA-256: it never stored or restored this version)"
    elif stored.recorded_sha256 == stored.sha256:
        verdict = f"same: {sha}"
    else:
        recorded = f"<code>{text(stored.recorded_sha256)}</code>"
        verdict = f"<span class='failed'>differs</span>: {sha}, recorded when stored {recorded}"
    return text(stored.engine), "present", text(stored.size_bytes), verdict
