"""The training DSL and runtime conf of FATE's example jobs, as FATE-Flow stores them with a model."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from fate_registry.fate_models import homo_models
from fate_registry.fate_models.recipes import (
    BINNING,
    DATA_TRANSFORM,
    INTERSECTION,
    MODEL_ALIAS,
    RECIPES,
    Algorithm,
    ModelSpec,
)

_MODEL_OUTPUT_MODULES: Final = frozenset(
    {"DataTransform", "HeteroFeatureBinning", "HeteroLR", "HomoLR", "HeteroSecureBoost", "HomoNN", "HomoSecureBoost"}
)
"""DSL modules whose components declare ``output.model``."""


def train_dsl(algorithm: Algorithm) -> dict[str, Any]:
    """The training DSL v2 of FATE's example job for ``algorithm``."""
    recipe = RECIPES[algorithm]
    components: dict[str, Any] = {
        "reader_0": {"module": "Reader", "output": {"data": ["data"]}},
        DATA_TRANSFORM: {
            "module": "DataTransform",
            "input": {"data": {"data": ["reader_0.data"]}},
            "output": {"data": ["data"], "model": [MODEL_ALIAS]},
        },
    }
    upstream = DATA_TRANSFORM
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


BINNING_PARAMETERS: Final[Mapping[str, Any]] = MappingProxyType(
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

SECURE_BOOST_PARAMETERS: Final[Mapping[str, Any]] = MappingProxyType(
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


def model_parameters(spec: ModelSpec) -> dict[str, Any]:
    """The model component's common parameters in the example conf; its Meta buffer echoes them."""
    if spec.algorithm in ("hetero_secureboost", "homo_secureboost"):
        return copy.deepcopy(dict(SECURE_BOOST_PARAMETERS))
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


def job_parameters(spec: ModelSpec, *, initiator_baseline: bool) -> dict[str, Any]:
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
    recipe = RECIPES[spec.algorithm]
    hetero = recipe.hetero
    common: dict[str, Any] = {}
    if hetero:
        common[DATA_TRANSFORM] = {"output_format": "dense"}
        common[INTERSECTION] = {
            "intersect_method": "rsa",
            "rsa_params": {"hash_method": "sha256", "final_hash_method": "sha256", "key_length": 1024},
        }
    else:
        common[DATA_TRANSFORM] = {"with_label": True, "output_format": "dense"}
    if spec.algorithm == "hetero_secureboost":
        common[BINNING] = copy.deepcopy(dict(BINNING_PARAMETERS))
    common[recipe.model_component] = model_parameters(spec)
    common["evaluation_0"] = {"eval_type": "multi" if spec.num_classes > 2 else "binary"}

    role_parameters: dict[str, Any] = {}
    for role in ("guest", "host"):
        per_party: dict[str, Any] = {}
        for index in range(len(spec.roles[role])):
            entry: dict[str, Any] = {"reader_0": {"table": {"name": recipe.tables[role], "namespace": "experiment"}}}
            if hetero:
                entry[DATA_TRANSFORM] = {"with_label": role == "guest"}
            per_party[str(index)] = entry
        role_parameters[role] = per_party

    return {
        "dsl_version": 2,
        "initiator": {"role": spec.initiator_role, "party_id": spec.initiator},
        "role": {role: list(ids) for role, ids in spec.roles.items()},
        "job_parameters": {"common": job_parameters(spec, initiator_baseline=True)},
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


def user_parameters(conf: Mapping[str, Any], component: str, role: str, index: int) -> dict[str, Any]:
    """What the conf specified for ``component`` on one party: common parameters overridden by its role entry."""
    parameters = conf["component_parameters"]
    role_entry = parameters["role"].get(role, {}).get(str(index), {})
    return _merge(parameters["common"].get(component, {}), role_entry.get(component, {}))
