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

import copy
import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, Literal, cast

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from fate_registry.fate import (
    boosting_tree_model_meta_pb2,
    boosting_tree_model_param_pb2,
    data_transform_meta_pb2,
    data_transform_param_pb2,
    default_empty_fill_pb2,
    feature_binning_meta_pb2,
    feature_binning_param_pb2,
    feature_selection_meta_pb2,
    feature_selection_param_pb2,
    homo_nn_model_meta_pb2,
    homo_nn_model_param_pb2,
    lr_model_meta_pb2,
    lr_model_param_pb2,
    pearson_model_meta_pb2,
    pearson_model_param_pb2,
    pipeline_pb2,
)
from fate_registry.fate_models import homo_models
from fate_registry.identity import PartyId, gen_model_id, job_ids, party_model_id

Algorithm = Literal["hetero_lr", "homo_lr", "hetero_secureboost", "homo_nn", "homo_secureboost"]

PIPELINE_COMPONENT: Final = "pipeline"
PIPELINE_ALIAS: Final = "pipeline"
PIPELINE_MODULE: Final = "Pipeline"
PIPELINE_MODEL_NAME: Final = "Pipeline"
MODEL_ALIAS: Final = "model"
STEP_NAME: Final = "step_name"
"""ModelBase's default step name, which FATE's ModelCheckpoint callback uses for every step."""

BUFFER_CLASSES: Final[Mapping[str, type[Message]]] = MappingProxyType(
    {
        cls.DESCRIPTOR.name: cls
        for cls in (
            pipeline_pb2.Pipeline,
            lr_model_meta_pb2.LRModelMeta,
            lr_model_param_pb2.LRModelParam,
            data_transform_meta_pb2.DataTransformMeta,
            data_transform_param_pb2.DataTransformParam,
            default_empty_fill_pb2.DefaultEmptyFillMessage,
            feature_binning_meta_pb2.FeatureBinningMeta,
            feature_binning_param_pb2.FeatureBinningParam,
            feature_selection_meta_pb2.FeatureSelectionMeta,
            feature_selection_param_pb2.FeatureSelectionParam,
            boosting_tree_model_meta_pb2.BoostingTreeModelMeta,
            boosting_tree_model_param_pb2.BoostingTreeModelParam,
            pearson_model_meta_pb2.PearsonModelMeta,
            pearson_model_param_pb2.PearsonModelParam,
            homo_nn_model_meta_pb2.HomoNNMeta,
            homo_nn_model_param_pb2.HomoNNParam,
        )
    }
)
"""Buffer class name, as recorded in the proto index, → generated class (FATE looks classes up by name)."""

_DEFAULT_ROLES: Final[Mapping[str, tuple[PartyId, ...]]] = {"guest": (9999,), "host": (10000,), "arbiter": (10000,)}
_DEFAULT_MAX_ITER: Final = 30
_DATA_TRANSFORM: Final = "data_transform_0"
_DATA_TRANSFORM_ROLES: Final = frozenset({"guest", "host"})
_INTERSECTION: Final = "intersection_0"
_BINNING: Final = "hetero_feature_binning_0"
_SECURE_BOOST: Final = "hetero_secure_boost_0"
_GROWING_ROLES: Final = frozenset({"guest", "host"})
_CHUNK_FEATURES: Final = 50_000
_INITIAL_FEATURE_COST: Final = 96
"""Bytes one extra feature is assumed to cost per Param file before the first chunk is measured (~72 in practice)."""


@dataclass(frozen=True)
class _Recipe:
    """What one algorithm's training job looks like in FATE 1.11."""

    model_component: str
    model_module: str
    upstream: tuple[tuple[str, str], ...]
    """(component, module) of the stages between DataTransform and the model component, each feeding the next."""
    model_roles: frozenset[str]
    """Roles whose model ``export_model`` is non-empty, hence that hold its buffers (and LR checkpoints)."""
    model_names: Mapping[str, tuple[str, str]]
    """role → (Meta key, Param key) of the model component in the proto index."""
    code_paths: Mapping[str, Mapping[str, str]]
    """role → component → run class, the ``CodePath`` FATE-Flow fills into the inference DSL."""
    features: Mapping[str, int]
    tables: Mapping[str, str]

    @property
    def is_lr(self) -> bool:
        return self.model_module in ("HeteroLR", "HomoLR")

    @property
    def hetero(self) -> bool:
        return not self.model_module.startswith("Homo")


def _same_keys(meta: str, param: str) -> Mapping[str, tuple[str, str]]:
    return {role: (meta, param) for role in ("guest", "host", "arbiter")}


_HETERO_TABLES: Final = {"guest": "breast_hetero_guest", "host": "breast_hetero_host"}
_HOMO_TABLES: Final = {"guest": "breast_homo_guest", "host": "breast_homo_host"}
_HOMO_NN: Final = "homo_nn_0"
_HOMO_SECURE_BOOST: Final = "homo_secureboost_0"


def _homo_code_paths(component: str, client: str, server: str) -> Mapping[str, Mapping[str, str]]:
    clients = {"reader_0": "Reader", _DATA_TRANSFORM: "DataTransform", component: client, "evaluation_0": "Evaluation"}
    return {"guest": clients, "host": clients, "arbiter": {component: server, "evaluation_0": "Evaluation"}}


_MODEL_OUTPUT_MODULES: Final = frozenset(
    {"DataTransform", "HeteroFeatureBinning", "HeteroLR", "HomoLR", "HeteroSecureBoost", "HomoNN", "HomoSecureBoost"}
)
"""DSL modules whose components declare ``output.model``."""

_RECIPES: Final[Mapping[Algorithm, _Recipe]] = {
    "hetero_lr": _Recipe(
        model_component="hetero_lr_0",
        model_module="HeteroLR",
        upstream=((_INTERSECTION, "Intersection"),),
        model_roles=frozenset({"guest", "host", "arbiter"}),
        model_names=_same_keys("HeteroLogisticRegressionMeta", "HeteroLogisticRegressionParam"),
        code_paths={
            "guest": {
                "reader_0": "Reader",
                _DATA_TRANSFORM: "DataTransform",
                _INTERSECTION: "IntersectGuest",
                "hetero_lr_0": "HeteroLRGuest",
                "evaluation_0": "Evaluation",
            },
            "host": {
                "reader_0": "Reader",
                _DATA_TRANSFORM: "DataTransform",
                _INTERSECTION: "IntersectHost",
                "hetero_lr_0": "HeteroLRHost",
                "evaluation_0": "Evaluation",
            },
            "arbiter": {"hetero_lr_0": "HeteroLRArbiter", "evaluation_0": "Evaluation"},
        },
        features={"guest": 10, "host": 20},
        tables=_HETERO_TABLES,
    ),
    "homo_lr": _Recipe(
        model_component="homo_lr_0",
        model_module="HomoLR",
        upstream=(),
        model_roles=frozenset({"guest", "host"}),
        model_names=_same_keys("HomoLogisticRegressionMeta", "HomoLogisticRegressionParam"),
        code_paths={
            "guest": {
                "reader_0": "Reader",
                _DATA_TRANSFORM: "DataTransform",
                "homo_lr_0": "HomoLRGuest",
                "evaluation_0": "Evaluation",
            },
            "host": {
                "reader_0": "Reader",
                _DATA_TRANSFORM: "DataTransform",
                "homo_lr_0": "HomoLRHost",
                "evaluation_0": "Evaluation",
            },
            "arbiter": {"homo_lr_0": "HomoLRArbiter", "evaluation_0": "Evaluation"},
        },
        features={"guest": 30, "host": 30},
        tables=_HOMO_TABLES,
    ),
    "hetero_secureboost": _Recipe(
        model_component=_SECURE_BOOST,
        model_module="HeteroSecureBoost",
        upstream=((_INTERSECTION, "Intersection"), (_BINNING, "HeteroFeatureBinning")),
        model_roles=frozenset({"guest", "host"}),
        model_names={
            "guest": ("HeteroSecureBoostingTreeGuestMeta", "HeteroSecureBoostingTreeGuestParam"),
            "host": ("HeteroSecureBoostingTreeHostMeta", "HeteroSecureBoostingTreeHostParam"),
        },
        code_paths={
            "guest": {
                "reader_0": "Reader",
                _DATA_TRANSFORM: "DataTransform",
                _INTERSECTION: "IntersectGuest",
                _BINNING: "HeteroFeatureBinningGuest",
                _SECURE_BOOST: "HeteroSecureBoostingTreeGuest",
                "evaluation_0": "Evaluation",
            },
            "host": {
                "reader_0": "Reader",
                _DATA_TRANSFORM: "DataTransform",
                _INTERSECTION: "IntersectHost",
                _BINNING: "HeteroFeatureBinningHost",
                _SECURE_BOOST: "HeteroSecureBoostingTreeHost",
                "evaluation_0": "Evaluation",
            },
            "arbiter": {"evaluation_0": "Evaluation"},
        },
        features={"guest": 10, "host": 20},
        tables=_HETERO_TABLES,
    ),
    "homo_nn": _Recipe(
        model_component=_HOMO_NN,
        model_module="HomoNN",
        upstream=(),
        model_roles=frozenset({"guest", "host", "arbiter"}),
        model_names=_same_keys("HomoNNMeta", "HomoNNParam"),
        code_paths=_homo_code_paths(_HOMO_NN, "HomoNNClient", "HomoNNServer"),
        features={"guest": homo_models.NN_FEATURES, "host": homo_models.NN_FEATURES},
        tables=_HOMO_TABLES,
    ),
    "homo_secureboost": _Recipe(
        model_component=_HOMO_SECURE_BOOST,
        model_module="HomoSecureBoost",
        upstream=(),
        model_roles=frozenset({"guest", "host"}),
        model_names=_same_keys("HomoSecureBoostingTreeGuestMeta", "HomoSecureBoostingTreeGuestParam"),
        code_paths=_homo_code_paths(
            _HOMO_SECURE_BOOST, "HomoSecureBoostingTreeClient", "HomoSecureBoostingTreeArbiter"
        ),
        features={"guest": 30, "host": 30},
        tables=_HOMO_TABLES,
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """A trained model of the whole federation; every party's slice is written from the same spec.

    ``model_version`` None draws a fresh FATE job id, and ``initiator_party_id`` None means the first
    party of ``initiator_role``; both are resolved at construction, so the parties of one spec agree.
    Party ids keep their type (int or str) in every JSON document, as FATE keeps what was submitted.
    """

    roles: Mapping[str, Sequence[PartyId]] = field(default_factory=lambda: dict(_DEFAULT_ROLES))
    initiator_role: str = "guest"
    initiator_party_id: PartyId | None = None
    algorithm: Algorithm = "hetero_lr"
    model_version: str | None = None
    fate_version: str = "1.11.4"
    checkpoints: int = 0
    """Checkpoint steps kept for the LR component: the last ones of a ``save_freq`` 1 run (LR only)."""
    target_bytes: int = 0
    """When > 0, guests' and hosts' version directories are grown to about this many bytes (LR only)."""
    seed: int = 0
    num_classes: int = 2
    """Label classes: more than 2 makes HomoLR one-vs-rest and HomoSecureBoost multiclass."""

    def __post_init__(self) -> None:
        if self.algorithm not in _RECIPES:
            raise ValueError(f"algorithm must be one of {sorted(_RECIPES)}, not {self.algorithm!r}")
        roles = {role: tuple(ids) for role, ids in self.roles.items()}
        unknown = set(roles) - {"guest", "host", "arbiter"}
        if unknown or not roles.get("guest") or not roles.get("host"):
            raise ValueError(f"roles need guest and host and may add arbiter, got {sorted(roles)}")
        for role, ids in roles.items():
            if not ids or not all(isinstance(i, int | str) and not isinstance(i, bool) for i in ids):
                raise ValueError(f"role {role!r} needs a non-empty list of int or str party ids")
        if self.initiator_role not in roles:
            raise ValueError(f"initiator role {self.initiator_role!r} is not one of the roles")
        initiator = roles[self.initiator_role][0] if self.initiator_party_id is None else self.initiator_party_id
        if initiator not in roles[self.initiator_role]:
            raise ValueError(f"initiator party {initiator!r} is not a {self.initiator_role}")
        if self.checkpoints < 0 or self.target_bytes < 0:
            raise ValueError("checkpoints and target_bytes must not be negative")
        if (self.checkpoints or self.target_bytes) and not _RECIPES[self.algorithm].is_lr:
            raise ValueError("checkpoints and target_bytes apply to the LR algorithms only")
        if self.num_classes < 2 or (self.num_classes > 2 and self.algorithm not in ("homo_lr", "homo_secureboost")):
            raise ValueError("num_classes is 2, or more for homo_lr and homo_secureboost")
        if self.num_classes > 2 and self.target_bytes:
            raise ValueError("a one-vs-rest model is not grown")
        object.__setattr__(self, "roles", MappingProxyType(roles))
        object.__setattr__(self, "initiator_party_id", initiator)
        object.__setattr__(self, "model_version", self.model_version or job_ids.next())

    @property
    def model_id(self) -> str:
        return gen_model_id(self.roles)

    @property
    def version(self) -> str:
        """``model_version`` as resolved at construction."""
        return cast(str, self.model_version)

    @property
    def initiator(self) -> PartyId:
        """``initiator_party_id`` as resolved at construction."""
        return cast(PartyId, self.initiator_party_id)

    @property
    def max_iter(self) -> int:
        """Epochs the LR ran: FATE's example 30, more when more checkpoints are asked for."""
        return max(_DEFAULT_MAX_ITER, self.checkpoints)

    def party_model_id(self, role: str, party_id: PartyId) -> str:
        return party_model_id(role, party_id, self.model_id)


def train_dsl(algorithm: Algorithm) -> dict[str, Any]:
    """The training DSL v2 of FATE's example job for ``algorithm``."""
    recipe = _RECIPES[algorithm]
    components: dict[str, Any] = {
        "reader_0": {"module": "Reader", "output": {"data": ["data"]}},
        _DATA_TRANSFORM: {
            "module": "DataTransform",
            "input": {"data": {"data": ["reader_0.data"]}},
            "output": {"data": ["data"], "model": [MODEL_ALIAS]},
        },
    }
    upstream = _DATA_TRANSFORM
    for component, module in recipe.upstream:
        components[component] = _dsl_component(module, {"data": [f"{upstream}.data"]})
        upstream = component
    components[recipe.model_component] = _dsl_component(recipe.model_module, {"train_data": [f"{upstream}.data"]})
    components["evaluation_0"] = _dsl_component("Evaluation", {"data": [f"{recipe.model_component}.data"]})
    return {"components": components}


def _dsl_component(module: str, data_input: dict[str, list[str]]) -> dict[str, Any]:
    output: dict[str, list[str]] = {"data": ["data"]}
    if module in _MODEL_OUTPUT_MODULES:
        output["model"] = [MODEL_ALIAS]
    return {"module": module, "input": {"data": data_input}, "output": output}


_BINNING_PARAMETERS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "method": "quantile",
        "compress_thres": 10000,
        "head_size": 10000,
        "error": 0.001,
        "bin_num": 10,
        "bin_indexes": -1,
        "adjustment_factor": 0.5,
        "local_only": False,
        "transform_param": {"transform_cols": -1, "transform_type": "bin_num"},
    }
)
"""HeteroFeatureBinning's parameters in the conf (FATE's defaults, spelled out); its Meta echoes them."""

_SECURE_BOOST_PARAMETERS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "task_type": "classification",
        "objective_param": {"objective": "cross_entropy"},
        "num_trees": 5,
        "learning_rate": 0.3,
        "bin_num": 32,
        "tree_param": {"max_depth": 3},
        "n_iter_no_change": True,
        "tol": 0.0001,
        "encrypt_param": {"method": "Paillier"},
    }
)
"""HeteroSecureBoost's parameters in the conf (fate_buffers.md §4.3); its Meta echoes them."""


def _model_parameters(spec: ModelSpec) -> dict[str, Any]:
    """The model component's common parameters in the example conf; its Meta buffer echoes them."""
    if spec.algorithm in ("hetero_secureboost", "homo_secureboost"):
        return copy.deepcopy(dict(_SECURE_BOOST_PARAMETERS))
    if spec.algorithm == "homo_nn":
        return {"max_iter": homo_models.NN_EPOCHS, "batch_size": -1, "nn_define": homo_models.nn_define()}
    params: dict[str, Any]
    if spec.algorithm == "hetero_lr":
        params = {
            "penalty": "L2",
            "tol": 0.0001,
            "alpha": 0.01,
            "optimizer": "rmsprop",
            "batch_size": 320,
            "learning_rate": 0.15,
            "encrypt_param": {"key_length": 1024},
            "init_param": {"init_method": "zeros"},
            "max_iter": spec.max_iter,
            "early_stop": "diff",
            "cv_param": {"n_splits": 5, "shuffle": False, "random_seed": 103, "need_cv": False},
            "sqn_param": {"update_interval_L": 3, "memory_M": 5, "sample_size": 5000, "random_seed": None},
        }
    else:
        params = {
            "penalty": "L2",
            "tol": 1e-05,
            "alpha": 0.01,
            "optimizer": "sgd",
            "batch_size": -1,
            "learning_rate": 0.15,
            "init_param": {"init_method": "zeros"},
            "max_iter": spec.max_iter,
            "early_stop": "diff",
            "decay": 1,
            "decay_sqrt": True,
        }
    if spec.checkpoints:
        params["callback_param"] = {"callbacks": ["ModelCheckpoint"], "save_freq": 1}
    return params


def _job_parameters(spec: ModelSpec, *, initiator_baseline: bool) -> dict[str, Any]:
    """FATE-Flow's ``RunParameters.to_dict()`` (None values dropped) for this job."""
    return {
        "job_type": "train",
        "inheritance_info": {},
        "computing_engine": "EGGROLL",
        "federation_engine": "EGGROLL",
        "storage_engine": "EGGROLL",
        "engines_address": {},
        "federated_mode": "MULTIPLE",
        "task_cores": 4,
        "task_parallelism": 1,
        "computing_partitions": 4,
        "federated_status_collect_type": "PUSH",
        "model_id": spec.model_id,
        "model_version": spec.version,
        "dsl_version": 2,
        "auto_retries": 0,
        "auto_retry_delay": 1,
        "timeout": 259200,
        "eggroll_run": {"eggroll.session.processors.per.node": 4},
        "spark_run": {},
        "rabbitmq_run": {},
        "pulsar_run": {},
        "adaptation_parameters": {
            "task_nodes": 1,
            "task_cores_per_node": 4,
            "task_memory_per_node": 0,
            "request_task_cores": 4,
            "if_initiator_baseline": initiator_baseline,
        },
        "task_conf": {},
    }


def train_runtime_conf(spec: ModelSpec) -> dict[str, Any]:
    """The runtime conf v2 as FATE-Flow stores it: the submitted conf with ``job_parameters.common`` filled."""
    recipe = _RECIPES[spec.algorithm]
    hetero = recipe.hetero
    common: dict[str, Any] = {}
    if hetero:
        common[_DATA_TRANSFORM] = {"output_format": "dense"}
        common[_INTERSECTION] = {
            "intersect_method": "rsa",
            "rsa_params": {"hash_method": "sha256", "final_hash_method": "sha256", "key_length": 1024},
        }
    else:
        common[_DATA_TRANSFORM] = {"with_label": True, "output_format": "dense"}
    if spec.algorithm == "hetero_secureboost":
        common[_BINNING] = copy.deepcopy(dict(_BINNING_PARAMETERS))
    common[recipe.model_component] = _model_parameters(spec)
    common["evaluation_0"] = {"eval_type": "multi" if spec.num_classes > 2 else "binary"}

    role_parameters: dict[str, Any] = {}
    for role in ("guest", "host"):
        per_party: dict[str, Any] = {}
        for index in range(len(spec.roles[role])):
            entry: dict[str, Any] = {"reader_0": {"table": {"name": recipe.tables[role], "namespace": "experiment"}}}
            if hetero:
                entry[_DATA_TRANSFORM] = {"with_label": role == "guest"}
            per_party[str(index)] = entry
        role_parameters[role] = per_party

    return {
        "dsl_version": 2,
        "initiator": {"role": spec.initiator_role, "party_id": spec.initiator},
        "role": {role: list(ids) for role, ids in spec.roles.items()},
        "job_parameters": {"common": _job_parameters(spec, initiator_baseline=True)},
        "component_parameters": {"common": common, "role": role_parameters},
    }


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _user_parameters(conf: Mapping[str, Any], component: str, role: str, index: int) -> dict[str, Any]:
    """What the conf specified for ``component`` on one party: common parameters overridden by its role entry."""
    parameters = conf["component_parameters"]
    role_entry = parameters["role"].get(role, {}).get(str(index), {})
    return _merge(parameters["common"].get(component, {}), role_entry.get(component, {}))


def _rng(spec: ModelSpec, *parts: object) -> random.Random:
    """A generator seeded by the spec's seed and a purpose; str seeds hash the same in every process."""
    return random.Random("/".join(str(p) for p in (spec.seed, *parts)))


def _names(start: int, count: int) -> list[str]:
    return [f"x{i}" for i in range(start, start + count)]


class _FeatureStream:
    """Feature names ``x0, x1, …`` and their final weights, in order, from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.position = 0

    def take(self, count: int) -> tuple[list[str], list[float]]:
        names = _names(self.position, count)
        self.position += count
        draw = self._rng.random
        return names, [(draw() - 0.5) * 0.6 for _ in range(count)]


def _loss_curve(rng: random.Random, epochs: int) -> list[float]:
    """A falling logistic loss starting at ln 2 (zero-initialised weights), with a little noise."""
    return [
        0.3 + (math.log(2) - 0.3) * math.exp(-k / 6) + (rng.uniform(-0.002, 0.002) if k else 0.0) for k in range(epochs)
    ]


def _lr_meta(spec: ModelSpec, role: str) -> lr_model_meta_pb2.LRModelMeta:
    params = _model_parameters(spec)
    return lr_model_meta_pb2.LRModelMeta(
        penalty=params["penalty"],
        tol=params["tol"],
        alpha=params["alpha"],
        optimizer=params["optimizer"],
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        max_iter=params["max_iter"],
        early_stop=params["early_stop"],
        fit_intercept=spec.algorithm == "homo_lr" or role != "host",  # a HeteroLR host forces its intercept off
        need_one_vs_rest=spec.num_classes > 2,
        module="HomoLR" if spec.algorithm == "homo_lr" else "",
    )


def _lr_param(
    spec: ModelSpec, role: str, party_id: PartyId, names: Sequence[str], weights: Sequence[float], epochs: int
) -> lr_model_param_pb2.LRModelParam:
    """The LR Param after ``epochs`` epochs; weights grow linearly towards their final values."""
    scale = epochs / spec.max_iter
    param = lr_model_param_pb2.LRModelParam(need_one_vs_rest=False)
    if spec.algorithm == "hetero_lr":
        param.iters = epochs
        param.best_iteration = -1
        if role == "arbiter":
            param.loss_history.extend(_loss_curve(_rng(spec, "loss", role, party_id), spec.max_iter)[:epochs])
            return param
        if role == "guest":
            param.intercept = (_rng(spec, "intercept", role, party_id).random() - 0.5) * scale
    else:
        losses = _loss_curve(_rng(spec, "loss", role, party_id), spec.max_iter)[:epochs]
        param.loss_history.extend(losses)
        param.iters = len(losses) - 1
        param.best_iteration = losses.index(min(losses))
        param.intercept = (_rng(spec, "intercept").random() - 0.5) * scale
        if spec.num_classes > 2:
            return _one_vs_rest(spec, param, names, weights, scale)
    param.weight.update(zip(names, (w * scale for w in weights), strict=True))
    param.header.extend(names)
    return param


def _one_vs_rest(
    spec: ModelSpec,
    param: lr_model_param_pb2.LRModelParam,
    names: Sequence[str],
    weights: Sequence[float],
    scale: float,
) -> lr_model_param_pb2.LRModelParam:
    """A one-vs-rest HomoLR Param: the top-level weights stay empty, one model per class sits in
    ``one_vs_rest_result``, each class's weights the common ones moved at random."""
    param.need_one_vs_rest = True
    param.intercept = 0.0
    rng = _rng(spec, "one_vs_rest")
    result = param.one_vs_rest_result
    for label in range(spec.num_classes):
        single = result.completed_models.add(iters=param.iters, is_converged=False, best_iteration=param.best_iteration)
        single.loss_history.extend(param.loss_history)
        single.weight.update({n: (w + rng.uniform(-0.5, 0.5)) * scale for n, w in zip(names, weights, strict=True)})
        single.intercept = (rng.random() - 0.5) * scale
        single.header.extend(names)
        result.one_vs_rest_classes.append(str(label))
    return param


def _data_transform(
    spec: ModelSpec, role: str, party_id: PartyId
) -> tuple[data_transform_meta_pb2.DataTransformMeta, data_transform_param_pb2.DataTransformParam]:
    with_label = not _RECIPES[spec.algorithm].hetero or role == "guest"
    header = _names(0, _RECIPES[spec.algorithm].features[role])
    meta = data_transform_meta_pb2.DataTransformMeta(
        input_format="dense",
        delimitor=",",
        data_type="float64",
        tag_with_value=False,
        tag_value_delimitor=":",
        with_label=with_label,
        label_name="y" if with_label else "",
        label_type="int" if with_label else "",
        output_format="dense",
        imputer_meta=data_transform_meta_pb2.DataTransformImputerMeta(is_imputer=False),
        outlier_meta=data_transform_meta_pb2.DataTransformOutlierMeta(is_outlier=False),
        need_run=False,  # the dense transformer never sets it
        with_match_id=False,
    )
    param = data_transform_param_pb2.DataTransformParam(
        header=header,
        sid_name="id",
        label_name="y" if with_label else "",
        imputer_param=data_transform_param_pb2.DataTransformImputerParam(),
        outlier_param=data_transform_param_pb2.DataTransformOutlierParam(),
        anonymous_header=[f"{role}_{party_id}_{name}" for name in header],
    )
    return meta, param


_BREAST_LABELS: Final = (357, 212)
"""Rows of breast_hetero_guest labelled 1 and 0 (569 in all): the binning's event and non-event totals."""


def _spread(rng: random.Random, total: int, bins: int) -> list[int]:
    """``total`` samples spread over ``bins`` bins at random."""
    shares = [rng.random() + 0.05 for _ in range(bins)]
    counts = [int(total * share / sum(shares)) for share in shares]
    counts[rng.randrange(bins)] += total - sum(counts)
    return counts


def _iv_param(rng: random.Random, bins: int, *, split_points: bool, woe: bool) -> feature_binning_param_pb2.IVParam:
    """One feature's binning result: its quantile split points, its WOE and IV per bin, or both."""
    param = feature_binning_param_pb2.IVParam(bin_nums=bins)
    if split_points:
        point = rng.uniform(-3.0, 0.0)
        for _ in range(bins):
            point += rng.uniform(0.05, 1.0)
            param.split_points.append(round(point, 6))
    if woe:
        adjustment = float(_BINNING_PARAMETERS["adjustment_factor"])
        event_total, non_event_total = _BREAST_LABELS
        events, non_events = _spread(rng, event_total, bins), _spread(rng, non_event_total, bins)
        for event, non_event in zip(events, non_events, strict=True):
            if event and non_event:
                event_rate, non_event_rate = event / event_total, non_event / non_event_total
            else:  # FATE's adjustment keeps an empty bin's WOE finite
                event_rate = (event + adjustment) / event_total
                non_event_rate = (non_event + adjustment) / non_event_total
            woe_value = math.log(event_rate / non_event_rate)
            param.event_count_array.append(event)
            param.non_event_count_array.append(non_event)
            param.event_rate_array.append(round(event_rate, 6))
            param.non_event_rate_array.append(round(non_event_rate, 6))
            param.woe_array.append(round(woe_value, 6))
            param.iv_array.append(round((event_rate - non_event_rate) * woe_value, 6))
        param.iv = round(sum(param.iv_array), 6)
        steps = [b - a for a, b in itertools.pairwise(param.woe_array)]
        param.is_woe_monotonic = all(d >= 0 for d in steps) or all(d <= 0 for d in steps)
    return param


def _feature_binning(spec: ModelSpec, role: str, party_id: PartyId) -> dict[str, Message]:
    """HeteroFeatureBinning's buffers on a guest or host, fit stage (no ``transform_*`` results).

    The guest bins its own features (split points and IV) and holds, per host, the IV of the host's
    features under their anonymous names; a host holds its own split points only. Each result
    carries its party's role and party id; ``host_party_ids`` lists every host on both sides.
    """
    header = _names(0, _RECIPES[spec.algorithm].features[role])
    params = _BINNING_PARAMETERS
    bins = int(params["bin_num"])
    meta = feature_binning_meta_pb2.FeatureBinningMeta(
        need_run=True,
        compress_thres=params["compress_thres"],
        head_size=params["head_size"],
        error=params["error"],
        bin_num=bins,
        cols=header,
        adjustment_factor=params["adjustment_factor"],
        local_only=params["local_only"],
        transform_param=feature_binning_meta_pb2.TransformMeta(
            transform_cols=range(len(header)), transform_type=params["transform_param"]["transform_type"]
        ),
        method=params["method"],
        skip_static=False,
    )
    is_guest = role == "guest"
    rng = _rng(spec, "binning", role, party_id)
    own = feature_binning_param_pb2.FeatureBinningResult(role=role, party_id=str(party_id))
    for name in header:
        own.binning_result[name].CopyFrom(_iv_param(rng, bins, split_points=True, woe=is_guest))
    host_results = []
    if is_guest:
        for host in spec.roles["host"]:
            result = feature_binning_param_pb2.FeatureBinningResult(role="host", party_id=str(host))
            for name in _names(0, _RECIPES[spec.algorithm].features["host"]):
                result.binning_result[f"host_{host}_{name}"].CopyFrom(
                    _iv_param(rng, bins, split_points=False, woe=True)
                )
            host_results.append(result)
    param = feature_binning_param_pb2.FeatureBinningParam(
        binning_result=own,
        host_results=host_results,
        header=header,
        header_anonymous=[f"{role}_{party_id}_{name}" for name in header],
        model_name="binning_model",
        multi_class_result=feature_binning_param_pb2.MultiClassResult(
            results=[own],
            labels=["0", "1"] if is_guest else [],
            host_results=host_results,
            host_party_ids=[str(host) for host in spec.roles["host"]],
            has_host_result=bool(host_results),
        ),
    )
    return {"FeatureBinningMeta": meta, "FeatureBinningParam": param}


@dataclass(frozen=True)
class _Split:
    """One internal node of a boosting tree: the party owning the split, its feature and threshold."""

    role: str
    party_id: PartyId
    fid: int
    threshold: float
    gain: float
    weight: float


def _boosting_trees(spec: ModelSpec) -> list[tuple[list[_Split], list[float]]]:
    """The federation's trees, identical for every party: full trees, internal nodes in BFS order, leaf weights."""
    params = _SECURE_BOOST_PARAMETERS
    depth = int(params["tree_param"]["max_depth"])
    features = _RECIPES[spec.algorithm].features
    guest = ("guest", spec.roles["guest"][0])
    hosts = [("host", host) for host in spec.roles["host"]]
    rng = _rng(spec, "boosting_trees")
    trees = []
    for index in range(int(params["num_trees"])):
        shrink = 1 / (index + 1)
        splits = []
        for _ in range(2**depth - 1):
            role, party = guest if rng.random() < 0.5 else rng.choice(hosts)
            splits.append(
                _Split(
                    role=role,
                    party_id=party,
                    fid=rng.randrange(features[role]),
                    threshold=round(rng.uniform(-1.5, 2.5), 6),
                    gain=round(rng.uniform(1.0, 40.0) * shrink, 6),
                    weight=round(rng.uniform(-0.6, 0.6) * shrink, 6),
                )
            )
        leaves = [round(rng.uniform(-1.2, 1.2) * shrink, 6) for _ in range(2**depth)]
        trees.append((splits, leaves))
    return trees


def _tree_meta() -> boosting_tree_model_meta_pb2.DecisionTreeModelMeta:
    """The tree parameters of both SecureBoosts (FATE's defaults, the example's depth), as their Meta holds them."""
    return boosting_tree_model_meta_pb2.DecisionTreeModelMeta(
        criterion_meta=boosting_tree_model_meta_pb2.CriterionMeta(criterion_method="xgboost", criterion_param=[0.1, 0]),
        max_depth=_SECURE_BOOST_PARAMETERS["tree_param"]["max_depth"],
        min_sample_split=2,
        min_impurity_split=0.001,
        min_leaf_node=1,
        use_missing=False,
        zero_as_missing=False,
    )


def _secure_boost(
    spec: ModelSpec, role: str, party_id: PartyId
) -> tuple[boosting_tree_model_meta_pb2.BoostingTreeModelMeta, boosting_tree_model_param_pb2.BoostingTreeModelParam]:
    """HeteroSecureBoost's Meta and Param on a guest or host (fate_buffers.md §1.8, §4.3)."""
    params = _SECURE_BOOST_PARAMETERS
    is_guest = role == "guest"
    meta = boosting_tree_model_meta_pb2.BoostingTreeModelMeta(
        tree_meta=_tree_meta(),
        num_trees=params["num_trees"],
        quantile_meta=boosting_tree_model_meta_pb2.QuantileMeta(bin_num=params["bin_num"]),
        module="HeteroSecureBoost",
        boosting_strategy="std",
    )
    if is_guest:  # the host's Meta carries only the fields above
        meta.learning_rate = params["learning_rate"]
        meta.objective_meta.objective = params["objective_param"]["objective"]
        meta.task_type = params["task_type"]
        meta.n_iter_no_change = params["n_iter_no_change"]
        meta.tol = params["tol"]

    guest_site = f"guest:{spec.roles['guest'][0]}"
    param = boosting_tree_model_param_pb2.BoostingTreeModelParam(
        tree_num=params["num_trees"], best_iteration=-1, model_name="hetero_sbt"
    )
    importance: dict[tuple[str, PartyId, int], tuple[int, float]] = {}  # (role, party, fid) → (splits, total gain)
    for splits, leaves in _boosting_trees(spec):
        tree = param.trees_.add()
        for node_id, split in enumerate(splits):
            own = split.role == role and str(split.party_id) == str(party_id)
            tree.tree_.add(
                id=node_id,
                sitename=f"{split.role}:{split.party_id}",
                fid=split.fid if is_guest or own else 0,
                weight=split.weight if is_guest else 0.0,
                left_nodeid=2 * node_id + 1,
                right_nodeid=2 * node_id + 2,
            )
            if own:  # the owner keeps the real threshold and missing direction aside
                tree.split_maskdict[node_id] = split.threshold
                tree.missing_dir_maskdict[node_id] = 1
            if is_guest or own:
                count, gain = importance.get((split.role, split.party_id, split.fid), (0, 0.0))
                importance[(split.role, split.party_id, split.fid)] = (count + 1, gain + split.gain)
        for offset, weight in enumerate(leaves):
            tree.tree_.add(
                id=len(splits) + offset,
                sitename=guest_site,
                fid=-1,
                weight=weight if is_guest else 0.0,
                is_leaf=True,
                left_nodeid=-1,
                right_nodeid=-1,
                missing_dir=1,
            )
    for (owner, owner_id, fid), (count, gain) in sorted(importance.items(), key=lambda kv: (-kv[1][0], -kv[1][1])):
        entry = param.feature_importances.add(importance=count, importance2=round(gain, 6), main="split")
        if not is_guest:
            entry.sitename, entry.fid, entry.fullname = "hostLocal", fid, f"x{fid}"
        elif owner == "guest":
            entry.sitename, entry.fid, entry.fullname = f"guest:{owner_id}", fid, f"x{fid}"
        else:  # the guest knows a host feature by its anonymous name only
            entry.sitename, entry.fid, entry.fullname = f"host:{owner_id}", 0, f"host_{owner_id}_x{fid}"
    names = _names(0, _RECIPES[spec.algorithm].features[role])
    param.feature_name_fid_mapping.update(enumerate(names))
    if is_guest:
        event_total, non_event_total = _BREAST_LABELS
        param.init_score.append(round(math.log(event_total / non_event_total), 6))
        rng = _rng(spec, "boosting_losses")
        param.losses.extend(round(0.12 + 0.45 * 0.7**k + rng.uniform(-0.003, 0.003), 6) for k in range(param.tree_num))
        param.tree_dim, param.num_classes = 1, 2
        param.classes_.extend(["0", "1"])
    else:
        param.anonymous_name_mapping.update({f"host_{party_id}_{name}": name for name in names})
    return meta, param


def _pipeline(spec: ModelSpec, role: str, party_id: PartyId, conf: Mapping[str, Any]) -> pipeline_pb2.Pipeline:
    """The Pipeline FATE-Flow saves at the end of a training job, as fate_flow.md §2.4 describes it."""
    dsl = train_dsl(spec.algorithm)
    inference_dsl = copy.deepcopy(dsl)
    for component, code_path in _RECIPES[spec.algorithm].code_paths[role].items():
        inference_dsl["components"][component]["CodePath"] = code_path
    on_party = copy.deepcopy(dict(conf))
    is_initiator = role == spec.initiator_role and party_id == spec.initiator
    on_party["job_parameters"] = _job_parameters(spec, initiator_baseline=is_initiator)
    initiator = spec.initiator
    return pipeline_pb2.Pipeline(
        inference_dsl=_json_bytes(inference_dsl),
        train_dsl=_json_bytes(dsl),
        train_runtime_conf=_json_bytes(conf),
        fate_version=spec.fate_version,
        model_id=spec.model_id,
        model_version=spec.version,
        parent=True,
        loaded_times=0,
        roles=_json_bytes(conf["role"]),
        initiator_role=spec.initiator_role,
        # int32 in the proto: a non-numeric party id (which FATE cannot have) is left unset.
        initiator_party_id=int(initiator) if str(initiator).isdigit() else 0,
        runtime_conf_on_party=_json_bytes(on_party),
        parent_info=_json_bytes({}),
    )


def _json_bytes(value: Any) -> bytes:
    """FATE's ``json_dumps(value, byte=True)``: compact-by-default ``json.dumps`` as UTF-8."""
    return json.dumps(value).encode("utf-8")


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


def _grow(writers: Sequence[_ParamWriter], features: _FeatureStream, budget: int) -> None:
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
        names = _names(chunk_start, count)
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
    recipe = _RECIPES[spec.algorithm]
    version_dir = Path(cache_dir) / spec.party_model_id(role, party_id) / spec.version
    version_dir.mkdir(parents=True)
    (version_dir / ".lock").touch()
    data_dir = version_dir / "variables" / "data"
    conf = train_runtime_conf(spec)

    # In FATE's save order (it is the define_meta order): component → (module, alias, proto index).
    components: dict[str, tuple[str, str, dict[str, str]]] = {}
    if role in _DATA_TRANSFORM_ROLES:
        meta, param = _data_transform(spec, role, party_id)
        proto_index = _write_component(
            data_dir / _DATA_TRANSFORM, {"DataTransformMeta": meta, "DataTransformParam": param}
        )
        components[_DATA_TRANSFORM] = ("DataTransform", MODEL_ALIAS, proto_index)
    if spec.algorithm == "hetero_secureboost" and role in recipe.model_roles:
        binning = _feature_binning(spec, role, party_id)
        components[_BINNING] = ("HeteroFeatureBinning", MODEL_ALIAS, _write_component(data_dir / _BINNING, binning))
        meta_name, param_name = recipe.model_names[role]
        boost_meta, boost_param = _secure_boost(spec, role, party_id)
        proto_index = _write_component(data_dir / _SECURE_BOOST, {meta_name: boost_meta, param_name: boost_param})
        components[_SECURE_BOOST] = (recipe.model_module, MODEL_ALIAS, proto_index)
    if spec.algorithm == "homo_nn" and role in recipe.model_roles:
        buffers = homo_models.homo_nn(_rng(spec, "homo_nn"), trained=role != "arbiter")
        components[_HOMO_NN] = (recipe.model_module, MODEL_ALIAS, _write_component(data_dir / _HOMO_NN, buffers))
    if spec.algorithm == "homo_secureboost" and role in recipe.model_roles:
        rng = _rng(spec, "homo_secureboost")
        buffers = homo_models.homo_secureboost(rng, role, recipe.features[role], spec.num_classes, _tree_meta())
        proto_index = _write_component(data_dir / _HOMO_SECURE_BOOST, buffers)
        components[_HOMO_SECURE_BOOST] = (recipe.model_module, MODEL_ALIAS, proto_index)
    lr_dir = data_dir / recipe.model_component / MODEL_ALIAS
    writes_lr = recipe.is_lr and role in recipe.model_roles
    if writes_lr:
        lr_dir.mkdir(parents=True)
        meta_name, param_name = recipe.model_names[role]
        proto_index = {meta_name: "LRModelMeta", param_name: "LRModelParam"}
        components[recipe.model_component] = (recipe.model_module, MODEL_ALIAS, proto_index)
    pipeline_dir = data_dir / PIPELINE_COMPONENT / PIPELINE_ALIAS
    pipeline_dir.mkdir(parents=True)
    _write_buffer(pipeline_dir, PIPELINE_MODEL_NAME, _pipeline(spec, role, party_id, conf))
    components[PIPELINE_COMPONENT] = (PIPELINE_MODULE, PIPELINE_ALIAS, {PIPELINE_MODEL_NAME: "Pipeline"})

    define_meta = {
        "component_define": {name: {"module_name": module} for name, (module, _, _) in components.items()},
        "model_proto": {name: {alias: proto_index} for name, (_, alias, proto_index) in components.items()},
    }
    (version_dir / "define").mkdir()
    define_text = yaml.safe_dump(define_meta, sort_keys=False)
    (version_dir / "define" / "define_meta.yaml").write_text(define_text, encoding="utf-8")
    for name in components:
        run_parameters = {} if name == PIPELINE_COMPONENT else _user_parameters(conf, name, role, index)
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
    recipe = _RECIPES[spec.algorithm]
    meta_name, param_name = recipe.model_names[role]
    meta = _lr_meta(spec, role)
    meta_sha1 = _write_buffer(lr_dir, meta_name, meta)
    stream_key = ("weights", "global") if spec.algorithm == "homo_lr" else ("weights", role, party_id)
    features = _FeatureStream(_rng(spec, *stream_key))
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
        final = _lr_param(spec, role, party_id, names, weights, spec.max_iter)
        param_path = lr_dir / param_name
        writers = [_ParamWriter(stack, param_path, param_path.with_name(f"{param_name}.json"), final, 1.0)]
        for step, directory, _ in checkpoints:
            base = _lr_param(spec, role, party_id, names, weights, step + 1)
            pb_path, json_path = directory / f"{param_name}.pb", directory / f"{param_name}.json"
            writers.append(_ParamWriter(stack, pb_path, json_path, base, (step + 1) / spec.max_iter))
        budget = 0
        if spec.target_bytes and role in _GROWING_ROLES:
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
