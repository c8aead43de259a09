"""Catalog scale: latency with 1,000 and 100,000 versions, and coordinator throughput beside a bare echo server.

Run from the repository root::

    .venv/bin/python -m bench.catalog_scale [--small 1000] [--large 100000] [--calls 1000] [--seconds 5]
                                            [--workers 8,32] [--workdir DIR] [--keep]

Latency: two SQLite catalogs (the embedded default) are seeded through the catalog layer
(:class:`registry_server.catalog.Catalog`: every version held by a guest and a host, one tag on every
tenth version, a deploy logged per version), and a coordinator (``fate-registry server``, its own
process; no agent is needed for these calls) is started on each. Both stay up; ``--calls`` rounds
alternate between them, each round one call of each kind on a random version: model info
(``GetModelInfo`` by model id and version), the tag list of a tagged version, the first page of the
version list and of the version's operation history. p50 and p99 per size, and the ratio
large / small (target for model info and tag list: at most 1.5).

Throughput: ``GetModelInfo`` on the large catalog's coordinator against a bare grpcio echo server
(same thread pool size, same message options, a generic handler returning the request bytes), driven
by the same client (2 processes x 8 threads of raw-bytes unary calls, ``--seconds`` each) in the same
run; target at least 0.5 of the echo server's requests per second. With ``--workers`` the
coordinator's ``rpc_workers`` (gRPC thread pool) is varied, each beside an echo server with the same
pool. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import yaml

from bench.scratch import log, scratch_dir
from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.config import DatabaseConf
from fate_registry.health import is_serving
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.registry_pb2_grpc import RegistryServiceStub
from registry_server.catalog import Catalog
from tests.support.federation import fate_registry_command
from tests.support.processes import wait_for_port_file

MODEL_ID: Final = "arbiter-10000#guest-9999#host-10000#model"
ROLES_JSON: Final = json.dumps({"guest": ["9999"], "host": ["10000"], "arbiter": ["10000"]})
SEED_BATCH: Final = 2000
PARTIES: Final = (("guest", "9999"), ("host", "10000"))
TAG_NAMES: Final = 97
INSERT_CHUNK: Final = 50  # rows per INSERT: SQLite allows 999 bound values, a party row has 14 columns
LATENCY_TARGET: Final = 1.5
THROUGHPUT_TARGET: Final = 0.5
CLIENT_PROCESSES: Final = 2
CLIENT_THREADS: Final = 8
ECHO_SERVICE: Final = "bench.Echo"
START_TIMEOUT: Final = 60.0


def version_of(index: int) -> str:
    return f"2024010100000000{index:07d}"


# Seeding -----------------------------------------------------------------------------------------


def seed(path: Path, versions: int) -> float:
    """Fill a SQLite catalog with ``versions`` versions, their tags and their deploy log; the seconds taken.

    Rows go straight into the catalog's own tables (its peewee models), many per statement: the
    catalog's one-row calls would take minutes for 100,000 versions.
    """
    began = time.perf_counter()
    catalog = Catalog(DatabaseConf(engine="sqlite", path=path))
    party, version, operation = catalog._party_model, catalog._version, catalog._operation
    tag, link = catalog.tags._tag, catalog.tags._model_tag
    now = int(time.time() * 1000)
    results = json.dumps([{"role": r, "party_id": p, "retcode": 0, "retmsg": "", "reason": ""} for r, p in PARTIES])
    try:
        with catalog.db.connection_context(), catalog.db.atomic():
            tag.insert_many([{"name": f"tag-{n}", "create_time": now} for n in range(TAG_NAMES)]).execute()
            tag_ids = {row.name: row.id for row in tag.select()}
        for start in range(0, versions, SEED_BATCH):
            batch = range(start, min(start + SEED_BATCH, versions))
            with catalog.db.connection_context(), catalog.db.atomic():
                _insert(
                    party,
                    [
                        {
                            "model_id": MODEL_ID,
                            "model_version": version_of(i),
                            "role": role,
                            "party_id": party_id,
                            "manifest_digest": "0" * 64,
                            "size_bytes": 4096,
                            "file_count": 4,
                            "roles_json": ROLES_JSON,
                            "job_id": version_of(i),
                            "create_time": now + i,
                        }
                        for i in batch
                        for role, party_id in PARTIES
                    ],
                )
                _insert(
                    version,
                    [{"model_id": MODEL_ID, "model_version": version_of(i), "create_time": now + i} for i in batch],
                )
                _insert(
                    link,
                    [
                        {"model_version": version_of(i), "tag": tag_ids[f"tag-{i % TAG_NAMES}"], "create_time": now}
                        for i in batch
                        if i % 10 == 0
                    ],
                )
                _insert(
                    operation,
                    [
                        {
                            "operation_id": f"op{i:012d}",
                            "operation": "deploy",
                            "status": "success",
                            "caller": "bench",
                            "model_id": MODEL_ID,
                            "model_version": version_of(i),
                            "start_time": now + i,
                            "end_time": now + i + 1,
                            "results_json": results,
                            "retmsg": "success",
                        }
                        for i in batch
                    ],
                )
    finally:
        catalog.close()
    return time.perf_counter() - began


def _insert(model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        model.insert_many(rows[start : start + INSERT_CHUNK]).execute()


# Servers -----------------------------------------------------------------------------------------


@dataclass
class Coordinator:
    address: str
    popen: subprocess.Popen[bytes]


@contextlib.contextmanager
def coordinator(root: Path, catalog: Path, rpc_workers: int, command: Sequence[str] = ()) -> Iterator[Coordinator]:
    """``fate-registry server`` (or ``command``, which takes its arguments) on ``catalog``; its parties are
    configured but not started (not needed)."""
    root.mkdir(parents=True, exist_ok=True)
    conf = {
        "coordinator": {
            "address": "127.0.0.1:0",
            "database": {"engine": "sqlite", "path": str(catalog)},
            "rpc_workers": rpc_workers,
        },
        "parties": {"9999": {"address": "127.0.0.1:1"}, "10000": {"address": "127.0.0.1:2"}},
    }
    conf_path = root / "coordinator.yaml"
    conf_path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    port_file, log_path = root / "coordinator.addr", root / "coordinator.log"
    command = [*(command or (*fate_registry_command(), "server")), "--conf", str(conf_path), "--data-dir", str(root)]
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [*command, "--port-file", str(port_file)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        address = wait_for_port_file(popen, port_file, START_TIMEOUT, "coordinator", log_path)
        deadline = time.monotonic() + START_TIMEOUT
        while not is_serving(address):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator at {address} is not serving")
            time.sleep(0.05)  # a poll interval under a deadline
        yield Coordinator(address, popen)
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def serve_echo(port_file: Path, workers: int) -> None:
    """A bare grpcio server: one generic unary handler that answers with the request's bytes."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=list(CHANNEL_OPTIONS))
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO_SERVICE, {"Echo": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_file.write_text(f"127.0.0.1:{port}", encoding="utf-8")
    server.wait_for_termination()


@contextlib.contextmanager
def echo_server(root: Path, workers: int) -> Iterator[str]:
    root.mkdir(parents=True, exist_ok=True)
    port_file, log_path = root / f"echo-{workers}.addr", root / f"echo-{workers}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "bench.catalog_scale", "echo", str(port_file), str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield wait_for_port_file(popen, port_file, START_TIMEOUT, "echo server", log_path)
    finally:
        popen.terminate()
        popen.wait(timeout=10)


# Latency -----------------------------------------------------------------------------------------


def _timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def latencies(stubs: dict[int, RegistryServiceStub], versions: dict[int, int], calls: int) -> dict[str, Any]:
    """Milliseconds per call kind and catalog size; the sizes alternate call by call."""
    samples: dict[int, dict[str, list[float]]] = {size: {} for size in stubs}
    rng = random.Random(8)
    for _ in range(calls):
        for size, stub in stubs.items():
            index = rng.randrange(versions[size])
            tagged = index - index % 10
            kinds = _calls(stub, version_of(index), version_of(tagged))
            for kind, call in kinds.items():
                samples[size].setdefault(kind, []).append(_timed(call) * 1000)
    return {
        str(size): {kind: _percentiles(values) for kind, values in by_kind.items()} for size, by_kind in samples.items()
    }


def _calls(stub: RegistryServiceStub, version: str, tagged: str) -> dict[str, Callable[[], Any]]:
    """One call of each timed kind, on ``version`` (and ``tagged``, a version with a tag)."""
    return {
        "model info": lambda: stub.GetModelInfo(
            pb.GetModelInfoRequest(model_id=MODEL_ID, model_version=version), timeout=30
        ),
        "tag list": lambda: stub.ListModelTags(pb.ListModelTagsRequest(job_id=tagged), timeout=30),
        "version list": lambda: stub.ListModelVersions(
            pb.ListModelVersionsRequest(model_id=MODEL_ID, page_size=20), timeout=30
        ),
        "operation history": lambda: stub.ListOperations(
            pb.ListOperationsRequest(model_id=MODEL_ID, model_version=version), timeout=30
        ),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50": round(statistics.median(values), 3), "p99": round(cuts[98], 3)}


# Throughput --------------------------------------------------------------------------------------


def _hammer(address: str, method: str, request: bytes, seconds: float, threads: int) -> int:
    """Calls answered by ``address`` in ``seconds`` from ``threads`` threads of back-to-back raw unary calls."""
    with grpc.insecure_channel(address, options=list(CHANNEL_OPTIONS)) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        call(request, timeout=30)  # connected before the clock starts
        counts = [0] * threads
        end = time.monotonic() + seconds

        def loop(slot: int) -> None:
            while time.monotonic() < end:
                call(request, timeout=30)
                counts[slot] += 1

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return sum(counts)


def requests_per_second(address: str, method: str, request: bytes, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    with context.Pool(CLIENT_PROCESSES) as pool:
        jobs = [(address, method, request, seconds, CLIENT_THREADS)] * CLIENT_PROCESSES
        return sum(pool.starmap(_hammer, jobs)) / seconds


def throughput(root: Path, catalog: Path, versions: int, workers: Sequence[int], seconds: float) -> dict[str, Any]:
    request = pb.GetModelInfoRequest(model_id=MODEL_ID, model_version=version_of(versions // 2)).SerializeToString()
    figures: dict[str, Any] = {}
    for count in workers:
        with coordinator(root / f"rps-{count}", catalog, count) as coord, echo_server(root, count) as echo:
            runs = []
            for _ in range(3):  # medians of 3, alternating
                echo_rps = requests_per_second(echo, f"/{ECHO_SERVICE}/Echo", request, seconds)
                info_rps = requests_per_second(
                    coord.address, "/fate_registry.v1.RegistryService/GetModelInfo", request, seconds
                )
                runs.append((echo_rps, info_rps))
        echo_median = statistics.median(r[0] for r in runs)
        info_median = statistics.median(r[1] for r in runs)
        figures[str(count)] = {
            "echo_rps": round(echo_median, 1),
            "model_info_rps": round(info_median, 1),
            "ratio": round(info_median / echo_median, 3),
        }
        log(f"rpc_workers {count}: {figures[str(count)]}")
    return figures


# Driver ------------------------------------------------------------------------------------------


def run(small: int, large: int, calls: int, seconds: float, workers: Sequence[int], workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    catalogs = {small: workdir / f"catalog-{small}.db", large: workdir / f"catalog-{large}.db"}
    seeded = {}
    for size, path in catalogs.items():
        log(f"seeding {size} versions")
        seeded[size] = round(seed(path, size), 1)
    with contextlib.ExitStack() as stack:
        coords = {
            size: stack.enter_context(coordinator(workdir / f"lat-{size}", path, 32)) for size, path in catalogs.items()
        }
        channels = {size: stack.enter_context(grpc.insecure_channel(c.address)) for size, c in coords.items()}
        stubs = {size: RegistryServiceStub(channel) for size, channel in channels.items()}
        latencies(stubs, {small: small, large: large}, max(calls // 10, 10))  # warm-up
        log(f"timing {calls} rounds")
        latency = latencies(stubs, {small: small, large: large}, calls)
    rps = throughput(workdir, catalogs[large], large, workers, seconds)
    return report(small, large, seeded, latency, rps, calls, seconds, time.perf_counter() - began)


def report(
    small: int,
    large: int,
    seeded: dict[int, float],
    latency: dict[str, Any],
    rps: dict[str, Any],
    calls: int,
    seconds: float,
    total: float,
) -> dict[str, Any]:
    lines = [
        "",
        f"catalog scale: SQLite catalog, coordinator as its own process, {calls} calls per kind and size"
        f" (sizes interleaved); {os.cpu_count()} CPUs",
        "",
        f"{'call':<18} {f'{small} p50 ms':>13} {f'{small} p99 ms':>13} {f'{large} p50 ms':>14}"
        f" {f'{large} p99 ms':>14} {'p50 x':>6} {'p99 x':>6}  target",
        "-" * 100,
    ]
    ratios: dict[str, dict[str, float]] = {}
    for kind in latency[str(small)]:
        a, b = latency[str(small)][kind], latency[str(large)][kind]
        ratios[kind] = {p: round(b[p] / a[p], 3) for p in ("p50", "p99")}
        target = ""
        if kind in ("model info", "tag list"):
            ok = ratios[kind]["p50"] <= LATENCY_TARGET
            target = f"p50 <= {LATENCY_TARGET} x: {'ok' if ok else 'OVER'}"
        lines.append(
            f"{kind:<18} {a['p50']:>13.3f} {a['p99']:>13.3f} {b['p50']:>14.3f} {b['p99']:>14.3f}"
            f" {ratios[kind]['p50']:>6.2f} {ratios[kind]['p99']:>6.2f}  {target}"
        )
    lines += [
        "",
        f"throughput, GetModelInfo on the {large}-version catalog vs a bare grpcio echo server with the same"
        f" thread pool, {CLIENT_PROCESSES} client processes x {CLIENT_THREADS} threads, {seconds:.0f} s, median of 3:",
        f"{'rpc_workers':>11} {'echo rps':>10} {'model info rps':>15} {'ratio':>6}  target >= {THROUGHPUT_TARGET}",
    ]
    for count, figure in rps.items():
        verdict = "ok" if figure["ratio"] >= THROUGHPUT_TARGET else "UNDER"
        echo, info = figure["echo_rps"], figure["model_info_rps"]
        lines.append(f"{count:>11} {echo:>10.0f} {info:>15.0f} {figure['ratio']:>6.2f}  {verdict}")
    lines.append(
        f"seeding: {', '.join(f'{size} versions {s} s' for size, s in seeded.items())}; whole run {total:.0f} s"
    )
    print("\n".join(lines), flush=True)
    figures = {
        "benchmark": "catalog_scale",
        "cpus": os.cpu_count(),
        "sizes": [small, large],
        "latency_ms": latency,
        "latency_ratio": ratios,
        "throughput": rps,
        "seed_s": {str(k): v for k, v in seeded.items()},
        "total_s": round(total, 1),
    }
    print(json.dumps(figures), flush=True)
    return figures


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated thread counts, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("thread counts are at least 1")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="versions in the small catalog (default 1000)")
    parser.add_argument("--large", type=int, default=100_000, help="versions in the large catalog (default 100000)")
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per kind and size (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput run (default 5)")
    parser.add_argument("--workers", type=_counts, default=[32], help="coordinator rpc_workers to try (default 32)")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the scratch directory")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if not 10 <= args.small < args.large:
        parser.error("--small must be at least 10 and below --large")
    if args.calls < 10:
        parser.error("--calls must be at least 10")
    with scratch_dir("bench-catalog-", args.workdir, args.keep) as workdir:
        run(args.small, args.large, args.calls, args.seconds, args.workers, workdir)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["echo"]:
        serve_echo(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
