"""``flow model export`` of a large model through FATE's proxy, beside the direct paths in the same run.

Run from the repository root::

    .venv/bin/python -m bench.proxy_export [--size-mib 1024] [--runs 3] [--workdir DIR] [--keep]

Prepares the model and its stored archive as :mod:`bench.import_export` does; starts the rollsite
test router (:mod:`tests.support.rollsite`) and two federations (``fate-registry up``):
one whose parties are direct, one whose parties are reachable only as eggroll Packets through the
router. The archive is imported once into each (untimed). Then, ``--runs`` times, in turn:

- ``direct one-hop``: export from the direct federation, bytes agent -> CLI (transfer ``auto``);
- ``direct relay``: the same through the coordinator (``FATE_REGISTRY_TRANSFER=relay``);
- ``proxy``: export from the proxied federation: agent -> router -> coordinator -> CLI, one
  ``unaryCall`` Packet per 1 MiB message, sha256 checked at the end.

It prints medians, throughput and the ratios proxy / direct relay and proxy / direct one-hop, then
one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.import_export import Flow, Prepared, Series, prepare, write_confs
from bench.memory import MIB, PeakWatch
from bench.scratch import log, scratch_dir
from client.settings import TRANSFER_ENV
from fate_registry.identity import job_ids
from fate_registry.packets import AGENT_ROLE
from tests.support.federation import LocalFederation
from tests.support.rollsite_process import RollsiteProcess


def _export(flow: Flow, conf: Path, output_dir: Path, series: Series) -> None:
    measured = flow.run("model", "export", "-c", str(conf))
    archive = Path(str(measured.answer.get("file", "")))
    if not archive.is_file():
        raise RuntimeError(f"flow model export answered {measured.answer} but wrote no file")
    series.nbytes = archive.stat().st_size
    series.add(measured)
    shutil.rmtree(output_dir)


def run(size_mib: int, runs: int, workdir: Path) -> dict[str, Any]:
    op_timeout = 120.0 + size_mib / 2
    log(f"workdir {workdir}; preparing a {size_mib} MiB model and its stored archive")
    prepared: Prepared = prepare(workdir, size_mib * MIB)
    one_hop, relay, proxy = Series("direct one-hop", 0), Series("direct relay", 0), Series("proxy", 0)
    with contextlib.ExitStack() as stack:
        rollsite = stack.enter_context(RollsiteProcess.start(workdir / "rollsite"))
        direct = stack.enter_context(LocalFederation.start(workdir / "direct"))
        proxied_parties = {party: {"proxy": rollsite.address} for party in ("9999", "10000")}
        proxied = stack.enter_context(LocalFederation.start(workdir / "proxied", parties=proxied_parties))
        for party in proxied.parties:
            rollsite.set_route(party, AGENT_ROLE, proxied.agent_address(party))
        log(f"direct federation at {direct.address}, proxied at {proxied.address}, router at {rollsite.address}")
        direct_watch = PeakWatch(direct.pids())
        proxied_watch = PeakWatch({**proxied.pids(), "rollsite": rollsite.process.pid})
        flows = {
            "one-hop": Flow(direct.address, direct_watch, op_timeout),
            "relay": Flow(direct.address, direct_watch, op_timeout, {TRANSFER_ENV: "relay"}),
            "proxy": Flow(proxied.address, proxied_watch, op_timeout),
        }
        confs = write_confs(workdir, prepared, job_ids.next())
        flows["one-hop"].run("model", "import", "-c", str(confs.import_conf))
        flows["proxy"].run("model", "import", "-c", str(confs.import_conf))
        _export(flows["proxy"], confs.export_conf, confs.output_dir, Series("warm-up", 0))  # untimed
        for index in range(runs):
            for name, series in (("one-hop", one_hop), ("relay", relay), ("proxy", proxy)):
                _export(flows[name], confs.export_conf, confs.output_dir, series)
            log(
                f"run {index + 1}/{runs}: one-hop {one_hop.seconds[-1]:.3f} s, relay {relay.seconds[-1]:.3f} s,"
                f" proxy {proxy.seconds[-1]:.3f} s"
            )
        packets = len(rollsite.packets())
    ratios = {
        "proxy / direct relay": proxy.throughput(proxy.median) / relay.throughput(relay.median),
        "proxy / direct one-hop": proxy.throughput(proxy.median) / one_hop.throughput(one_hop.median),
    }
    lines = [f"{'export':<16} {'runs':>4} {'median s':>9} {'MiB/s':>9}  peak MiB"]
    for s in (one_hop, relay, proxy):
        peaks = "  ".join(f"{name} {kib / 1024:.0f}" for name, kib in s.peaks_kib.items())
        lines.append(f"{s.name:<16} {len(s.seconds):>4} {s.median:>9.3f} {s.throughput(s.median) / MIB:>9.1f}  {peaks}")
    lines.extend(f"ratio {name}: {value:.3f}" for name, value in ratios.items())
    lines.append(f"Packets through the router: {packets} (archive {proxy.nbytes} B)")
    print("\n".join(lines), flush=True)
    figures = {
        "benchmark": "proxy_export",
        "archive_bytes": proxy.nbytes,
        "operations": {s.name: s.summary() for s in (one_hop, relay, proxy)},
        "ratios": {name: round(value, 4) for name, value in ratios.items()},
        "router_packets": packets,
    }
    print(json.dumps(figures), flush=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="timed exports per path (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the scratch directory")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.runs < 1:
        parser.error("--size-mib and --runs must be at least 1")
    with scratch_dir("bench-proxy-export-", args.workdir, args.keep) as workdir:
        began = time.perf_counter()
        try:
            run(args.size_mib, args.runs, workdir)
        finally:
            log(f"whole benchmark {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
