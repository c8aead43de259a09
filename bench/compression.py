"""Deflated archives beside stored ones: size, export, import, store/restore per engine, and across a slow link.

Run from the repository root (as root for the link section)::

    .venv/bin/python -m bench.compression [--size-mib 1024] [--runs 3] [--model-cache DIR]
        [--sections loopback,engines,link] [--engines mysql,redis,tencent_cos] [--rates 1gbit,200mbit]
        [--workdir DIR] [--keep] [--json FILE]

Two models of about ``--size-mib`` MiB: the realistic one ``fate-registry make-model`` generates (its guest
archive, deflated by FATE-Flow's packing: ``shutil.make_archive``, zipfile's ZIP_DEFLATED at zlib's default
level 6 — the reference size), and an incompressible one: the same version directory with every file of
1 MiB or more overwritten by ``os.urandom`` bytes of the same size (Pipeline, confs and checkpoint records
as they were), packed stored. With ``--model-cache`` both are made once and reused by later runs.

Every figure is measured both ways in the same run, rounds interleaved (the order alternating): **deflated**
(the registry's default, ``archives.compression: auto``) and **stored** (``flow … --stored``: the
baseline). Sections: ``loopback`` — per model, ``flow model export`` of an imported version and
``flow model import`` of that export into a fresh version; ``engines`` — per engine (MariaDB, redis-server,
the COS emulator on loopback, ``tests.support.services``) and model, ``flow model export --to-database``
and ``flow model import --from-database``, and the bytes the engine holds; ``link`` — the realistic
model's export and import with ``flow`` in a network namespace behind a veth pair shaped with ``tc … tbf``
on both ends (``tests.support.netns.ShapedLink``), the registry listening on the root end's address.
It prints a table per model (each figure beside its stored baseline and the ratio, the targets checked)
and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.import_export import Flow, Measured
from bench.memory import KIB, MIB, PeakWatch
from bench.scratch import log, scratch_dir
from bench.store_restore import ENGINES, PASSWORD, SERVER_NAMES, Op, Settler, write_conf
from fate_registry.fate_models.fate_archive import build_stored_archive, walk_sorted
from fate_registry.identity import archive_name, job_ids, party_model_id
from party_agent.storage import StoreKey, open_store
from tests.support import services
from tests.support.federation import LocalFederation, fate_registry_command
from tests.support.netns import ShapedLink, Topology

ROLE: Final = "guest"
PARTY_ID: Final = 9999
KINDS: Final = ("realistic", "incompressible")
MODES: Final = ("deflated", "stored")
SECTIONS: Final = ("loopback", "engines", "link")
RATES: Final = {"1gbit": 1_000_000_000, "200mbit": 200_000_000}
RANDOM_FROM_BYTES: Final = 1 * MIB
MEMORY_TARGET_MIB: Final = 200.0
# Targets: the deflated figure / the stored one (time), or / FATE-Flow's archive (size).
ARCHIVE_TARGET: Final = 1.1
EXPORT_TARGET: Final = 1.2
IMPORT_TARGET: Final = 1.1
NO_SLOWER: Final = 1.05  # "no slower than stored", with 5 % for noise between rounds
LINK_SPEEDUP_TARGET: Final = 2.0
MB: Final = 1e6


# Models ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchModel:
    kind: str
    model_id: str
    archive: Path
    archive_bytes: int
    files_bytes: int
    fate_deflated_bytes: int | None  # FATE-Flow's archive of the same files (realistic model only)


def _files_bytes(archive: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        return sum(info.file_size for info in zf.infolist())


def _make_realistic(out: Path, size_mib: int) -> BenchModel:
    made = subprocess.run(
        [*fate_registry_command(), "make-model", "--out", str(out), "--size-mib", str(size_mib)],
        capture_output=True,
        text=True,
        timeout=600 + size_mib,
        check=False,
    )
    if made.returncode != 0:
        raise RuntimeError(f"fate-registry make-model failed: {made.stderr[-2000:]}")
    summary = json.loads(made.stdout)
    guest = Path(summary["parties"][f"{ROLE}_{PARTY_ID}"]["archive"])
    for name in os.listdir(out):  # the other parties' archives and every conf: only the guest archive is used
        if out / name != guest:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    size = guest.stat().st_size
    return BenchModel("realistic", str(summary["model_id"]), guest, size, _files_bytes(guest), size)


def _make_incompressible(realistic: BenchModel, out: Path) -> BenchModel:
    """The realistic model's files, every one of ``RANDOM_FROM_BYTES`` or more made of random bytes; stored."""
    version_dir = out / "version"
    with zipfile.ZipFile(realistic.archive) as zf:
        zf.extractall(version_dir)
    for dirpath, _, names in walk_sorted(version_dir):
        for name in names:
            path = dirpath / name
            size = path.stat().st_size
            if size >= RANDOM_FROM_BYTES:
                with path.open("wb") as f:
                    for start in range(0, size, MIB):
                        f.write(os.urandom(min(MIB, size - start)))
    imported = json.loads((version_dir / "import_model.json").read_text(encoding="utf-8"))
    (version_dir / "import_model.json").unlink()
    archive = out / archive_name(party_model_id(ROLE, PARTY_ID, realistic.model_id), str(imported["model_version"]))
    build_stored_archive(version_dir, archive, imported)
    shutil.rmtree(version_dir)
    return BenchModel(
        "incompressible", realistic.model_id, archive, archive.stat().st_size, _files_bytes(archive), None
    )


def models(directory: Path, size_mib: int) -> dict[str, BenchModel]:
    """Both models under ``directory``: read from its ``models.json`` when an earlier run made them, else made."""
    index = directory / "models.json"
    if index.exists():
        found = json.loads(index.read_text(encoding="utf-8"))
        if found.get("size_mib") == size_mib:
            log(f"reusing the models in {directory}")
            return {kind: BenchModel(**{**found[kind], "archive": Path(found[kind]["archive"])}) for kind in KINDS}
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    start = time.perf_counter()
    realistic = _make_realistic(directory / "realistic", size_mib)
    log(f"realistic model made in {time.perf_counter() - start:.0f} s")
    incompressible = _make_incompressible(realistic, directory / "incompressible")
    made = {"realistic": realistic, "incompressible": incompressible}
    body = {kind: {**asdict(m), "archive": str(m.archive)} for kind, m in made.items()}
    index.write_text(json.dumps({"size_mib": size_mib, **body}, indent=2), encoding="utf-8")
    return made


# Figures -----------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Every timed operation, keyed ``(section, model, operation, mode)``, and the sizes seen."""

    ops: dict[tuple[str, str, str, str], Op] = field(default_factory=dict)
    sizes: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # the 1-minute load average after each operation

    def add(self, key: tuple[str, str, str, str], measured: Measured, nbytes: int) -> None:
        op = self.ops.setdefault(key, Op("/".join(key), nbytes))
        op.add_measured(measured)
        self.loads.append(os.getloadavg()[0])

    def size(self, key: tuple[str, str, str, str], nbytes: int) -> None:
        previous = self.sizes.setdefault(key, nbytes)
        if previous != nbytes:
            self.notes.append(f"{'/'.join(key)}: {previous} B in one round, {nbytes} B in another")


def _round_modes(index: int) -> tuple[str, ...]:
    """The modes in round ``index``'s order: alternating, so a drift lands on both alike."""
    return MODES if index % 2 == 0 else MODES[::-1]


class Registry:
    """``flow`` against one federation: the model's versions, exports and imports, per mode."""

    def __init__(self, flow: Flow, workdir: Path, stored_flag: bool) -> None:
        self.flow = flow
        self.workdir = workdir
        self.stored_flag = stored_flag  # False when this build's flow has no --stored (both modes alike)

    def _keys(self, model: BenchModel, version: str) -> dict[str, Any]:
        return {"role": ROLE, "party_id": PARTY_ID, "model_id": model.model_id, "model_version": version}

    def _conf(self, name: str, body: dict[str, Any]) -> Path:
        directory = self.workdir / "conf"
        directory.mkdir(parents=True, exist_ok=True)
        return write_conf(directory / f"{name}.json", body)

    def _mode_flag(self, mode: str) -> list[str]:
        return ["--stored"] if mode == "stored" and self.stored_flag else []

    def import_archive(self, model: BenchModel, archive: Path) -> tuple[str, Measured]:
        """Import ``archive`` into a fresh version of the model; the version and the measured ``flow``."""
        version = job_ids.next()
        conf = self._conf(
            f"import_{version}", {**self._keys(model, version), "file": str(archive), "force_update": False}
        )
        return version, self.flow.run("model", "import", "-c", str(conf))

    def export(self, model: BenchModel, version: str, mode: str) -> tuple[Path, Measured]:
        output = self.workdir / "exported" / f"{version}-{mode}"
        conf = self._conf(f"export_{version}_{mode}", {**self._keys(model, version), "output_path": str(output)})
        measured = self.flow.run("model", "export", "-c", str(conf), *self._mode_flag(mode))
        archive = Path(str(measured.answer.get("file", "")))
        if not archive.is_file():
            raise RuntimeError(f"flow model export answered {measured.answer} but wrote no file")
        return archive, measured

    def store(self, model: BenchModel, version: str, mode: str) -> Measured:
        conf = self._conf(f"store_{version}", {**self._keys(model, version), "force_update": True})
        return self.flow.run("model", "export", "-c", str(conf), "--to-database", *self._mode_flag(mode))

    def restore(self, model: BenchModel, version: str) -> Measured:
        conf = self._conf(f"restore_{version}", {**self._keys(model, version), "force_update": False})
        return self.flow.run("model", "import", "-c", str(conf), "--from-database")

    def delete(self, model: BenchModel, version: str, from_store: bool = False) -> None:
        args = ["--model-id", model.model_id, "--model-version", version, "-r", ROLE, "-p", str(PARTY_ID)]
        if not self.flow.try_run("model", "delete", *args, *(["--from-store"] if from_store else [])):
            raise RuntimeError(f"flow model delete of {model.model_id} {version} failed")

    def round_trip(self, figures: Figures | None, section: str, model: BenchModel, version: str, mode: str) -> None:
        """Export ``version`` in ``mode``, import that archive into a fresh version, delete it and the file."""
        archive, exported = self.export(model, version, mode)
        nbytes = archive.stat().st_size
        imported_version, imported = self.import_archive(model, archive)
        self.delete(model, imported_version)
        shutil.rmtree(archive.parent)
        if figures is not None:
            figures.add((section, model.kind, "export", mode), exported, nbytes)
            figures.add((section, model.kind, "import", mode), imported, nbytes)
            figures.size((section, model.kind, "archive", mode), nbytes)
            log(
                f"{section} {model.kind} {mode}: {nbytes / MB:.1f} MB, export {exported.reaped.seconds:.2f} s,"
                f" import {imported.reaped.seconds:.2f} s"
            )


class NamespacedFlow(Flow):
    """``flow`` run inside a network namespace (``ip netns exec`` execs it: the PID is flow's own)."""

    def __init__(self, namespace: str, address: str, watch: PeakWatch, timeout: float) -> None:
        super().__init__(address, watch, timeout)
        self._prefix = Topology.run_in(namespace)

    def argv(self, args: Sequence[str]) -> list[str]:
        return [*self._prefix, *super().argv(args)]


def _has_stored_flag(flow: Flow) -> bool:
    helped = subprocess.run(flow.argv(["model", "export", "--help"]), capture_output=True, text=True, timeout=60)
    return "--stored" in helped.stdout


@contextlib.contextmanager
def _federation(
    root: Path, extra_conf: Mapping[str, Any] | None = None, host: str = "127.0.0.1"
) -> Iterator[LocalFederation]:
    address = f"{host}:0"
    conf = {"coordinator": {"address": address, "http": {"address": "127.0.0.1:0"}}, **(extra_conf or {})}
    federation = LocalFederation.start(
        root, parties={"9999": {"address": address}, "10000": {"address": address}}, extra_conf=conf
    )
    try:
        yield federation
    finally:
        federation.stop()


# Sections ----------------------------------------------------------------------------------------


def loopback(bench: dict[str, BenchModel], runs: int, workdir: Path, timeout: float, figures: Figures) -> None:
    with _federation(workdir / "federation") as federation:
        watch = PeakWatch(federation.pids())
        flow = Flow(federation.address, watch, timeout)
        registry = Registry(flow, workdir, _has_stored_flag(flow))
        if not registry.stored_flag:
            figures.notes.append("this build's flow has no --stored: the stored rows ran the default path")
        for model in bench.values():
            version, _ = registry.import_archive(model, model.archive)
            for mode in MODES:  # warm-up, untimed: the first pass over fresh pages is slow on this VM
                registry.round_trip(None, "loopback", model, version, mode)
            for index in range(runs):
                for mode in _round_modes(index):
                    registry.round_trip(figures, "loopback", model, version, mode)
        figures.notes.extend(watch.notes())


@dataclass(frozen=True)
class EngineSide:
    """One engine's server as the registry and the benchmark see it."""

    engine: str
    registry: Registry
    store: Any  # party_agent.storage.ModelStore: reads the size of the copy the engine holds
    settle: Settler

    def store_restore(self, figures: Figures | None, model: BenchModel, version: str, mode: str) -> None:
        """Store ``version`` in ``mode`` (replacing the stored copy), delete the local copy, restore it."""
        key = StoreKey(party_model_id(ROLE, PARTY_ID, model.model_id), version)
        self.settle()
        stored = self.registry.store(model, version, mode)
        held = self.store.stat(key)
        if held is None:
            raise RuntimeError(f"{self.engine} holds no copy of {key} after a store")
        self.registry.delete(model, version)
        self.settle()
        restored = self.registry.restore(model, version)
        if figures is not None:
            figures.add((self.engine, model.kind, "store", mode), stored, held.size)
            figures.add((self.engine, model.kind, "restore", mode), restored, held.size)
            figures.size((self.engine, model.kind, "held", mode), held.size)
            log(
                f"{self.engine} {model.kind} {mode}: {held.size / MB:.1f} MB held,"
                f" store {stored.reaped.seconds:.2f} s, restore {restored.reaped.seconds:.2f} s"
            )


def engines(
    bench: dict[str, BenchModel], runs: int, names: Sequence[str], workdir: Path, timeout: float, figures: Figures
) -> None:
    for engine in names:
        root = workdir / engine
        with contextlib.ExitStack() as stack:
            server: Any = stack.enter_context(services.engine_server(engine, root / "server", PASSWORD))
            settings: dict[str, Any] = server.settings()
            federation = stack.enter_context(
                _federation(root / "federation", {"model_store_address": {"storage": engine, **settings}})
            )
            watch = PeakWatch({**federation.pids(), SERVER_NAMES[engine]: server.process.pid})
            flow = Flow(federation.address, watch, timeout)
            store = open_store(engine, settings)
            stack.callback(store.close)
            settle = Settler(engine, server, settings)
            stack.callback(settle.close)
            side = EngineSide(engine, Registry(flow, root, _has_stored_flag(flow)), store, settle)
            for model in bench.values():
                version, _ = side.registry.import_archive(model, model.archive)
                side.store_restore(None, model, version, "stored")  # warm-up, untimed: the server grows its buffers
                for index in range(runs):
                    for mode in _round_modes(index):
                        side.store_restore(figures, model, version, mode)
                side.registry.delete(model, version, from_store=True)  # the next model finds the engine empty
            figures.notes.extend(f"{engine}: {note}" for note in watch.notes())
            if settle.late:
                figures.notes.append(f"{engine}: {settle.late} operations started before the server had settled")
        shutil.rmtree(root, ignore_errors=True)


def link(model: BenchModel, runs: int, rates: Sequence[str], workdir: Path, figures: Figures) -> None:
    with ShapedLink.create() as shaped:
        log(f"link: namespace {shaped.namespace}, {shaped.root_ip} (registry) -- {shaped.far_ip} (flow)")
        with _federation(workdir / "federation-link", host=shaped.root_ip) as federation:
            watch = PeakWatch(federation.pids())
            flow = NamespacedFlow(shaped.namespace, federation.address, watch, 120.0)
            registry = Registry(flow, workdir, _has_stored_flag(flow))
            version, _ = registry.import_archive(model, model.archive)  # before the link is shaped
            for rate in rates:
                shaped.shape(RATES[rate])
                # Twice the stored archive's time at the link's rate: a hung call cannot stall the run.
                registry.flow = NamespacedFlow(
                    shaped.namespace, federation.address, watch, 120.0 + 2 * model.files_bytes * 8 / RATES[rate]
                )
                for index in range(runs):
                    for mode in _round_modes(index):
                        registry.round_trip(figures, f"link {rate}", model, version, mode)
            registry.delete(model, version)
            figures.notes.extend(watch.notes())


# Report ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    what: str
    value: float
    target: float
    at_most: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        return f"  {self.what:<60} {self.value:>7.3f} {sign} {self.target:<5} {'met' if self.met else 'NOT MET'}"


def _median(figures: Figures, key: tuple[str, str, str, str]) -> float | None:
    op = figures.ops.get(key)
    return None if op is None else op.median


def checks(bench: dict[str, BenchModel], figures: Figures) -> list[Check]:
    found: list[Check] = []
    realistic = bench["realistic"]
    deflated = figures.sizes.get(("loopback", "realistic", "archive", "deflated"))
    if deflated is not None and realistic.fate_deflated_bytes:
        found.append(
            Check(
                "realistic archive / FATE-Flow's deflated archive",
                deflated / realistic.fate_deflated_bytes,
                ARCHIVE_TARGET,
            )
        )

    def time_check(section: str, kind: str, op: str, target: float) -> None:
        ours, base = _median(figures, (section, kind, op, "deflated")), _median(figures, (section, kind, op, "stored"))
        if ours is not None and base is not None:
            found.append(Check(f"{section} {kind} {op} time, deflated / stored", ours / base, target))

    time_check("loopback", "realistic", "export", EXPORT_TARGET)
    time_check("loopback", "realistic", "import", IMPORT_TARGET)
    for section in ("loopback", *ENGINES):
        for op in ("export", "import", "store", "restore"):
            time_check(section, "incompressible", op, NO_SLOWER)
    for rate in RATES:
        for op in ("export", "import"):
            ours, base = (_median(figures, (f"link {rate}", "realistic", op, m)) for m in MODES)
            if ours is not None and base is not None and rate == "200mbit":
                found.append(
                    Check(
                        f"link {rate} realistic {op}: stored time / deflated time",
                        base / ours,
                        LINK_SPEEDUP_TARGET,
                        at_most=False,
                    )
                )
    peaks: dict[str, int] = {}
    for measured in figures.ops.values():
        for name, kib in measured.peaks_kib.items():
            if name not in SERVER_NAMES.values():
                peaks[name] = max(peaks.get(name, 0), kib)
    found.extend(Check(f"peak RSS of {name}, MiB", kib / KIB, MEMORY_TARGET_MIB) for name, kib in sorted(peaks.items()))
    return found


def _cpu(op: Op) -> str:
    return " ".join(
        f"{name.replace('agent-', 'a')}={statistics.median(used):.2f}"
        for name, used in op.cpu.items()
        if name not in SERVER_NAMES.values()
    )


def table(bench: dict[str, BenchModel], figures: Figures) -> list[str]:
    lines: list[str] = []
    for model in bench.values():
        sections = sorted(
            {key[0] for key in figures.ops if key[1] == model.kind},
            key=lambda s: (SECTIONS.index(s.split()[0]) if s.split()[0] in SECTIONS else 1, s),
        )
        if not sections:
            continue
        fate = f"{model.fate_deflated_bytes / MB:.1f} MB" if model.fate_deflated_bytes else "-"
        lines += [
            "",
            f"{model.kind}: files {model.files_bytes / MB:.1f} MB,"
            f" its source archive {model.archive_bytes / MB:.1f} MB,"
            f" FATE-Flow's deflated archive (zipfile ZIP_DEFLATED level 6) {fate}",
            f"  {'figure':<34} {'deflated':>10} {'stored':>10} {'ratio':>7}   CPU s deflated | stored (median)",
        ]
        for section in sections:
            for what in ("archive", "held"):
                sizes = [figures.sizes.get((section, model.kind, what, m)) for m in MODES]
                if None not in sizes:
                    deflated, stored = (float(size or 0) for size in sizes)
                    lines.append(
                        f"  {section + ' ' + what + ' MB':<34} {deflated / MB:>10.1f} {stored / MB:>10.1f}"
                        f" {deflated / stored:>7.3f}"
                    )
            rate = RATES.get(section.removeprefix("link "))
            archives = [figures.sizes.get((section, model.kind, "archive", m)) for m in MODES]
            if rate is not None and None not in archives:
                deflated, stored = (float(size or 0) * 8 / rate for size in archives)
                lines.append(
                    f"  {section + ' wire time s':<34} {deflated:>10.3f} {stored:>10.3f} {deflated / stored:>7.3f}"
                    "   (the archive at the rate)"
                )
            for op_name in ("export", "import", "store", "restore"):
                pair = [figures.ops.get((section, model.kind, op_name, m)) for m in MODES]
                if pair[0] is None or pair[1] is None:
                    continue
                ours, base = pair[0], pair[1]
                lines.append(
                    f"  {section + ' ' + op_name + ' s':<34} {ours.median:>10.3f} {base.median:>10.3f}"
                    f" {ours.median / base.median:>7.3f}   {_cpu(ours)} | {_cpu(base)}"
                )
    return lines


def report(bench: dict[str, BenchModel], figures: Figures, size_mib: int, runs: int, total: float) -> dict[str, Any]:
    found = checks(bench, figures)
    peaks: dict[str, float] = {}
    for op in figures.ops.values():
        for name, kib in op.peaks_kib.items():
            peaks[name] = max(peaks.get(name, 0.0), kib / KIB)
    lines = [
        "",
        f"--size-mib {size_mib}, {runs} rounds, medians; deflated = the default (archives.compression auto),"
        f" stored = --stored; {os.cpu_count()} CPUs",
        *table(bench, figures),
        "",
        f"1-minute load average after the operations: median {statistics.median(figures.loads or [0.0]):.1f},"
        f" max {max(figures.loads or [0.0]):.1f} (other work on this machine meanwhile)",
        "peak RSS, MiB, max over every operation: "
        + "  ".join(f"{name} {mib:.1f}" for name, mib in sorted(peaks.items())),
        "",
        "targets:",
        *(check.line() for check in found),
        *(f"note: {note}" for note in figures.notes),
        f"whole benchmark {total:.0f} s",
    ]
    print("\n".join(lines), flush=True)
    result: dict[str, Any] = {
        "benchmark": "compression",
        "cpus": os.cpu_count(),
        "size_mib": size_mib,
        "runs": runs,
        "models": {kind: {**asdict(m), "archive": m.archive.name} for kind, m in bench.items()},
        "operations": {"/".join(key): op.summary() for key, op in figures.ops.items()},
        "bytes": {"/".join(key): nbytes for key, nbytes in figures.sizes.items()},
        "targets": [{**asdict(c), "met": c.met} for c in found],
        "load_average_median": round(statistics.median(figures.loads or [0.0]), 2),
        "load_average_max": round(max(figures.loads or [0.0]), 2),
        "notes": figures.notes,
        "total_s": round(total, 1),
    }
    print(json.dumps(result), flush=True)
    return result


# Driver ------------------------------------------------------------------------------------------


def _names(text: str, allowed: Sequence[str], option: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in allowed for name in names):
        parser.error(f"{option} takes a comma-separated list of {', '.join(allowed)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds of each figure (default 3)")
    parser.add_argument(
        "--model-cache",
        type=Path,
        default=None,
        help="keep the two models here and reuse them in later runs (default: made in the scratch dir)",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"of {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"of {', '.join(ENGINES)} (default all)")
    parser.add_argument("--rates", default=",".join(RATES), help=f"link rates, of {', '.join(RATES)} (default all)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the scratch directory (default: temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON figures to this file")
    args = parser.parse_args(argv)
    sections = _names(args.sections, SECTIONS, "--sections", parser)
    engine_names = _names(args.engines, ENGINES, "--engines", parser)
    rates = _names(args.rates, tuple(RATES), "--rates", parser)
    if args.size_mib < 1 or args.runs < 1:
        parser.error("--size-mib and --runs must be at least 1")
    if "link" in sections and os.geteuid() != 0:
        parser.error("the link section makes a network namespace: run as root, or leave it out of --sections")
    began = time.perf_counter()
    timeout = 120.0 + args.size_mib / 2  # ~2 MiB/s at worst on loopback
    with scratch_dir("bench-compression-", args.workdir, args.keep) as workdir:
        cache = (args.model_cache / f"{args.size_mib}mib") if args.model_cache else workdir / "models"
        bench = models(cache.resolve(), args.size_mib)
        figures = Figures()
        if "loopback" in sections:
            loopback(bench, args.runs, workdir, timeout, figures)
        if "engines" in sections:
            engines(bench, args.runs, engine_names, workdir, timeout, figures)
        if "link" in sections:
            link(bench["realistic"], args.runs, rates, workdir, figures)
        result = report(bench, figures, args.size_mib, args.runs, time.perf_counter() - began)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
