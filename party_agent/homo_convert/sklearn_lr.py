"""HomoLR → scikit-learn (fate_buffers.md §3.2), with FATE's bugs fixed.

FATE builds one binary ``LogisticRegression`` from the top-level weights whatever the model is, so a
one-vs-rest model (whose per-class models sit in ``one_vs_rest_result``) silently becomes all zeros,
and ``classes_`` is always ``[0, 1]``. Here a binary model becomes a ``LogisticRegression`` and a
one-vs-rest model a ``OneVsRestClassifier`` of one binary ``LogisticRegression`` per class, with the
model's own class labels; a weight missing for a header feature is an error, not a silent 0.
Coefficients are in header order: the converted model expects its columns in that order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fate_registry.fate.lr_model_meta_pb2 import LRModelMeta
from fate_registry.fate.lr_model_param_pb2 import LRModelParam, SingleModel
from party_agent.homo_convert.buffers import ComponentModel
from party_agent.homo_convert.frameworks import SKLEARN, SKLEARN_FILENAME, needs

META = "HomoLogisticRegressionMeta"
PARAM = "HomoLogisticRegressionParam"


def _labels(classes: Sequence[str]) -> list[Any]:
    """FATE keeps class labels as strings; numeric ones become numbers again, as they were trained."""
    try:
        numbers = [float(c) for c in classes]
    except ValueError:
        return list(classes)
    return [int(n) if n.is_integer() else n for n in numbers]


def _coefficients(model: ComponentModel, single: LRModelParam | SingleModel, what: str) -> list[float]:
    missing = [name for name in single.header if name not in single.weight]
    if missing:
        raise model.error(f"has no weight for feature {missing[0]} of its header ({what})")
    if not single.header:
        raise model.error(f"holds no trained weights ({what})")
    return [single.weight[name] for name in single.header]


def _estimator(meta: LRModelMeta, iters: int) -> Any:
    with needs("scikit-learn", SKLEARN):
        from sklearn.linear_model import LogisticRegression
    penalty = meta.penalty.upper()
    options: dict[str, Any] = {"tol": meta.tol, "fit_intercept": meta.fit_intercept, "max_iter": int(meta.max_iter)}
    if penalty == "L1":
        options.update(l1_ratio=1.0, solver="saga")
    elif penalty == "NONE":
        options["C"] = math.inf
    estimator = LogisticRegression(**options)
    estimator.n_iter_ = [iters]
    return estimator


def _binary(model: ComponentModel, meta: LRModelMeta, single: LRModelParam | SingleModel, what: str) -> Any:
    """A fitted binary ``LogisticRegression``: a binary HomoLR, or one class of a one-vs-rest model."""
    with needs("numpy", SKLEARN):
        import numpy as np
    estimator = _estimator(meta, single.iters)
    estimator.coef_ = np.array([_coefficients(model, single, what)])
    estimator.intercept_ = np.array([single.intercept])
    estimator.classes_ = np.array([0, 1])  # binary HomoLR trains on labels 0 and 1, as does each class model
    estimator.n_features_in_ = len(single.header)
    return estimator


def convert(model: ComponentModel, directory: Path) -> list[Path]:
    """Write a homo logistic regression as a scikit-learn model saved with joblib; the files written."""
    meta = model.parse(META, LRModelMeta)
    param = model.parse(PARAM, LRModelParam)
    ovr = param.one_vs_rest_result
    converted: Any
    if param.need_one_vs_rest or meta.need_one_vs_rest or len(ovr.completed_models):
        classes = _labels(list(ovr.one_vs_rest_classes))
        if len(classes) != len(ovr.completed_models) or len(classes) < 3:
            raise model.error(
                f"is one-vs-rest but holds {len(ovr.completed_models)} class models for {len(classes)} classes"
            )
        with needs("scikit-learn", SKLEARN):
            from sklearn.multiclass import OneVsRestClassifier
            from sklearn.preprocessing import LabelBinarizer
        estimators = [
            _binary(model, meta, single, f"class {label}")
            for label, single in zip(classes, ovr.completed_models, strict=True)
        ]
        converted = OneVsRestClassifier(_estimator(meta, param.iters))
        converted.estimators_ = estimators
        converted.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(classes)
        converted.classes_ = converted.label_binarizer_.classes_
        converted.n_features_in_ = estimators[0].n_features_in_
    else:
        converted = _binary(model, meta, param, "binary model")
    with needs("joblib", SKLEARN):
        import joblib
    path = directory / SKLEARN_FILENAME
    joblib.dump(converted, path)
    return [path]
