"""HomoSecureBoost → a LightGBM model (fate_buffers.md §3.5), with FATE's bugs fixed.

The text model is FATE's: same header, trees, feature importances and parameters. Fixed here:
the classification ``init_score`` (one per class) is folded into the leaves of the first
iteration's trees, as FATE already does for regression, so raw scores and probabilities equal the
federated model's; nodes are found by id, not by list position (the root is the node no other
node points to); the message is never modified (FATE bumps leaf counts of 0 to 1 in the buffer
itself; here only in the text).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fate_registry.fate.boosting_tree_model_meta_pb2 import BoostingTreeModelMeta
from fate_registry.fate.boosting_tree_model_param_pb2 import BoostingTreeModelParam, DecisionTreeModelParam, NodeParam
from party_agent.homo_convert.buffers import ComponentModel
from party_agent.homo_convert.frameworks import LGB_FILENAME, LIGHTGBM, needs

META = "HomoSecureBoostingTreeGuestMeta"
PARAM = "HomoSecureBoostingTreeGuestParam"


def _line(values: Sequence[object]) -> str:
    return " ".join(str(v) for v in values)


@dataclass
class _Tree:
    """One tree in LightGBM's numbering: internal nodes 0.. (root first), leaves ~0, ~1, ..."""

    split_feature: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    decision_type: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    internal_value: list[float] = field(default_factory=list)
    internal_count: list[int] = field(default_factory=list)
    leaf_value: list[float] = field(default_factory=list)
    leaf_count: list[int] = field(default_factory=list)


def _decision_type(meta: BoostingTreeModelMeta, node: NodeParam) -> int:
    tree_meta = meta.tree_meta
    if not tree_meta.use_missing:
        return 0
    default_left = 2 if node.missing_dir == -1 else 0
    return default_left | (4 if tree_meta.zero_as_missing else 8)


def _tree(model: ComponentModel, meta: BoostingTreeModelMeta, tree: DecisionTreeModelParam, offset: float) -> _Tree:
    nodes = {node.id: node for node in tree.tree_}
    children = {i for n in tree.tree_ if not n.is_leaf for i in (n.left_nodeid, n.right_nodeid)}
    roots = [node for node in tree.tree_ if node.id not in children]
    if len(roots) != 1:
        raise model.error("has a tree without a single root node")
    root = roots[0]
    counts = dict(tree.leaf_count)
    out = _Tree()
    if root.is_leaf:
        out.leaf_value.append(root.weight * meta.learning_rate + offset)
        out.leaf_count.append(max(counts.get(root.id, 1), 1))
        return out
    internal_index: dict[int, int] = {}
    order: deque[NodeParam] = deque([root])
    visited: list[NodeParam] = []
    while order:  # breadth first: internal nodes get 0, 1, ... in that order, the root first
        node = order.popleft()
        internal_index[node.id] = len(visited)
        visited.append(node)
        for child_id in (node.left_nodeid, node.right_nodeid):
            child = nodes.get(child_id)
            if child is None:
                raise model.error(f"has a tree whose node {node.id} points to a missing node {child_id}")
            if not child.is_leaf:
                order.append(child)
        if len(visited) > len(nodes):
            raise model.error("has a tree with a cycle")

    def count(node: NodeParam) -> int:
        if node.is_leaf:
            return max(counts.get(node.id, 1), 1)
        return count(nodes[node.left_nodeid]) + count(nodes[node.right_nodeid])

    for node in visited:
        out.split_feature.append(node.fid)
        out.threshold.append(node.bid)
        out.decision_type.append(_decision_type(meta, node))
        out.internal_value.append(node.weight)
        out.internal_count.append(count(node))
        for child_id, side in ((node.left_nodeid, out.left), (node.right_nodeid, out.right)):
            child = nodes[child_id]
            if child.is_leaf:
                side.append(~len(out.leaf_value))
                out.leaf_value.append(child.weight * meta.learning_rate + offset)
                out.leaf_count.append(max(counts.get(child.id, 1), 1))
            else:
                side.append(internal_index[child.id])
    return out


def model_text(model: ComponentModel) -> str:
    """The LightGBM text model of a HomoSecureBoost component."""
    meta = model.parse(META, BoostingTreeModelMeta)
    param = model.parse(PARAM, BoostingTreeModelParam)
    if not len(param.trees_):
        raise model.error("holds no trees (was it trained?)")
    classification = meta.task_type == "classification"
    num_class = len(param.classes_) if len(param.classes_) > 2 else 1
    tree_dim = max(param.tree_dim, 1)
    if classification:
        objective = "binary sigmoid:1" if num_class == 1 else f"multiclass num_class:{num_class}"
    else:
        objective = "regression"
    names = dict(param.feature_name_fid_mapping)
    width = max([*names, *(n.fid for t in param.trees_ for n in t.tree_ if not n.is_leaf), -1]) + 1
    feature_names = [names.get(i, f"Column_{i}").replace(" ", "-") for i in range(width)]
    lines = [
        "tree",
        "version=v3",
        f"num_class={num_class}",
        f"num_tree_per_iteration={tree_dim}",
        "label_index=0",
        f"max_feature_idx={width - 1}",
        f"objective={objective}",
        f"feature_names={_line(feature_names)}",
        f"feature_infos={_line(['[0:1]'] * width)}",
        "",
    ]
    init_scores = list(param.init_score)
    for index, tree in enumerate(param.trees_):
        # The first iteration's tree of each class carries that class's initial score.
        offset = init_scores[index] if index < tree_dim and index < len(init_scores) else 0.0
        t = _tree(model, meta, tree, offset)
        lines += [f"Tree={index}", f"num_leaves={len(t.leaf_value)}", "num_cat=0"]
        if t.split_feature:
            lines += [
                f"split_feature={_line(t.split_feature)}",
                f"threshold={_line(t.threshold)}",
                f"decision_type={_line(t.decision_type)}",
                f"left_child={_line(t.left)}",
                f"right_child={_line(t.right)}",
            ]
        lines.append(f"leaf_value={_line(t.leaf_value)}")
        if len(tree.leaf_count):
            lines.append(f"leaf_count={_line(t.leaf_count)}")
        if t.split_feature:
            lines.append(f"internal_value={_line(t.internal_value)}")
            if len(tree.leaf_count):
                lines.append(f"internal_count={_line(t.internal_count)}")
        lines += [f"shrinkage={meta.learning_rate}", ""]
    lines += ["end of trees", "", "feature_importances:"]
    for importance in param.feature_importances:
        value = int(importance.importance) if importance.main == "split" else importance.importance
        lines.append(f"{names.get(importance.fid, f'Column_{importance.fid}')}={value}")
    tree_meta = meta.tree_meta
    criterion = [*tree_meta.criterion_meta.criterion_param, 0.0, 0.0]
    parameters = {
        "boosting": "gbdt",
        "objective": objective.split()[0],
        "num_iterations": meta.num_trees,
        "learning_rate": meta.learning_rate,
        "max_depth": tree_meta.max_depth,
        "max_bin": meta.quantile_meta.bin_num,
        "use_missing": int(tree_meta.use_missing),
        "zero_as_missing": int(tree_meta.zero_as_missing),
        "num_class": num_class,
        "lambda_l1": criterion[0],
        "lambda_l2": criterion[1],
        "min_data_in_leaf": tree_meta.min_leaf_node,
        "min_gain_to_split": tree_meta.min_impurity_split,
    }
    lines += ["", "parameters:", *(f"[{key}: {value}]" for key, value in parameters.items()), "end of parameters"]
    lines += ["", "pandas_categorical:[]", ""]
    return "\n".join(lines)


def convert(model: ComponentModel, directory: Path) -> list[Path]:
    """Write a HomoSecureBoost model as a LightGBM model file in ``directory``; the files written."""
    text = model_text(model)
    with needs("lightgbm", LIGHTGBM):
        import lightgbm
    try:
        booster = lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError:
        raise model.error("does not make a valid LightGBM model") from None
    path = directory / LGB_FILENAME
    path.write_text(booster.model_to_string(), encoding="utf-8")
    return [path]
