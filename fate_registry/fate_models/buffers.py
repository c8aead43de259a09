"""The protobuf buffers of one party's trained model: LR, DataTransform, binning, SecureBoost trees, Pipeline.

Every value is drawn from a generator seeded by the spec, so the parties of one spec agree.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import Message

from fate_registry.fate import (
    boosting_tree_model_meta_pb2,
    boosting_tree_model_param_pb2,
    data_transform_meta_pb2,
    data_transform_param_pb2,
    feature_binning_meta_pb2,
    feature_binning_param_pb2,
    lr_model_meta_pb2,
    lr_model_param_pb2,
    pipeline_pb2,
)
from fate_registry.fate_models.recipes import RECIPES, ModelSpec
from fate_registry.fate_models.train_conf import (
    BINNING_PARAMETERS,
    SECURE_BOOST_PARAMETERS,
    job_parameters,
    model_parameters,
    train_dsl,
)
from fate_registry.identity import PartyId


def seeded_rng(spec: ModelSpec, *parts: object) -> random.Random:
    """A generator seeded by the spec's seed and a purpose; str seeds hash the same in every process."""
    return random.Random("/".join(str(p) for p in (spec.seed, *parts)))


def feature_names(start: int, count: int) -> list[str]:
    return [f"x{i}" for i in range(start, start + count)]


class FeatureStream:
    """Feature names ``x0, x1, …`` and their final weights, in order, from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.position = 0

    def take(self, count: int) -> tuple[list[str], list[float]]:
        names = feature_names(self.position, count)
        self.position += count
        draw = self._rng.random
        return names, [(draw() - 0.5) * 0.6 for _ in range(count)]


def _loss_curve(rng: random.Random, epochs: int) -> list[float]:
    """A falling logistic loss starting at ln 2 (zero-initialised weights), with a little noise."""
    return [
        0.3 + (math.log(2) - 0.3) * math.exp(-k / 6) + (rng.uniform(-0.002, 0.002) if k else 0.0) for k in range(epochs)
    ]


def lr_meta(spec: ModelSpec, role: str) -> lr_model_meta_pb2.LRModelMeta:
    params = model_parameters(spec)
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


def lr_param(
    spec: ModelSpec, role: str, party_id: PartyId, names: Sequence[str], weights: Sequence[float], epochs: int
) -> lr_model_param_pb2.LRModelParam:
    """The LR Param after ``epochs`` epochs; weights grow linearly towards their final values."""
    scale = epochs / spec.max_iter
    param = lr_model_param_pb2.LRModelParam(need_one_vs_rest=False)
    if spec.algorithm == "hetero_lr":
        param.iters = epochs
        param.best_iteration = -1
        if role == "arbiter":
            param.loss_history.extend(_loss_curve(seeded_rng(spec, "loss", role, party_id), spec.max_iter)[:epochs])
            return param
        if role == "guest":
            param.intercept = (seeded_rng(spec, "intercept", role, party_id).random() - 0.5) * scale
    else:
        losses = _loss_curve(seeded_rng(spec, "loss", role, party_id), spec.max_iter)[:epochs]
        param.loss_history.extend(losses)
        param.iters = len(losses) - 1
        param.best_iteration = losses.index(min(losses))
        param.intercept = (seeded_rng(spec, "intercept").random() - 0.5) * scale
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
    rng = seeded_rng(spec, "one_vs_rest")
    result = param.one_vs_rest_result
    for label in range(spec.num_classes):
        single = result.completed_models.add(iters=param.iters, is_converged=False, best_iteration=param.best_iteration)
        single.loss_history.extend(param.loss_history)
        single.weight.update({n: (w + rng.uniform(-0.5, 0.5)) * scale for n, w in zip(names, weights, strict=True)})
        single.intercept = (rng.random() - 0.5) * scale
        single.header.extend(names)
        result.one_vs_rest_classes.append(str(label))
    return param


def data_transform_buffers(
    spec: ModelSpec, role: str, party_id: PartyId
) -> tuple[data_transform_meta_pb2.DataTransformMeta, data_transform_param_pb2.DataTransformParam]:
    with_label = not RECIPES[spec.algorithm].hetero or role == "guest"
    header = feature_names(0, RECIPES[spec.algorithm].features[role])
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
        adjustment = float(BINNING_PARAMETERS["adjustment_factor"])
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


def feature_binning_buffers(spec: ModelSpec, role: str, party_id: PartyId) -> dict[str, Message]:
    """HeteroFeatureBinning's buffers on a guest or host, fit stage (no ``transform_*`` results).

    The guest bins its own features (split points and IV) and holds, per host, the IV of the host's
    features under their anonymous names; a host holds its own split points only. Each result
    carries its party's role and party id; ``host_party_ids`` lists every host on both sides.
    """
    header = feature_names(0, RECIPES[spec.algorithm].features[role])
    params = BINNING_PARAMETERS
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
    rng = seeded_rng(spec, "binning", role, party_id)
    own = feature_binning_param_pb2.FeatureBinningResult(role=role, party_id=str(party_id))
    for name in header:
        own.binning_result[name].CopyFrom(_iv_param(rng, bins, split_points=True, woe=is_guest))
    host_results = []
    if is_guest:
        for host in spec.roles["host"]:
            result = feature_binning_param_pb2.FeatureBinningResult(role="host", party_id=str(host))
            for name in feature_names(0, RECIPES[spec.algorithm].features["host"]):
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
    params = SECURE_BOOST_PARAMETERS
    depth = int(params["tree_param"]["max_depth"])
    features = RECIPES[spec.algorithm].features
    guest = ("guest", spec.roles["guest"][0])
    hosts = [("host", host) for host in spec.roles["host"]]
    rng = seeded_rng(spec, "boosting_trees")
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


def decision_tree_meta() -> boosting_tree_model_meta_pb2.DecisionTreeModelMeta:
    """The tree parameters of both SecureBoosts (FATE's defaults, the example's depth), as their Meta holds them."""
    return boosting_tree_model_meta_pb2.DecisionTreeModelMeta(
        criterion_meta=boosting_tree_model_meta_pb2.CriterionMeta(criterion_method="xgboost", criterion_param=[0.1, 0]),
        max_depth=SECURE_BOOST_PARAMETERS["tree_param"]["max_depth"],
        min_sample_split=2,
        min_impurity_split=0.001,
        min_leaf_node=1,
        use_missing=False,
        zero_as_missing=False,
    )


def secure_boost_buffers(
    spec: ModelSpec, role: str, party_id: PartyId
) -> tuple[boosting_tree_model_meta_pb2.BoostingTreeModelMeta, boosting_tree_model_param_pb2.BoostingTreeModelParam]:
    """HeteroSecureBoost's Meta and Param on a guest or host (fate_buffers.md §1.8, §4.3)."""
    params = SECURE_BOOST_PARAMETERS
    is_guest = role == "guest"
    meta = boosting_tree_model_meta_pb2.BoostingTreeModelMeta(
        tree_meta=decision_tree_meta(),
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
    names = feature_names(0, RECIPES[spec.algorithm].features[role])
    param.feature_name_fid_mapping.update(enumerate(names))
    if is_guest:
        event_total, non_event_total = _BREAST_LABELS
        param.init_score.append(round(math.log(event_total / non_event_total), 6))
        rng = seeded_rng(spec, "boosting_losses")
        param.losses.extend(round(0.12 + 0.45 * 0.7**k + rng.uniform(-0.003, 0.003), 6) for k in range(param.tree_num))
        param.tree_dim, param.num_classes = 1, 2
        param.classes_.extend(["0", "1"])
    else:
        param.anonymous_name_mapping.update({f"host_{party_id}_{name}": name for name in names})
    return meta, param


def pipeline_buffer(spec: ModelSpec, role: str, party_id: PartyId, conf: Mapping[str, Any]) -> pipeline_pb2.Pipeline:
    """The Pipeline FATE-Flow saves at the end of a training job, as fate_flow.md §2.4 describes it."""
    dsl = train_dsl(spec.algorithm)
    inference_dsl = copy.deepcopy(dsl)
    for component, code_path in RECIPES[spec.algorithm].code_paths[role].items():
        inference_dsl["components"][component]["CodePath"] = code_path
    on_party = copy.deepcopy(dict(conf))
    is_initiator = role == spec.initiator_role and party_id == spec.initiator
    on_party["job_parameters"] = job_parameters(spec, initiator_baseline=is_initiator)
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
