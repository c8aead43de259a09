"""FATE's own 1.11 ``flow`` CLI through the registry's HTTP API, beside our ``flow`` over gRPC, in the same run.

Run from the repository root (after ``scripts/install_fate_client.sh``)::

    .venv/bin/python -m bench.fate_http [--size-mib 1024] [--runs 3] [--workdir DIR] [--keep]

One run prepares the generated HeteroLR guest model and its stored archive of ``bench.import_export``
(about ``--size-mib`` MiB), starts a real federation (``fate-registry up``: coordinator + agents 9999 and
10000) with FATE-Flow's HTTP API on a free port, and times, ``--runs`` rounds, on the same archive: our
``flow`` (gRPC) and FATE's 1.11 ``flow`` (HTTP) as a user types them, ``flow model import -c`` into a fresh
model version and ``flow model export -c`` of it, and curl making the same HTTP requests (the HTTP path
without the 1.11 CLI's own costs); each version is deleted after its round, untimed. It prints the
medians, the ratio of the 1.11 CLI's time to ours each way (target <= 1.25) and curl's, each CLI's
start-up, the peak RSS and CPU time of every process per operation (the client, the coordinator, each
agent) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bench.import_export import (
    MEMORY_TARGET_MIB,
    Flow,
    Prepared,
    Series,
    _fmt_row,
    import_export_once,
    prepare,
)
from bench.memory import KIB, MIB, PeakWatch
from bench.scratch import log, sized_main
from tests.support.fate_client import FateClient, coordinator_with_http, parse_answer
from tests.support.federation import LocalFederation

RATIO_TARGET: Final = 1.25  # the 1.11 CLI over HTTP / our flow over gRPC, wall time, each way
STARTUP_RUNS: Final = 3
FLOW_HELP: Final = "flow --help"


class FateFlow(Flow):
    """FATE's 1.11 ``flow`` CLI (``.venv-fate-client``) after ``flow init`` with the HTTP API's address."""

    name = "fate flow"

    def __init__(self, client: FateClient, watch: PeakWatch, timeout: float) -> None:
        self._command = client.command("flow")
        self._env = client.env()
        self._cwd = client.home
        self._watch = watch
        self._timeout = timeout

    def parse(self, stdout: str) -> Any:
        return parse_answer(stdout)  # after the client's own "Import torch failed" line


class CurlHttp(Flow):
    """curl on the same HTTP routes, from the same confs: it streams an import's file and an export's body,
    so the HTTP path's own cost shows apart from the 1.11 CLI's (its multipart body built in memory, its
    download loop of 1 KiB reads)."""

    name = "curl"

    def __init__(self, http_address: str, watch: PeakWatch, timeout: float) -> None:
        self._command = ["curl", "--silent", "--show-error"]
        self._base = f"http://{http_address}/v1/model"
        self._output = Path()  # the directory of the export under way
        self._env = dict(os.environ)
        self._cwd = Path.cwd()
        self._watch = watch
        self._timeout = timeout

    def argv(self, args: Sequence[str]) -> list[str]:
        """``model import -c CONF`` / ``model export -c CONF`` as the HTTP requests FATE's CLI makes."""
        operation, conf_path = args[1], Path(args[3])
        conf = json.loads(conf_path.read_text(encoding="utf-8"))
        if operation == "import":
            fields = [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in conf.items() if k != "file"]
            form = [part for field in [*fields, f"file=@{conf['file']}"] for part in ("--form", field)]
            return [*self._command, *form, f"{self._base}/import"]
        output = self._output = Path(conf["output_path"])
        output.mkdir(parents=True, exist_ok=True)
        return [
            *self._command,
            "--request",
            "GET",
            "--header",
            "Content-Type: application/json",
            "--data-binary",
            f"@{conf_path}",
            "--remote-name",
            "--remote-header-name",
            "--output-dir",
            str(output),
            "--write-out",
            '{"http_code": %{http_code}, "file": "%{filename_effective}"}',
            f"{self._base}/export",
        ]

    def parse(self, stdout: str) -> Any:
        answer = json.loads(stdout)
        if "http_code" in answer:  # an export: the archive went to the file, curl wrote what it got
            answer["retcode"] = 0 if answer["http_code"] == 200 else answer["http_code"]
            answer["file"] = str(self._output / answer["file"])  # curl names the file without its directory
        return answer


def _ratio_without(startup: Mapping[str, float], fate: Series, ours: Series) -> float | None:
    """The time ratio without each CLI's start-up; None where the noise of a small model swamps it."""
    ours_net, fate_net = ours.median - startup["ours"], fate.median - startup["fate"]
    return fate_net / ours_net if ours_net > 0 and fate_net > 0 else None


def report(
    prepared: Prepared,
    series: Sequence[Series],
    startup: Mapping[str, float],
    notes: Sequence[str],
    total_seconds: float,
) -> dict[str, Any]:
    by_name = {s.name: s for s in series}
    ways = ("import", "export")
    ratios = {way: by_name[f"fate {way}"].median / by_name[f"ours {way}"].median for way in ways}
    curl_ratios = {way: by_name[f"curl {way}"].median / by_name[f"ours {way}"].median for way in ways}
    net = {way: _ratio_without(startup, by_name[f"fate {way}"], by_name[f"ours {way}"]) for way in ways}
    lines = [
        "",
        f"archive {prepared.archive_bytes} B ({prepared.archive_bytes / MIB:.1f} MiB); {os.cpu_count()} CPUs",
        "ours: our flow over gRPC; fate: FATE's 1.11 flow CLI over the registry's HTTP API; curl: the same HTTP",
        "requests from curl, which streams both ways (the HTTP path without the 1.11 CLI's own costs)",
        "",
        f"{'operation':<14} {'runs':>4} {'median s':>9} {'min s':>8} {'max s':>8}"
        f" {'GB/s':>8} {'MiB/s':>9} {'min MiB/s':>9} {'max MiB/s':>9}",
        "-" * 86,
        *(_fmt_row(s) for s in series),
        "",
        f"time ratio fate / ours (median; target <= {RATIO_TARGET}):",
        *(
            f"  {way:<8} {value:.3f}  {'ok' if value <= RATIO_TARGET else 'ABOVE TARGET'}"
            for way, value in ratios.items()
        ),
        "time ratio curl / ours (median): " + ", ".join(f"{way} {value:.3f}" for way, value in curl_ratios.items()),
        f"CLI start-up alone ({FLOW_HELP}, no request; part of every figure above): median ours"
        f" {startup['ours']:.3f} s, fate {startup['fate']:.3f} s; time ratio without it:",
        *(f"  {way:<8} {'n/a' if value is None else f'{value:.3f}'}" for way, value in net.items()),
        "",
        f"peak memory, MiB, max across runs (target < {MEMORY_TARGET_MIB:.0f} MiB):",
        *(
            f"  {s.name:<12} "
            + "  ".join(
                f"{name} {kib / KIB:.1f}{'' if kib / KIB < MEMORY_TARGET_MIB else ' (OVER)'}"
                for name, kib in s.peaks_kib.items()
            )
            for s in series
        ),
        f"CPU seconds per operation, median across runs ({os.cpu_count()} CPUs; compare with the wall time):",
        *(
            f"  {s.name:<12} "
            + "  ".join(f"{name} {statistics.median(used):.2f}" for name, used in s.cpu.items())
            + f"   (wall {s.median:.2f})"
            for s in series
        ),
        *(f"note: {note}" for note in notes),
        f"whole benchmark {total_seconds:.1f} s",
    ]
    print("\n".join(lines), flush=True)
    figures: dict[str, Any] = {
        "benchmark": "fate_http",
        "cpus": os.cpu_count(),
        "archive_bytes": prepared.archive_bytes,
        "operations": {s.name: s.summary() for s in series},
        "time_ratio_fate_over_ours": {way: round(value, 4) for way, value in ratios.items()},
        "time_ratio_curl_over_ours": {way: round(value, 4) for way, value in curl_ratios.items()},
        "startup_median_s": {name: round(value, 4) for name, value in startup.items()},
        "time_ratio_without_startup": {way: None if v is None else round(v, 4) for way, v in net.items()},
        "ratio_target": RATIO_TARGET,
        "memory_target_mib": MEMORY_TARGET_MIB,
        "notes": list(notes),
    }
    print(json.dumps(figures), flush=True)
    return figures


def run(size_mib: int, runs: int, workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    op_timeout = 120.0 + size_mib / 4
    log(f"workdir {workdir}; preparing a {size_mib} MiB model and its stored archive")
    prepared = prepare(workdir, size_mib * MIB)
    log(f"prepared: archive {prepared.archive_bytes / MIB:.1f} MiB")
    series = {
        f"{client} {way}": Series(f"{client} {way}", prepared.archive_bytes)
        for way in ("import", "export")
        for client in ("ours", "fate", "curl")
    }
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        federation = LocalFederation.start(workdir / "federation", extra_conf={"coordinator": coordinator_with_http()})
        stack.callback(federation.stop)
        pids = federation.pids()
        http_address = federation.http_address
        log(f"federation at {federation.address}, HTTP API at {http_address}: {pids}")
        watch = PeakWatch(pids)
        ours = Flow(federation.address, watch, op_timeout)
        client = FateClient.create(workdir / "fate-client")
        client.init(http_address)
        fate = FateFlow(client, watch, op_timeout)
        curl = CurlHttp(http_address, watch, op_timeout)
        model_cache = federation.model_cache("9999")

        def round_of(flow: Flow, imports: Series | None, exports: Series | None) -> None:
            if not import_export_once(flow, workdir, prepared, model_cache, imports, exports, deleter=ours):
                notes.append("flow model delete failed: the imported versions stay on disk")

        clients = {"ours": ours, "fate": fate, "curl": curl}
        log("warm-up: one untimed import/export with each client")
        for cli in clients.values():
            round_of(cli, None, None)
        for index in range(runs):  # the clients in turn, so a drift of the machine touches each alike
            for name, cli in clients.items():
                round_of(cli, series[f"{name} import"], series[f"{name} export"])
            log(
                f"round {index + 1}/{runs}: " + ", ".join(f"{name} {s.seconds[-1]:.3f} s" for name, s in series.items())
            )
        startup = {
            name: statistics.median(cli.startup_seconds() for _ in range(STARTUP_RUNS))
            for name, cli in (("ours", ours), ("fate", fate))
        }
        notes.extend(watch.notes())
    return report(prepared, list(series.values()), startup, sorted(set(notes)), time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    return sized_main("python -m bench.fate_http", __doc__ or "", "bench-fate-http-", run, argv)


if __name__ == "__main__":
    sys.exit(main())
