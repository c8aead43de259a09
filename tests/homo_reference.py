"""What a federated homo model predicts, computed from its FATE buffers alone (numpy, float64).

The converted models are checked against these: the arithmetic FATE's own predict runs, written
here independently of the converters.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fate_registry.fate.boosting_tree_model_meta_pb2 import BoostingTreeModelMeta
from fate_registry.fate.boosting_tree_model_param_pb2 import BoostingTreeModelParam
from fate_registry.fate.homo_nn_model_param_pb2 import HomoNNParam
from fate_registry.fate.lr_model_param_pb2 import LRModelParam, SingleModel

Array = npt.NDArray[np.float64]
ROWS = 1000


def rows(features: int, seed: int = 7) -> Array:
    """1,000 generated rows around the models' split points and weights."""
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(ROWS, features))


def _sigmoid(z: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-z))
    return out


def lr_scores(param_path: Path, x: Array) -> Array:
    """w·x + b per row: one column for a binary model, one per class for a one-vs-rest model."""
    param = LRModelParam.FromString(param_path.read_bytes())
    models: list[LRModelParam | SingleModel] = [*param.one_vs_rest_result.completed_models] or [param]
    columns = [x @ np.array([m.weight[h] for h in m.header]) + m.intercept for m in models]
    return np.stack(columns, axis=1)


def lr_ovr_probabilities(scores: Array) -> Array:
    """One-vs-rest: each class's sigmoid, normalised over the classes."""
    s = _sigmoid(scores)
    out: Array = s / s.sum(axis=1, keepdims=True)
    return out


def sigmoid(z: Array) -> Array:
    return _sigmoid(z)


def nn_output(param_path: Path, x: Array) -> Array:
    """Linear → ReLU → Linear → Sigmoid with the trained weights in ``model_bytes``."""
    import torch

    param = HomoNNParam.FromString(param_path.read_bytes())
    state = torch.load(io.BytesIO(param.model_bytes), weights_only=True)["model"]
    w0, b0, w2, b2 = (state[k].double().numpy() for k in ("0.weight", "0.bias", "2.weight", "2.bias"))
    hidden = np.maximum(x @ w0.T + b0, 0.0)
    return _sigmoid(hidden @ w2.T + b2)[:, 0]


def sbt_raw_scores(meta_path: Path, param_path: Path, x: Array) -> Array:
    """init_score + learning_rate x leaf weight over the trees, one column per tree dimension.

    A missing value (NaN) goes the node's ``missing_dir`` way (the models here use missing values)."""
    meta = BoostingTreeModelMeta.FromString(meta_path.read_bytes())
    param = BoostingTreeModelParam.FromString(param_path.read_bytes())
    dim = max(param.tree_dim, 1)
    raw = np.tile(np.array(list(param.init_score), dtype=np.float64), (len(x), 1))
    for index, tree in enumerate(param.trees_):
        nodes = {n.id: n for n in tree.tree_}
        for row in range(len(x)):
            node = nodes[0]
            while not node.is_leaf:
                value = x[row, node.fid]
                left = node.missing_dir == -1 if np.isnan(value) else value <= node.bid
                node = nodes[node.left_nodeid if left else node.right_nodeid]
            raw[row, index % dim] += node.weight * meta.learning_rate
    return raw


def softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out
