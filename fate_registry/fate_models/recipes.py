"""FATE 1.11's example training jobs, per algorithm, and the spec a federation's model is written from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, cast

from google.protobuf.message import Message

from fate_registry.fate import (
    boosting_tree_model_meta_pb2,
    boosting_tree_model_param_pb2,
    data_transform_meta_pb2,
    data_transform_param_pb2,
    default_empty_fill_pb2,
    feature_binning_meta_pb2,
    feature_binning_param_pb2,
    feature_selection_meta_pb2,
    feature_selection_param_pb2,
    homo_nn_model_meta_pb2,
    homo_nn_model_param_pb2,
    lr_model_meta_pb2,
    lr_model_param_pb2,
    pearson_model_meta_pb2,
    pearson_model_param_pb2,
    pipeline_pb2,
)
from fate_registry.fate_models import homo_models
from fate_registry.identity import PartyId, gen_model_id, job_ids, party_model_id

Algorithm = Literal["hetero_lr", "homo_lr", "hetero_secureboost", "homo_nn", "homo_secureboost"]

PIPELINE_COMPONENT: Final = "pipeline"
PIPELINE_ALIAS: Final = "pipeline"
PIPELINE_MODULE: Final = "Pipeline"
PIPELINE_MODEL_NAME: Final = "Pipeline"
MODEL_ALIAS: Final = "model"
STEP_NAME: Final = "step_name"
"""ModelBase's default step name, which FATE's ModelCheckpoint callback uses for every step."""

BUFFER_CLASSES: Final[Mapping[str, type[Message]]] = MappingProxyType(
    {
        cls.DESCRIPTOR.name: cls
        for cls in (
            pipeline_pb2.Pipeline,
            lr_model_meta_pb2.LRModelMeta,
            lr_model_param_pb2.LRModelParam,
            data_transform_meta_pb2.DataTransformMeta,
            data_transform_param_pb2.DataTransformParam,
            default_empty_fill_pb2.DefaultEmptyFillMessage,
            feature_binning_meta_pb2.FeatureBinningMeta,
            feature_binning_param_pb2.FeatureBinningParam,
            feature_selection_meta_pb2.FeatureSelectionMeta,
            feature_selection_param_pb2.FeatureSelectionParam,
            boosting_tree_model_meta_pb2.BoostingTreeModelMeta,
            boosting_tree_model_param_pb2.BoostingTreeModelParam,
            pearson_model_meta_pb2.PearsonModelMeta,
            pearson_model_param_pb2.PearsonModelParam,
            homo_nn_model_meta_pb2.HomoNNMeta,
            homo_nn_model_param_pb2.HomoNNParam,
        )
    }
)
"""Buffer class name, as recorded in the proto index, → generated class (FATE looks classes up by name)."""

_DEFAULT_ROLES: Final[Mapping[str, tuple[PartyId, ...]]] = {"guest": (9999,), "host": (10000,), "arbiter": (10000,)}
_DEFAULT_MAX_ITER: Final = 30
DATA_TRANSFORM: Final = "data_transform_0"
DATA_TRANSFORM_ROLES: Final = frozenset({"guest", "host"})
INTERSECTION: Final = "intersection_0"
BINNING: Final = "hetero_feature_binning_0"
SECURE_BOOST: Final = "hetero_secure_boost_0"
GROWING_ROLES: Final = frozenset({"guest", "host"})


@dataclass(frozen=True)
class Recipe:
    """What one algorithm's training job looks like in FATE 1.11."""

    model_component: str
    model_module: str
    upstream: tuple[tuple[str, str], ...]
    """(component, module) of the stages between DataTransform and the model component, each feeding the next."""
    model_roles: frozenset[str]
    """Roles whose model ``export_model`` is non-empty, hence that hold its buffers (and LR checkpoints)."""
    model_names: Mapping[str, tuple[str, str]]
    """role → (Meta key, Param key) of the model component in the proto index."""
    code_paths: Mapping[str, Mapping[str, str]]
    """role → component → run class, the ``CodePath`` FATE-Flow fills into the inference DSL."""
    features: Mapping[str, int]
    tables: Mapping[str, str]

    @property
    def is_lr(self) -> bool:
        return self.model_module in ("HeteroLR", "HomoLR")

    @property
    def hetero(self) -> bool:
        return not self.model_module.startswith("Homo")


def _same_keys(meta: str, param: str) -> Mapping[str, tuple[str, str]]:
    return {role: (meta, param) for role in ("guest", "host", "arbiter")}


_HETERO_TABLES: Final = {"guest": "breast_hetero_guest", "host": "breast_hetero_host"}
_HOMO_TABLES: Final = {"guest": "breast_homo_guest", "host": "breast_homo_host"}
HOMO_NN: Final = "homo_nn_0"
HOMO_SECURE_BOOST: Final = "homo_secureboost_0"


def _homo_code_paths(component: str, client: str, server: str) -> Mapping[str, Mapping[str, str]]:
    clients = {"reader_0": "Reader", DATA_TRANSFORM: "DataTransform", component: client, "evaluation_0": "Evaluation"}
    return {"guest": clients, "host": clients, "arbiter": {component: server, "evaluation_0": "Evaluation"}}


RECIPES: Final[Mapping[Algorithm, Recipe]] = {
    "hetero_lr": Recipe(
        model_component="hetero_lr_0",
        model_module="HeteroLR",
        upstream=((INTERSECTION, "Intersection"),),
        model_roles=frozenset({"guest", "host", "arbiter"}),
        model_names=_same_keys("HeteroLogisticRegressionMeta", "HeteroLogisticRegressionParam"),
        code_paths={
            "guest": {
                "reader_0": "Reader",
                DATA_TRANSFORM: "DataTransform",
                INTERSECTION: "IntersectGuest",
                "hetero_lr_0": "HeteroLRGuest",
                "evaluation_0": "Evaluation",
            },
            "host": {
                "reader_0": "Reader",
                DATA_TRANSFORM: "DataTransform",
                INTERSECTION: "IntersectHost",
                "hetero_lr_0": "HeteroLRHost",
                "evaluation_0": "Evaluation",
            },
            "arbiter": {"hetero_lr_0": "HeteroLRArbiter", "evaluation_0": "Evaluation"},
        },
        features={"guest": 10, "host": 20},
        tables=_HETERO_TABLES,
    ),
    "homo_lr": Recipe(
        model_component="homo_lr_0",
        model_module="HomoLR",
        upstream=(),
        model_roles=frozenset({"guest", "host"}),
        model_names=_same_keys("HomoLogisticRegressionMeta", "HomoLogisticRegressionParam"),
        code_paths={
            "guest": {
                "reader_0": "Reader",
                DATA_TRANSFORM: "DataTransform",
                "homo_lr_0": "HomoLRGuest",
                "evaluation_0": "Evaluation",
            },
            "host": {
                "reader_0": "Reader",
                DATA_TRANSFORM: "DataTransform",
                "homo_lr_0": "HomoLRHost",
                "evaluation_0": "Evaluation",
            },
            "arbiter": {"homo_lr_0": "HomoLRArbiter", "evaluation_0": "Evaluation"},
        },
        features={"guest": 30, "host": 30},
        tables=_HOMO_TABLES,
    ),
    "hetero_secureboost": Recipe(
        model_component=SECURE_BOOST,
        model_module="HeteroSecureBoost",
        upstream=((INTERSECTION, "Intersection"), (BINNING, "HeteroFeatureBinning")),
        model_roles=frozenset({"guest", "host"}),
        model_names={
            "guest": ("HeteroSecureBoostingTreeGuestMeta", "HeteroSecureBoostingTreeGuestParam"),
            "host": ("HeteroSecureBoostingTreeHostMeta", "HeteroSecureBoostingTreeHostParam"),
        },
        code_paths={
            "guest": {
                "reader_0": "Reader",
                DATA_TRANSFORM: "DataTransform",
                INTERSECTION: "IntersectGuest",
                BINNING: "HeteroFeatureBinningGuest",
                SECURE_BOOST: "HeteroSecureBoostingTreeGuest",
                "evaluation_0": "Evaluation",
            },
            "host": {
                "reader_0": "Reader",
                DATA_TRANSFORM: "DataTransform",
                INTERSECTION: "IntersectHost",
                BINNING: "HeteroFeatureBinningHost",
                SECURE_BOOST: "HeteroSecureBoostingTreeHost",
                "evaluation_0": "Evaluation",
            },
            "arbiter": {"evaluation_0": "Evaluation"},
        },
        features={"guest": 10, "host": 20},
        tables=_HETERO_TABLES,
    ),
    "homo_nn": Recipe(
        model_component=HOMO_NN,
        model_module="HomoNN",
        upstream=(),
        model_roles=frozenset({"guest", "host", "arbiter"}),
        model_names=_same_keys("HomoNNMeta", "HomoNNParam"),
        code_paths=_homo_code_paths(HOMO_NN, "HomoNNClient", "HomoNNServer"),
        features={"guest": homo_models.NN_FEATURES, "host": homo_models.NN_FEATURES},
        tables=_HOMO_TABLES,
    ),
    "homo_secureboost": Recipe(
        model_component=HOMO_SECURE_BOOST,
        model_module="HomoSecureBoost",
        upstream=(),
        model_roles=frozenset({"guest", "host"}),
        model_names=_same_keys("HomoSecureBoostingTreeGuestMeta", "HomoSecureBoostingTreeGuestParam"),
        code_paths=_homo_code_paths(HOMO_SECURE_BOOST, "HomoSecureBoostingTreeClient", "HomoSecureBoostingTreeArbiter"),
        features={"guest": 30, "host": 30},
        tables=_HOMO_TABLES,
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """A trained model of the whole federation; every party's slice is written from the same spec.

    ``model_version`` None draws a fresh FATE job id, and ``initiator_party_id`` None means the first
    party of ``initiator_role``; both are resolved at construction, so the parties of one spec agree.
    Party ids keep their type (int or str) in every JSON document, as FATE keeps what was submitted.
    """

    roles: Mapping[str, Sequence[PartyId]] = field(default_factory=lambda: dict(_DEFAULT_ROLES))
    initiator_role: str = "guest"
    initiator_party_id: PartyId | None = None
    algorithm: Algorithm = "hetero_lr"
    model_version: str | None = None
    fate_version: str = "1.11.4"
    checkpoints: int = 0
    """Checkpoint steps kept for the LR component: the last ones of a ``save_freq`` 1 run (LR only)."""
    target_bytes: int = 0
    """When > 0, guests' and hosts' version directories are grown to about this many bytes (LR only)."""
    seed: int = 0
    num_classes: int = 2
    """Label classes: more than 2 makes HomoLR one-vs-rest and HomoSecureBoost multiclass."""

    def __post_init__(self) -> None:
        if self.algorithm not in RECIPES:
            raise ValueError(f"algorithm must be one of {sorted(RECIPES)}, not {self.algorithm!r}")
        roles = {role: tuple(ids) for role, ids in self.roles.items()}
        unknown = set(roles) - {"guest", "host", "arbiter"}
        if unknown or not roles.get("guest") or not roles.get("host"):
            raise ValueError(f"roles need guest and host and may add arbiter, got {sorted(roles)}")
        for role, ids in roles.items():
            if not ids or not all(isinstance(i, int | str) and not isinstance(i, bool) for i in ids):
                raise ValueError(f"role {role!r} needs a non-empty list of int or str party ids")
        if self.initiator_role not in roles:
            raise ValueError(f"initiator role {self.initiator_role!r} is not one of the roles")
        initiator = roles[self.initiator_role][0] if self.initiator_party_id is None else self.initiator_party_id
        if initiator not in roles[self.initiator_role]:
            raise ValueError(f"initiator party {initiator!r} is not a {self.initiator_role}")
        if self.checkpoints < 0 or self.target_bytes < 0:
            raise ValueError("checkpoints and target_bytes must not be negative")
        if (self.checkpoints or self.target_bytes) and not RECIPES[self.algorithm].is_lr:
            raise ValueError("checkpoints and target_bytes apply to the LR algorithms only")
        if self.num_classes < 2 or (self.num_classes > 2 and self.algorithm not in ("homo_lr", "homo_secureboost")):
            raise ValueError("num_classes is 2, or more for homo_lr and homo_secureboost")
        if self.num_classes > 2 and self.target_bytes:
            raise ValueError("a one-vs-rest model is not grown")
        object.__setattr__(self, "roles", MappingProxyType(roles))
        object.__setattr__(self, "initiator_party_id", initiator)
        object.__setattr__(self, "model_version", self.model_version or job_ids.next())

    @property
    def model_id(self) -> str:
        return gen_model_id(self.roles)

    @property
    def version(self) -> str:
        """``model_version`` as resolved at construction."""
        return cast(str, self.model_version)

    @property
    def initiator(self) -> PartyId:
        """``initiator_party_id`` as resolved at construction."""
        return cast(PartyId, self.initiator_party_id)

    @property
    def max_iter(self) -> int:
        """Epochs the LR ran: FATE's example 30, more when more checkpoints are asked for."""
        return max(_DEFAULT_MAX_ITER, self.checkpoints)

    def party_model_id(self, role: str, party_id: PartyId) -> str:
        return party_model_id(role, party_id, self.model_id)
