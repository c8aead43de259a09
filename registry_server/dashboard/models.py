"""The models page: versions newest first, searched by model id, party, role, tag and state, paged.

The catalog pages versions by model id only, so the other filters are applied to its pages as they come:
a page of the dashboard scans at most ``MAX_SCANNED`` versions for ``page_size`` matches, and its *next page*
link starts after the last version scanned. A tag's versions come from the tag itself (QueryTag).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fate_registry.v1 import common_pb2
from fate_registry.v1 import registry_pb2 as pb
from registry_server import paging
from registry_server.dashboard.html import link, marked, page, search_form, table, text
from registry_server.dashboard.view import Query, next_link, page_size, when
from registry_server.fate_http.calls import Registry

MAX_SCANNED = 5000
STATES = ("", "parent", "deployed", "loaded")
FIELDS = ("model_id", "party_id", "role", "tag", "state", "page_size")


@dataclass(frozen=True)
class Summary:
    """One version as a row shows it."""

    version: pb.ModelVersion
    size_bytes: int
    state: str  # parent, deployed (a child), loaded (a child some party has loaded)
    tags: tuple[str, ...]


def _summary(registry: Registry, peer: str, version: pb.ModelVersion) -> Summary:
    infos = registry.call(
        "GetModelInfo", pb.GetModelInfoRequest(model_id=version.model_id, model_version=version.model_version), peer
    ).models
    tags = registry.call("ListModelTags", pb.ListModelTagsRequest(job_id=version.model_version), peer).tags
    if all(info.parent for info in infos):
        state = "parent"
    else:
        state = "loaded" if any(info.loaded_times for info in infos) else "deployed"
    return Summary(version, sum(info.size_bytes for info in infos), state, tuple(tag.name for tag in tags))


def _tagged(registry: Registry, peer: str, tag: str) -> Iterator[pb.ModelVersion]:
    """The versions a tag is on, newest first."""
    infos = registry.call("QueryTag", pb.QueryTagRequest(tag_name=tag, with_model=True), peer).models
    versions: dict[tuple[str, str], pb.ModelVersion] = {}
    for info in infos:
        key = (info.model_id, info.model_version)
        entry = versions.setdefault(
            key, pb.ModelVersion(model_id=info.model_id, model_version=info.model_version, create_time=info.create_time)
        )
        entry.parties.append(common_pb2.Party(role=info.role, party_id=info.party_id))
    yield from sorted(versions.values(), key=lambda v: (v.create_time.ToMilliseconds(), v.model_version), reverse=True)


def _listed(registry: Registry, peer: str, model_id: str, token: str, size: int) -> Iterator[pb.ModelVersion]:
    """The catalog's versions newest first from ``token``, a page at a time, for as long as they are wanted."""
    while True:
        request = pb.ListModelVersionsRequest(model_id=model_id, page_size=size, page_token=token)
        answer = registry.call("ListModelVersions", request, peer)
        yield from answer.versions
        token = answer.next_page_token
        if not token:
            return


def _matches(version: pb.ModelVersion, fields: Query) -> bool:
    return any(
        (not fields["party_id"] or party.party_id == fields["party_id"])
        and (not fields["role"] or party.role == fields["role"])
        for party in version.parties
    )


def _row(summary: Summary) -> list[str]:
    version = summary.version
    return [
        link("/lineage", version.model_id, model_id=version.model_id),
        link("/version", version.model_version, model_id=version.model_id, model_version=version.model_version),
        text(when(version.create_time)),
        text(", ".join(f"{p.role}:{p.party_id}" for p in version.parties)),
        text(summary.size_bytes),
        marked(summary.state),
        text(", ".join(summary.tags)),
    ]


def models(registry: Registry, peer: str, query: Query) -> bytes:
    """The models page: versions newest first, filtered by the query's fields, one page of them."""
    fields = {name: query.get(name, "") for name in FIELDS}
    size = page_size(query)
    tagged = bool(fields["tag"])
    source = (
        _tagged(registry, peer, fields["tag"])
        if tagged
        else _listed(registry, peer, fields["model_id"], query.get("page_token", ""), size)
    )
    rows: list[list[str]] = []
    scanned, last = 0, None
    for version in source:
        if len(rows) == size or scanned == MAX_SCANNED:
            break
        scanned, last = scanned + 1, version
        if (fields["model_id"] and version.model_id != fields["model_id"]) or not _matches(version, fields):
            continue
        summary = _summary(registry, peer, version)
        if not fields["state"] or summary.state == fields["state"]:
            rows.append(_row(summary))
    else:
        last = None  # the end of the versions: no next page
    token = "" if tagged or last is None else paging.encode_token(last.create_time.ToMilliseconds(), last.model_version)
    headers = ["model id", "version", "created", "parties", "bytes", "state", "tags"]
    form = search_form("/", fields, {"state": STATES})
    return page("Models", form + table(headers, rows, "models") + next_link("/", token, fields))
