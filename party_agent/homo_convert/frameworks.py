"""FATE's target frameworks for homo-convert: names and aliases, defaults by module, file names.

fate_buffers.md §3.1: ``HomoLR`` → sklearn, ``HomoNN`` → pytorch, ``HomoSecureBoost`` (any case)
→ lightgbm; ``tf``/``tensorflow``/``tf_keras``, ``torch``/``pytorch``, ``scikit-learn``/``sklearn``.
The frameworks themselves are the optional extra ``[convert]``, imported only when a conversion runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fate_registry.errors import Reason, RegistryError, Retcode

SKLEARN = "sklearn"
PYTORCH = "pytorch"
LIGHTGBM = "lightgbm"
TF_KERAS = "tf_keras"
EXTRA = "convert"

ALIASES = {
    "sklearn": SKLEARN,
    "scikit-learn": SKLEARN,
    "pytorch": PYTORCH,
    "torch": PYTORCH,
    "lightgbm": LIGHTGBM,
    "tf": TF_KERAS,
    "tensorflow": TF_KERAS,
    "tf_keras": TF_KERAS,
}

# FATE's file names under variables/data/<cpn>/<alias>/converted_model/.
SKLEARN_FILENAME = "sklearn.joblib"
PYTORCH_FILENAME = "pytorch.pth"
LGB_FILENAME = "lgb.txt"
TF_DIRECTORY = "tensorflow_saved_model"
# Ours, beside FATE's state-dict container: the network itself, as a torch.export program.
PYTORCH_MODULE_FILENAME = "pytorch_module.pt2"

#: FATE's default framework of each homo module (lower-cased).
DEFAULT_BY_MODULE = {"homolr": SKLEARN, "homonn": PYTORCH, "homosecureboost": LIGHTGBM}
# Which modules each framework converts (compared case-insensitively, as FATE does).
TARGETS = {SKLEARN: frozenset({"homolr"}), PYTORCH: frozenset({"homonn"}), LIGHTGBM: frozenset({"homosecureboost"})}


def canonical(framework_name: str) -> str:
    """The canonical name of a requested framework ("" stays "": the default by module)."""
    if not framework_name:
        return ""
    name = ALIASES.get(framework_name.strip().lower())
    if name is None:
        raise RegistryError(
            Reason.INVALID_ARGUMENT,
            f'unknown framework_name "{framework_name}": use one of ' + ", ".join(sorted(ALIASES)),
            {"framework_name": framework_name},
            retcode=Retcode.EXCEPTION_ERROR,
        )
    if name == TF_KERAS:
        raise RegistryError(
            Reason.NOT_IMPLEMENTED,
            "converting to TensorFlow/Keras is not supported here: FATE's converter reads only the HomoNN "
            "buffers of FATE 1.7-1.9 and needs TensorFlow; convert HomoNN to pytorch instead",
            {"framework_name": framework_name},
            retcode=Retcode.EXCEPTION_ERROR,
        )
    return name


def target_for(module_name: str, requested: str) -> str:
    """The framework a component of ``module_name`` converts to, or "" when it is not convertible."""
    module = module_name.lower()
    framework = requested or DEFAULT_BY_MODULE.get(module, "")
    return framework if module in TARGETS.get(framework, frozenset()) else ""


@contextlib.contextmanager
def needs(package: str, framework: str) -> Iterator[None]:
    """Import a framework inside this block: a missing one is a clear error naming the extra."""
    try:
        yield
    except ImportError as exc:
        raise RegistryError(
            Reason.NOT_IMPLEMENTED,
            f"converting to {framework} needs the Python package {package}, which this agent does not have: "
            f"install the registry with its [{EXTRA}] extra (pip install 'fate-registry[{EXTRA}]')",
            {"framework_name": framework, "missing": exc.name or package},
            retcode=Retcode.EXCEPTION_ERROR,
        ) from None
