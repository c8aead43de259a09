"""Migrate's rewriters: every party id in every rewritten buffer is the new one; the rest is untouched.

A generated HeteroSecureBoost model (guest 9999, host 10000, arbiter 10000) is migrated to guest 99,
host 100, arbiter 100, party by party, and each rewritten buffer is decoded and compared with the
original in which exactly the party ids were replaced by hand. FeatureSelection and Pearson, which
the factory does not train, are checked on realistic buffers built here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from fate_registry.errors import Reason, RegistryError
from fate_registry.fate import (
    boosting_tree_model_param_pb2,
    data_transform_param_pb2,
    feature_binning_param_pb2,
    feature_selection_meta_pb2,
    feature_selection_param_pb2,
    pearson_model_meta_pb2,
    pearson_model_param_pb2,
    pipeline_pb2,
)
from fate_registry.fate_models import BUFFER_CLASSES, ModelSpec, read_define_meta, write_federation
from fate_registry.identity import gen_model_id
from party_agent.party_rewrite import (
    MIGRATED_MODULES,
    PartyMap,
    message_json,
    party_map,
    rewrite_component,
    rewrite_pipeline,
)

OLD = {"guest": [9999], "host": [10000], "arbiter": [10000]}
NEW = {"guest": [99], "host": [100], "arbiter": [100]}
NEW_ID = {"guest": {"9999": "99"}, "host": {"10000": "100"}, "arbiter": {"10000": "100"}}
SITES = {"guest:9999": "guest:99", "host:10000": "host:100"}
STRUCTURE = (
    "The structure of roles data of local configuration is different from model runtime configuration's. "
    "Migration aborting."
)
SAME = (
    "The config of previous roles is the same with that of migrate roles. There is no need to migrate model. "
    "Migration process aborting."
)
OLD_FORM = re.compile(r"(?<![A-Za-z0-9])(guest|host|arbiter)\s*[:_,]\s*(9999|10000)(?![0-9])")
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Component:
    module: str
    classes: dict[str, str]
    before: dict[str, bytes]
    after: dict[str, bytes]

    def decode(self, model_name: str, *, rewritten: bool = True) -> Message:
        data = (self.after if rewritten else self.before)[model_name]
        return BUFFER_CLASSES[self.classes[model_name]].FromString(data)


def _migrate(version_dir: Path, mapping: PartyMap) -> dict[str, Component]:
    """Every non-pipeline component of one party's version directory, before and after rewriting."""
    define_meta = read_define_meta(version_dir)
    components = {}
    for component, aliases in define_meta["model_proto"].items():
        if component == "pipeline":
            continue
        module = define_meta["component_define"][component]["module_name"]
        [(alias, classes)] = aliases.items()
        directory = version_dir / "variables" / "data" / component / alias
        before = {name: (directory / name).read_bytes() for name in classes}
        components[component] = Component(module, classes, before, rewrite_component(module, before, classes, mapping))
    return components


def _copy(message: M) -> M:
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def _as(message: Message, cls: type[M]) -> M:
    assert isinstance(message, cls)
    return message


def _renamed(name: str) -> str:
    """An anonymous column name with the new party id, spelled out independently of the code under test."""
    role, party_id, suffix = name.split("_", 2)
    return f"{role}_{NEW_ID[role][party_id]}_{suffix}"


def _old_ids(value: Any, key: str = "") -> Iterator[str]:
    """Every place of a MessageToDict document that still names an old party id."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _old_ids(k, "key")
            yield from _old_ids(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _old_ids(item, key)
    elif isinstance(value, str):
        if OLD_FORM.search(value):
            yield f"{key}: {value}"
        if ("party" in key.lower() or key == "parties") and value in ("9999", "10000"):
            yield f"{key}: {value}"
        if key == "treePlan" and value.rsplit("_", 1)[-1] in ("9999", "10000"):
            yield f"{key}: {value}"


def _scan(message: Message) -> list[str]:
    return list(_old_ids(json_format.MessageToDict(message, always_print_fields_with_no_presence=True)))


@pytest.fixture(scope="module")
def mapping() -> PartyMap:
    return party_map(OLD, NEW)


@pytest.fixture(scope="module")
def secureboost(tmp_path_factory: pytest.TempPathFactory, mapping: PartyMap) -> dict[str, dict[str, Component]]:
    """Role → its migrated components (host 10000 and arbiter 10000 are one party playing two roles)."""
    root = tmp_path_factory.mktemp("sbt")
    spec = ModelSpec(algorithm="hetero_secureboost", seed=11)
    dirs = write_federation({"9999": root / "9999", "10000": root / "10000"}, spec)
    return {role: _migrate(version_dir, mapping) for (role, _), version_dir in dirs.items()}


# --- the role map ------------------------------------------------------------------------------


def test_party_map_pairs_ids_by_position_per_role() -> None:
    assert party_map(OLD, NEW) == NEW_ID
    two_hosts = party_map({"guest": [9999], "host": [10001, 10000]}, {"guest": [99], "host": [101, 100]})
    assert two_hosts == {"guest": {"9999": "99"}, "host": {"10001": "101", "10000": "100"}}


def test_party_map_takes_ints_and_numeric_strings_alike() -> None:
    strings = {role: [str(p) for p in ids] for role, ids in OLD.items()}
    assert party_map(strings, NEW) == party_map(OLD, {r: [str(p) for p in ids] for r, ids in NEW.items()}) == NEW_ID


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ({"guest": [9999], "host": [10000]}, {"guest": [99], "arbiter": [100]}, STRUCTURE),
        ({"guest": [9999], "host": [10000]}, {"guest": [99]}, STRUCTURE),
        ({"guest": [9999], "host": [10000, 10001]}, {"guest": [99], "host": [100]}, STRUCTURE),
        ({"guest": [9999], "host": "10000"}, {"guest": [99], "host": "100"}, STRUCTURE),
        ({"guest": [9999], "host": 10000}, {"guest": [99], "host": 100}, STRUCTURE),
        (OLD, OLD, SAME),
        ({"guest": [9999], "host": [10000, 10001]}, {"guest": ["9999"], "host": [10001, 10000]}, SAME),
    ],
)
def test_party_map_refuses_with_fates_messages(old: Any, new: Any, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        party_map(old, new)
    assert caught.value.message == message
    assert caught.value.reason is Reason.INVALID_ARGUMENT and caught.value.fate_retcode == 100


# --- HeteroSecureBoost + DataTransform + FeatureBinning, field by field -----------------------


def test_guest_secureboost_sitenames_and_host_feature_names(secureboost: dict[str, dict[str, Component]]) -> None:
    sbt = secureboost["guest"]["hetero_secure_boost_0"]
    before = _as(
        sbt.decode("HeteroSecureBoostingTreeGuestParam", rewritten=False),
        boosting_tree_model_param_pb2.BoostingTreeModelParam,
    )
    expected = _copy(before)
    for tree in expected.trees_:
        for node in tree.tree_:
            node.sitename = SITES[node.sitename]
    for importance in expected.feature_importances:
        importance.sitename = SITES[importance.sitename]
        if importance.sitename == "host:100":
            importance.fullname = _renamed(importance.fullname)
    assert sbt.decode("HeteroSecureBoostingTreeGuestParam") == expected
    assert any(fi.fullname.startswith("host_100_x") for fi in expected.feature_importances)
    assert sbt.after["HeteroSecureBoostingTreeGuestMeta"] is sbt.before["HeteroSecureBoostingTreeGuestMeta"]


def test_host_secureboost_anonymous_name_mapping_is_rewritten(secureboost: dict[str, dict[str, Component]]) -> None:
    sbt = secureboost["host"]["hetero_secure_boost_0"]
    before = _as(
        sbt.decode("HeteroSecureBoostingTreeHostParam", rewritten=False),
        boosting_tree_model_param_pb2.BoostingTreeModelParam,
    )
    expected = _copy(before)
    for tree in expected.trees_:
        for node in tree.tree_:
            node.sitename = SITES[node.sitename]
    expected.anonymous_name_mapping.clear()
    expected.anonymous_name_mapping.update({_renamed(k): v for k, v in before.anonymous_name_mapping.items()})
    after = _as(sbt.decode("HeteroSecureBoostingTreeHostParam"), boosting_tree_model_param_pb2.BoostingTreeModelParam)
    assert after == expected
    assert {fi.sitename for fi in after.feature_importances} == {"hostLocal"}  # no party id: kept as FATE keeps it
    assert dict(after.anonymous_name_mapping)["host_100_x0"] == "x0"  # FATE would have kept host_10000_x0
    assert sbt.after["HeteroSecureBoostingTreeHostMeta"] is sbt.before["HeteroSecureBoostingTreeHostMeta"]


def _rename_columns(result: feature_binning_param_pb2.FeatureBinningResult) -> None:
    columns = {_renamed(key): _copy(value) for key, value in result.binning_result.items()}
    result.binning_result.clear()
    for key, value in columns.items():
        result.binning_result[key].CopyFrom(value)


def test_guest_binning_party_ids_and_host_columns(secureboost: dict[str, dict[str, Component]]) -> None:
    binning = secureboost["guest"]["hetero_feature_binning_0"]
    before = _as(binning.decode("FeatureBinningParam", rewritten=False), feature_binning_param_pb2.FeatureBinningParam)
    expected = _copy(before)
    expected.header_anonymous[:] = [_renamed(name) for name in before.header_anonymous]
    expected.binning_result.party_id = "99"
    for results in (expected.host_results, expected.multi_class_result.host_results):
        [host] = results
        host.party_id = "100"
        _rename_columns(host)
    expected.multi_class_result.results[0].party_id = "99"
    expected.multi_class_result.host_party_ids[:] = ["100"]
    after = _as(binning.decode("FeatureBinningParam"), feature_binning_param_pb2.FeatureBinningParam)
    assert after == expected
    assert set(after.binning_result.binning_result) == {f"x{i}" for i in range(10)}  # real names, kept
    assert not after.HasField("transform_binning_result") and not after.HasField("transform_multi_class_result")
    assert binning.after["FeatureBinningMeta"] is binning.before["FeatureBinningMeta"]


def test_host_binning_and_data_transform(secureboost: dict[str, dict[str, Component]]) -> None:
    binning = secureboost["host"]["hetero_feature_binning_0"]
    before = _as(binning.decode("FeatureBinningParam", rewritten=False), feature_binning_param_pb2.FeatureBinningParam)
    expected = _copy(before)
    expected.header_anonymous[:] = [f"host_100_x{i}" for i in range(20)]
    expected.binning_result.party_id = "100"
    expected.multi_class_result.results[0].party_id = "100"
    expected.multi_class_result.host_party_ids[:] = ["100"]
    assert binning.decode("FeatureBinningParam") == expected

    for role, party, width in (("guest", "99", 10), ("host", "100", 20)):
        transform = secureboost[role]["data_transform_0"]
        before_dt = transform.decode("DataTransformParam", rewritten=False)
        expected_dt = _as(_copy(before_dt), data_transform_param_pb2.DataTransformParam)
        expected_dt.anonymous_header[:] = [f"{role}_{party}_x{i}" for i in range(width)]
        assert transform.decode("DataTransformParam") == expected_dt
        assert transform.after["DataTransformMeta"] is transform.before["DataTransformMeta"]


def test_no_old_party_id_remains_in_any_rewritten_buffer(secureboost: dict[str, dict[str, Component]]) -> None:
    assert set(secureboost["arbiter"]) == set()  # SecureBoost's arbiter holds nothing but the Pipeline
    stale_before = []
    for role, components in secureboost.items():
        for name, component in components.items():
            for model_name in component.after:
                stale_before += _scan(component.decode(model_name, rewritten=False))
                assert _scan(component.decode(model_name)) == [], f"{role} {name} {model_name}"
    assert any("sitename" in hit for hit in stale_before) and any("partyId" in hit for hit in stale_before)
    assert any(hit.startswith("key: host_10000_") for hit in stale_before)


def test_sidecars_are_regenerated_as_fate_writes_them(secureboost: dict[str, dict[str, Component]]) -> None:
    sbt = secureboost["guest"]["hetero_secure_boost_0"]
    data = sbt.after["HeteroSecureBoostingTreeGuestParam"]
    text = message_json("BoostingTreeModelParam", data)
    expected = json_format.MessageToDict(
        sbt.decode("HeteroSecureBoostingTreeGuestParam"), always_print_fields_with_no_presence=True
    )
    assert json.loads(text) == expected
    assert "host:100" in text and "host:10000" not in text
    assert json.loads(message_json("Pipeline", b""))["modelId"] == ""
    with pytest.raises(RegistryError):
        message_json("LRModelParam", b"")


# --- modules FATE does not migrate, empty and unknown buffers ---------------------------------


def test_lr_and_other_modules_come_back_byte_identical(tmp_path: Path, mapping: PartyMap) -> None:
    dirs = write_federation({"9999": tmp_path / "a", "10000": tmp_path / "b"}, ModelSpec(seed=5))
    for (role, _), version_dir in dirs.items():
        components = _migrate(version_dir, mapping)
        lr = components["hetero_lr_0"]
        assert lr.module not in MIGRATED_MODULES
        assert all(lr.after[name] is lr.before[name] for name in lr.before) and lr.after == lr.before
        if role != "arbiter":
            transform = components["data_transform_0"]
            assert transform.after["DataTransformParam"] != transform.before["DataTransformParam"]
    buffers = {"DataIOParam": b"\x0a\x02x0", "Any": b"\x01\x02"}
    for module in ("HomoLR", "DataIO", "HomoSecureBoost", "HeteroSecureboost", "Pipeline", ""):
        rewritten = rewrite_component(module, buffers, {}, {"guest": {"abc": "not a party id"}})
        assert rewritten == buffers and all(rewritten[k] is buffers[k] for k in buffers)


def test_empty_buffers_and_unchanged_params_keep_their_bytes(mapping: PartyMap) -> None:
    empty = b""
    untouched = data_transform_param_pb2.DataTransformParam(header=["x0"], sid_name="id").SerializeToString()
    buffers = {"DataTransformMeta": empty, "DataTransformParam": untouched}
    classes = {"DataTransformMeta": "DataTransformMeta", "DataTransformParam": "DataTransformParam"}
    rewritten = rewrite_component("DataTransform", buffers, classes, mapping)
    assert rewritten["DataTransformMeta"] is empty and rewritten["DataTransformParam"] is untouched
    filler = {"DataTransformParam": b"\x0a\x03set"}  # DefaultEmptyFill bytes, recorded as such
    assert (
        rewrite_component("DataTransform", filler, {"DataTransformParam": "DefaultEmptyFillMessage"}, mapping) == filler
    )


def test_unknown_class_or_damaged_buffer_is_refused(mapping: PartyMap) -> None:
    with pytest.raises(RegistryError) as caught:
        rewrite_component("DataTransform", {"DataIOParam": b"\x0a\x02x0"}, {"DataIOParam": "DataIOParam"}, mapping)
    assert caught.value.fate_retcode == 100 and "DataIOParam" in caught.value.message
    with pytest.raises(RegistryError) as caught:
        rewrite_component("DataTransform", {"P": b"\xff\xff\xff"}, {"P": "DataTransformParam"}, mapping)
    assert caught.value.reason is Reason.DATA_LOSS


# --- what FATE leaves stale or mangles, fixed ----------------------------------------------------


def test_binning_transform_results_are_rewritten_too(mapping: PartyMap) -> None:
    fpb = feature_binning_param_pb2
    host = fpb.FeatureBinningResult(role="host", party_id="10000")
    host.binning_result["host_10000_x0"].iv = 0.25
    param = fpb.FeatureBinningParam(
        transform_binning_result=fpb.FeatureBinningResult(role="guest", party_id="9999"),
        transform_host_results=[host],
        transform_multi_class_result=fpb.MultiClassResult(host_results=[host], host_party_ids=["10000"]),
    )
    rewritten = rewrite_component(
        "HeteroFeatureBinning",
        {"FeatureBinningParam": param.SerializeToString()},
        {"FeatureBinningParam": "FeatureBinningParam"},
        mapping,
    )
    after = fpb.FeatureBinningParam.FromString(rewritten["FeatureBinningParam"])
    assert after.transform_binning_result.party_id == "99"
    for result in (after.transform_host_results[0], after.transform_multi_class_result.host_results[0]):
        assert result.party_id == "100" and dict(result.binning_result) == {"host_100_x0": fpb.IVParam(iv=0.25)}
    assert list(after.transform_multi_class_result.host_party_ids) == ["100"]
    assert not after.HasField("binning_result") and not after.HasField("multi_class_result")


def test_tree_plan_maps_host_ids_and_refuses_unlisted_ones(mapping: PartyMap) -> None:
    classes = {"HeteroSecureBoostingTreeGuestParam": "BoostingTreeModelParam"}

    def plan(entries: list[str]) -> list[str]:
        param = boosting_tree_model_param_pb2.BoostingTreeModelParam(
            tree_plan=entries, model_name="hetero_fast_sbt_mix"
        )
        buffers = {"HeteroSecureBoostingTreeGuestParam": param.SerializeToString()}
        rewritten = rewrite_component("HeteroFastSecureBoost", buffers, classes, mapping)
        return list(
            boosting_tree_model_param_pb2.BoostingTreeModelParam.FromString(
                rewritten["HeteroSecureBoostingTreeGuestParam"]
            ).tree_plan
        )

    assert plan(["0_-1", "1_10000", "0_-1", "1_10000"]) == ["0_-1", "1_100", "0_-1", "1_100"]
    with pytest.raises(RegistryError, match=r"tree_plan names host party '10001'"):
        plan(["1_10001"])  # FATE keeps an unlisted id; that would leave an old party id behind


def _pearson(role: str, party: str, other: str, local: int, remote: int) -> pearson_model_param_pb2.PearsonModelParam:
    names = [f"x{i}" for i in range(local)]
    remote_names = pearson_model_param_pb2.Names(names=[f"{other}_x{i}" for i in range(remote)])
    own = pearson_model_param_pb2.Names(names=names)
    return pearson_model_param_pb2.PearsonModelParam(
        party=f"({role},{party})",
        parties=["(guest,9999)", "(host,10000)"],
        shape=local,
        shapes=[10, 20],
        names=names,
        corr=[0.1 * i for i in range(local * remote)],
        local_corr=[1.0] * (local * local),
        all_names=[own, remote_names] if role == "guest" else [remote_names, own],
        anonymous_map=[pearson_model_param_pb2.AnonymousMap(anonymous=f"{role}_{party}_{n}", name=n) for n in names],
        model_name="HeteroPearson",
        local_vif=[1.5] * local,
    )


def test_pearson_party_tuples_without_fates_space(mapping: PartyMap) -> None:
    classes = {"HeteroPearsonModelMeta": "PearsonModelMeta", "HeteroPearsonModelParam": "PearsonModelParam"}
    meta = pearson_model_meta_pb2.PearsonModelMeta(shapes=[10, 20]).SerializeToString()
    for role, party, other, new_party, new_other in (
        ("guest", "9999", "host_10000", "99", "host_100"),
        ("host", "10000", "guest_9999", "100", "guest_99"),
    ):
        local = 10 if role == "guest" else 20
        before = _pearson(role, party, other, local, 30 - local)
        buffers = {"HeteroPearsonModelMeta": meta, "HeteroPearsonModelParam": before.SerializeToString()}
        rewritten = rewrite_component("HeteroPearson", buffers, classes, mapping)
        assert rewritten["HeteroPearsonModelMeta"] is meta
        after = pearson_model_param_pb2.PearsonModelParam.FromString(rewritten["HeteroPearsonModelParam"])
        expected = _pearson(role, new_party, new_other, local, 30 - local)
        expected.parties[:] = ["(guest,99)", "(host,100)"]
        assert after == expected
        assert after.party == f"({role},{new_party})"  # FATE's migrator would write "(guest, 99)"
        assert _scan(after) == [] and _scan(before) != []


def test_pearson_local_names_are_never_taken_for_party_ids(mapping: PartyMap) -> None:
    param = _pearson("guest", "9999", "host_10000", 2, 2)
    param.names[:] = ["host_7_total", "x1"]  # a real column that merely looks anonymous
    param.all_names[0].names[:] = ["host_7_total", "x1"]
    classes = {"P": "PearsonModelParam"}
    after = pearson_model_param_pb2.PearsonModelParam.FromString(
        rewrite_component("HeteroPearson", {"P": param.SerializeToString()}, classes, mapping)["P"]
    )
    assert list(after.all_names[0].names) == ["host_7_total", "x1"]
    assert list(after.all_names[1].names) == ["host_100_x0", "host_100_x1"]
    param.all_names[1].names.append("host_10001_x9")  # another party's column of an unlisted host
    with pytest.raises(RegistryError, match="10001"):
        rewrite_component("HeteroPearson", {"P": param.SerializeToString()}, classes, mapping)


def _selection(role: str, party: str, host: str | None) -> feature_selection_param_pb2.FeatureSelectionParam:
    fsp = feature_selection_param_pb2
    names = [f"x{i}" for i in range(4)]
    host_names = [f"host_{host}_x{i}" for i in range(3)] if host else []
    result = fsp.FeatureSelectionFilterParam(
        feature_values={n: 0.1 * i for i, n in enumerate(names)},
        left_cols=fsp.LeftCols(original_cols=names, left_cols={n: i % 2 == 0 for i, n in enumerate(names)}),
        filter_name="iv_value_thres",
    )
    if host:
        result.host_feature_values.add().feature_values.update({n: 0.2 for n in host_names})
        result.host_left_cols.add(original_cols=host_names, left_cols={n: True for n in host_names})
    return fsp.FeatureSelectionParam(
        results=[result],
        final_left_cols=fsp.LeftCols(original_cols=names, left_cols={n: True for n in names}),
        col_names=names,
        host_col_names=[fsp.HostColNames(col_names=host_names, party_id=host)] if host else [],
        header=names,
        col_name_to_anonym_dict={n: f"{role}_{party}_{n}" for n in names},
    )


def test_feature_selection_host_columns_and_anonymous_dict(mapping: PartyMap) -> None:
    classes = {"FeatureSelectionMeta": "FeatureSelectionMeta", "FeatureSelectionParam": "FeatureSelectionParam"}
    meta = feature_selection_meta_pb2.FeatureSelectionMeta(
        filter_methods=["iv_filter"], need_run=True
    ).SerializeToString()
    for before, expected in (
        (_selection("guest", "9999", "10000"), _selection("guest", "99", "100")),
        (_selection("host", "10000", None), _selection("host", "100", None)),
    ):
        buffers = {"FeatureSelectionMeta": meta, "FeatureSelectionParam": before.SerializeToString()}
        rewritten = rewrite_component("HeteroFeatureSelection", buffers, classes, mapping)
        after = feature_selection_param_pb2.FeatureSelectionParam.FromString(rewritten["FeatureSelectionParam"])
        assert after == expected
        assert rewritten["FeatureSelectionMeta"] is meta
        assert _scan(after) == [] and _scan(before) != []


# --- ids: types, unlisted parties, mapping checks ------------------------------------------------


def test_string_and_int_party_ids_migrate_alike(tmp_path: Path) -> None:
    results = []
    for kind, convert in (("int", int), ("str", str)):
        roles = {role: [convert(p) for p in ids] for role, ids in OLD.items()}
        spec = ModelSpec(algorithm="hetero_secureboost", roles=roles, model_version="1", seed=2)
        dirs = write_federation({"9999": tmp_path / kind / "a", "10000": tmp_path / kind / "b"}, spec)
        new = {role: [convert(p) for p in ids] for role, ids in NEW.items()}
        components = _migrate(dirs[("guest", "9999")], party_map(roles, new))
        results.append({f"{c}/{n}": comp.decode(n) for c, comp in components.items() for n in comp.after})
    assert results[0] == results[1]
    assert (
        _as(
            results[1]["data_transform_0/DataTransformParam"], data_transform_param_pb2.DataTransformParam
        ).anonymous_header[0]
        == "guest_99_x0"
    )


def test_party_missing_from_the_role_map_is_named(secureboost: dict[str, dict[str, Component]]) -> None:
    sbt = secureboost["guest"]["hetero_secure_boost_0"]
    partial = {"guest": {"9999": "99"}, "host": {"10001": "101"}}
    with pytest.raises(RegistryError) as caught:
        rewrite_component(sbt.module, sbt.before, sbt.classes, partial)
    assert caught.value.fate_retcode == 100
    assert "HeteroSecureBoostingTreeGuestParam" in caught.value.message and "host party '10000'" in caught.value.message


@pytest.mark.parametrize(
    "bad",
    [
        {"guest": {"9999": "g99"}},
        {"guest": {"9999": "-1"}},
        {"host": {"10000": "100", "10001": "100"}},
    ],
)
def test_mappings_fate_cannot_hold_are_refused(bad: Mapping[str, Mapping[str, str]]) -> None:
    buffers = {"P": data_transform_param_pb2.DataTransformParam(anonymous_header=["guest_9999_x0"]).SerializeToString()}
    with pytest.raises(RegistryError) as caught:
        rewrite_component("DataTransform", buffers, {"P": "DataTransformParam"}, bad)
    assert caught.value.fate_retcode == 100


def test_swapped_party_ids_are_rewritten_at_once(tmp_path: Path) -> None:
    spec = ModelSpec(algorithm="hetero_secureboost", roles={"guest": [9999], "host": [10000]})
    dirs = write_federation({"9999": tmp_path / "a", "10000": tmp_path / "b"}, spec)
    mapping = party_map({"guest": [9999], "host": [10000]}, {"guest": [10000], "host": [9999]})
    binning = _migrate(dirs[("guest", "9999")], mapping)["hetero_feature_binning_0"]
    after = _as(binning.decode("FeatureBinningParam"), feature_binning_param_pb2.FeatureBinningParam)
    assert (after.binning_result.party_id, after.host_results[0].party_id) == ("10000", "9999")
    assert set(after.host_results[0].binning_result) == {f"host_9999_x{i}" for i in range(20)}
    assert after.header_anonymous[0] == "guest_10000_x0"


# --- the Pipeline ------------------------------------------------------------------------------


@pytest.fixture
def guest_pipeline(tmp_path: Path) -> bytes:
    spec = ModelSpec(algorithm="hetero_secureboost", model_version="202111091122168817080")
    dirs = write_federation({"9999": tmp_path / "a", "10000": tmp_path / "b"}, spec)
    return (dirs[("guest", "9999")] / "variables/data/pipeline/pipeline/Pipeline").read_bytes()


def test_pipeline_gets_new_identity_roles_and_initiator(guest_pipeline: bytes) -> None:
    new_model_id = gen_model_id(NEW)
    data = rewrite_pipeline(guest_pipeline, new_model_id, "202401010000000000000", NEW, ("guest", "99"))
    before, after = pipeline_pb2.Pipeline.FromString(guest_pipeline), pipeline_pb2.Pipeline.FromString(data)
    assert (after.model_id, after.model_version) == ("arbiter-100#guest-99#host-100#model", "202401010000000000000")
    assert json.loads(after.roles) == NEW
    assert (after.initiator_role, after.initiator_party_id) == ("guest", 99)
    train, old_train = json.loads(after.train_runtime_conf), json.loads(before.train_runtime_conf)
    assert train["role"] == NEW and train["initiator"] == {"role": "guest", "party_id": 99}  # typed as the roles
    assert (train["job_parameters"]["common"]["model_id"], train["job_parameters"]["common"]["model_version"]) == (
        new_model_id,
        "202401010000000000000",
    )
    assert train["component_parameters"] == old_train["component_parameters"]
    on_party = json.loads(after.runtime_conf_on_party)
    assert on_party["role"] == NEW and on_party["initiator"] == {"role": "guest", "party_id": 99}
    assert (on_party["job_parameters"]["model_id"], on_party["job_parameters"]["model_version"]) == (
        new_model_id,
        "202401010000000000000",
    )
    for name in ("train_dsl", "inference_dsl", "fate_version", "parent", "loaded_times", "parent_info"):
        assert getattr(after, name) == getattr(before, name), name
    for conf in (train, on_party):
        assert "9999" not in json.dumps([conf["role"], conf["initiator"]]) + after.model_id


def test_pipeline_keeps_string_party_ids_as_strings(guest_pipeline: bytes) -> None:
    roles = {role: [str(p) for p in ids] for role, ids in NEW.items()}
    after = pipeline_pb2.Pipeline.FromString(
        rewrite_pipeline(guest_pipeline, gen_model_id(roles), "v2", roles, ("guest", 99))
    )
    assert json.loads(after.roles) == roles
    assert json.loads(after.train_runtime_conf)["initiator"] == {"role": "guest", "party_id": "99"}
    assert after.initiator_party_id == 99


def test_pipeline_of_fate_before_1_5_1_keeps_its_initiator_fields(guest_pipeline: bytes) -> None:
    old = pipeline_pb2.Pipeline.FromString(guest_pipeline)
    old.fate_version = "1.5.0"
    after = pipeline_pb2.Pipeline.FromString(rewrite_pipeline(old.SerializeToString(), "m", "v", NEW, ("guest", 99)))
    assert (after.initiator_role, after.initiator_party_id) == ("guest", 9999)
    assert after.runtime_conf_on_party == old.runtime_conf_on_party
    assert json.loads(after.train_runtime_conf)["role"] == NEW and after.model_id == "m"


def test_pipeline_refuses_a_non_integer_initiator_and_damaged_bytes(guest_pipeline: bytes) -> None:
    with pytest.raises(RegistryError) as caught:
        rewrite_pipeline(guest_pipeline, "m", "v", {"guest": ["g"]}, ("guest", "g"))
    assert caught.value.fate_retcode == 100
    with pytest.raises(RegistryError) as caught:
        rewrite_pipeline(guest_pipeline, "m", "v", NEW, ("guest", 2**31))
    with pytest.raises(RegistryError) as caught:
        rewrite_pipeline(b"\xff\xff", "m", "v", NEW, ("guest", 99))
    assert caught.value.reason is Reason.DATA_LOSS
