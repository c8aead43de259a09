"""The version page's model-store column rendered from agents' answers (no federation: the answers are built here)."""

from __future__ import annotations

from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import ManifestEntry, PartyModelInfo
from registry_server.dashboard.slices import PartySlice, files_table, stored_copies_table
from tests.dashboard_pages import tables

STORED, OTHER = "a" * 64, "b" * 64


def _slice(party_id: str, stored: agent_pb2.GetStoredCopyResponse | RegistryError) -> PartySlice:
    info = PartyModelInfo(role="guest", party_id=party_id, model_id="m", model_version="v")
    return PartySlice(info, [ManifestEntry(path="define/pipeline.pb", size=3, sha256=STORED)], stored)


def test_each_partys_stored_copy_says_whether_its_digest_is_the_one_recorded_when_stored() -> None:
    def copy(recorded: str) -> agent_pb2.GetStoredCopyResponse:
        return agent_pb2.GetStoredCopyResponse(
            engine="redis", present=True, size_bytes=10, sha256=STORED, recorded_sha256=recorded
        )

    unreachable = RegistryError(Reason.PARTY_UNAVAILABLE, "party 5 <unreachable>")
    slices = [
        _slice("1", copy(STORED)),
        _slice("2", copy(OTHER)),
        _slice("3", copy("")),
        _slice("4", agent_pb2.GetStoredCopyResponse(engine="redis")),
        _slice("5", unreachable),
        _slice("6", agent_pb2.GetStoredCopyResponse()),
    ]
    html = stored_copies_table(slices)
    rows = {row[1]: row[2:] for row in tables(html)["stored-copies"]}
    assert rows["1"] == ["redis", "present", "10", f"same: {STORED}"]
    assert rows["2"][3] == f"differs: {STORED}, recorded when stored {OTHER}"
    assert rows["3"][3].startswith(STORED) and "recorded no SHA-256" in rows["3"][3]
    assert rows["4"] == ["redis", "absent", "", ""]
    assert rows["5"] == ["", "unknown", "", "party 5 <unreachable>"] and "&lt;unreachable&gt;" in html
    assert rows["6"] == ["none configured", "", "", ""]


def test_a_partys_files_come_from_its_manifest_or_say_why_not() -> None:
    listed = tables(files_table(_slice("1", agent_pb2.GetStoredCopyResponse())))["files-guest-1"]
    assert listed == [["define/pipeline.pb", "3", STORED]]
    failed = PartySlice(
        PartyModelInfo(role="host", party_id="2"),
        RegistryError(Reason.MODEL_NOT_FOUND, "gone"),
        agent_pb2.GetStoredCopyResponse(),
    )
    assert files_table(failed) == "<p class='failed'>files: gone</p>"
