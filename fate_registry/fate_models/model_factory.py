"""Realistic trained FATE 1.11 models, written exactly in FATE-Flow's on-disk layout.

One call writes one party's slice of a trained model into a ``model_local_cache`` directory::

    <cache_dir>/<party_model_id>/<model_version>/
      .lock                                    FATE's filelock; FATE leaves it behind
      define/define_meta.yaml                  component_define + model_proto (the proto index)
      variables/data/<cpn>/<alias>/<name>      raw protobuf bytes, + <name>.json (MessageToDict)
      variables/data/pipeline/pipeline/Pipeline (+ Pipeline.json)
      run_parameters/<cpn>/run_parameters.json one per component of the proto index
      checkpoint/<cpn>/<step_index>#step_name/ <name>.pb, <name>.json, .lock, database.yaml (last)

The content follows FATE's own examples (``hetero_lr_normal``, ``homo_lr_train`` and the
HeteroSecureBoost binary example, here behind a HeteroFeatureBinning): guest 9999, host 10000 and
arbiter 10000 by default, 10 guest and 20 host features for the hetero algorithms, 30 features for
HomoLR. Which party holds which buffer is FATE 1.11's: Reader, Intersection and Evaluation save
nothing; the arbiter holds only ``hetero_lr_0`` (HeteroLR) or nothing but the Pipeline (HomoLR,
HeteroSecureBoost, whose binning and boosting run on guest and host only).

HeteroSecureBoost models carry party ids the way FATE 1.11 writes them (fate_buffers.md §1.6, §1.8,
§4.3): tree node and feature-importance sitenames ``guest:9999`` / ``host:10000``, the guest's
names for host features ``host_10000_x<n>``, the host's ``anonymous_name_mapping``, binning results
tagged with role and party id (``host_party_ids`` in the multi-class result) and the anonymous
headers of DataTransform and binning. All parties draw the trees from one generator, so the
guest's and the hosts' copies agree node for node.

``ModelSpec.target_bytes`` grows the LR Param buffer of guests and hosts (and of their
checkpoints) with extra features ``x<n>`` until the party's version directory reaches about that
size. The buffer is streamed as consecutive serialized ``LRModelParam`` chunks, which protobuf
parses as one merged message (map entries and repeated fields append), and its JSON sidecar is
streamed alongside, so memory stays at a few MiB whatever the size. Python's protobuf cannot parse
one buffer of 2 GiB or more (FATE could not serialise one either, FATE#4944): with no checkpoints
that limit is reached by version directories of about 5 GiB.

Where FATE's exact bytes could not be checked, the choices are: ``run_parameters.json`` holds what
the conf gave that component on that party (common parameters overridden by the party's role entry;
``{}`` for the pipeline); checkpoints are the last ``checkpoints`` epochs of a ``save_freq`` 1 run,
their weights scaled linearly towards the final ones; growth adds features to the LR Param only, so
a grown model's DataTransform header stays at FATE's example width. For HeteroSecureBoost: full trees
of depth 3, each split owned by the guest or one host at random; a host's copy of a tree knows its
own thresholds (``split_maskdict``) and no leaf weights; the guest's binning results for host
features carry IV but no split points, the host's own carry split points but no IV; generated
floats are rounded to 6 decimals.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, cast

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from fate_registry.fate import (
    lr_model_param_pb2,
    pipeline_pb2,
)
from fate_registry.fate_models import homo_models
from fate_registry.fate_models.buffers import (
    FeatureStream,
    data_transform_buffers,
    decision_tree_meta,
    feature_binning_buffers,
    feature_names,
    lr_meta,
    lr_param,
    pipeline_buffer,
    secure_boost_buffers,
    seeded_rng,
)
from fate_registry.fate_models.recipes import (
    BINNING,
    DATA_TRANSFORM,
    DATA_TRANSFORM_ROLES,
    GROWING_ROLES,
    HOMO_NN,
    HOMO_SECURE_BOOST,
    MODEL_ALIAS,
    PIPELINE_ALIAS,
    PIPELINE_COMPONENT,
    PIPELINE_MODEL_NAME,
    PIPELINE_MODULE,
    RECIPES,
    SECURE_BOOST,
    STEP_NAME,
    ModelSpec,
)
from fate_registry.fate_models.train_conf import train_runtime_conf, user_parameters
from fate_registry.identity import PartyId


def _message_json(message: Message) -> str:
    """The ``.json`` sidecar FATE writes: ``MessageToDict`` with defaults (lowerCamelCase), ``json.dumps``-ed."""
    return json.dumps(json_format.MessageToDict(message, always_print_fields_with_no_presence=True))


def _write_buffer(directory: Path, model_name: str, message: Message, suffix: str = "") -> str:
    """Write one buffer and its JSON sidecar; return the SHA-1 of the bytes (checkpoints record it)."""
    data = message.SerializeToString()
    (directory / f"{model_name}{suffix}").write_bytes(data)
    (directory / f"{model_name}.json").write_text(_message_json(message), encoding="utf-8")
    return hashlib.sha1(data).hexdigest()


def _utc_now_iso() -> str:
    """``datetime.utcnow().isoformat()`` as FATE stores it, always with microseconds."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _checkpoint_database(step_index: int, create_time: str, models: Mapping[str, tuple[str, str]]) -> str:
    """``database.yaml``: the commit marker of a checkpoint; ``models`` maps name → (sha1, buffer class)."""
    data = {
        "step_index": step_index,
        "step_name": STEP_NAME,
        "create_time": create_time,
        "models": {name: {"sha1": sha1, "buffer_name": buffer} for name, (sha1, buffer) in models.items()},
    }
    return yaml.safe_dump(data, sort_keys=False)


_CHUNK_FEATURES: Final = 50_000
_INITIAL_FEATURE_COST: Final = 96
"""Bytes one extra feature is assumed to cost per Param file before the first chunk is measured (~72 in practice)."""

_WEIGHT_SLOT: Final = "\x00weight"
_HEADER_SLOT: Final = "\x00header"


class _ParamWriter:
    """Streams one LRModelParam file and its JSON sidecar: the base message, then chunks of extra features.

    The sidecar is the exact text ``json.dumps(MessageToDict(merged message))`` would give, up to the
    order of map entries: the base document is dumped with placeholders for ``weight`` and ``header``,
    and the extra entries are spliced in where the placeholders were.
    """

    def __init__(
        self, stack: ExitStack, pb_path: Path, json_path: Path, base: lr_model_param_pb2.LRModelParam, scale: float
    ) -> None:
        self._scale = scale
        self._sha1 = hashlib.sha1()
        document = json_format.MessageToDict(base, always_print_fields_with_no_presence=True)
        self._base_weights = json.dumps(document["weight"])[1:-1]
        self._base_header = json.dumps(document["header"])[1:-1]
        document["weight"], document["header"] = _WEIGHT_SLOT, _HEADER_SLOT
        head, rest = json.dumps(document).split(json.dumps(_WEIGHT_SLOT))
        self._middle, self._tail = rest.split(json.dumps(_HEADER_SLOT))
        data = base.SerializeToString()
        self.base_size = len(data) + len(_message_json(base))  # both files when no feature is added
        self._pb: IO[bytes] = stack.enter_context(pb_path.open("wb"))
        self._json: IO[str] = stack.enter_context(json_path.open("w", encoding="utf-8"))
        self._write_pb(data)
        self._json.write(head + "{" + self._base_weights)
        self._weights_written = bool(self._base_weights)
        self._header_written = bool(self._base_header)
        self._header_counted = self._header_written

    def _write_pb(self, data: bytes) -> None:
        self._pb.write(data)
        self._sha1.update(data)

    def add_weights(self, names: Sequence[str], weights: Sequence[float]) -> int:
        """Append one chunk of features; return the bytes it adds, header entries of the sidecar included."""
        values = [w * self._scale for w in weights]
        chunk = lr_model_param_pb2.LRModelParam(header=names)
        chunk.weight.update(zip(names, values, strict=True))
        data = chunk.SerializeToString()
        self._write_pb(data)
        text = (", " if self._weights_written else "") + json.dumps(dict(zip(names, values, strict=True)))[1:-1]
        self._json.write(text)
        self._weights_written = True
        header_size = len(json.dumps(list(names))) - (0 if self._header_counted else 2)  # add_header's text
        self._header_counted = True
        return len(data) + len(text) + header_size

    def close_weights(self) -> None:
        self._json.write("}" + self._middle + "[" + self._base_header)

    def add_header(self, names: Sequence[str]) -> None:
        self._json.write((", " if self._header_written else "") + json.dumps(list(names))[1:-1])
        self._header_written = True

    def close(self) -> str:
        """Finish the sidecar and return the SHA-1 of the protobuf bytes."""
        self._json.write("]" + self._tail)
        return self._sha1.hexdigest()


def _grow(writers: Sequence[_ParamWriter], features: FeatureStream, budget: int) -> None:
    """Append the same extra features to every writer until about ``budget`` bytes are spent in all.

    The chunk size follows the cost per feature measured on the previous chunk; as names get longer
    that cost creeps up, so near the end each chunk takes only three quarters of what seems to fit,
    and the result lands within about one feature's cost of the budget. Weights go first; the header
    entries of the sidecars follow in a second pass over the same chunks, as the JSON object lists
    ``weight`` before ``header``.
    """
    chunks: list[tuple[int, int]] = []
    cost = _INITIAL_FEATURE_COST * len(writers)
    remaining = budget
    while (fits := remaining // cost) > 0:
        count = min(_CHUNK_FEATURES, fits * 3 // 4 or fits)
        chunks.append((features.position, count))
        names, weights = features.take(count)
        spent = sum(writer.add_weights(names, weights) for writer in writers)
        remaining -= spent
        cost = max(1, math.ceil(spent / count))
    for writer in writers:
        writer.close_weights()
    for chunk_start, count in chunks:
        names = feature_names(chunk_start, count)
        for writer in writers:
            writer.add_header(names)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _resolve_party(spec: ModelSpec, role: str, party_id: PartyId) -> tuple[int, PartyId]:
    """Position of the party in its role list and the id as the spec spells it (int and str compare by text)."""
    for index, candidate in enumerate(spec.roles.get(role, ())):
        if str(candidate) == str(party_id):
            return index, candidate
    raise ValueError(f"party {party_id!r} is not a {role} of {spec.model_id}")


def write_party_model(cache_dir: Path, spec: ModelSpec, role: str, party_id: PartyId) -> Path:
    """Write one party's slice of ``spec`` into ``cache_dir`` (a ``model_local_cache``); return the version dir.

    Fails with FileExistsError when that version directory already exists.
    """
    index, party_id = _resolve_party(spec, role, party_id)
    recipe = RECIPES[spec.algorithm]
    version_dir = Path(cache_dir) / spec.party_model_id(role, party_id) / spec.version
    version_dir.mkdir(parents=True)
    (version_dir / ".lock").touch()
    data_dir = version_dir / "variables" / "data"
    conf = train_runtime_conf(spec)

    # In FATE's save order (it is the define_meta order): component → (module, alias, proto index).
    components: dict[str, tuple[str, str, dict[str, str]]] = {}
    if role in DATA_TRANSFORM_ROLES:
        meta, param = data_transform_buffers(spec, role, party_id)
        proto_index = _write_component(
            data_dir / DATA_TRANSFORM, {"DataTransformMeta": meta, "DataTransformParam": param}
        )
        components[DATA_TRANSFORM] = ("DataTransform", MODEL_ALIAS, proto_index)
    if spec.algorithm == "hetero_secureboost" and role in recipe.model_roles:
        binning = feature_binning_buffers(spec, role, party_id)
        components[BINNING] = ("HeteroFeatureBinning", MODEL_ALIAS, _write_component(data_dir / BINNING, binning))
        meta_name, param_name = recipe.model_names[role]
        boost_meta, boost_param = secure_boost_buffers(spec, role, party_id)
        proto_index = _write_component(data_dir / SECURE_BOOST, {meta_name: boost_meta, param_name: boost_param})
        components[SECURE_BOOST] = (recipe.model_module, MODEL_ALIAS, proto_index)
    if spec.algorithm == "homo_nn" and role in recipe.model_roles:
        buffers = homo_models.homo_nn(seeded_rng(spec, "homo_nn"), trained=role != "arbiter")
        components[HOMO_NN] = (recipe.model_module, MODEL_ALIAS, _write_component(data_dir / HOMO_NN, buffers))
    if spec.algorithm == "homo_secureboost" and role in recipe.model_roles:
        rng = seeded_rng(spec, "homo_secureboost")
        buffers = homo_models.homo_secureboost(rng, role, recipe.features[role], spec.num_classes, decision_tree_meta())
        proto_index = _write_component(data_dir / HOMO_SECURE_BOOST, buffers)
        components[HOMO_SECURE_BOOST] = (recipe.model_module, MODEL_ALIAS, proto_index)
    lr_dir = data_dir / recipe.model_component / MODEL_ALIAS
    writes_lr = recipe.is_lr and role in recipe.model_roles
    if writes_lr:
        lr_dir.mkdir(parents=True)
        meta_name, param_name = recipe.model_names[role]
        proto_index = {meta_name: "LRModelMeta", param_name: "LRModelParam"}
        components[recipe.model_component] = (recipe.model_module, MODEL_ALIAS, proto_index)
    pipeline_dir = data_dir / PIPELINE_COMPONENT / PIPELINE_ALIAS
    pipeline_dir.mkdir(parents=True)
    _write_buffer(pipeline_dir, PIPELINE_MODEL_NAME, pipeline_buffer(spec, role, party_id, conf))
    components[PIPELINE_COMPONENT] = (PIPELINE_MODULE, PIPELINE_ALIAS, {PIPELINE_MODEL_NAME: "Pipeline"})

    define_meta = {
        "component_define": {name: {"module_name": module} for name, (module, _, _) in components.items()},
        "model_proto": {name: {alias: proto_index} for name, (_, alias, proto_index) in components.items()},
    }
    (version_dir / "define").mkdir()
    define_text = yaml.safe_dump(define_meta, sort_keys=False)
    (version_dir / "define" / "define_meta.yaml").write_text(define_text, encoding="utf-8")
    for name in components:
        run_parameters = {} if name == PIPELINE_COMPONENT else user_parameters(conf, name, role, index)
        path = version_dir / "run_parameters" / name / "run_parameters.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run_parameters), encoding="utf-8")

    if writes_lr:
        _write_lr(spec, role, party_id, version_dir, lr_dir)
    return version_dir


def _write_component(component_dir: Path, buffers: Mapping[str, Message]) -> dict[str, str]:
    """Write a component's buffers under its ``model`` alias; return its proto index (model_name → class)."""
    directory = component_dir / MODEL_ALIAS
    directory.mkdir(parents=True)
    for model_name, message in buffers.items():
        _write_buffer(directory, model_name, message)
    return {model_name: message.DESCRIPTOR.name for model_name, message in buffers.items()}


def _write_lr(spec: ModelSpec, role: str, party_id: PartyId, version_dir: Path, lr_dir: Path) -> None:
    """Write the LR component's buffers and checkpoints, its Params grown towards ``spec.target_bytes``.

    Everything else of the version directory is written before, so the bytes left for extra features
    are known; each checkpoint's ``database.yaml`` is written last, once its Param's SHA-1 is known.
    """
    recipe = RECIPES[spec.algorithm]
    meta_name, param_name = recipe.model_names[role]
    meta = lr_meta(spec, role)
    meta_sha1 = _write_buffer(lr_dir, meta_name, meta)
    stream_key = ("weights", "global") if spec.algorithm == "homo_lr" else ("weights", role, party_id)
    features = FeatureStream(seeded_rng(spec, *stream_key))
    names, weights = features.take(recipe.features.get(role, 0))

    checkpoints: list[tuple[int, Path, str]] = []  # (step_index, directory, create_time)
    for step in range(spec.max_iter - spec.checkpoints, spec.max_iter):
        directory = version_dir / "checkpoint" / recipe.model_component / f"{step}#{STEP_NAME}"
        directory.mkdir(parents=True)
        (directory / ".lock").touch()
        _write_buffer(directory, meta_name, meta, suffix=".pb")
        checkpoints.append((step, directory, _utc_now_iso()))

    def database(step: int, created: str, param_sha1: str) -> str:
        models = {meta_name: (meta_sha1, "LRModelMeta"), param_name: (param_sha1, "LRModelParam")}
        return _checkpoint_database(step, created, models)

    # A SHA-1 placeholder has the length of the real one, so the databases' size is known now.
    size_elsewhere = _dir_size(version_dir) + sum(len(database(s, c, "0" * 40)) for s, _, c in checkpoints)
    with ExitStack() as stack:
        final = lr_param(spec, role, party_id, names, weights, spec.max_iter)
        param_path = lr_dir / param_name
        writers = [_ParamWriter(stack, param_path, param_path.with_name(f"{param_name}.json"), final, 1.0)]
        for step, directory, _ in checkpoints:
            base = lr_param(spec, role, party_id, names, weights, step + 1)
            pb_path, json_path = directory / f"{param_name}.pb", directory / f"{param_name}.json"
            writers.append(_ParamWriter(stack, pb_path, json_path, base, (step + 1) / spec.max_iter))
        budget = 0
        if spec.target_bytes and role in GROWING_ROLES:
            budget = spec.target_bytes - size_elsewhere - sum(writer.base_size for writer in writers)
        _grow(writers, features, budget)
        param_sha1s = [writer.close() for writer in writers]

    for (step, directory, created), param_sha1 in zip(checkpoints, param_sha1s[1:], strict=True):
        (directory / "database.yaml").write_text(database(step, created, param_sha1), encoding="utf-8")


def write_federation(cache_dirs: Mapping[str, Path], spec: ModelSpec) -> dict[tuple[str, str], Path]:
    """Write every (role, party) slice of ``spec``; ``cache_dirs`` maps str(party_id) → its model_local_cache.

    A party id in two roles gets two directories under its one cache dir. Returns (role, str(party_id)) → version dir.
    """
    written: dict[tuple[str, str], Path] = {}
    for role, party_ids in spec.roles.items():
        for party_id in party_ids:
            key = (role, str(party_id))
            if key in written:
                continue
            if str(party_id) not in cache_dirs:
                raise KeyError(f"no model_local_cache given for party {party_id}")
            written[key] = write_party_model(cache_dirs[str(party_id)], spec, role, party_id)
    return written


def read_pipeline(version_dir: Path) -> pipeline_pb2.Pipeline:
    """Parse the Pipeline buffer of a version directory."""
    pipeline = pipeline_pb2.Pipeline()
    path = Path(version_dir) / "variables" / "data" / PIPELINE_COMPONENT / PIPELINE_ALIAS / PIPELINE_MODEL_NAME
    pipeline.ParseFromString(path.read_bytes())
    return pipeline


def read_define_meta(version_dir: Path) -> dict[str, Any]:
    """``define/define_meta.yaml`` of a version directory."""
    text = (Path(version_dir) / "define" / "define_meta.yaml").read_text(encoding="utf-8")
    return cast(dict[str, Any], yaml.safe_load(text))
