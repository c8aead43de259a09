"""The dashboard and the metrics at scale: page times with 100,000 versions, the scrape, the interceptor's cost.

Run from the repository root::

    .venv/bin/python -m bench.dashboard [--versions 100000] [--calls 50] [--seconds 5] [--rounds 9]
        [--workdir DIR] [--keep]

A SQLite catalog is seeded with ``--versions`` versions (:func:`bench.catalog_scale.seed`: a guest and a host
each, a deploy logged per version; the newest 999 made deployed children of the version before them) and a
federation (``fate-registry up``: coordinator and two agents, which
hold none of those versions' files) is started on it. Each of ``--calls`` rounds GETs, over loopback HTTP, the
models page (the first page of 50, newest first; and filtered by a party, by the state ``parent``, which the
newest 999 versions are not, and by a tag on one version in 970), a version page (a random version: its
parties, each party's checkpoints asked of its agent, its operations), the operations page and ``/metrics``; the
medians are given (targets: ≤ 100 ms for the pages, ≤ 50 ms for the scrape; the time is the client's, so it
includes loopback).
The lineage page of the model (a parent and its 999 children) is timed three times.

The interceptor's cost: two coordinators (``fate-registry server``) on the same catalog, one as shipped and one
whose gRPC servers are built with the metrics interceptor replaced by a pass-through, are driven alternately
with back-to-back ``GetModelInfo`` calls (:func:`bench.catalog_scale.requests_per_second`), ``--rounds`` rounds
of ``--seconds`` each (which is measured first alternates); one minus the median of the rounds' throughput ratios
is the cost (target ≤ 5 %), and the servers' CPU per call (``/proc/<pid>/stat``) is compared the same way.
Beside it, in-process, the microseconds the interceptor adds to a call of a handler that does nothing. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final, cast
from urllib.parse import urlencode

import grpc

from bench.catalog_scale import MODEL_ID, coordinator, requests_per_second, seed, version_of
from bench.memory import cpu_seconds
from bench.scratch import log, scratch_dir
from fate_registry.config import DatabaseConf
from fate_registry.grpc_server import DEFAULT_RPC_WORKERS, Interceptor, MetricsInterceptor
from fate_registry.v1 import registry_pb2 as pb
from registry_server.catalog import Catalog
from tests.support.federation import LocalFederation

PAGE_TARGET_MS: Final = 100.0
SCRAPE_TARGET_MS: Final = 50.0
COST_TARGET: Final = 0.05
GET_MODEL_INFO: Final = "/fate_registry.v1.RegistryService/GetModelInfo"
LINEAGE_CHILDREN: Final = 999  # with their parent, the 1,000 versions a lineage page draws
MICRO_CALLS: Final = 200_000
MODELS_PAGES: Final = {  # the models page, unfiltered and filtered (bench.catalog_scale's parties and tags)
    "models": {},
    "models_party": {"party_id": "10000"},
    "models_state": {"state": "parent"},
    "models_tag": {"tag": "tag-3"},
}


def _get_ms(address: str, path: str) -> float:
    host, _, port = address.rpartition(":")
    began = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    elapsed = (time.perf_counter() - began) * 1000
    if answer.status != 200 or (b"Refused" in body[:400] and path.startswith("/dashboard")):
        raise RuntimeError(f"GET {path}: HTTP {answer.status}: {body[:300]!r}")
    return elapsed


def make_children(path: Path, versions: int, children: int) -> str:
    """Make the newest ``children`` versions deployed children of the one before them (their parent); its id."""
    parent = version_of(versions - children - 1)
    catalog = Catalog(DatabaseConf(engine="sqlite", path=path))
    party = catalog._party_model
    info = json.dumps({"parent_model_id": MODEL_ID, "parent_model_version": parent})
    try:
        with catalog.db.connection_context(), catalog.db.atomic():
            newest = [version_of(i) for i in range(versions - children, versions)]
            party.update(parent=False, parent_info_json=info).where(party.model_version.in_(newest)).execute()
            catalog.restate([(MODEL_ID, version) for version in newest])
    finally:
        catalog.close()
    return parent


def lineage_ms(address: str, runs: int) -> float:
    """Median milliseconds of the lineage page of the seeded model (its newest 1,000 versions)."""
    path = "/dashboard/lineage?" + urlencode({"model_id": MODEL_ID})
    return round(statistics.median(_get_ms(address, path) for _ in range(runs)), 1)


def page_times(address: str, versions: int, calls: int) -> dict[str, float]:
    """Median milliseconds of each page over ``calls`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in (*MODELS_PAGES, "version", "operations", "metrics")}
    for _ in range(calls):
        version = version_of(random.randrange(versions))
        paths = {
            **{name: "/dashboard/?" + urlencode(query) for name, query in MODELS_PAGES.items()},
            "version": "/dashboard/version?" + urlencode({"model_id": MODEL_ID, "model_version": version}),
            "operations": "/dashboard/operations",
            "metrics": "/metrics",
        }
        for name, path in paths.items():
            times[name].append(_get_ms(address, path))
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


class PassThrough(Interceptor):
    """What the coordinator's servers get in place of the metrics interceptor, to measure what it costs."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        return continuation(details)


def serve_without_metrics(argv: Sequence[str]) -> int:
    """``fate-registry server`` with the metrics interceptor replaced (for this process only)."""
    from fate_registry import grpc_server
    from launcher.main import main

    grpc_server.MetricsInterceptor = PassThrough  # type: ignore[misc, assignment]
    return main(["server", *argv])


def interceptor_cost(root: Path, catalog: Path, versions: int, seconds: float, rounds: int) -> dict[str, Any]:
    """The metered coordinator's throughput and CPU per call against the bare one's, round by round.

    Each round measures both back to back (which goes first alternates), so a round's ratio compares two
    measurements taken under the same load from the rest of the machine; the cost is one minus the median ratio.
    """
    request = pb.GetModelInfoRequest(model_id=MODEL_ID, model_version=version_of(versions // 2)).SerializeToString()
    bare_command = (sys.executable, "-m", "bench.dashboard", "server")
    with (
        coordinator(root / "metered", catalog, DEFAULT_RPC_WORKERS) as metered,
        coordinator(root / "bare", catalog, DEFAULT_RPC_WORKERS, bare_command) as bare,
    ):
        rates: dict[str, list[float]] = {bare.address: [], metered.address: []}
        cpu_us: dict[str, list[float]] = {bare.address: [], metered.address: []}
        for round_index in range(rounds):
            for server in (bare, metered) if round_index % 2 == 0 else (metered, bare):
                cpu_before = cpu_seconds(server.popen.pid)
                rate = requests_per_second(server.address, GET_MODEL_INFO, request, seconds)
                rates[server.address].append(rate)
                cpu_us[server.address].append((cpu_seconds(server.popen.pid) - cpu_before) * 1e6 / (rate * seconds))
    ratios = [m / b for m, b in zip(rates[metered.address], rates[bare.address], strict=True)]
    cpu_ratios = [m / b for m, b in zip(cpu_us[metered.address], cpu_us[bare.address], strict=True)]
    return {
        "without_rps": round(statistics.median(rates[bare.address]), 1),
        "with_rps": round(statistics.median(rates[metered.address]), 1),
        "round_ratios": [round(r, 3) for r in ratios],
        "cost": round(1 - statistics.median(ratios), 4),
        "cpu_us_per_call_without": round(statistics.median(cpu_us[bare.address]), 1),
        "cpu_us_per_call_with": round(statistics.median(cpu_us[metered.address]), 1),
        "cpu_cost": round(statistics.median(cpu_ratios) - 1, 4),
    }


class _Context:
    """What the interceptor reads of a call's context: no status set (an answered call)."""

    def code(self) -> None:
        return None


def per_call_cost_us() -> float:
    """Microseconds the metrics interceptor adds to one unary call: rewriting the handler and calling it, minus
    calling the bare handler, in-process (no network, no gRPC), the median of 5 runs of MICRO_CALLS calls."""
    interceptor = MetricsInterceptor()
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    details = cast(grpc.HandlerCallDetails, SimpleNamespace(method=GET_MODEL_INFO, invocation_metadata=()))
    context = cast(grpc.ServicerContext, _Context())

    def bare() -> None:
        behavior = handler.unary_unary
        assert behavior is not None
        for _ in range(MICRO_CALLS):
            behavior(b"", context)

    def metered() -> None:
        for _ in range(MICRO_CALLS):
            wrapped = interceptor.intercept_service(lambda _: handler, details)
            assert wrapped is not None and wrapped.unary_unary is not None
            wrapped.unary_unary(b"", context)

    costs = []
    for _ in range(5):
        began = time.perf_counter()
        bare()
        middle = time.perf_counter()
        metered()
        costs.append(((time.perf_counter() - middle) - (middle - began)) / MICRO_CALLS * 1e6)
    return round(statistics.median(costs), 2)


def run(versions: int, calls: int, seconds: float, rounds: int, workdir: Path) -> dict[str, Any]:
    catalog = workdir / "catalog.db"
    log(f"seeding {versions} versions")
    seeded = seed(catalog, versions)
    log(f"seeded in {seeded:.1f} s")
    make_children(catalog, versions, LINEAGE_CHILDREN)
    extra = {
        "coordinator": {
            "address": "127.0.0.1:0",
            "http": {"address": "127.0.0.1:0"},
            "database": {"engine": "sqlite", "path": str(catalog)},
        }
    }
    with LocalFederation.start(workdir / "fed", extra_conf=extra) as fed:
        pages = page_times(fed.http_address, versions, calls)
        pages["lineage_1000"] = lineage_ms(fed.http_address, 3)
    log(f"pages (median ms): {pages}")
    cost: dict[str, Any] = {**interceptor_cost(workdir / "rps", catalog, versions, seconds, rounds)}
    cost["per_call_us"] = per_call_cost_us()
    log(f"interceptor: {cost}")
    return {
        "versions": versions,
        "seed_seconds": round(seeded, 1),
        "page_median_ms": pages,
        "interceptor": cost,
        "pages_within_target": max(pages[name] for name in (*MODELS_PAGES, "version")) <= PAGE_TARGET_MS,
        "scrape_within_target": pages["metrics"] <= SCRAPE_TARGET_MS,
        "cost_within_target": cost["cost"] <= COST_TARGET,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"]:
        return serve_without_metrics(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the interceptor's cost (odd: a median)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    with scratch_dir("bench-dashboard-", args.workdir, args.keep) as workdir:
        figures = run(args.versions, args.calls, args.seconds, args.rounds, workdir)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
