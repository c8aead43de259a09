"""Generated trained FATE models on disk (any size, streamed) and their FATE-Flow-style export archives."""

from fate_registry.fate_models.fate_archive import build_fate_archive, sha256_file
from fate_registry.fate_models.model_factory import read_define_meta, read_pipeline, write_federation, write_party_model
from fate_registry.fate_models.recipes import (
    BUFFER_CLASSES,
    MODEL_ALIAS,
    PIPELINE_ALIAS,
    PIPELINE_COMPONENT,
    PIPELINE_MODEL_NAME,
    PIPELINE_MODULE,
    STEP_NAME,
    Algorithm,
    ModelSpec,
)
from fate_registry.fate_models.train_conf import train_dsl, train_runtime_conf

__all__ = [
    "BUFFER_CLASSES",
    "MODEL_ALIAS",
    "PIPELINE_ALIAS",
    "PIPELINE_COMPONENT",
    "PIPELINE_MODEL_NAME",
    "PIPELINE_MODULE",
    "STEP_NAME",
    "Algorithm",
    "ModelSpec",
    "build_fate_archive",
    "read_define_meta",
    "read_pipeline",
    "sha256_file",
    "train_dsl",
    "train_runtime_conf",
    "write_federation",
    "write_party_model",
]
