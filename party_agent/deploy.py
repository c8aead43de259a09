"""Deploy on one party: prepare the child version (fate_flow.md §6.9) for a two-phase commit.

The child holds the chosen components, checkpoint substitutions, the rewritten Pipeline and a
define_meta of its own; :class:`~party_agent.lifecycle.VersionLifecycle` keeps it invisible until the
coordinator commits.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir, write_durably
from fate_registry.identity import validate_name
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.buffers import DEFINE_META, YAML_DUMPER, read_define_meta
from party_agent.checkpoints import substitute_checkpoint
from party_agent.lifecycle import VersionLifecycle
from party_agent.manifest import Manifest, scan_reusing
from party_agent.metadata import PartyModelRecord
from party_agent.model_cache import link_file, link_files
from party_agent.pipeline import PIPELINE_PATH, fate_version, json_of, read_pipeline

PIPELINE_COMPONENT = "pipeline"


@dataclasses.dataclass(frozen=True)
class DeployRequest:
    """A party's share of a deploy: the source version, the child's version, its predict DSL and checkpoint steps."""

    source: PartyModelRef
    child_version: str
    predict_dsl: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, int | str]]  # component -> {"step_index": n} or {"step_name": s}


class Deployer:
    """Prepares a deploy's child version on this party; the lifecycle commits or aborts it."""

    def __init__(self, lifecycle: VersionLifecycle) -> None:
        self.lifecycle = lifecycle
        self.cache = lifecycle.cache

    def prepare(self, operation_id: str, request: DeployRequest, source_record: PartyModelRecord) -> Manifest:
        source, child = request.source, request.child_version
        validate_name(child, "child model version")
        if not source_record.parent or fate_version(source_record.fate_version) < (1, 5, 0):
            raise RegistryError(Reason.INVALID_ARGUMENT, "Child model could not be deployed.")
        child_ref = PartyModelRef(
            role=source.role, party_id=source.party_id, model_id=source.model_id, model_version=child
        )
        if self.cache.has_model(child_ref):
            raise RegistryError(Reason.MODEL_EXISTS, f"the child version {child} exists already on this party")
        place = self.lifecycle.place(operation_id, source.role)
        done = self.lifecycle.prepared(place)
        if done is not None:  # a retried prepare: the first one finished
            return done.manifest
        target = self.lifecycle.start(operation_id, place)
        try:
            source_dir = self.cache.version_dir(source)
            with self.cache.locks.read(self.cache.lock_key(source)):
                texts = self._build(source_dir, target, request)
                # the files linked from the source keep its manifest's records; only new ones are hashed;
                # each directory is fsynced as the scan walks it (the seal need not walk the tree again)
                manifest = scan_reusing(target, source_dir, source_record.manifest, on_directory=fsync_dir)
            record = dataclasses.replace(
                source_record,
                model_version=child,
                job_id=child,
                manifest=manifest,
                parent=False,
                loaded_times=0,
                imported=False,
                create_time_ms=0,
                **texts,
            )
            self.lifecycle.seal(operation_id, place, record, tree_synced=True)
        except BaseException:
            shutil.rmtree(place, ignore_errors=True)
            raise
        return record.manifest

    def _build(self, source_dir: Path, target: Path, request: DeployRequest) -> dict[str, str]:
        """Build the child in ``target``.

        The source's files of the deployed components hard-linked (published files never change in place), new files
        written and fsynced. Returns the JSON texts of the child's record that its Pipeline holds.
        """
        meta = read_define_meta(source_dir)
        deployed = set(request.predict_dsl.get("components", {}))
        model_proto = {
            cpn: aliases
            for cpn, aliases in (meta.get("model_proto") or {}).items()
            if cpn in deployed or cpn == PIPELINE_COMPONENT
        }
        unknown = set(request.steps) - set(model_proto)
        if unknown:
            raise RegistryError(
                Reason.INVALID_ARGUMENT,
                f"checkpoints were asked for components that are not deployed or hold no model: {sorted(unknown)}",
            )
        for cpn in model_proto:
            for sub in (f"variables/data/{cpn}", f"run_parameters/{cpn}"):
                if (source_dir / sub).is_dir():
                    link_files(source_dir / sub, target / sub)
        defined = {c: v for c, v in (meta.get("component_define") or {}).items() if c in model_proto}
        child_meta = {"component_define": defined, "model_proto": model_proto}
        (target / DEFINE_META).parent.mkdir(parents=True, exist_ok=True)
        if child_meta == meta:  # every component deployed: the source's file says it already
            link_file(source_dir / DEFINE_META, target / DEFINE_META)
        else:
            write_durably(target / DEFINE_META, yaml.dump(child_meta, Dumper=YAML_DUMPER, sort_keys=False).encode())
        for cpn, step in request.steps.items():
            for alias in model_proto[cpn]:
                substitute_checkpoint(
                    target,
                    source_dir,
                    cpn,
                    str(alias),
                    step_index=int(step["step_index"]) if "step_index" in step else None,
                    step_name=str(step["step_name"]) if "step_name" in step and "step_index" not in step else None,
                )
        return self._write_pipeline(source_dir, target, request)

    @staticmethod
    def _write_pipeline(source_dir: Path, target: Path, request: DeployRequest) -> dict[str, str]:
        """FATE's child Pipeline: the predict DSL (CodePath kept from the source), the child version, parent info.

        Returns its JSON fields as the child's record holds them (what ``json_of`` would read back).
        """
        pipeline = read_pipeline(source_dir)
        child, source = request.child_version, request.source
        inference = json.loads(json.dumps(request.predict_dsl))
        source_dsl = json_of(pipeline.inference_dsl).get("components", {})
        for name, component in inference.get("components", {}).items():
            code_path = source_dsl.get(name, {}).get("CodePath")
            if code_path and "CodePath" not in component:
                component["CodePath"] = code_path
        inference_text = json.dumps(inference)
        pipeline.inference_dsl = inference_text.encode()
        pipeline.model_version = child
        train_conf = json_of(pipeline.train_runtime_conf)
        if train_conf:
            params = train_conf.setdefault("job_parameters", {})
            common = params.setdefault("common", {}) if int(train_conf.get("dsl_version", 1)) == 2 else params
            common["model_version"] = child
            pipeline.train_runtime_conf = json.dumps(train_conf).encode()
        on_party = json_of(pipeline.runtime_conf_on_party)
        if on_party:
            on_party.setdefault("job_parameters", {})["model_version"] = child
            pipeline.runtime_conf_on_party = json.dumps(on_party).encode()
        pipeline.parent = False
        parent_info = json.dumps({"parent_model_id": source.model_id, "parent_model_version": source.model_version})
        pipeline.parent_info = parent_info.encode()
        path = target / PIPELINE_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(path, pipeline.SerializeToString())
        write_durably(
            path.with_name("Pipeline.json"),
            json.dumps(json_format.MessageToDict(pipeline, always_print_fields_with_no_presence=True)).encode(),
        )
        return {
            "parent_info_json": parent_info,
            "inference_dsl_json": inference_text,
            "train_runtime_conf_json": pipeline.train_runtime_conf.decode() if train_conf else "{}",
            "runtime_conf_on_party_json": pipeline.runtime_conf_on_party.decode() if on_party else "{}",
        }
