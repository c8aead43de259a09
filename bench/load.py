"""Load: N concurrent clients doing mixed reads and writes for a fixed time, beside a bare gRPC echo server.

Run from the repository root::

    .venv/bin/python -m bench.load [--clients 64] [--seconds 60] [--warmup 10] [--runs 1]
                                   [--baseline-seconds 10] [--workdir DIR] [--keep]

It starts a real federation (``fate-registry up``: a coordinator and agents 9999 and 10000, each a
process), imports a generated HeteroLR model (guest 9999, host and arbiter 10000, two checkpoints)
and then runs ``--clients`` client threads, each with its own SDK client (its own channel), for
``--warmup`` seconds (not measured) and then ``--runs`` times ``--seconds`` seconds. Each client
draws its next operation from a fixed mix (its own seeded generator, so runs repeat):

- reads: ``get_model_info`` of the model version, ``list_model_tags`` of it, ``list_checkpoints`` of
  the guest's LR component;
- writes: ``add_model_tag`` of a tag of its own, ``remove_model_tag`` of one it added, ``import_model``
  of the guest's archive as a new version (one-hop transfer, as ``flow`` does), ``deploy_model`` of
  the model (a new child version on all three slices, two-phase).

It prints per operation the count, throughput, p50/p99 latency and errors; the RSS of every process
of the federation at the start of the measured time and at its end (growth %, target < 10 %), and
its lowest and highest sample in between; and the baseline: the same number of threads calling a bare
grpcio echo server (its own process, as many worker threads as our servers have) for
``--baseline-seconds``, with the ratio of the registry's throughput to it. The last line is one JSON
object with every figure. Everything runs in a scratch directory, removed at the end unless
``--keep``; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc

from bench.bare_server import BareServer
from bench.bare_stream import SERVICE as BARE_SERVICE
from bench.memory import KIB, status_kib
from bench.scratch import log, scratch_dir
from client.sdk import RegistryClient
from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.errors import RegistryError
from fate_registry.fate_models import ModelSpec, build_fate_archive, write_federation
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb
from tests.support.federation import LocalFederation

MIX: Final[Mapping[str, int]] = {
    "model-info": 25,
    "tag-list": 25,
    "checkpoint-list": 20,
    "tag-add": 10,
    "tag-remove": 10,
    "import": 6,
    "deploy": 4,
}
"""Operation -> weight (per cent). Reads 70 %, writes 30 %."""
READS: Final = ("model-info", "tag-list", "checkpoint-list")
SERVER_WORKERS: Final = 32
"""Worker threads of every server of ours (fate_registry.grpc_server.start_server), and of the baseline's."""
RSS_TARGET: Final = 0.10
CALL_TIMEOUT: Final = 120.0
SAMPLE_SECONDS: Final = 2.0
ECHO_PAYLOAD: Final = b"x" * 96
"""About the size of the registry's read requests."""


# What every client works on ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The model the clients read, tag and deploy, and the archive they import as new versions."""

    spec: ModelSpec
    archive: Path

    def guest(self, version: str | None = None) -> common.PartyModelRef:
        return common.PartyModelRef(
            role="guest", party_id="9999", model_id=self.spec.model_id, model_version=version or self.spec.version
        )


def prepare(client: RegistryClient, root: Path) -> Target:
    """Write the model, pack every slice as FATE-Flow packs it and import it (untimed)."""
    spec = ModelSpec(checkpoints=2)
    written = write_federation({pid: root / "source" / pid for pid in ("9999", "10000")}, spec)
    archives = {
        key: build_fate_archive(path, root / "archives", key[0], int(key[1]), spec.model_id, spec.version)
        for key, path in written.items()
    }
    for (role, party), archive in archives.items():
        target = common.PartyModelRef(role=role, party_id=party, model_id=spec.model_id, model_version=spec.version)
        client.import_model(archive, target, timeout=CALL_TIMEOUT)
    return Target(spec, archives["guest", "9999"])


@dataclass
class Tally:
    """One client's (or the merged) latencies and errors, per operation."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)  # the first error message per operation

    def add(self, operation: str, seconds: float) -> None:
        self.seconds.setdefault(operation, []).append(seconds)

    def fail(self, operation: str, message: str) -> None:
        self.errors[operation] += 1
        self.samples.setdefault(operation, message)

    def merge(self, other: Tally) -> None:
        for operation, values in other.seconds.items():
            self.seconds.setdefault(operation, []).extend(values)
        self.errors.update(other.errors)
        for operation, message in other.samples.items():
            self.samples.setdefault(operation, message)


class Worker:
    """One client: its own SDK client and generator; runs operations until told to stop."""

    def __init__(self, index: int, address: str, target: Target) -> None:
        self.index = index
        self.target = target
        self.client = RegistryClient(address, timeout=CALL_TIMEOUT, long_timeout=CALL_TIMEOUT)
        self.random = random.Random(index)
        self.tags: list[str] = []
        self.counter = 0
        self.tally = Tally()
        self._operations: dict[str, Callable[[], object]] = {
            "model-info": self._model_info,
            "tag-list": self._tag_list,
            "checkpoint-list": self._checkpoint_list,
            "tag-add": self._tag_add,
            "tag-remove": self._tag_remove,
            "import": self._import,
            "deploy": self._deploy,
        }
        self._names, self._weights = list(MIX), list(MIX.values())

    def close(self) -> None:
        self.client.close()

    def _fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.index:03d}x{self.counter:07d}"

    def _model_info(self) -> object:
        spec = self.target.spec
        return self.client.get_model_info(pb.GetModelInfoRequest(model_id=spec.model_id, model_version=spec.version))

    def _tag_list(self) -> object:
        return self.client.list_model_tags(pb.ListModelTagsRequest(job_id=self.target.spec.version))

    def _checkpoint_list(self) -> object:
        request = pb.ListCheckpointsRequest(model=self.target.guest(), component_name="hetero_lr_0")
        answer = self.client.list_checkpoints(request)
        if len(answer.checkpoints) != 2:
            raise RuntimeError(f"expected the model's 2 checkpoints, got {len(answer.checkpoints)}")
        return answer

    def _tag_add(self) -> object:
        name = self._fresh("t")
        answer = self.client.add_model_tag(pb.AddModelTagRequest(job_id=self.target.spec.version, tag_name=name))
        self.tags.append(name)
        return answer

    def _tag_remove(self) -> object:
        name = self.tags.pop(0)
        return self.client.remove_model_tag(pb.RemoveModelTagRequest(job_id=self.target.spec.version, tag_name=name))

    def _import(self) -> object:
        return self.client.import_model(self.target.archive, self.target.guest(self._fresh("v")), timeout=CALL_TIMEOUT)

    def _deploy(self) -> object:
        spec = self.target.spec
        answer = self.client.deploy_model(pb.DeployModelRequest(model_id=spec.model_id, model_version=spec.version))
        failed = [f"{r.role} {r.party_id}: {r.retmsg}" for r in answer.results if r.retcode != 0]
        if failed:
            raise RuntimeError("; ".join(failed))
        return answer

    def next_operation(self) -> str:
        operation = self.random.choices(self._names, self._weights)[0]
        if operation == "tag-remove" and not self.tags:
            return "tag-add"  # nothing of its own to remove yet
        return operation

    def run(self, stop: threading.Event, record: threading.Event) -> None:
        """Operations back to back until ``stop``; timed and counted while ``record`` is set."""
        while not stop.is_set():
            operation = self.next_operation()
            began = time.perf_counter()
            try:
                self._operations[operation]()
            except RegistryError as exc:
                if record.is_set():
                    self.tally.fail(operation, f"{exc.reason.name}: {exc.message}")
                continue
            except Exception as exc:  # a broken answer: counted as an error with its class, never hidden
                if record.is_set():
                    self.tally.fail(operation, f"{type(exc).__name__}: {exc}")
                continue
            if record.is_set():
                self.tally.add(operation, time.perf_counter() - began)


# Memory of the federation's processes --------------------------------------------------------------


@dataclass
class RssWatch:
    """RSS (MiB) of named processes: a first and last reading, and samples taken every few seconds."""

    pids: Mapping[str, int]
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        return {name: status_kib(pid, "VmRSS") / KIB for name, pid in self.pids.items()}

    def sample(self) -> dict[str, float]:
        now = self.read()
        for name, mib in now.items():
            self.low[name] = min(self.low.get(name, mib), mib)
            self.high[name] = max(self.high.get(name, mib), mib)
        return now

    def start(self) -> None:
        self.first = self.sample()

    def finish(self) -> None:
        self.last = self.sample()

    def growth(self, name: str) -> float:
        return self.last[name] / self.first[name] - 1

    @contextlib.contextmanager
    def sampling(self, every: float = SAMPLE_SECONDS) -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                self.sample()

        thread = threading.Thread(target=loop, name="rss", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


# Phases --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One measured stretch: how long it took and what every client did in it."""

    seconds: float
    tally: Tally

    @property
    def operations(self) -> int:
        return sum(len(v) for v in self.tally.seconds.values())

    @property
    def errors(self) -> int:
        return sum(self.tally.errors.values())

    @property
    def throughput(self) -> float:
        return self.operations / self.seconds


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_phases(workers: Sequence[Worker], warmup: float, seconds: float, runs: int, rss: RssWatch) -> list[Phase]:
    """Every worker on its own thread: ``warmup`` s unrecorded, then ``runs`` recorded stretches of ``seconds``."""
    stop, record = threading.Event(), threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop, record), name=f"client-{w.index}") for w in workers]
    for thread in threads:
        thread.start()
    phases = []
    try:
        time.sleep(warmup)  # the warm-up's length, not a wait for readiness
        rss.start()
        with rss.sampling():
            for run in range(runs):
                for worker in workers:
                    worker.tally = Tally()
                record.set()
                began = time.perf_counter()
                time.sleep(seconds)  # the measured stretch's length
                record.clear()
                elapsed = time.perf_counter() - began
                merged = Tally()
                for worker in workers:
                    merged.merge(worker.tally)
                phases.append(Phase(elapsed, merged))
                memory = ", ".join(f"{name} {mib:.1f}" for name, mib in rss.sample().items())
                log(
                    f"run {run + 1}/{runs}: {phases[-1].operations} operations in {elapsed:.1f} s"
                    f" ({phases[-1].throughput:.0f}/s), {phases[-1].errors} errors; RSS MiB {memory}"
                )
        rss.finish()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CALL_TIMEOUT + 10)
    return phases


def echo_phase(address: str, clients: int, seconds: float) -> Phase:
    """``clients`` threads calling the bare server's Echo back to back for ``seconds``."""
    stop = threading.Event()
    tallies = [Tally() for _ in range(clients)]

    def run(tally: Tally) -> None:
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            echo = channel.unary_unary(f"/{BARE_SERVICE}/Echo", request_serializer=None, response_deserializer=None)
            echo(ECHO_PAYLOAD, timeout=CALL_TIMEOUT)  # connect before the clock runs
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    echo(ECHO_PAYLOAD, timeout=CALL_TIMEOUT)
                except grpc.RpcError as exc:
                    tally.fail("echo", str(exc.code()))
                    continue
                tally.add("echo", time.perf_counter() - began)

    threads = [threading.Thread(target=run, args=(t,), name=f"echo-{i}") for i, t in enumerate(tallies)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)  # the measured stretch's length
    stop.set()
    for thread in threads:
        thread.join(timeout=CALL_TIMEOUT + 10)
    merged = Tally()
    for tally in tallies:
        merged.merge(tally)
    return Phase(time.perf_counter() - began, merged)


# Report --------------------------------------------------------------------------------------------


def _op_rows(phases: Sequence[Phase]) -> dict[str, dict[str, Any]]:
    """Per operation, over every run: count, errors, median throughput, p50/p99 of all latencies (ms)."""
    rows = {}
    for operation in [*MIX, "echo"]:
        values = [v for p in phases for v in p.tally.seconds.get(operation, [])]
        errors = sum(p.tally.errors.get(operation, 0) for p in phases)
        if not values and not errors:
            continue
        rows[operation] = {
            "count": len(values),
            "errors": errors,
            "per_s": round(statistics.median(len(p.tally.seconds.get(operation, [])) / p.seconds for p in phases), 1),
            "p50_ms": round(_quantile(values, 0.50) * 1000, 2) if values else None,
            "p99_ms": round(_quantile(values, 0.99) * 1000, 2) if values else None,
            "first_error": next((p.tally.samples[operation] for p in phases if operation in p.tally.samples), None),
        }
    return rows


def report(
    clients: int, phases: Sequence[Phase], baseline: Phase, rss: RssWatch, warmup: float, total: float
) -> dict[str, Any]:
    rows = _op_rows(phases)
    echo = _op_rows([baseline])["echo"]
    throughput = statistics.median(p.throughput for p in phases)
    errors = sum(p.errors for p in phases)
    growth = {name: rss.growth(name) for name in rss.pids}
    lines = [
        "",
        f"load: {clients} clients, {len(phases)} run(s) of {phases[0].seconds:.0f} s after {warmup:.0f} s of warm-up;"
        f" {os.cpu_count()} CPUs; mix {', '.join(f'{k} {v}%' for k, v in MIX.items())}",
        "",
        f"{'operation':<16} {'count':>8} {'per s':>8} {'p50 ms':>8} {'p99 ms':>9} {'errors':>7}",
        "-" * 62,
    ]
    for operation, row in rows.items():
        lines.append(
            f"{operation:<16} {row['count']:>8} {row['per_s']:>8.1f} {row['p50_ms'] or 0:>8.2f}"
            f" {row['p99_ms'] or 0:>9.2f} {row['errors']:>7}"
        )
    lines += [
        "-" * 62,
        f"{'all':<16} {sum(r['count'] for r in rows.values()):>8} {throughput:>8.1f}"
        f" {'':>8} {'':>9} {errors:>7}   (median of runs: {[round(p.throughput, 1) for p in phases]})",
        "",
        f"baseline, bare grpcio echo ({SERVER_WORKERS} server threads, {clients} client threads,"
        f" {baseline.seconds:.0f} s): {baseline.throughput:.1f}/s, p50 {echo['p50_ms']} ms, p99 {echo['p99_ms']} ms,"
        f" errors {baseline.errors}",
        f"ratio registry / echo throughput: {throughput / baseline.throughput:.3f}",
        "",
        "RSS MiB at the start of the measured time -> at its end (growth; lowest..highest sample):",
    ]
    for name in rss.pids:
        lines.append(
            f"  {name:<14} {rss.first[name]:>7.1f} -> {rss.last[name]:>7.1f}  ({growth[name] * 100:+.1f} %;"
            f" {rss.low[name]:.1f}..{rss.high[name]:.1f})"
        )
    for operation, row in rows.items():
        if row["first_error"]:
            lines.append(f"first error of {operation}: {row['first_error']}")
    worst = max(growth.values())
    lines += [
        "",
        f"acceptance: errors {errors} (target 0): {'ok' if errors == 0 else 'FAILED'};"
        f" largest RSS growth {worst * 100:+.1f} % (target < {RSS_TARGET * 100:.0f} %):"
        f" {'ok' if worst < RSS_TARGET else 'FAILED'}",
        f"whole benchmark {total:.1f} s",
    ]
    print("\n".join(lines), flush=True)
    figures = {
        "benchmark": "load",
        "cpus": os.cpu_count(),
        "clients": clients,
        "runs": len(phases),
        "seconds": [round(p.seconds, 2) for p in phases],
        "warmup_s": warmup,
        "mix": dict(MIX),
        "operations": rows,
        "throughput_per_s": [round(p.throughput, 1) for p in phases],
        "median_throughput_per_s": round(throughput, 1),
        "errors": errors,
        "baseline_echo": {
            "per_s": round(baseline.throughput, 1),
            "p50_ms": echo["p50_ms"],
            "p99_ms": echo["p99_ms"],
            "errors": baseline.errors,
        },
        "ratio_to_echo": round(throughput / baseline.throughput, 4),
        "rss_mib": {
            name: {
                "start": round(rss.first[name], 1),
                "end": round(rss.last[name], 1),
                "growth_pct": round(growth[name] * 100, 2),
                "low": round(rss.low[name], 1),
                "high": round(rss.high[name], 1),
            }
            for name in rss.pids
        },
        "ok": errors == 0 and worst < RSS_TARGET,
        "total_s": round(total, 1),
    }
    print(json.dumps(figures), flush=True)
    return figures


# Driver --------------------------------------------------------------------------------------------


def run(
    clients: int, seconds: float, warmup: float, runs: int, baseline_seconds: float, workdir: Path
) -> dict[str, Any]:
    began = time.perf_counter()
    log(f"workdir {workdir}; {clients} clients, {runs} x {seconds} s after {warmup} s of warm-up")
    with contextlib.ExitStack() as stack:
        federation = stack.enter_context(LocalFederation.start(workdir / "federation"))
        with RegistryClient(federation.address, timeout=CALL_TIMEOUT, long_timeout=CALL_TIMEOUT) as client:
            target = prepare(client, workdir / "model")
        workers = [Worker(i, federation.address, target) for i in range(clients)]
        for worker in workers:
            stack.callback(worker.close)
        pids = {"up": federation.process.pid, **federation.pids()}
        rss = RssWatch(pids)
        phases = load_phases(workers, warmup, seconds, runs, rss)
        bare = BareServer.start(workdir, args=(str(SERVER_WORKERS),))
        stack.callback(bare.stop)
        baseline = echo_phase(bare.address, clients, baseline_seconds)
        log(f"baseline: {baseline.operations} echoes in {baseline.seconds:.1f} s")
    return report(clients, phases, baseline, rss, warmup, time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured run (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured load before the first run (default 10)")
    parser.add_argument("--runs", type=int, default=1, help="measured runs, back to back (default 1)")
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="length of the echo baseline (default 10)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the scratch directory (default: the system temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.runs < 1 or min(args.seconds, args.baseline_seconds) <= 0 or args.warmup < 0:
        parser.error("--clients and --runs must be at least 1, the durations positive")
    with scratch_dir("bench-load-", args.workdir, args.keep) as workdir:
        figures = run(args.clients, args.seconds, args.warmup, args.runs, args.baseline_seconds, workdir)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
