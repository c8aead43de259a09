"""Which framework a converted homo model is in, where homo-convert left it, and how KServe serves it.

FATE's names (``fate_buffers.md`` §3, ``fate_flow.md`` §6.14): the default framework by module
(HomoLR → sklearn, HomoNN → pytorch, HomoSecureBoost → lightgbm), the aliases of ``framework_name``,
and the converted files in ``variables/data/<cpn>/<alias>/converted_model/``: ``sklearn.joblib``,
``pytorch.pth``, the directory ``tensorflow_saved_model`` or ``lgb.txt``.

Uploaded names are the ones the KServe model servers look for: ``model.joblib`` (sklearnserver, as
FATE uploads it), ``model.bst`` (lgbserver loads a LightGBM text model under that name, as FATE
uploads it), a SavedModel under the version directory ``1/`` (TF Serving), and the PyTorch file as
``model.pth``.
"""

from __future__ import annotations

from dataclasses import dataclass

from party_agent.homo_deploy.params import invalid

HOMO_MODULES = {"homolr": "sklearn", "homonn": "pytorch", "homosecureboost": "lightgbm"}


@dataclass(frozen=True)
class Framework:
    name: str  # FATE's canonical name
    converted: str  # under converted_model/: a file, or a directory when ``directory``
    uploaded: str  # the name (file) or prefix (directory) under the storage URI
    model_format: str  # KServe's modelFormat name, and KFServing's predictor key
    directory: bool = False


FRAMEWORKS = {
    "sklearn": Framework("sklearn", "sklearn.joblib", "model.joblib", "sklearn"),
    "pytorch": Framework("pytorch", "pytorch.pth", "model.pth", "pytorch"),
    "tf_keras": Framework("tf_keras", "tensorflow_saved_model", "1", "tensorflow", directory=True),
    "lightgbm": Framework("lightgbm", "lgb.txt", "model.bst", "lightgbm"),
}
ALIASES = {
    "sklearn": "sklearn",
    "scikit-learn": "sklearn",
    "pytorch": "pytorch",
    "torch": "pytorch",
    "tf_keras": "tf_keras",
    "tf": "tf_keras",
    "tensorflow": "tf_keras",
    "lightgbm": "lightgbm",
}


def is_homo(module: str) -> bool:
    return module.lower() in HOMO_MODULES


def framework_for(module: str, framework_name: str) -> Framework:
    """``framework_name`` by FATE's aliases, or the module's default when it is empty."""
    if framework_name:
        if framework_name.lower() not in ALIASES:
            raise invalid(
                f"framework_name {framework_name!r} is not supported: use one of {', '.join(sorted(ALIASES))}"
            )
        return FRAMEWORKS[ALIASES[framework_name.lower()]]
    return FRAMEWORKS[HOMO_MODULES[module.lower()]]
