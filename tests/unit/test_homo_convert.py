"""The homo-convert converters on generated buffers, without servers: names, defaults, FATE's bugs fixed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import lightgbm
import numpy as np
import pytest

from fate_registry.errors import Reason, RegistryError
from fate_registry.fate.boosting_tree_model_meta_pb2 import DecisionTreeModelMeta
from fate_registry.fate.boosting_tree_model_param_pb2 import BoostingTreeModelParam
from fate_registry.fate.homo_nn_model_meta_pb2 import HomoNNMeta
from fate_registry.fate.lr_model_param_pb2 import LRModelParam
from fate_registry.fate_models import ModelSpec, homo_models, write_party_model
from party_agent.homo_convert import lightgbm_sbt, pytorch_nn, sklearn_lr
from party_agent.homo_convert.buffers import ComponentModel
from party_agent.homo_convert.frameworks import canonical, needs, target_for
from tests import homo_reference as ref


@pytest.mark.parametrize(
    ("name", "expected"),
    [("", ""), ("sklearn", "sklearn"), ("scikit-learn", "sklearn"), ("torch", "pytorch"), ("LightGBM", "lightgbm")],
)
def test_framework_aliases_are_fates(name: str, expected: str) -> None:
    assert canonical(name) == expected


@pytest.mark.parametrize(("name", "reason"), [("xgboost", Reason.INVALID_ARGUMENT), ("tf", Reason.NOT_IMPLEMENTED)])
def test_unknown_and_tensorflow_frameworks_are_refused(name: str, reason: Reason) -> None:
    with pytest.raises(RegistryError) as refused:
        canonical(name)
    assert refused.value.reason is reason and refused.value.fate_retcode == 100


def test_default_framework_by_module_as_fate_chooses() -> None:
    assert target_for("HomoLR", "") == "sklearn"
    assert target_for("HomoNN", "") == "pytorch"
    assert target_for("HomoSecureboost", "") == "lightgbm"  # FATE's alias spelling, compared case-insensitively
    assert target_for("HeteroLR", "") == ""
    assert target_for("HomoNN", "sklearn") == ""  # a framework that does not convert the module skips it


def test_a_missing_framework_names_the_extra() -> None:
    with pytest.raises(RegistryError) as missing, needs("not-a-package", "sklearn"):
        import not_a_package_of_this_machine  # type: ignore[import-not-found]  # noqa: F401
    assert missing.value.reason is Reason.NOT_IMPLEMENTED
    assert "[convert]" in missing.value.message and "not-a-package" in missing.value.message


def _sbt(num_classes: int) -> ComponentModel:
    tree_meta = DecisionTreeModelMeta(max_depth=3, use_missing=True)  # missing values go to missing_dir
    buffers = homo_models.homo_secureboost(random.Random(3), "guest", 30, num_classes, tree_meta)
    return ComponentModel(
        "homo_secureboost_0", "model", "HomoSecureBoost", {k: v.SerializeToString() for k, v in buffers.items()}
    )


def test_trees_are_read_by_node_id_and_the_buffer_is_not_changed(tmp_path: Path) -> None:
    """FATE's converter needs node id == list position and rewrites leaf counts of 0 in the message."""
    model = _sbt(2)
    param = BoostingTreeModelParam.FromString(model.buffers[lightgbm_sbt.PARAM])
    for tree in param.trees_:  # the nodes stored in reverse: the root last
        tree.leaf_count[tree.tree_[-1].id] = 0
        nodes = list(tree.tree_)
        del tree.tree_[:]
        tree.tree_.extend(reversed(nodes))
    shuffled_bytes = param.SerializeToString()
    shuffled = ComponentModel(
        model.component, model.alias, model.module, {**model.buffers, lightgbm_sbt.PARAM: shuffled_bytes}
    )
    (path,) = lightgbm_sbt.convert(shuffled, tmp_path)
    assert shuffled.buffers[lightgbm_sbt.PARAM] == shuffled_bytes
    for name, data in model.buffers.items():
        (tmp_path / name).write_bytes(data)
    x = ref.rows(30)
    x[::7, ::3] = np.nan
    raw = ref.sbt_raw_scores(tmp_path / lightgbm_sbt.META, tmp_path / lightgbm_sbt.PARAM, x)
    booster = lightgbm.Booster(model_file=str(path))
    assert np.abs(np.asarray(booster.predict(x, raw_score=True)) - raw[:, 0]).max() <= 1e-6


def test_homo_lr_weight_missing_from_the_header_is_an_error(tmp_path: Path) -> None:
    """FATE reads a missing weight as 0.0 and carries on."""
    version = write_party_model(tmp_path / "cache", ModelSpec(algorithm="homo_lr"), "guest", 9999)
    directory = version / "variables/data/homo_lr_0/model"
    buffers = {name: (directory / name).read_bytes() for name in (sklearn_lr.META, sklearn_lr.PARAM)}
    param = LRModelParam.FromString(buffers[sklearn_lr.PARAM])
    del param.weight["x7"]
    model = ComponentModel("homo_lr_0", "model", "HomoLR", {**buffers, sklearn_lr.PARAM: param.SerializeToString()})
    (tmp_path / "out").mkdir()
    with pytest.raises(RegistryError) as failed:
        sklearn_lr.convert(model, tmp_path / "out")
    assert "no weight for feature x7" in failed.value.message
    assert not list((tmp_path / "out").iterdir())


def test_homo_nn_weights_that_do_not_fit_nn_define_are_an_error(tmp_path: Path) -> None:
    buffers = homo_models.homo_nn(random.Random(5), trained=True)
    meta = HomoNNMeta.FromString(buffers["HomoNNMeta"].SerializeToString())
    define = homo_models.nn_define()
    define["0-0"]["in_features"] = 31
    meta.nn_define[0] = json.dumps(define)
    data = {"HomoNNMeta": meta.SerializeToString(), "HomoNNParam": buffers["HomoNNParam"].SerializeToString()}
    with pytest.raises(RegistryError) as failed:
        pytorch_nn.convert(ComponentModel("homo_nn_0", "model", "HomoNN", data), tmp_path)
    assert "do not fit the network of its nn_define" in failed.value.message
    assert not list(tmp_path.iterdir())
