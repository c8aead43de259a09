"""Deploy and load across 1, 3 and 16 parties, and with one party made slow, beside the single-party figure.

Run from the repository root::

    .venv/bin/python -m bench.fanout [--runs 5] [--parties 1,3,16] [--delay 1.0] [--workdir DIR] [--keep]

For each federation size N it starts N FATE-Serving test servers (one per party, each its own process)
and a real federation (``fate-registry up``: a coordinator and one agent per party, each a process);
all sizes stay up together and their runs are interleaved. It generates a small HeteroLR model with
guest ``9999`` and hosts ``10000`` … ``10000+N-2`` (for N = 1 the one party plays guest and host: the
model factory needs both roles), imports every party's slice through the SDK (untimed), warms up with
one untimed deploy and load, then times ``--runs`` rounds of the SDK's ``deploy_model`` (the whole
two-phase operation: a new child of the same parent each time) and ``load_model`` of that child (every
guest and host agent calls ``publishLoad`` on its FATE-Serving, which pulls the model back from the
agent). For N > 1 it adds single slow runs: deploy while one host agent is paused with SIGSTOP for
``--delay`` seconds (SIGCONT from a timer thread), load while that host's FATE-Serving delays each
answer by ``--delay`` seconds, and load while every FATE-Serving does. Each round also times the
baseline, a bare deploy of the same slices (:mod:`bench.bare_fanout`: one bare gRPC process per party
doing only the file-system work of a durable deploy in FATE's layout, fanned out in two phases), whose
N-to-one ratio is what this machine allows a deploy's to be. It prints a table (median, min, max, ratio
to the single-party median, the slow runs beside the delay and the no-slow median, CPU seconds per
process group, start-up time and memory) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from bench.bare_fanout import BareFanout
from bench.memory import KIB, cpu_seconds, status_kib
from bench.scratch import log, scratch_dir
from client.sdk import RegistryClient
from fate_registry.fate_models import ModelSpec, build_fate_archive, write_federation
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb
from tests.support.federation import LocalFederation
from tests.support.serving import Faults
from tests.support.serving_process import ServingTestServer

T = TypeVar("T")

GUEST_ID: Final = 9999
FIRST_HOST_ID: Final = 10000
DEFAULT_SIZES: Final = (1, 3, 16)
RATIO_TARGET: Final = 1.3
"""Three parties' median within this factor of one party's (the issue's target)."""
RATIO_TARGET_PARTIES: Final = 3
WIDE_RATIO_TARGET: Final = 2.0
"""Thirty-two parties' deploy within this factor of one party's (the scale-out issue's target)."""
WIDE_RATIO_TARGET_PARTIES: Final = 32
SLOW_TOLERANCE: Final = 0.5
"""A slow run passes when it costs less than (1 + this) times D above the no-slow median: its own delay, not a sum."""
CALL_TIMEOUT: Final = 120.0
"""SDK deadline of every call, so a hung operation cannot stall the run."""
START_TIMEOUT: Final = 180.0
PAUSE_CHECK_SECONDS: Final = 2.0
IDLE_SAMPLE_SECONDS: Final = 2.0


# The federation of one size ------------------------------------------------------------------------


def party_ids(size: int) -> list[str]:
    """Guest first, then the hosts."""
    return [str(GUEST_ID), *(str(FIRST_HOST_ID + i) for i in range(size - 1))]


def model_roles(size: int) -> dict[str, list[int]]:
    """guest [p0], host [p1 … p(N-1)]; one party plays both roles when N = 1 (ModelSpec needs a guest and a host)."""
    hosts = [FIRST_HOST_ID + i for i in range(size - 1)] or [GUEST_ID]
    return {"guest": [GUEST_ID], "host": hosts}


@dataclass
class ProcessGroups:
    """CPU seconds used by named groups of processes (``{"coordinator": [pid], "agents": [...], ...}``)."""

    pids: Mapping[str, Sequence[int]]
    _start: dict[str, float] = field(default_factory=dict)
    _client_start: float = 0.0

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    def reset(self) -> None:
        self._start = self._now()
        self._client_start = time.process_time()

    def used(self) -> dict[str, float]:
        now = self._now()
        used = {name: now[name] - self._start.get(name, 0.0) for name in now}
        used["bench client"] = time.process_time() - self._client_start
        return used

    def rss_mib(self) -> dict[str, float]:
        """Resident memory now: the largest process of each group and the group's total, in MiB."""
        figures: dict[str, float] = {}
        for name, pids in self.pids.items():
            sizes = [status_kib(pid, "VmRSS") / KIB for pid in pids]
            figures[f"{name} max"] = round(max(sizes), 1)
            figures[f"{name} total"] = round(sum(sizes), 1)
        return figures


@dataclass
class Setup:
    """Everything one federation size runs on: its servers, its model and a client."""

    size: int
    parties: list[str]
    roles: dict[str, list[int]]
    spec: ModelSpec
    federation: LocalFederation
    servings: dict[str, ServingTestServer]
    client: RegistryClient
    groups: ProcessGroups
    start_seconds: dict[str, float]
    bare: BareFanout

    @property
    def deploy_slices(self) -> int:
        return sum(len(ids) for ids in self.roles.values())

    @property
    def slice_parties(self) -> list[str]:
        """The party of each slice a deploy writes (the one party twice when N = 1)."""
        return [str(party) for ids in self.roles.values() for party in ids]

    @property
    def slow_party(self) -> str:
        """The party made slow: the last host."""
        return str(self.roles["host"][-1])

    def agent_pid(self, party: str) -> int:
        return self.federation.pids()[f"agent-{party}"]


def start_servings(root: Path, parties: Sequence[str], stack: contextlib.ExitStack) -> dict[str, ServingTestServer]:
    """One FATE-Serving test server per party, started at once; each stopped by PID when ``stack`` closes."""
    with futures.ThreadPoolExecutor(max_workers=len(parties)) as pool:
        started = {
            party: pool.submit(ServingTestServer.start, root / party, timeout=START_TIMEOUT) for party in parties
        }
        servings: dict[str, ServingTestServer] = {}
        failure: BaseException | None = None
        for party, future in started.items():
            try:
                servings[party] = future.result()
            except Exception as exc:  # keep the others to stop them
                failure = failure or exc
    for server in servings.values():
        stack.callback(server.stop)
    if failure is not None:
        raise failure
    return servings


def import_slices(client: RegistryClient, root: Path, spec: ModelSpec, parties: Sequence[str]) -> None:
    """Write every (role, party) slice of ``spec``, pack it as FATE-Flow does and import it through the SDK."""
    written = write_federation({party: root / "source" / party for party in parties}, spec)
    for (role, party), version_dir in written.items():
        archive = build_fate_archive(version_dir, root / "archives", role, int(party), spec.model_id, spec.version)
        target = common.PartyModelRef(role=role, party_id=party, model_id=spec.model_id, model_version=spec.version)
        client.import_model(archive, target, timeout=CALL_TIMEOUT)


@contextlib.contextmanager
def federation_of(size: int, workdir: Path) -> Iterator[Setup]:
    root = workdir / f"parties-{size}"
    parties = party_ids(size)
    with contextlib.ExitStack() as stack:
        began = time.perf_counter()
        servings = start_servings(root / "servings", parties, stack)
        servings_seconds = time.perf_counter() - began
        began = time.perf_counter()
        federation = LocalFederation.start(
            root / "federation",
            parties={party: {"servings": [servings[party].address]} for party in parties},
            timeout=START_TIMEOUT,
        )
        stack.callback(federation.stop)
        federation_seconds = time.perf_counter() - began
        pids = federation.pids()
        groups = ProcessGroups(
            {
                "coordinator": [pids["coordinator"]],
                "agents": [pids[f"agent-{party}"] for party in parties],
                "servings": [server.pid for server in servings.values()],
            }
        )
        client = RegistryClient(federation.address, timeout=CALL_TIMEOUT, long_timeout=CALL_TIMEOUT)
        stack.callback(client.close)
        roles = model_roles(size)
        spec = ModelSpec(roles=roles)
        began = time.perf_counter()
        import_slices(client, root / "model", spec, parties)
        import_seconds = time.perf_counter() - began
        bare = BareFanout(root / "bare", parties, timeout=START_TIMEOUT)
        stack.callback(bare.stop)
        log(
            f"{size} part{'y' if size == 1 else 'ies'}: servings up in {servings_seconds:.1f} s, federation in"
            f" {federation_seconds:.1f} s, {sum(map(len, roles.values()))} slices imported in {import_seconds:.1f} s"
        )
        yield Setup(
            size,
            parties,
            roles,
            spec,
            federation,
            servings,
            client,
            groups,
            {"servings": servings_seconds, "federation": federation_seconds, "import": import_seconds},
            bare,
        )


# Operations --------------------------------------------------------------------------------------


def _check(operation: str, results: Sequence[common.PartyResult], expected: int) -> None:
    failed = [f"{r.role} {r.party_id}: {r.retcode} {r.retmsg}" for r in results if r.retcode != 0]
    if failed or len(results) != expected:
        raise RuntimeError(f"{operation}: {len(results)} results, {expected} expected; failed: {failed}")


def deploy(setup: Setup) -> str:
    """``deploy_model`` of the imported (parent) version; the new child's version."""
    answer = setup.client.deploy_model(
        pb.DeployModelRequest(model_id=setup.spec.model_id, model_version=setup.spec.version)
    )
    _check("deploy", answer.results, setup.deploy_slices)
    return answer.model_version


def load(setup: Setup, child: str) -> None:
    """``load_model`` of a deployed child on every guest and host party, initiated by the guest."""
    request = pb.LoadModelRequest(
        initiator=common.Party(role="guest", party_id=str(GUEST_ID)),
        role={role: common.RoleParties(party_ids=[str(p) for p in ids]) for role, ids in setup.roles.items()},
        model_id=setup.spec.model_id,
        model_version=child,
    )
    _check("load", setup.client.load_model(request).results, setup.deploy_slices)


@dataclass
class Series:
    """One operation's timings on one federation size, and the CPU each process group used per run."""

    operation: str
    size: int
    slices: int
    seconds: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, seconds: float, cpu: Mapping[str, float]) -> None:
        self.seconds.append(seconds)
        for name, used in cpu.items():
            self.cpu.setdefault(name, []).append(used)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def mean_cpu(self) -> dict[str, float]:
        """CPU seconds per run of each process group, averaged: /proc counts in clock ticks (10 ms), too coarse
        for one run of a few tens of milliseconds, so a median would mostly show the rounding."""
        return {name: statistics.fmean(used) for name, used in self.cpu.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "parties": self.size,
            "slices": self.slices,
            "runs": len(self.seconds),
            "seconds": [round(s, 4) for s in self.seconds],
            "median_s": round(self.median, 4),
            "min_s": round(min(self.seconds), 4),
            "max_s": round(max(self.seconds), 4),
            "mean_cpu_s": {name: round(used, 4) for name, used in self.mean_cpu().items()},
        }


def measure(setup: Setup, action: Callable[[], T]) -> tuple[float, T, dict[str, float]]:
    """Wall time of ``action`` and the CPU each process group used meanwhile."""
    setup.groups.reset()
    began = time.perf_counter()
    value = action()
    elapsed = time.perf_counter() - began
    return elapsed, value, setup.groups.used()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def paused(pid: int, seconds: float) -> Iterator[None]:
    """SIGSTOP ``pid`` now and SIGCONT it ``seconds`` later from a timer thread (and in any case on exit)."""
    resumed = threading.Event()

    def resume() -> None:
        if not resumed.is_set():
            resumed.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, resume)
    timer.start()
    try:
        deadline = time.monotonic() + PAUSE_CHECK_SECONDS
        while _state(pid) != "T":  # SIGSTOP is asynchronous: make sure the agent really is stopped
            if time.monotonic() > deadline:
                raise RuntimeError(f"process {pid} did not stop within {PAUSE_CHECK_SECONDS} s of SIGSTOP")
            time.sleep(0.001)
        yield
    finally:
        timer.cancel()
        resume()


@contextlib.contextmanager
def delayed(servings: Sequence[ServingTestServer], seconds: float) -> Iterator[None]:
    """Each of ``servings`` waits ``seconds`` before every answer while the block runs."""
    try:
        for server in servings:
            server.set_control(Faults(delay=seconds))
        yield
    finally:
        for server in servings:
            server.clear_control()


@dataclass(frozen=True)
class SlowRun:
    """One run with slow parties: its latency beside the delay and the no-slow median of the same size."""

    size: int
    operation: str
    how: str
    slow_parties: int
    delay: float
    seconds: float
    no_slow_median: float

    @property
    def extra(self) -> float:
        return self.seconds - self.no_slow_median

    @property
    def sum_of_delays(self) -> float:
        """What the slow parties would cost if they were waited for one after another."""
        return self.slow_parties * self.delay

    @property
    def ok(self) -> bool:
        return self.extra < (1 + SLOW_TOLERANCE) * self.delay

    def summary(self) -> dict[str, Any]:
        return {
            "parties": self.size,
            "operation": self.operation,
            "how": self.how,
            "slow_parties": self.slow_parties,
            "delay_s": self.delay,
            "seconds": round(self.seconds, 4),
            "no_slow_median_s": round(self.no_slow_median, 4),
            "extra_s": round(self.extra, 4),
            "sum_of_delays_s": round(self.sum_of_delays, 4),
            "ok": self.ok,
        }


@dataclass
class SizeResult:
    size: int
    parties: list[str]
    slices: int
    start_seconds: dict[str, float]
    rss_mib: dict[str, float]
    deploy: Series
    load: Series
    slow: list[SlowRun]
    bare: Series


def slow_runs(setup: Setup, delay: float, deploys: Series, loads: Series) -> list[SlowRun]:
    """One deploy with the last host's agent paused, one load with its serving slow, one with every serving slow."""
    party = setup.slow_party
    with paused(setup.agent_pid(party), delay):
        seconds, child, _ = measure(setup, lambda: deploy(setup))
    slow = [SlowRun(setup.size, "deploy", f"agent {party} SIGSTOPped D s", 1, delay, seconds, deploys.median)]
    with delayed([setup.servings[party]], delay):
        seconds, _, _ = measure(setup, functools.partial(load, setup, child))
    slow.append(SlowRun(setup.size, "load", f"serving of {party} delays D", 1, delay, seconds, loads.median))
    child = deploy(setup)  # a fresh child, loaded for the first time like every timed run's
    with delayed(list(setup.servings.values()), delay):
        seconds, _, _ = measure(setup, functools.partial(load, setup, child))
    slow.append(SlowRun(setup.size, "load", "every serving delays D", setup.size, delay, seconds, loads.median))
    for run in slow:
        log(f"{setup.size} parties, slow {run.operation} ({run.how}): {run.seconds:.3f} s")
    return slow


def idle_cpu(setups: Sequence[Setup], seconds: float = IDLE_SAMPLE_SECONDS) -> float:
    """CPU seconds per second that every started process uses while nothing is asked of it."""
    for setup in setups:
        setup.groups.reset()
    time.sleep(seconds)  # a sampling window, not a wait for readiness
    used = sum(v for setup in setups for name, v in setup.groups.used().items() if name != "bench client")
    return used / seconds


def measure_sizes(setups: Sequence[Setup], runs: int, delay: float) -> tuple[list[SizeResult], float]:
    """Every size's runs interleaved, each round in a rotated order, so a disturbance on this shared machine
    falls on all sizes alike instead of on whichever size happened to be measured then."""
    rss = {setup.size: setup.groups.rss_mib() for setup in setups}
    deploys = {setup.size: Series("deploy", setup.size, setup.deploy_slices) for setup in setups}
    loads = {setup.size: Series("load", setup.size, setup.deploy_slices) for setup in setups}
    bares = {setup.size: Series("bare", setup.size, setup.deploy_slices) for setup in setups}
    for setup in setups:
        load(setup, deploy(setup))  # warm-up, untimed: channels, first-call imports, the serving's first pull
        setup.bare.deploy_seconds(setup.slice_parties)
    idle = idle_cpu(setups)
    for index in range(runs):
        shift = index % len(setups)
        for setup in [*setups[shift:], *setups[:shift]]:
            seconds, child, cpu = measure(setup, functools.partial(deploy, setup))
            deploys[setup.size].add(seconds, cpu)
            seconds, _, cpu = measure(setup, functools.partial(load, setup, child))
            loads[setup.size].add(seconds, cpu)
            bares[setup.size].add(setup.bare.deploy_seconds(setup.slice_parties), {})
            log(
                f"{setup.size} parties, run {index + 1}/{runs}: deploy {deploys[setup.size].seconds[-1]:.3f} s,"
                f" load {loads[setup.size].seconds[-1]:.3f} s, bare deploy {bares[setup.size].seconds[-1]:.3f} s"
            )
    results = []
    for setup in setups:
        size = setup.size
        slow = slow_runs(setup, delay, deploys[size], loads[size]) if size > 1 else []
        results.append(
            SizeResult(
                size,
                setup.parties,
                setup.deploy_slices,
                setup.start_seconds,
                rss[size],
                deploys[size],
                loads[size],
                slow,
                bares[size],
            )
        )
    return results, idle


# Report ------------------------------------------------------------------------------------------


def _verdict(operation: str, size: int, ratio: float, baseline: int) -> str:
    if size == baseline:
        return "baseline"
    targets = {RATIO_TARGET_PARTIES: RATIO_TARGET}
    if operation == "deploy":
        targets[WIDE_RATIO_TARGET_PARTIES] = WIDE_RATIO_TARGET
    target = targets.get(size)
    if target is None:
        return ""
    return f"target <= {target}: {'ok' if ratio <= target else 'OVER'}"


def report(results: Sequence[SizeResult], runs: int, delay: float, idle: float, total_seconds: float) -> dict[str, Any]:
    base = results[0]
    baselines = {"deploy": base.deploy.median, "load": base.load.median, "bare": base.bare.median}
    ratios = {
        f"{series.operation} {r.size}/{base.size}": series.median / baselines[series.operation]
        for r in results
        for series in (r.deploy, r.load, r.bare)
    }
    lines = [
        "",
        f"fan-out: deploy and load through the SDK, {runs} runs each after one warm-up, the sizes interleaved;"
        f" {os.cpu_count()} CPUs; one FATE-Serving test server per party; baseline = the single-party figure"
        " of this run",
        "",
        f"{'parties':>7} {'slices':>6}  {'operation':<9} {'runs':>4} {'median s':>9} {'min s':>8} {'max s':>8}"
        f" {'x base':>7}  vs baseline",
        "-" * 96,
    ]
    for operation in ("deploy", "bare", "load"):
        for r in results:
            s = {"deploy": r.deploy, "load": r.load, "bare": r.bare}[operation]
            ratio = s.median / baselines[operation]
            verdict = "" if operation == "bare" else _verdict(operation, r.size, ratio, base.size)
            lines.append(
                f"{r.size:>7} {r.slices:>6}  {operation:<9} {len(s.seconds):>4} {s.median:>9.3f}"
                f" {min(s.seconds):>8.3f} {max(s.seconds):>8.3f} {ratio:>7.2f}  {verdict}"
            )
    lines.append(
        "  (bare: the baseline, the same slices' durable file-system work in FATE's layout on bare gRPC processes;"
        " its x base is the least a deploy's can be here)"
    )
    for r in results[1:]:
        lines.append(
            f"  {r.size} parties: the bare deploy takes {r.bare.median / base.deploy.median:.2f} x the registry's"
            f" single-party deploy; the registry's {r.size}-party deploy takes {r.deploy.median / r.bare.median:.2f}"
            " x the bare one"
        )
    slow = [run for r in results for run in r.slow]
    if slow:
        lines += [
            "",
            f"slow parties, one run each (D = {delay:.2f} s; ok when slow - no-slow < {1 + SLOW_TOLERANCE:.1f} x D):",
            f"{'parties':>7}  {'operation':<9} {'how':<30} {'slow s':>7} {'no-slow s':>9} {'extra s':>8}"
            f" {'D s':>5} {'k x D':>6}  verdict",
            "-" * 96,
        ]
        for run in slow:
            lines.append(
                f"{run.size:>7}  {run.operation:<9} {run.how:<30} {run.seconds:>7.3f} {run.no_slow_median:>9.3f}"
                f" {run.extra:>8.3f} {run.delay:>5.2f} {run.sum_of_delays:>6.2f}"
                f"  {'own delay, not the sum' if run.ok else 'OVER'}"
            )
        lines.append("  (k x D: what k slow parties would cost if they were waited for one after another)")
    cpus = os.cpu_count() or 1
    lines += [
        "",
        f"CPU seconds per operation, mean across runs (clock ticks of 10 ms); all / {cpus} CPUs is the least wall"
        " time that CPU work could take here:",
    ]
    for r in results:
        for s in (r.deploy, r.load):
            used = s.mean_cpu()
            cells = "  ".join(f"{name} {seconds:.3f}" for name, seconds in used.items())
            total = sum(used.values())
            lines.append(
                f"  {r.size:>2} parties {s.operation:<7} {cells}  | all {total:.3f}, / {cpus} = {total / cpus:.3f}"
                f"  (wall median {s.median:.3f})"
            )
    lines += ["", "start-up and memory (RSS after start-up, MiB):"]
    for r in results:
        started = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in r.start_seconds.items())
        memory = "  ".join(f"{name} {mib:.0f}" for name, mib in r.rss_mib.items())
        lines.append(f"  {r.size:>2} parties: {started}; {memory}")
    lines.append(
        f"all {len(results)} federations stay up for the whole run; idle, they use {idle:.3f} CPU s per second together"
    )
    lines.append(f"whole benchmark {total_seconds:.1f} s")
    print("\n".join(lines), flush=True)
    figures: dict[str, Any] = {
        "benchmark": "fanout",
        "cpus": os.cpu_count(),
        "runs": runs,
        "delay_s": delay,
        "baseline_parties": base.size,
        "sizes": {
            str(r.size): {
                "parties": r.parties,
                "slices": r.slices,
                "start_s": {name: round(seconds, 3) for name, seconds in r.start_seconds.items()},
                "rss_mib": r.rss_mib,
                "deploy": r.deploy.summary(),
                "load": r.load.summary(),
                "bare_deploy": r.bare.summary(),
            }
            for r in results
        },
        "ratios": {name: round(value, 4) for name, value in ratios.items()},
        "ratio_target": {"parties": RATIO_TARGET_PARTIES, "max": RATIO_TARGET},
        "deploy_ratio_target": {"parties": WIDE_RATIO_TARGET_PARTIES, "max": WIDE_RATIO_TARGET},
        "slow": [run.summary() for run in slow],
        "idle_cpu_s_per_s": round(idle, 4),
        "total_s": round(total_seconds, 1),
    }
    print(json.dumps(figures), flush=True)
    return figures


# Driver ------------------------------------------------------------------------------------------


def run(sizes: Sequence[int], runs: int, delay: float, workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    log(f"workdir {workdir}; sizes {', '.join(map(str, sizes))}; {runs} runs; D = {delay} s")
    with contextlib.ExitStack() as stack:
        setups = [stack.enter_context(federation_of(size, workdir)) for size in sizes]
        results, idle = measure_sizes(setups, runs, delay)
    return report(results, runs, delay, idle, time.perf_counter() - began)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of party counts, got {text!r}") from None
    if not sizes or sizes[0] < 1 or sizes[-1] > 64:
        raise argparse.ArgumentTypeError("party counts go from 1 to 64")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed deploy+load runs per size (default 5)")
    parser.add_argument(
        "--parties",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="federation sizes, comma-separated; the smallest is the baseline (default 1,3,16)",
    )
    parser.add_argument("--delay", type=float, default=1.0, help="D, the slow party's delay in seconds (default 1.0)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the scratch directory (default: the system temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 0 < args.delay <= 10:
        parser.error("--delay must be above 0 and at most 10 seconds")
    with scratch_dir("bench-fanout-", args.workdir, args.keep) as workdir:
        run(args.parties, args.runs, args.delay, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
