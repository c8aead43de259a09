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

from party_agent.homo_convert.frameworks import (
    ALIASES,
    DEFAULT_BY_MODULE,
    LGB_FILENAME,
    LIGHTGBM,
    PYTORCH,
    PYTORCH_FILENAME,
    SKLEARN,
    SKLEARN_FILENAME,
    TF_DIRECTORY,
    TF_KERAS,
)
from party_agent.homo_deploy.params import invalid


@dataclass(frozen=True)
class Framework:
    """A framework a homo model may be served in: where its converted files are and how KServe names it."""

    name: str  # FATE's canonical name
    converted: str  # under converted_model/: a file, or a directory when ``directory``
    uploaded: str  # the name (file) or prefix (directory) under the storage URI
    model_format: str  # KServe's modelFormat name, and KFServing's predictor key
    directory: bool = False


FRAMEWORKS = {
    SKLEARN: Framework(SKLEARN, SKLEARN_FILENAME, "model.joblib", "sklearn"),
    PYTORCH: Framework(PYTORCH, PYTORCH_FILENAME, "model.pth", "pytorch"),
    TF_KERAS: Framework(TF_KERAS, TF_DIRECTORY, "1", "tensorflow", directory=True),
    LIGHTGBM: Framework(LIGHTGBM, LGB_FILENAME, "model.bst", "lightgbm"),
}


def is_homo(module: str) -> bool:
    """Whether FATE's ``module`` is a homo module homo-deploy can serve."""
    return module.lower() in DEFAULT_BY_MODULE


def framework_for(module: str, framework_name: str) -> Framework:
    """``framework_name`` by FATE's aliases, or the module's default when it is empty."""
    if framework_name:
        if framework_name.lower() not in ALIASES:
            raise invalid(
                f"framework_name {framework_name!r} is not supported: use one of {', '.join(sorted(ALIASES))}"
            )
        return FRAMEWORKS[ALIASES[framework_name.lower()]]
    return FRAMEWORKS[DEFAULT_BY_MODULE[module.lower()]]
