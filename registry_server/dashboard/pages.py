"""The dashboard's pages, each rendered on the server from the coordinator's own RPC methods.

The methods are called in-process (:class:`~registry_server.fate_http.calls.Registry`): what a ``flow``
command would show, in a browser.

``/dashboard/`` models (search by model id, party, role; newest first; paged), ``/dashboard/version`` one
version (each party's slice, checkpoints, the predict DSL of a deployed child, its operations),
``/dashboard/lineage`` a model's versions drawn parent → deployed child, ``/dashboard/operations`` the
operation log, ``/dashboard/health`` the agents (:mod:`.health`). Read-only: no page changes anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import urlencode

from fate_registry.errors import RegistryError
from fate_registry.v1 import common_pb2
from fate_registry.v1 import registry_pb2 as pb
from registry_server.dashboard.health import health
from registry_server.dashboard.html import link, marked, page, search_form, table, text
from registry_server.dashboard.models import models
from registry_server.dashboard.slices import files_table, party_slices, stored_copies_table
from registry_server.dashboard.view import Query, next_link, page_size, when
from registry_server.fate_http.calls import Registry

OUTCOMES = ("", "success", "failed", "in_doubt", "rolled_back", "cancelled", "running")
Node = tuple[str, str]  # (model id, model version)
# FATE-Flow's words in a migrate's answer for each party, which name the migrated copy.
MIGRATED = re.compile(r"New model id is: (?P<model_id>[^,]+), model version is: (?P<model_version>[^.\s]+)")
SERVING_KINDS = ("load", "bind", "unload", "unbind")
STORE_KINDS = ("store", "restore")


def version(registry: Registry, peer: str, query: Query) -> bytes:
    """One version's page: each party's slice (from its agent: files, checkpoints, predict DSL, stored copy).

    Also what FATE-Serving and the model store did with it, and every operation on it.
    """
    model_id, model_version = query.get("model_id", ""), query.get("model_version", "")
    request = pb.GetModelInfoRequest(model_id=model_id, model_version=model_version)
    slices = party_slices(registry.servicer, registry.call("GetModelInfo", request, peer).models)
    rows, sections = [], []
    for part in slices:
        info = part.info
        rows.append(
            [
                text(info.role),
                text(info.party_id),
                text("parent" if info.parent else "deployed child"),
                text(info.loaded_times),
                text(info.file_count),
                text(info.size_bytes),
                f"<code>{text(info.manifest_digest)}</code>",
            ]
        )
        sections.append(_party_details(registry, peer, info) + "<h3>files</h3>" + files_table(part))
    unreached = "".join(
        f"<p class='failed'>{text(p.info.role)} {text(p.info.party_id)}: {text(p.manifest.message)}</p>"
        for p in slices
        if isinstance(p.manifest, RegistryError)
    )
    headers = ["role", "party", "state", "times loaded", "files", "bytes", "manifest SHA-256"]
    history = {"model_id": model_id, "model_version": model_version}
    content = (
        f"<p>{link('/lineage', 'lineage of ' + model_id, model_id=model_id)}</p>"
        + table(headers, rows, "parties")
        + unreached
        + "<h2>FATE-Serving</h2>"
        + _operations_table(registry, peer, history, SERVING_KINDS, "serving")[0]
        + "<h2>Model store</h2>"
        + stored_copies_table(slices)
        + _operations_table(registry, peer, history, STORE_KINDS, "store")[0]
        + "".join(sections)
        + "<h2>Operations</h2>"
        + _operations_table(registry, peer, history)[0]
    )
    return page(f"{model_id} {model_version}", content)


def _party_details(registry: Registry, peer: str, info: common_pb2.PartyModelInfo) -> str:
    """A party's checkpoints (per component of its training DSL) and, for a deployed child, its predict DSL."""
    ref = common_pb2.PartyModelRef(
        role=info.role, party_id=info.party_id, model_id=info.model_id, model_version=info.model_version
    )
    heading = f"<h2>{text(info.role)} {text(info.party_id)}</h2>"
    components = json.loads(info.train_dsl_json or "{}").get("components", {})
    checkpoints = []
    for component in components:
        request = pb.ListCheckpointsRequest(model=ref, component_name=component)
        try:
            listed = registry.call("ListCheckpoints", request, peer).checkpoints
        except RegistryError as exc:
            checkpoints.append([text(component), "", "", "", f"<span class='failed'>{text(exc.message)}</span>"])
            continue
        checkpoints.extend(
            [text(component), text(c.step_index), text(c.step_name), text(when(c.create_time)), text(len(c.models))]
            for c in listed
        )
    css = f"checkpoints-{info.role}-{info.party_id}"
    listed_html = table(["component", "step", "name", "created", "buffers"], checkpoints, css)
    dsl = ""
    if not info.parent:
        request_dsl = pb.GetPredictDslRequest(
            model_id=info.model_id, model_version=info.model_version, role=info.role, party_id=info.party_id
        )
        try:
            document = registry.call("GetPredictDsl", request_dsl, peer).predict_dsl_json
            dsl = f"<h3>predict DSL</h3><pre>{text(json.dumps(json.loads(document), indent=2))}</pre>"
        except (RegistryError, ValueError):
            dsl = "<p>no predict DSL</p>"
    parent = str(json.loads(info.parent_info_json or "{}").get("parent_model_version", "")) if not info.parent else ""
    origin = (
        f"<p>deployed from {link('/version', parent, model_id=info.model_id, model_version=parent)}</p>"
        if parent
        else ""
    )
    return heading + origin + "<h3>checkpoints</h3>" + listed_html + dsl


def lineage(registry: Registry, peer: str, query: Query) -> bytes:
    """A model's versions as an inline SVG, every node a link.

    Parents on the left, to their right each deployed child and each copy migrated to new party ids (found
    in the operation log's migrate answers).
    """
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


def _operations_table(
    registry: Registry, peer: str, query: Query, kinds: tuple[str, ...] = (), css_id: str = "operations"
) -> tuple[str, str]:
    """One page of the operation log (``kinds``: only those, each asked of the log) and the next page's token."""
    found: list[pb.Operation] = []
    token = ""
    for kind in kinds or (query.get("kind", ""),):
        request = pb.ListOperationsRequest(
            model_id=query.get("model_id", ""),
            model_version=query.get("model_version", ""),
            operation=kind,
            page_size=page_size(query),
            page_token="" if kinds else query.get("page_token", ""),
        )
        answer = registry.call("ListOperations", request, peer)
        found.extend(answer.operations)
        token = "" if kinds else answer.next_page_token
    found.sort(key=lambda op: (op.start_time.ToMilliseconds(), op.operation_id), reverse=True)
    outcome = query.get("outcome", "")
    rows = []
    for op in found:
        if outcome and op.status != outcome:
            continue
        seconds = op.end_time.ToMilliseconds() - op.start_time.ToMilliseconds() if op.end_time.seconds else 0
        results = "<br>".join(
            f"{text(r.role)}:{text(r.party_id)} retcode {text(r.retcode)} {text(r.retmsg)}" for r in op.results
        )
        rows.append(
            [
                text(when(op.start_time)),
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
    return table(headers, rows, css_id), token


def operations(registry: Registry, peer: str, query: Query) -> bytes:
    """The operation log page, newest first, filtered by model, kind and outcome."""
    fields = {name: query.get(name, "") for name in ("model_id", "kind", "outcome", "page_size")}
    listed, token = _operations_table(registry, peer, query)
    form = search_form("/operations", fields, {"outcome": OUTCOMES})
    return page("Operations", form + listed + next_link("/operations", token, fields))


PAGES: dict[str, Callable[[Registry, str, Query], bytes]] = {
    "/": models,
    "/version": version,
    "/lineage": lineage,
    "/operations": operations,
    "/health": health,
}
