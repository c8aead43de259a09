"""Migrate's rewriters: one party's component buffers and Pipeline, re-addressed to new party ids.

Pure functions over bytes (fate_flow.md §6.8, fate_buffers.md §2). The role map comes from
:func:`party_map`, the coordinator's own check (:mod:`fate_registry.migration_roles`, re-exported
here): old party id → new, by position within each role, as text so that ints and numeric strings
both work. :func:`rewrite_component` applies FATE 1.11.4's per-module rewrites
(§2.3) to one component alias's buffers, :func:`rewrite_pipeline` renames the Pipeline (§6.8 step 5)
and :func:`message_json` gives the ``<model_name>.json`` sidecar of a rewritten buffer.

Our promise is stronger than FATE's: every party id inside every rewritten buffer is the new one.
Where FATE 1.11.4 would leave an old id behind, we rewrite it or refuse, deliberately:

1. A host's SecureBoost ``anonymous_name_mapping`` keys (``host_10000_x0``) are rewritten; FATE keeps
   the old ids there.
2. FeatureBinning's ``transform_binning_result``, ``transform_host_results`` and
   ``transform_multi_class_result`` (written by a transform-stage binning) are rewritten like their
   fit-stage twins; FATE leaves them alone.
3. A SecureBoost ``tree_plan`` entry whose host id the role map does not list fails the migration;
   FATE keeps such an id unchanged (``plain_replace``). Everywhere else FATE fails too (KeyError or
   ValueError); here a :class:`RegistryError` names the buffer, the field and the party.
4. A Pearson ``all_names`` entry that reads ``<role>_<digits>_<suffix>`` for a role of the map must
   be mapped; FATE silently keeps it when its id is not. The local party's own names (``names``)
   are never touched, whatever they look like.
5. Pearson party tuples are written ``(guest,99)``, the form FATE's exporter writes; FATE's migrator
   writes ``(guest, 99)`` with a space (which FATE's reader tolerates).
6. Two old parties of one role mapped to the same new id are refused: their anonymous column names
   would merge. Party ids must be integers (ints or digit strings), as FATE's rewriters require.

Byte identity: components of modules FATE does not migrate (HeteroLR, HomoLR, DataIO, …) come back
as the very same ``bytes`` objects, as do empty (0-byte) buffers, Meta buffers (they hold no party
ids) and Param buffers in which nothing changes. FATE instead re-serialises every buffer and keeps
only the last key containing ``Param`` and the last containing ``Meta``; we keep every key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.fate.boosting_tree_model_param_pb2 import BoostingTreeModelParam
from fate_registry.fate.data_transform_param_pb2 import DataTransformParam
from fate_registry.fate.feature_binning_param_pb2 import (
    FeatureBinningParam,
    FeatureBinningResult,
    IVParam,
    MultiClassResult,
)
from fate_registry.fate.feature_selection_param_pb2 import FeatureSelectionParam
from fate_registry.fate.pearson_model_param_pb2 import PearsonModelParam
from fate_registry.fate.pipeline_pb2 import Pipeline
from fate_registry.identity import PartyId
from fate_registry.migration_roles import PartyMap, party_map
from party_agent.pipeline import fate_version, json_of, renamed

__all__ = [
    "MIGRATED_MODULES",
    "PartyMap",
    "message_json",
    "party_map",
    "rewrite_component",
    "rewrite_pipeline",
]

M = TypeVar("M", bound=Message)

_INT32_MAX = 2**31 - 1
_WITHOUT_PARTY_IDS = frozenset(
    {
        "BoostingTreeModelMeta",
        "DataTransformMeta",
        "FeatureBinningMeta",
        "FeatureSelectionMeta",
        "PearsonModelMeta",
        "DefaultEmptyFillMessage",
    }
)
"""Buffer classes of the migrated modules that hold no party id: carried over byte for byte."""


def _refuse(message: str) -> RegistryError:
    """FATE answers a failed migrate with retcode 100."""
    return RegistryError(Reason.INVALID_ARGUMENT, message, retcode=Retcode.EXCEPTION_ERROR)


class _Stale(Exception):
    """A party id in a buffer that cannot be rewritten; the message names the field."""


def _is_party_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdigit()


class _Ids:
    """One migration's role map, applied to the forms a party id takes inside FATE's buffers."""

    def __init__(self, mapping: Mapping[str, Mapping[str, PartyId]]) -> None:
        self._map: dict[str, dict[str, str]] = {}
        for role, pairs in mapping.items():
            by_new: dict[str, str] = {}
            for old, new in pairs.items():
                if not (_is_party_id(old) and _is_party_id(new)):
                    raise _refuse(f"party ids must be integers to migrate a model; role {role} maps {old!r} to {new!r}")
                if by_new.setdefault(str(new), str(old)) != str(old):
                    raise _refuse(f"parties {by_new[str(new)]} and {old} of role {role} cannot both become {new}")
            self._map[role] = {str(old): str(new) for old, new in pairs.items()}

    def party(self, role: str, party_id: str, field: str) -> str:
        new = self._map.get(role, {}).get(party_id)
        if new is None:
            raise _Stale(f"{field} names {role} party {party_id!r}, which the migration's role map does not list")
        return new

    def colon(self, value: str, field: str) -> str:
        """``guest:9999`` → ``guest:99``; a sitename without a colon (``hostLocal``, ``guest``) stays."""
        if ":" not in value:
            return value
        role, party_id = value.split(":", 1)
        return f"{role}:{self.party(role, party_id, field)}"

    def anonymous(self, name: str, field: str) -> str:
        """``host_10000_x3`` → ``host_100_x3``: split on ``_`` at most twice, as FATE does."""
        parts = name.split("_", 2)
        if len(parts) != 3:
            raise _Stale(f"{field} holds {name!r}, which is not an anonymous name <role>_<party id>_<suffix>")
        role, party_id, suffix = parts
        return f"{role}_{self.party(role, party_id, field)}_{suffix}"

    def maybe_anonymous(self, name: str, field: str) -> str:
        """Rewrite ``name`` when it reads as an anonymous name of a role of the map, else keep it."""
        parts = name.split("_", 2)
        if len(parts) == 3 and parts[0] in self._map and _is_party_id(parts[1]):
            return self.anonymous(name, field)
        return name

    def party_tuple(self, value: str, field: str) -> str:
        """Pearson's ``(guest,9999)`` → ``(guest,99)``, without the space FATE's migrator adds."""
        inner = value.strip()
        if not (inner.startswith("(") and inner.endswith(")")) or inner.count(",") != 1:
            raise _Stale(f"{field} holds {value!r}, which is not a party (<role>,<party id>)")
        role, party_id = (part.strip() for part in inner[1:-1].split(","))
        return f"({role},{self.party(role, party_id, field)})"


def _rename_anonymous_keys(entries: MutableMapping[str, Any], ids: _Ids, field: str) -> None:
    """Rewrite the anonymous column names keying a protobuf map with scalar values, in place."""
    items = [(ids.anonymous(key, field), value) for key, value in entries.items()]
    entries.clear()
    entries.update(items)


# --- per-module rewriters (fate_buffers.md §2.3) ----------------------------------------------


def _data_transform(param: DataTransformParam, ids: _Ids) -> None:
    param.anonymous_header[:] = [ids.anonymous(name, "anonymous_header") for name in param.anonymous_header]


def _binning_result(result: FeatureBinningResult, ids: _Ids, field: str, *, anonymous_keys: bool) -> None:
    """A result's party id (when it has a role and one), and for host results the anonymous column keys."""
    if result.role and result.party_id:
        result.party_id = ids.party(result.role, result.party_id, f"{field}.party_id")
    if anonymous_keys:
        columns = []
        for key, value in result.binning_result.items():
            column = IVParam()
            column.CopyFrom(value)
            columns.append((ids.anonymous(key, f"{field}.binning_result"), column))
        result.binning_result.clear()
        for key, column in columns:
            result.binning_result[key].CopyFrom(column)


def _multi_class_result(result: MultiClassResult, ids: _Ids, field: str) -> None:
    result.host_party_ids[:] = [ids.party("host", pid, f"{field}.host_party_ids") for pid in result.host_party_ids]
    for i, single in enumerate(result.results):
        _binning_result(single, ids, f"{field}.results[{i}]", anonymous_keys=False)
    for i, host in enumerate(result.host_results):
        _binning_result(host, ids, f"{field}.host_results[{i}]", anonymous_keys=True)


def _binning_stage(
    own: FeatureBinningResult | None,
    hosts: Sequence[FeatureBinningResult],
    multi: MultiClassResult | None,
    ids: _Ids,
    prefix: str,
) -> None:
    """The results of one stage (fit, or ``transform_``); unset messages stay unset."""
    if own is not None:
        _binning_result(own, ids, f"{prefix}binning_result", anonymous_keys=False)
    for i, host in enumerate(hosts):
        _binning_result(host, ids, f"{prefix}host_results[{i}]", anonymous_keys=True)
    if multi is not None:
        _multi_class_result(multi, ids, f"{prefix}multi_class_result")


def _feature_binning(param: FeatureBinningParam, ids: _Ids) -> None:
    """FATE's rewrite of the fit-stage results, applied to the transform-stage results as well (FATE skips them)."""
    param.header_anonymous[:] = [ids.anonymous(name, "header_anonymous") for name in param.header_anonymous]
    _binning_stage(
        param.binning_result if param.HasField("binning_result") else None,
        param.host_results,
        param.multi_class_result if param.HasField("multi_class_result") else None,
        ids,
        "",
    )
    _binning_stage(
        param.transform_binning_result if param.HasField("transform_binning_result") else None,
        param.transform_host_results,
        param.transform_multi_class_result if param.HasField("transform_multi_class_result") else None,
        ids,
        "transform_",
    )


def _feature_selection(param: FeatureSelectionParam, ids: _Ids) -> None:
    for i, host in enumerate(param.host_col_names):
        field = f"host_col_names[{i}]"
        host.party_id = ids.party("host", host.party_id, f"{field}.party_id")
        host.col_names[:] = [ids.anonymous(name, f"{field}.col_names") for name in host.col_names]
    for i, result in enumerate(param.results):
        for j, values in enumerate(result.host_feature_values):
            _rename_anonymous_keys(values.feature_values, ids, f"results[{i}].host_feature_values[{j}].feature_values")
        for j, left in enumerate(result.host_left_cols):
            field = f"results[{i}].host_left_cols[{j}]"
            left.original_cols[:] = [ids.anonymous(name, f"{field}.original_cols") for name in left.original_cols]
            _rename_anonymous_keys(left.left_cols, ids, f"{field}.left_cols")
    anonym = param.col_name_to_anonym_dict
    anonym.update({name: ids.anonymous(value, "col_name_to_anonym_dict") for name, value in anonym.items()})


def _tree_plan_entry(entry: str, ids: _Ids, field: str) -> str:
    """``<tree type>_<host party id or -1>``; unlike FATE, an unlisted host id is an error, not kept."""
    mode, sep, party_id = entry.partition("_")
    if not sep or "_" in party_id:
        raise _Stale(f"{field} holds {entry!r}, which is not <tree type>_<party id>")
    return entry if party_id == "-1" else f"{mode}_{ids.party('host', party_id, field)}"


def _secure_boost(param: BoostingTreeModelParam, ids: _Ids) -> None:
    real_names = set(param.feature_name_fid_mapping.values())
    for i, importance in enumerate(param.feature_importances):
        field = f"feature_importances[{i}]"
        importance.sitename = ids.colon(importance.sitename, f"{field}.sitename")
        if importance.fullname not in real_names:  # another party's feature, known by its anonymous name
            importance.fullname = ids.anonymous(importance.fullname, f"{field}.fullname")
    for t, tree in enumerate(param.trees_):
        for node in tree.tree_:
            node.sitename = ids.colon(node.sitename, f"trees_[{t}].tree_[{node.id}].sitename")
    param.tree_plan[:] = [_tree_plan_entry(entry, ids, "tree_plan") for entry in param.tree_plan]
    # FATE keeps the old ids in these keys; we rewrite them.
    _rename_anonymous_keys(param.anonymous_name_mapping, ids, "anonymous_name_mapping")


def _pearson(param: PearsonModelParam, ids: _Ids) -> None:
    if param.party:
        param.party = ids.party_tuple(param.party, "party")
    param.parties[:] = [ids.party_tuple(party, "parties") for party in param.parties]
    for entry in param.anonymous_map:
        entry.anonymous = ids.anonymous(entry.anonymous, "anonymous_map.anonymous")
    local = set(param.names)
    for j, names in enumerate(param.all_names):
        field = f"all_names[{j}]"
        names.names[:] = [name if name in local else ids.maybe_anonymous(name, field) for name in names.names]


@dataclass(frozen=True)
class _Rewriter(Generic[M]):
    cls: type[M]
    rewrite: Callable[[M, _Ids], None]

    def apply(self, model_name: str, data: bytes, ids: _Ids) -> bytes:
        """The rewritten buffer; ``data`` itself when nothing in it changes."""
        class_name = self.cls.DESCRIPTOR.name
        try:
            original = self.cls.FromString(data)
        except DecodeError:
            raise RegistryError(Reason.DATA_LOSS, f"{model_name} is not a valid {class_name} buffer") from None
        message = self.cls()
        message.CopyFrom(original)
        try:
            self.rewrite(message, ids)
        except _Stale as stale:
            raise _refuse(f"cannot migrate {model_name} ({class_name}): {stale}") from None
        return data if message == original else message.SerializeToString()


_SECURE_BOOST = _Rewriter(BoostingTreeModelParam, _secure_boost)
_REWRITERS: Mapping[str, _Rewriter[Any]] = {
    "HeteroSecureBoost": _SECURE_BOOST,
    "HeteroFastSecureBoost": _SECURE_BOOST,
    "HeteroFeatureBinning": _Rewriter(FeatureBinningParam, _feature_binning),
    "HeteroFeatureSelection": _Rewriter(FeatureSelectionParam, _feature_selection),
    "DataTransform": _Rewriter(DataTransformParam, _data_transform),
    "HeteroPearson": _Rewriter(PearsonModelParam, _pearson),
}
"""DSL module → the rewriter of its Param class; FATE's ``converter_factory``, matched exactly (case-sensitive)."""

MIGRATED_MODULES = frozenset(_REWRITERS)
"""DSL modules whose buffers carry party ids and are rewritten; every other module is carried over as is."""

_JSON_CLASSES: Mapping[str, type[Message]] = {
    cls.DESCRIPTOR.name: cls
    for cls in (
        Pipeline,
        BoostingTreeModelParam,
        FeatureBinningParam,
        FeatureSelectionParam,
        DataTransformParam,
        PearsonModelParam,
    )
}


def rewrite_component(
    module: str,
    buffers: Mapping[str, bytes],
    classes: Mapping[str, str],
    mapping: Mapping[str, Mapping[str, PartyId]],
) -> dict[str, bytes]:
    """One component alias's buffers (model_name → bytes) rewritten for the new party ids.

    ``module`` is the component's DSL module (``define_meta`` ``module_name``), ``classes`` its proto
    index (model_name → buffer class) and ``mapping`` the role map (role → old party id → new, e.g.
    from :func:`party_map`). Buffers that need no change come back as the same ``bytes`` objects.
    Raises :class:`RegistryError` (retcode 100) when a buffer names a party the map does not list,
    or holds a class this module cannot vouch for.
    """
    rewriter = _REWRITERS.get(module)
    if rewriter is None:
        return dict(buffers)
    ids = _Ids(mapping)
    rewritten: dict[str, bytes] = {}
    for model_name, data in buffers.items():
        class_name = classes.get(model_name, "")
        if not data or class_name in _WITHOUT_PARTY_IDS:
            rewritten[model_name] = data
        elif class_name == rewriter.cls.DESCRIPTOR.name:
            rewritten[model_name] = rewriter.apply(model_name, data, ids)
        else:
            raise _refuse(f"cannot migrate {model_name} of {module}: its buffer class {class_name!r} is not known")
    return rewritten


def message_json(class_name: str, data: bytes) -> str:
    """The ``<model_name>.json`` sidecar FATE writes beside a buffer: ``MessageToDict`` with defaults.

    Known for the classes :func:`rewrite_component` and :func:`rewrite_pipeline` produce.
    """
    cls = _JSON_CLASSES.get(class_name)
    if cls is None:
        raise RegistryError(Reason.INVALID_ARGUMENT, f"no JSON form is known for buffer class {class_name!r}")
    try:
        message = cls.FromString(data)
    except DecodeError:
        raise RegistryError(Reason.DATA_LOSS, f"the buffer is not a valid {class_name}") from None
    return json.dumps(json_format.MessageToDict(message, always_print_fields_with_no_presence=True))


def _listed(party_id: PartyId, ids: Sequence[PartyId]) -> PartyId:
    """The id as the role map spells it (int or str), so the confs stay consistent; else as given."""
    return next((candidate for candidate in ids if str(candidate) == str(party_id)), party_id)


def rewrite_pipeline(
    pipeline_bytes: bytes,
    new_model_id: str,
    new_version: str,
    new_roles: Mapping[str, Sequence[PartyId]],
    new_initiator: tuple[str, PartyId],
) -> bytes:
    """The Pipeline of the migrated model (fate_flow.md §6.8 step 5).

    Model id, version and ``roles``; in ``train_runtime_conf`` the role map, the initiator and
    ``job_parameters`` (``common`` in DSL v2) model id and version; for models newer than FATE 1.5.0
    also ``initiator_role`` / ``initiator_party_id`` (int32) and the same keys of
    ``runtime_conf_on_party``. Party ids keep the type ``new_roles`` gives them.
    """
    try:
        source = Pipeline.FromString(pipeline_bytes)
    except DecodeError:
        raise RegistryError(Reason.DATA_LOSS, "the model's Pipeline buffer is not valid") from None
    roles = {role: list(ids) for role, ids in new_roles.items()}
    initiator_role, initiator_party = new_initiator
    initiator = {"role": initiator_role, "party_id": _listed(initiator_party, roles.get(initiator_role, []))}
    pipeline = renamed(source, new_model_id, new_version)
    pipeline.roles = json.dumps(roles).encode()
    train_conf = json_of(pipeline.train_runtime_conf)
    if train_conf:
        train_conf.update(role=roles, initiator=initiator)
        pipeline.train_runtime_conf = json.dumps(train_conf).encode()
    if fate_version(pipeline.fate_version) > (1, 5, 0):
        if not _is_party_id(initiator_party) or int(initiator_party) > _INT32_MAX:
            raise _refuse(
                f"migrate_initiator party_id {initiator_party!r} must be an integer (the Pipeline stores int32)"
            )
        pipeline.initiator_role = initiator_role
        pipeline.initiator_party_id = int(initiator_party)
        on_party = json_of(pipeline.runtime_conf_on_party)
        if on_party:
            on_party.update(role=roles, initiator=initiator)
            pipeline.runtime_conf_on_party = json.dumps(on_party).encode()
    return pipeline.SerializeToString()
