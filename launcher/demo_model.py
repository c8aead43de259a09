"""``fate-registry make-model``: a generated trained model, packed as FATE-Flow packs it, with confs.

For each (role, party) it writes ``<out>/<party_model_id>_<version>.zip`` (FATE-Flow's archive
layout), ``import_<role>_<party>.json`` and ``export_<role>_<party>.json`` with FATE's conf keys,
and prints a JSON summary. The demo and the benchmark use it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from fate_registry.fate_models import ModelSpec, build_fate_archive, write_federation


def make_demo_model(out: Path, target_bytes: int = 0) -> dict[str, object]:
    """Write a demo model's archive, import and export confs per party under ``out``; print and return their paths."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(target_bytes=target_bytes, checkpoints=2)
    parties = sorted({str(p) for ids in spec.roles.values() for p in ids})
    confs: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        caches = {pid: Path(scratch) / pid for pid in parties}
        written = write_federation(caches, spec)
        for (role, party_id), version_dir in sorted(written.items()):
            archive = build_fate_archive(version_dir, out, role, int(party_id), spec.model_id, spec.version)
            shutil.rmtree(version_dir)
            key = f"{role}_{party_id}"
            common = {"role": role, "party_id": int(party_id), "model_id": spec.model_id, "model_version": spec.version}
            import_conf = out / f"import_{key}.json"
            import_conf.write_text(json.dumps({**common, "file": str(archive), "force_update": False}, indent=4))
            export_conf = out / f"export_{key}.json"
            export_conf.write_text(json.dumps({**common, "output_path": str(out / "exported")}, indent=4))
            confs[key] = {"archive": str(archive), "import": str(import_conf), "export": str(export_conf)}
    summary: dict[str, object] = {"model_id": spec.model_id, "model_version": spec.version, "parties": confs}
    print(json.dumps(summary, indent=4))
    return summary
