"""Buffers of FATE 1.11's HomoNN and HomoSecureBoost components with known weights, for the model factory.

Homo training ends with one global model that every client (guest and host) holds, so every
client's buffers here come from one generator. The values are drawn at random but stored exactly,
so a test can compute from the buffers alone what the federated model predicts.

HomoNN (fate_buffers.md §1.9, §4.3): a Sequential ``Linear(30, 8) → ReLU → Linear(8, 1) → Sigmoid``
described by ``nn_define`` as FATE's pipeline writes it, trained weights in ``model_bytes`` as
``torch.save({"model": state_dict, "optimizer": Adam's state dict})``; the server (arbiter) holds
FATE's "empty" export (``{"model": None, "optimizer": None}``, epochs -1, metas ``["null"]``).

HomoSecureBoost (§1.8): full trees, node ids in BFS order, sitenames the client's role,
real thresholds in ``bid``, leaf weights not yet multiplied by the learning rate, ``leaf_count``
filled; one tree per class per round when there are more than two classes (``tree_dim``), an
``init_score`` per class.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
from collections import OrderedDict
from typing import Any, Final

from google.protobuf.message import Message

from fate_registry.fate import (
    boosting_tree_model_meta_pb2,
    boosting_tree_model_param_pb2,
    homo_nn_model_meta_pb2,
    homo_nn_model_param_pb2,
)

NN_FEATURES: Final = 30
NN_HIDDEN: Final = 8
NN_EPOCHS: Final = 20
SBT_LEARNING_RATE: Final = 0.3
SBT_TREES: Final = 5

_NN_DEFINE: Final[dict[str, Any]] = {
    "0-0": {
        "bias": True,
        "device": None,
        "dtype": None,
        "in_features": NN_FEATURES,
        "out_features": NN_HIDDEN,
        "layer": "Linear",
        "initializer": {},
    },
    "1-1": {"layer": "ReLU", "initializer": {}},
    "2-2": {
        "bias": True,
        "device": None,
        "dtype": None,
        "in_features": NN_HIDDEN,
        "out_features": 1,
        "layer": "Linear",
        "initializer": {},
    },
    "3-3": {"layer": "Sigmoid", "initializer": {}},
}
_NN_OPTIMIZER: Final = {
    "lr": 0.01,
    "betas": [0.9, 0.999],
    "eps": 1e-08,
    "weight_decay": 0,
    "amsgrad": False,
    "optimizer": "Adam",
    "config_type": "pytorch",
}
_NN_LOSS: Final = {"size_average": None, "reduce": None, "reduction": "mean", "loss_fn": "BCELoss"}


def nn_define() -> dict[str, Any]:
    """The ``nn_define`` of the conf (and, as JSON, of ``HomoNNMeta``)."""
    return copy.deepcopy(_NN_DEFINE)


def _torch_bytes(value: Any) -> bytes:
    import torch

    out = io.BytesIO()
    torch.save(value, out)
    return out.getvalue()


def homo_nn(rng: random.Random, trained: bool) -> dict[str, Message]:
    """HomoNN's Meta and Param: a client's trained model, or the server's empty export."""
    if not trained:
        meta = homo_nn_model_meta_pb2.HomoNNMeta(
            nn_define=["null"], optimizer_define=["null"], loss_func_define=["null"]
        )
        param = homo_nn_model_param_pb2.HomoNNParam(
            model_bytes=_torch_bytes({"model": None, "optimizer": None}),
            extra_data_bytes=_torch_bytes({}),
            epoch_idx=-1,
            best_epoch=-1,
        )
        return {"HomoNNMeta": meta, "HomoNNParam": param}
    import torch

    def tensor(*shape: int) -> torch.Tensor:
        count = math.prod(shape)
        return torch.tensor([rng.uniform(-0.5, 0.5) for _ in range(count)], dtype=torch.float32).reshape(shape)

    state = OrderedDict(
        [
            ("0.weight", tensor(NN_HIDDEN, NN_FEATURES)),
            ("0.bias", tensor(NN_HIDDEN)),
            ("2.weight", tensor(1, NN_HIDDEN)),
            ("2.bias", tensor(1)),
        ]
    )
    optimizer = {
        "state": {i: {"step": torch.tensor(float(NN_EPOCHS))} for i in range(len(state))},
        "param_groups": [
            {
                "lr": 0.01,
                "betas": (0.9, 0.999),
                "eps": 1e-08,
                "weight_decay": 0,
                "amsgrad": False,
                "params": list(range(len(state))),
            }
        ],
    }
    losses = [0.69 * 0.9**k + rng.uniform(0, 0.002) for k in range(NN_EPOCHS)]
    meta = homo_nn_model_meta_pb2.HomoNNMeta(
        nn_define=[json.dumps(_NN_DEFINE)],
        optimizer_define=[json.dumps(_NN_OPTIMIZER)],
        loss_func_define=[json.dumps(_NN_LOSS)],
    )
    param = homo_nn_model_param_pb2.HomoNNParam(
        model_bytes=_torch_bytes({"model": state, "optimizer": optimizer}),
        extra_data_bytes=_torch_bytes({}),
        epoch_idx=NN_EPOCHS - 1,
        converge_status=False,
        loss_history=losses,
        best_epoch=losses.index(min(losses)),
    )
    return {"HomoNNMeta": meta, "HomoNNParam": param}


def homo_secureboost(
    rng: random.Random,
    role: str,
    features: int,
    num_classes: int,
    tree_meta: boosting_tree_model_meta_pb2.DecisionTreeModelMeta,
) -> dict[str, Message]:
    """HomoSecureBoost's Meta and Param of a client (guest and host both use the "Guest" keys);
    the trees are full to ``tree_meta.max_depth``."""
    depth = tree_meta.max_depth
    meta = boosting_tree_model_meta_pb2.BoostingTreeModelMeta(
        tree_meta=tree_meta,
        learning_rate=SBT_LEARNING_RATE,
        num_trees=SBT_TREES,
        quantile_meta=boosting_tree_model_meta_pb2.QuantileMeta(quantile_method="bin_by_sample_data", bin_num=32),
        objective_meta=boosting_tree_model_meta_pb2.ObjectiveMeta(objective="cross_entropy"),
        task_type="classification",
        n_iter_no_change=True,
        tol=0.0001,
        module="HomoSecureBoost",
        boosting_strategy="std",
    )
    tree_dim = num_classes if num_classes > 2 else 1
    param = boosting_tree_model_param_pb2.BoostingTreeModelParam(
        tree_num=SBT_TREES * tree_dim,
        tree_dim=tree_dim,
        num_classes=num_classes,
        classes_=[str(c) for c in range(num_classes)],
        best_iteration=-1,
        model_name="homo_sbt",
    )
    param.init_score.extend(rng.uniform(-1.0, 1.0) for _ in range(tree_dim))
    param.losses.extend(0.12 + 0.45 * 0.7**k for k in range(SBT_TREES))
    splits: dict[int, int] = {}
    internal = 2**depth - 1
    for _ in range(SBT_TREES * tree_dim):
        tree = param.trees_.add()
        for node_id in range(internal):
            fid = rng.randrange(features)
            splits[fid] = splits.get(fid, 0) + 1
            tree.tree_.add(
                id=node_id,
                sitename=role,
                fid=fid,
                bid=rng.uniform(-1.5, 1.5),
                weight=rng.uniform(-0.6, 0.6),
                left_nodeid=2 * node_id + 1,
                right_nodeid=2 * node_id + 2,
                missing_dir=rng.choice((-1, 1)),
            )
        for leaf in range(internal + 1):
            node_id = internal + leaf
            tree.tree_.add(
                id=node_id,
                sitename=role,
                fid=-1,
                bid=-1,
                weight=rng.uniform(-1.2, 1.2),
                is_leaf=True,
                left_nodeid=-1,
                right_nodeid=-1,
                missing_dir=1,
            )
            tree.leaf_count[node_id] = rng.randrange(0, 60)
    for fid, count in sorted(splits.items(), key=lambda kv: -kv[1]):
        param.feature_importances.add(sitename=role, fid=fid, fullname=f"x{fid}", importance=count, main="split")
    param.feature_name_fid_mapping.update({i: f"x{i}" for i in range(features)})
    return {"HomoSecureBoostingTreeGuestMeta": meta, "HomoSecureBoostingTreeGuestParam": param}
