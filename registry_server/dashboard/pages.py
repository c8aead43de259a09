"""The dashboard's pages, each rendered on the server from the coordinator's own RPC methods, called in-process
(:class:`~registry_server.fate_http.calls.Registry`): what a ``flow`` command would show, in a browser.

``/dashboard/`` models (search by model id, party, role; newest first; paged), ``/dashboard/version`` one
version (each party's slice, checkpoints, the predict DSL of a deployed child, its operations),
``/dashboard/lineage`` a model's versions drawn parent → deployed child, ``/dashboard/operations`` the
operation log, ``/dashboard/health`` the agents. Read-only: no page changes anything.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from google.protobuf.timestamp_pb2 import Timestamp

from fate_registry.errors import RegistryError
from fate_registry.health import is_serving
from fate_registry.v1 import common_pb2
from fate_registry.v1 import registry_pb2 as pb
from registry_server.dashboard.html import link, marked, page, search_form, table, text
from registry_server.fate_http.calls import Registry

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
OUTCOMES = ("", "success", "failed", "in_doubt", "rolled_back", "cancelled", "running")
Query = Mapping[str, str]
Node = tuple[str, str]  # (model id, model version)
# FATE-Flow's words in a migrate's answer for each party, which name the migrated copy.
MIGRATED = re.compile(r"New model id is: (?P<model_id>[^,]+), model version is: (?P<model_version>[^.\s]+)")


def _when(stamp: Timestamp) -> str:
    if not stamp.seconds:
        return ""
    return datetime.fromtimestamp(stamp.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _page_size(query: Query) -> int:
    asked = query.get("page_size", "")
    return min(int(asked), MAX_PAGE_SIZE) if asked.isdigit() and int(asked) > 0 else PAGE_SIZE


def _next(path: str, token: str, query: Query) -> str:
    return f"<p>{link(path, 'next page', **{**query, 'page_token': token})}</p>" if token else ""


def models(registry: Registry, peer: str, query: Query) -> bytes:
    fields = {name: query.get(name, "") for name in ("model_id", "party_id", "role", "page_size")}
    request = pb.ListModelVersionsRequest(
        model_id=fields["model_id"], page_size=_page_size(query), page_token=query.get("page_token", "")
    )
    answer = registry.call("ListModelVersions", request, peer)
    rows = []
    for version in answer.versions:
        parties = [p for p in version.parties if _wanted(p, fields)]
        if not parties:
            continue
        rows.append(
            [
                link("/lineage", version.model_id, model_id=version.model_id),
                link("/version", version.model_version, model_id=version.model_id, model_version=version.model_version),
                text(_when(version.create_time)),
                text(", ".join(f"{p.role}:{p.party_id}" for p in parties)),
            ]
        )
    content = search_form("/", fields) + table(["model id", "version", "created", "parties"], rows, "models")
    return page("Models", content + _next("/", answer.next_page_token, fields))


def _wanted(party: common_pb2.Party, fields: Query) -> bool:
    return (not fields["party_id"] or party.party_id == fields["party_id"]) and (
        not fields["role"] or party.role == fields["role"]
    )


def version(registry: Registry, peer: str, query: Query) -> bytes:
    model_id, model_version = query.get("model_id", ""), query.get("model_version", "")
    infos = registry.call(
        "GetModelInfo", pb.GetModelInfoRequest(model_id=model_id, model_version=model_version), peer
    ).models
    rows, sections = [], []
    for info in infos:
        state = "parent" if info.parent else "deployed child"
        rows.append(
            [
                text(info.role),
                text(info.party_id),
                text(state),
                text(info.loaded_times),
                text(info.file_count),
                text(info.size_bytes),
                f"<code>{text(info.manifest_digest)}</code>",
            ]
        )
        sections.append(_party_details(registry, peer, info))
    headers = ["role", "party", "state", "times loaded", "files", "bytes", "manifest SHA-256"]
    title = f"{model_id} {model_version}"
    content = (
        f"<p>{link('/lineage', 'lineage of ' + model_id, model_id=model_id)}</p>"
        + table(headers, rows, "parties")
        + "".join(sections)
        + "<h2>Operations</h2>"
        + _operations_table(registry, peer, {"model_id": model_id, "model_version": model_version})[0]
    )
    return page(title, content)


def _party_details(registry: Registry, peer: str, info: common_pb2.PartyModelInfo) -> str:
    ref = common_pb2.PartyModelRef(
        role=info.role, party_id=info.party_id, model_id=info.model_id, model_version=info.model_version
    )
    heading = f"<h2>{text(info.role)} {text(info.party_id)}</h2>"
    try:
        checkpoints = registry.call("ListCheckpoints", pb.ListCheckpointsRequest(model=ref), peer).checkpoints
        listed = table(
            ["step", "name", "created", "buffers"],
            (
                [text(c.step_index), text(c.step_name), text(_when(c.create_time)), text(len(c.models))]
                for c in checkpoints
            ),
        )
    except RegistryError as exc:
        listed = f"<p class='failed'>checkpoints: {text(exc.message)}</p>"
    dsl = ""
    if not info.parent:
        request = pb.GetPredictDslRequest(
            model_id=info.model_id, model_version=info.model_version, role=info.role, party_id=info.party_id
        )
        try:
            document = registry.call("GetPredictDsl", request, peer).predict_dsl_json
            dsl = f"<h3>predict DSL</h3><pre>{text(json.dumps(json.loads(document), indent=2))}</pre>"
        except (RegistryError, ValueError):
            dsl = "<p>no predict DSL</p>"
    parent = json.loads(info.parent_info_json or "{}") if not info.parent else {}
    origin = f"<p>deployed from {text(json.dumps(parent))}</p>" if parent else ""
    return heading + origin + "<h3>checkpoints</h3>" + listed + dsl


def lineage(registry: Registry, peer: str, query: Query) -> bytes:
    """A model's versions as an inline SVG: parents on the left, to their right each deployed child and each
    copy migrated to new party ids (found in the operation log's migrate answers); every node a link."""
    model_id = query.get("model_id", "")
    versions = registry.call("ListModelVersions", pb.ListModelVersionsRequest(model_id=model_id, page_size=1000), peer)
    edges: list[tuple[Node, Node]] = []
    for entry in versions.versions:
        infos = registry.call(
            "GetModelInfo", pb.GetModelInfoRequest(model_id=model_id, model_version=entry.model_version), peer
        ).models
        if infos and not infos[0].parent:
            parent = json.loads(infos[0].parent_info_json or "{}").get("parent_model_version", "")
            edges.append(((model_id, str(parent)), (model_id, entry.model_version)))
    migrations = registry.call(
        "ListOperations", pb.ListOperationsRequest(model_id=model_id, operation="migrate", page_size=1000), peer
    ).operations
    for op in migrations:
        copy = next((MIGRATED.search(r.retmsg) for r in op.results if MIGRATED.search(r.retmsg)), None)
        if op.status == "success" and copy is not None:
            edges.append(((model_id, op.model_version), (copy["model_id"], copy["model_version"])))
    children = {child for _, child in edges}
    columns = [
        [(model_id, v.model_version) for v in versions.versions if (model_id, v.model_version) not in children],
        [child for _, child in edges],
    ]
    place = {node: (20 + 320 * x, 30 + 40 * y) for x, column in enumerate(columns) for y, node in enumerate(column)}
    lines = "".join(
        f'<line x1="{place[a][0] + 200}" y1="{place[a][1]}" x2="{place[b][0] - 5}" y2="{place[b][1]}" stroke="#888"/>'
        for a, b in edges
        if a in place and b in place
    )
    nodes = "".join(
        f'<a href="/dashboard/version?{text(urlencode({"model_id": m, "model_version": v}))}">'
        f'<text x="{x}" y="{y + 5}"><title>{text(m)}</title>{text(v if m == model_id else m + " " + v)}</text></a>'
        for (m, v), (x, y) in place.items()
    )
    height = 40 * max(map(len, columns)) + 20
    svg = f'<svg id="lineage" width="1100" height="{height}">{lines}{nodes}</svg>'
    listed = table(["from", "to"], ([text(f"{a[0]} {a[1]}"), text(f"{b[0]} {b[1]}")] for a, b in edges), "edges")
    return page(f"Lineage of {model_id}", svg + listed)


def _operations_table(registry: Registry, peer: str, query: Query) -> tuple[str, str]:
    request = pb.ListOperationsRequest(
        model_id=query.get("model_id", ""),
        model_version=query.get("model_version", ""),
        operation=query.get("kind", ""),
        page_size=_page_size(query),
        page_token=query.get("page_token", ""),
    )
    answer = registry.call("ListOperations", request, peer)
    outcome = query.get("outcome", "")
    rows = []
    for op in answer.operations:
        if outcome and op.status != outcome:
            continue
        seconds = op.end_time.ToMilliseconds() - op.start_time.ToMilliseconds() if op.end_time.seconds else 0
        results = "<br>".join(
            f"{text(r.role)}:{text(r.party_id)} retcode {text(r.retcode)} {text(r.retmsg)}" for r in op.results
        )
        rows.append(
            [
                text(_when(op.start_time)),
                text(op.operation),
                marked(op.status),
                link(
                    "/version",
                    f"{op.model_id} {op.model_version}",
                    model_id=op.model_id,
                    model_version=op.model_version,
                ),
                text(f"{seconds / 1000:.3f} s"),
                text(f"{op.retcode} {op.retmsg}"),
                results,
                text(op.caller),
            ]
        )
    headers = ["started", "kind", "outcome", "model", "duration", "answer", "per party", "caller"]
    return table(headers, rows, "operations"), answer.next_page_token


def operations(registry: Registry, peer: str, query: Query) -> bytes:
    fields = {name: query.get(name, "") for name in ("model_id", "kind", "outcome", "page_size")}
    listed, token = _operations_table(registry, peer, query)
    form = search_form("/operations", fields, {"outcome": OUTCOMES})
    return page("Operations", form + listed + _next("/operations", token, fields))


def health(registry: Registry, peer: str, query: Query) -> bytes:
    """Each party's agent: up or down (its gRPC health check) and how long it took to answer."""
    conf = registry.servicer.agents.conf
    rows = []
    for party_id, party in conf.parties.items():
        start = time.perf_counter()
        up = is_serving(str(party.address), timeout=1.0, tls=conf.coordinator.tls)
        latency = f"{(time.perf_counter() - start) * 1000:.1f} ms" if up else ""
        servings = ", ".join(party.servings) or "none"
        rows.append(
            [text(party_id), text(party.address), marked("up" if up else "down"), text(latency), text(servings)]
        )
    content = table(["party", "agent", "state", "latency", "FATE-Serving"], rows, "parties")
    return page("Federation", content)


PAGES: dict[str, Callable[[Registry, str, Query], bytes]] = {
    "/": models,
    "/version": version,
    "/lineage": lineage,
    "/operations": operations,
    "/health": health,
}
