"""``flow model import`` / ``flow model export`` of a large model, beside baselines measured in the same run.

Run from the repository root::

    .venv/bin/python -m bench.import_export [--size-mib 1024] [--runs 3] [--workdir DIR] [--keep]

One run prepares a generated HeteroLR guest model of about ``--size-mib`` MiB, packs it as a stored
zip in FATE-Flow's archive layout and writes FATE's import and export confs; starts a real federation
(``fate-registry up``: coordinator + agents 9999 and 10000); then times, ``--runs`` times each, the CLI
as a user types it (``flow model import -c`` into a fresh model version, ``flow model export -c`` of
it) and the baselines on the same bytes: a copy of the version directory with an fsync per file, a
bare gRPC byte stream up and down (in the chunk sizes flow and the agent use) between two Python processes,
and the floors: the same streams adding only what a verified, durable transfer needs (``bench.bare_stream``:
CRC-32 and SHA-256, writes around the page cache, fsync; an export's read from the disk).
It prints a table (medians, min/max, throughput, ratios to the baselines, peak memory of the CLI, the
coordinator and each agent per operation) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.bare_server import BareServer
from bench.bare_stream import download_seconds, upload_seconds
from bench.memory import KIB, MIB, PeakWatch, Reaped, kill_after, run_reaped
from bench.scratch import log, sized_main
from fate_registry.config import LimitsConf
from fate_registry.fate_models import ModelSpec, write_party_model
from fate_registry.fate_models.fate_archive import build_stored_archive, walk_sorted
from fate_registry.identity import archive_name, job_ids
from tests.support.federation import LocalFederation

REPO: Final = Path(__file__).resolve().parents[1]
ROLE: Final = "guest"
PARTY_ID: Final = 9999
# The bare streams move the same message sizes as flow and the agent do.
UPLOAD_CHUNK: Final = LimitsConf.upload_chunk_bytes
DOWNLOAD_CHUNK: Final = LimitsConf.download_chunk_bytes
COPY_BLOCK: Final = 1 * MIB
MIN_BASELINE_RUNS: Final = 3
MEMORY_TARGET_MIB: Final = 200.0
RATIO_TARGET: Final = 0.6
GB: Final = 1e9


# Preparation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    spec: ModelSpec
    version_dir: Path
    version_bytes: int
    archive: Path
    archive_bytes: int


def _tree_bytes(root: Path) -> int:
    return sum((dirpath / name).stat().st_size for dirpath, _, names in walk_sorted(root) for name in names)


def prepare(workdir: Path, target_bytes: int) -> Prepared:
    spec = ModelSpec(target_bytes=target_bytes)
    version_dir = write_party_model(workdir / "source" / "model_local_cache", spec, ROLE, PARTY_ID)
    archive_dir = workdir / "archive"
    archive_dir.mkdir()
    archive = archive_dir / archive_name(spec.party_model_id(ROLE, PARTY_ID), spec.version)
    import_config = {
        "role": ROLE,
        "party_id": PARTY_ID,
        "model_id": spec.model_id,
        "model_version": spec.version,
        "file": str(archive),
        "force_update": False,
    }
    build_stored_archive(version_dir, archive, import_config)
    return Prepared(spec, version_dir, _tree_bytes(version_dir), archive, archive.stat().st_size)


@dataclass(frozen=True)
class Confs:
    model_version: str
    import_conf: Path
    export_conf: Path
    output_dir: Path


def write_confs(workdir: Path, prepared: Prepared, model_version: str) -> Confs:
    """FATE's example confs for one fresh model version: the import writes it, the export reads it back."""
    conf_dir = workdir / "conf"
    conf_dir.mkdir(exist_ok=True)
    output_dir = workdir / "exported" / model_version
    common = {"role": ROLE, "party_id": PARTY_ID, "model_id": prepared.spec.model_id, "model_version": model_version}
    import_conf = conf_dir / f"import_{model_version}.json"
    import_conf.write_text(
        json.dumps({**common, "file": str(prepared.archive), "force_update": False}, indent=4), encoding="utf-8"
    )
    export_conf = conf_dir / f"export_{model_version}.json"
    export_conf.write_text(json.dumps({**common, "output_path": str(output_dir)}, indent=4), encoding="utf-8")
    return Confs(model_version, import_conf, export_conf, output_dir)


# Measurements ------------------------------------------------------------------------------------


@dataclass
class Series:
    """One operation's timings (and, for the CLI operations, peak memory in KiB and CPU s per process)."""

    name: str
    nbytes: int
    seconds: list[float] = field(default_factory=list)
    peaks_kib: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, measured: Measured) -> None:
        self.seconds.append(measured.reaped.seconds)
        for process, kib in measured.peaks_kib.items():
            self.peaks_kib[process] = max(self.peaks_kib.get(process, 0), kib)
        for process, used in measured.cpu.items():
            self.cpu.setdefault(process, []).append(used)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def throughput(self, seconds: float) -> float:
        return self.nbytes / seconds

    def summary(self) -> dict[str, Any]:
        return {
            "bytes": self.nbytes,
            "runs": len(self.seconds),
            "seconds": [round(s, 4) for s in self.seconds],
            "median_s": round(self.median, 4),
            "min_s": round(min(self.seconds), 4),
            "max_s": round(max(self.seconds), 4),
            "median_gb_per_s": round(self.throughput(self.median) / GB, 4),
            "median_mib_per_s": round(self.throughput(self.median) / MIB, 1),
            "peak_mib": {name: round(kib / KIB, 1) for name, kib in self.peaks_kib.items()},
            "median_cpu_s": {name: round(statistics.median(used), 3) for name, used in self.cpu.items()},
        }


@dataclass(frozen=True)
class Measured:
    """One CLI operation: the reaped ``flow`` child, its JSON answer, and per-process peak RSS and CPU."""

    reaped: Reaped
    answer: dict[str, Any]
    peaks_kib: dict[str, int]
    cpu: dict[str, float]


class Flow:
    """The ``flow`` CLI as a user runs it, against the federation, with per-process peak memory."""

    name = "flow"  # the CLI's process in the peak-memory and CPU figures

    def __init__(
        self, address: str, watch: PeakWatch, timeout: float, extra_env: Mapping[str, str] | None = None
    ) -> None:
        script = Path(sys.executable).parent / "flow"
        self._command = [str(script)] if script.exists() else [sys.executable, "-m", "client"]
        self._env = {**os.environ, "FATE_REGISTRY_ADDRESS": address, **(extra_env or {})}
        self._cwd = REPO
        self._watch = watch
        self._timeout = timeout

    def argv(self, args: Sequence[str]) -> list[str]:
        """The command line that runs ``flow <args>``."""
        return [*self._command, *args]

    def parse(self, stdout: str) -> Any:
        """The CLI's JSON answer (raises ValueError when it printed none)."""
        return json.loads(stdout)

    def run(self, *args: str) -> Measured:
        """Run ``flow <args>`` to completion and check its answer; fail unless its retcode is 0."""
        os.sync()  # earlier writes are flushed now, not in the middle of this operation
        self._watch.reset()
        reaped = run_reaped(self.argv(args), env=self._env, timeout=self._timeout, cwd=self._cwd)
        peaks = self._watch.peaks_kib()
        cpu = self._watch.cpu_used()
        try:
            answer = self.parse(reaped.stdout)
        except ValueError:
            answer = None
        if reaped.returncode != 0 or not isinstance(answer, dict) or answer.get("retcode") != 0:
            raise RuntimeError(
                f"{self.name} {' '.join(args)} failed (exit {reaped.returncode}):\n"
                f"stdout: {reaped.stdout[-2000:]}\nstderr: {reaped.stderr[-2000:]}"
            )
        return Measured(reaped, answer, {self.name: reaped.maxrss_kib, **peaks}, {self.name: reaped.cpu_seconds, **cpu})

    def try_run(self, *args: str) -> bool:
        """Run ``flow <args>`` untimed; True when it answered retcode 0."""
        reaped = run_reaped(self.argv(args), env=self._env, timeout=self._timeout, cwd=self._cwd)
        try:
            return reaped.returncode == 0 and self.parse(reaped.stdout).get("retcode") == 0
        except (ValueError, AttributeError):
            return False

    def startup_seconds(self) -> float:
        """``flow --help``: the interpreter and the CLI's imports, no RPC (part of every CLI figure)."""
        reaped = run_reaped([*self._command, "--help"], env=self._env, timeout=60.0, cwd=self._cwd)
        if reaped.returncode != 0:
            raise RuntimeError(f"flow --help exited with {reaped.returncode}: {reaped.stderr[-2000:]}")
        return reaped.seconds


def evict_page_cache(root: Path) -> None:
    """Drop the (clean, already synced) page cache of every file under ``root``; the files stay as they are."""
    os.sync()
    for dirpath, _, filenames in walk_sorted(root):
        for name in filenames:
            fd = os.open(dirpath / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def import_export_once(
    flow: Flow,
    workdir: Path,
    prepared: Prepared,
    model_cache: Path,
    imports: Series | None,
    exports: Series | None,
    deleter: Flow | None = None,
) -> bool:
    """Import the archive into a fresh model version, export that version, then clean up (untimed).

    The cleanup deletes the version (``flow model delete``, run by ``deleter`` when given) or, where the
    registry cannot delete yet, drops its page cache: either frees the pages the run filled, so the next
    run reuses them instead of touching fresh ones (slow on this VM, see the warm-up). Returns whether the
    delete worked.
    """
    confs = write_confs(workdir, prepared, job_ids.next())
    imported = flow.run("model", "import", "-c", str(confs.import_conf))
    if imports is not None:
        imports.add(imported)
    exported = flow.run("model", "export", "-c", str(confs.export_conf))
    archive = Path(str(exported.answer.get("file", "")))
    if not archive.is_file():
        raise RuntimeError(f"flow model export answered {exported.answer} but wrote no file")
    if exports is not None:
        exports.add(exported)
        exports.nbytes = archive.stat().st_size  # the registry's archive (it adds a manifest entry): what moved
    shutil.rmtree(confs.output_dir)
    model = ["--model-id", prepared.spec.model_id, "--model-version", confs.model_version]
    if (deleter or flow).try_run("model", "delete", *model, "-r", ROLE, "-p", str(PARTY_ID)):
        return True
    version_dir = model_cache / prepared.spec.party_model_id(ROLE, PARTY_ID) / confs.model_version
    if not version_dir.is_dir():
        raise RuntimeError(f"the imported version is not at {version_dir}")
    evict_page_cache(version_dir)
    return False


def copy_fsync_seconds(source: Path, target: Path) -> float:
    """A plain copy of every file of ``source`` into ``target``, each file fsynced: what a local write costs."""
    start = time.perf_counter()
    for dirpath, _, filenames in walk_sorted(source):
        directory = target / dirpath.relative_to(source)
        directory.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            destination = directory / name
            shutil.copyfile(dirpath / name, destination)
            fd = os.open(destination, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return time.perf_counter() - start


# Report ------------------------------------------------------------------------------------------


def _fmt_row(series: Series) -> str:
    median, fastest, slowest = series.median, min(series.seconds), max(series.seconds)
    rate = series.throughput(median)
    return (
        f"{series.name:<14} {len(series.seconds):>4} {median:>9.3f} {fastest:>8.3f} {slowest:>8.3f}"
        f" {rate / GB:>8.3f} {rate / MIB:>9.1f}"
        f" {series.throughput(slowest) / MIB:>9.1f} {series.throughput(fastest) / MIB:>9.1f}"
    )


def report(
    prepared: Prepared,
    series: Sequence[Series],
    ratios: Mapping[str, float],
    floors: Mapping[str, float],
    startup: Sequence[float],
    notes: Sequence[str],
    prepare_seconds: float,
    total_seconds: float,
) -> dict[str, Any]:
    lines = [
        "",
        f"model {prepared.spec.party_model_id(ROLE, PARTY_ID)}: version directory {prepared.version_bytes} B"
        f" ({prepared.version_bytes / MIB:.1f} MiB), stored archive {prepared.archive_bytes} B"
        f" ({prepared.archive_bytes / MIB:.1f} MiB); {os.cpu_count()} CPUs",
        "",
        f"{'operation':<14} {'runs':>4} {'median s':>9} {'min s':>8} {'max s':>8}"
        f" {'GB/s':>8} {'MiB/s':>9} {'min MiB/s':>9} {'max MiB/s':>9}",
        "-" * 86,
        *(_fmt_row(s) for s in series),
        "",
        f"flow CLI start-up alone (flow --help, no RPC): median {statistics.median(startup):.3f} s"
        " (included in the import and export times)",
        "",
        f"ratios (median throughput; target >= {RATIO_TARGET}):",
        *(
            f"  {name:<28} {value:.3f}  {'ok' if value >= RATIO_TARGET else 'BELOW TARGET'}"
            for name, value in ratios.items()
        ),
        "",
        "floors (the bare streams plus only what a verified, durable transfer needs: CRC-32 and SHA-256, writes",
        "around the page cache and fsync, an export's read from the disk; no CLI start-up). A floor / bare ratio",
        "is the best an import's or export's ratio can be on this machine in this run:",
        *(f"  {name:<32} {value:.3f}" for name, value in floors.items()),
        "",
        f"peak memory, MiB, max across runs (target < {MEMORY_TARGET_MIB:.0f} MiB):",
    ]
    for s in series:
        if s.peaks_kib:
            cells = "  ".join(
                f"{name} {kib / KIB:.1f}{'' if kib / KIB < MEMORY_TARGET_MIB else ' (OVER)'}"
                for name, kib in s.peaks_kib.items()
            )
            lines.append(f"  {s.name:<10} {cells}")
    lines.append(f"CPU seconds per operation, median across runs ({os.cpu_count()} CPUs; compare with the wall time):")
    for s in series:
        if s.cpu:
            cells = "  ".join(f"{name} {statistics.median(used):.2f}" for name, used in s.cpu.items())
            lines.append(f"  {s.name:<10} {cells}   (wall {s.median:.2f})")
    lines.extend(f"note: {note}" for note in notes)
    lines.append(f"prepare {prepare_seconds:.1f} s, whole benchmark {total_seconds:.1f} s")
    print("\n".join(lines), flush=True)
    figures: dict[str, Any] = {
        "benchmark": "import_export",
        "cpus": os.cpu_count(),
        "version_dir_bytes": prepared.version_bytes,
        "archive_bytes": prepared.archive_bytes,
        "upload_chunk": UPLOAD_CHUNK,
        "download_chunk": DOWNLOAD_CHUNK,
        "operations": {s.name: s.summary() for s in series},
        "ratios": {name: round(value, 4) for name, value in ratios.items()},
        "floors": {name: round(value, 4) for name, value in floors.items()},
        "ratio_target": RATIO_TARGET,
        "memory_target_mib": MEMORY_TARGET_MIB,
        "flow_startup_median_s": round(statistics.median(startup), 4),
        "notes": list(notes),
    }
    print(json.dumps(figures), flush=True)
    return figures


# Driver ------------------------------------------------------------------------------------------


def _timed(label: str, action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    log(f"{label}: {elapsed:.1f} s")
    return elapsed


def run(size_mib: int, runs: int, workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    baseline_runs = max(runs, MIN_BASELINE_RUNS)
    op_timeout = 120.0 + size_mib / 4  # ~4 MiB/s at worst, so a hung operation cannot stall the run
    log(f"workdir {workdir}; preparing a {size_mib} MiB model and its stored archive")
    prep_start = time.perf_counter()
    prepared = prepare(workdir, size_mib * MIB)
    prepare_seconds = time.perf_counter() - prep_start
    log(f"prepared in {prepare_seconds:.1f} s: archive {prepared.archive_bytes / MIB:.1f} MiB")

    imports = Series("import", prepared.archive_bytes)
    exports = Series("export", prepared.archive_bytes)
    copies = Series("copy+fsync", prepared.version_bytes)
    uploads = Series("bare upload", prepared.archive_bytes)
    downloads = Series("bare download", prepared.archive_bytes)
    upload_floors = Series("upload floor", prepared.archive_bytes)
    download_floors = Series("download floor", prepared.archive_bytes)
    floor_dir = workdir / "floor"
    floor_dir.mkdir()
    notes: list[str] = []

    with contextlib.ExitStack() as stack:
        bare = BareServer.start(workdir)
        stack.callback(bare.stop)
        federation = LocalFederation.start(workdir / "federation")
        stack.callback(federation.stop)
        pids = federation.pids()
        log(f"federation at {federation.address}: {pids}; bare stream at {bare.address}")
        watch = PeakWatch(pids)
        flow = Flow(federation.address, watch, op_timeout)
        model_cache = federation.model_cache(str(PARTY_ID))

        # Warm-up, untimed: this VM's memory is slow the first time pages are touched (the guest's pages
        # are backed lazily by the host), so the first pass over a GiB of buffers and page cache runs far
        # slower than later ones. One bare transfer each way and one import/export touch them first.
        def warm_up() -> None:
            with kill_after(op_timeout, bare.process.pid):
                upload_seconds(bare.address, prepared.archive, UPLOAD_CHUNK)
                download_seconds(bare.address, prepared.archive, DOWNLOAD_CHUNK)
            if not import_export_once(flow, workdir, prepared, model_cache, None, None):
                notes.append(
                    "flow model delete failed (not implemented yet?): imported versions stay on disk;"
                    " their page cache is dropped after each run instead"
                )

        _timed("warm-up (bare up/down, import/export)", warm_up)
        startup = [flow.startup_seconds() for _ in range(MIN_BASELINE_RUNS)]

        for index in range(runs):
            _timed(
                f"run {index + 1}/{runs} import+export",
                lambda: import_export_once(flow, workdir, prepared, model_cache, imports, exports),
            )
            log(f"  import {imports.seconds[-1]:.3f} s, export {exports.seconds[-1]:.3f} s")

        for index in range(baseline_runs):
            target = workdir / "copy" / str(index)
            os.sync()
            copies.seconds.append(copy_fsync_seconds(prepared.version_dir, target))
            shutil.rmtree(target)
            with kill_after(op_timeout, bare.process.pid):
                uploads.seconds.append(upload_seconds(bare.address, prepared.archive, UPLOAD_CHUNK))
                downloads.seconds.append(download_seconds(bare.address, prepared.archive, DOWNLOAD_CHUNK))
                upload_floors.seconds.append(upload_seconds(bare.address, prepared.archive, UPLOAD_CHUNK, floor_dir))
                download_floors.seconds.append(
                    download_seconds(bare.address, prepared.archive, DOWNLOAD_CHUNK, floor_dir)
                )
            log(
                f"baseline {index + 1}/{baseline_runs}: copy+fsync {copies.seconds[-1]:.3f} s,"
                f" bare upload {uploads.seconds[-1]:.3f} s, bare download {downloads.seconds[-1]:.3f} s,"
                f" upload floor {upload_floors.seconds[-1]:.3f} s, download floor {download_floors.seconds[-1]:.3f} s"
            )
        notes.extend(watch.notes())

    def ratio(measured: Series, base: Series) -> float:
        return measured.throughput(measured.median) / base.throughput(base.median)

    ratios = {"import / bare upload": ratio(imports, uploads), "export / bare download": ratio(exports, downloads)}
    floors = {
        "upload floor / bare upload": ratio(upload_floors, uploads),
        "download floor / bare download": ratio(download_floors, downloads),
        "import / upload floor": ratio(imports, upload_floors),
        "export / download floor": ratio(exports, download_floors),
    }
    if exports.nbytes != prepared.archive_bytes:
        notes.append(
            f"export throughput counts the exported archive ({exports.nbytes} B), "
            f"{exports.nbytes - prepared.archive_bytes:+d} B against the imported one"
        )
    series = [imports, exports, copies, uploads, downloads, upload_floors, download_floors]
    return report(prepared, series, ratios, floors, startup, notes, prepare_seconds, time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    return sized_main("python -m bench.import_export", __doc__ or "", "bench-import-export-", run, argv)


if __name__ == "__main__":
    sys.exit(main())
