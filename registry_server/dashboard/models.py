"""The models page: versions newest first, searched by model id, party, role, tag and state, paged.

One ListModelVersions call a page: the catalog filters and pages (:mod:`registry_server.version_list`) and
answers each version with its parties, bytes, state and tags.
"""

from __future__ import annotations

from fate_registry.v1 import registry_pb2 as pb
from registry_server.dashboard.html import link, marked, page, search_form, table, text
from registry_server.dashboard.view import Query, next_link, page_size, when
from registry_server.fate_http.calls import Registry
from registry_server.serving_state import STATES

FIELDS = ("model_id", "party_id", "role", "tag", "state", "page_size")


def _row(version: pb.ModelVersion) -> list[str]:
    return [
        link("/lineage", version.model_id, model_id=version.model_id),
        link("/version", version.model_version, model_id=version.model_id, model_version=version.model_version),
        text(when(version.create_time)),
        text(", ".join(f"{p.role}:{p.party_id}" for p in version.parties)),
        text(version.size_bytes),
        marked(version.state),
        text(", ".join(version.tags)),
    ]


def models(registry: Registry, peer: str, query: Query) -> bytes:
    """The models page: versions newest first, filtered by the query's fields, one page of them."""
    fields = {name: query.get(name, "") for name in FIELDS}
    request = pb.ListModelVersionsRequest(
        model_id=fields["model_id"],
        party_id=fields["party_id"],
        role=fields["role"],
        tag=fields["tag"],
        state=fields["state"],
        page_size=page_size(query),
        page_token=query.get("page_token", ""),
    )
    answer = registry.call("ListModelVersions", request, peer)
    headers = ["model id", "version", "created", "parties", "bytes", "state", "tags"]
    form = search_form("/", fields, {"state": ("", *STATES)})
    rows = [_row(version) for version in answer.versions]
    return page("Models", form + table(headers, rows, "models") + next_link("/", answer.next_page_token, fields))
