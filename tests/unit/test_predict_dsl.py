"""Predict DSL derivation (FATE-Flow's deploy_component), user predict DSLs, conf template."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fate_registry.errors import Reason, RegistryError
from fate_registry.fate_models import ModelSpec, train_dsl, train_runtime_conf
from registry_server.predict_dsl import (
    derive_predict_dsl,
    predict_conf_template,
    validate_predict_dsl,
)

# FATE's examples/dsl/v2/hetero_logistic_regression/hetero_lr_normal_predict_dsl.json, key for key.
HETERO_LR_NORMAL_PREDICT_DSL: dict[str, Any] = {
    "components": {
        "data_transform_0": {
            "input": {"data": {"data": ["reader_0.data"]}, "model": ["pipeline.data_transform_0.model"]},
            "module": "DataTransform",
            "output": {"data": ["data"]},
        },
        "hetero_lr_0": {
            "input": {"data": {"test_data": ["intersection_0.data"]}, "model": ["pipeline.hetero_lr_0.model"]},
            "module": "HeteroLR",
            "output": {"data": ["data"]},
        },
        "intersection_0": {
            "input": {"data": {"data": ["data_transform_0.data"]}},
            "module": "Intersection",
            "output": {"data": ["data"]},
        },
        "reader_0": {"module": "Reader", "output": {"data": ["data"]}},
    }
}


def component(
    module: str, data: dict[str, list[str]] | None = None, outputs: tuple[str, ...] = ("data",), **inputs: list[str]
) -> dict[str, Any]:
    """A training DSL component: ``data`` inputs, other inputs (model, isometric_model, cache) and output kinds."""
    spec: dict[str, Any] = {"module": module}
    if data is not None or inputs:
        spec["input"] = {**inputs, **({"data": data} if data is not None else {})}
    spec["output"] = {kind: ["data"] if kind == "data" else [kind] for kind in outputs}
    return spec


def selection_dsl() -> dict[str, Any]:
    """HeteroLR behind feature binning and selection (selection takes binning's model as isometric_model)."""
    return {
        "components": {
            "reader_0": component("Reader"),
            "data_transform_0": component("DataTransform", {"data": ["reader_0.data"]}, ("data", "model")),
            "intersection_0": component("Intersection", {"data": ["data_transform_0.data"]}),
            "hetero_feature_binning_0": component(
                "HeteroFeatureBinning", {"data": ["intersection_0.data"]}, ("data", "model")
            ),
            "hetero_feature_selection_0": component(
                "HeteroFeatureSelection",
                {"data": ["hetero_feature_binning_0.data"]},
                ("data", "model"),
                isometric_model=["hetero_feature_binning_0.model"],
            ),
            "hetero_lr_0": component(
                "HeteroLR", {"train_data": ["hetero_feature_selection_0.data"]}, ("data", "model")
            ),
            "evaluation_0": component("Evaluation", {"data": ["hetero_lr_0.data"]}),
        }
    }


def error_of(call: Any, *args: Any) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        call(*args)
    return caught.value


# derive_predict_dsl on FATE's example jobs -----------------------------------------------------------


def test_hetero_lr_without_evaluation_is_fates_example_predict_dsl() -> None:
    predict = derive_predict_dsl(
        train_dsl("hetero_lr"), ["reader_0", "data_transform_0", "intersection_0", "hetero_lr_0"]
    )
    assert predict == HETERO_LR_NORMAL_PREDICT_DSL
    # Topological order of the training DSL.
    assert list(predict["components"]) == ["reader_0", "data_transform_0", "intersection_0", "hetero_lr_0"]


def test_hetero_lr_with_every_component_adds_evaluation() -> None:
    for cpn_list in (None, [], list(train_dsl("hetero_lr")["components"])):
        predict = derive_predict_dsl(train_dsl("hetero_lr"), cpn_list)
        assert predict["components"]["evaluation_0"] == {
            "module": "Evaluation",
            "output": {"data": ["data"]},
            "input": {"data": {"data": ["hetero_lr_0.data"]}},
        }
        expected = {**HETERO_LR_NORMAL_PREDICT_DSL["components"], "evaluation_0": predict["components"]["evaluation_0"]}
        assert predict["components"] == expected


def test_homo_lr_predicts_with_test_data_and_its_pipeline_model() -> None:
    predict = derive_predict_dsl(train_dsl("homo_lr"), None)
    assert list(predict["components"]) == ["reader_0", "data_transform_0", "homo_lr_0", "evaluation_0"]
    assert predict["components"]["homo_lr_0"] == {
        "module": "HomoLR",
        "input": {"model": ["pipeline.homo_lr_0.model"], "data": {"test_data": ["data_transform_0.data"]}},
        "output": {"data": ["data"]},
    }


def test_the_training_dsl_is_left_untouched() -> None:
    dsl = train_dsl("hetero_lr")
    before = copy.deepcopy(dsl)
    predict = derive_predict_dsl(dsl, None)
    predict["components"]["reader_0"]["output"]["data"].append("changed")
    assert dsl == before


def test_a_reader_left_out_is_dropped_from_its_readers_input() -> None:
    predict = derive_predict_dsl(train_dsl("hetero_lr"), ["data_transform_0", "hetero_lr_0"])
    assert predict == {
        "components": {
            # reader_0.data is dangling: data_transform_0 keeps only its model and no input.data.
            "data_transform_0": {
                "module": "DataTransform",
                "input": {"model": ["pipeline.data_transform_0.model"]},
                "output": {"data": ["data"]},
            },
            # intersection_0 is left out: hetero_lr_0 reads what intersection_0 read.
            "hetero_lr_0": {
                "module": "HeteroLR",
                "input": {"model": ["pipeline.hetero_lr_0.model"], "data": {"test_data": ["data_transform_0.data"]}},
                "output": {"data": ["data"]},
            },
        }
    }


def test_a_derived_predict_dsl_passes_the_user_dsl_check() -> None:
    for algorithm in ("hetero_lr", "homo_lr"):
        dsl = train_dsl(algorithm)
        predict = derive_predict_dsl(dsl, None)
        assert validate_predict_dsl(predict, dsl) == predict
        assert validate_predict_dsl(json.dumps(predict), dsl) == predict


# Pass-through of components left out ------------------------------------------------------------


def test_components_left_out_pass_their_input_through_transitively() -> None:
    predict = derive_predict_dsl(
        selection_dsl(), ["reader_0", "data_transform_0", "intersection_0", "hetero_lr_0", "evaluation_0"]
    )
    assert "hetero_feature_selection_0" not in predict["components"]
    assert "hetero_feature_binning_0" not in predict["components"]
    # selection read binning's data, binning read intersection_0's: LR reads what selection consumed, in the end.
    assert predict["components"]["hetero_lr_0"]["input"]["data"] == {"test_data": ["intersection_0.data"]}
    assert predict["components"]["evaluation_0"]["input"] == {"data": {"data": ["hetero_lr_0.data"]}}


def test_a_deployed_middle_component_stops_the_pass_through() -> None:
    predict = derive_predict_dsl(selection_dsl(), ["hetero_feature_binning_0", "hetero_lr_0"])
    assert predict["components"]["hetero_lr_0"]["input"]["data"] == {"test_data": ["hetero_feature_binning_0.data"]}
    # intersection_0 is not deployed and binning's own input resolves to data_transform_0, which is not either,
    # and then to reader_0, which is not deployed: binning's input.data is dropped.
    assert predict["components"]["hetero_feature_binning_0"]["input"] == {
        "model": ["pipeline.hetero_feature_binning_0.model"]
    }


def test_training_model_inputs_are_replaced_by_the_components_own_pipeline_model() -> None:
    dsl = selection_dsl()
    dsl["components"]["hetero_lr_1"] = component(
        "HeteroLR", {"train_data": ["hetero_feature_selection_0.data"]}, ("data", "model"), model=["hetero_lr_0.model"]
    )
    predict = derive_predict_dsl(dsl, None)
    # isometric_model (binning → selection) and a warm start model (hetero_lr_0 → hetero_lr_1) are not carried over.
    assert predict["components"]["hetero_feature_selection_0"]["input"] == {
        "model": ["pipeline.hetero_feature_selection_0.model"],
        "data": {"data": ["hetero_feature_binning_0.data"]},
    }
    assert predict["components"]["hetero_lr_1"]["input"] == {
        "model": ["pipeline.hetero_lr_1.model"],
        "data": {"test_data": ["hetero_feature_selection_0.data"]},
    }


def test_a_model_input_without_an_output_model_leaves_an_empty_input() -> None:
    dsl = train_dsl("hetero_lr")
    dsl["components"]["hetero_lr_1"] = component("HeteroLR", None, (), model=["hetero_lr_0.model"])
    assert derive_predict_dsl(dsl, None)["components"]["hetero_lr_1"] == {"module": "HeteroLR", "input": {}}


# Data keys ----------------------------------------------------------------------------------------


def test_only_the_first_data_key_is_kept_and_validate_data_is_dropped() -> None:
    dsl = train_dsl("hetero_lr")
    dsl["components"]["hetero_lr_0"]["input"]["data"] = {
        "validate_data": ["data_transform_0.data"],
        "train_data": ["intersection_0.data"],
    }
    data = derive_predict_dsl(dsl, None)["components"]["hetero_lr_0"]["input"]["data"]
    assert data == {"test_data": ["intersection_0.data"]}


@pytest.mark.parametrize(
    ("train_key", "predict_key"),
    [("data", "data"), ("train_data", "test_data"), ("validate_data", "test_data"), ("test_data", "test_data")],
)
def test_data_keys_are_renamed_for_predicting(train_key: str, predict_key: str) -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["homo_lr_0"]["input"]["data"] = {train_key: ["data_transform_0.data"]}
    data = derive_predict_dsl(dsl, None)["components"]["homo_lr_0"]["input"]["data"]
    assert data == {predict_key: ["data_transform_0.data"]}


def test_data_takes_precedence_over_train_data() -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["homo_lr_0"]["input"]["data"] = {
        "train_data": ["reader_0.data"],
        "data": ["data_transform_0.data"],
    }
    data = derive_predict_dsl(dsl, None)["components"]["homo_lr_0"]["input"]["data"]
    assert data == {"data": ["data_transform_0.data"]}


def test_eval_data_alone_gives_no_predict_input() -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["homo_lr_0"]["input"]["data"] = {"eval_data": ["data_transform_0.data"]}
    assert derive_predict_dsl(dsl, None)["components"]["homo_lr_0"]["input"] == {"model": ["pipeline.homo_lr_0.model"]}


def test_a_component_left_out_passes_its_train_data_before_its_data() -> None:
    dsl = selection_dsl()
    dsl["components"]["hetero_feature_selection_0"]["input"]["data"] = {
        "data": ["hetero_feature_binning_0.data"],
        "test_data": ["data_transform_0.data"],
    }
    predict = derive_predict_dsl(dsl, ["data_transform_0", "hetero_feature_binning_0", "hetero_lr_0"])
    assert predict["components"]["hetero_lr_0"]["input"]["data"] == {"test_data": ["data_transform_0.data"]}


def test_a_component_left_out_with_only_validate_data_cannot_pass_through() -> None:
    dsl = selection_dsl()
    dsl["components"]["hetero_feature_selection_0"]["input"]["data"] = {"validate_data": ["intersection_0.data"]}
    error = error_of(derive_predict_dsl, dsl, ["reader_0", "hetero_lr_0"])
    assert error.reason is Reason.INVALID_ARGUMENT
    assert "hetero_feature_selection_0 is not deployed" in error.message
    assert "train_data, eval_data, test_data, data" in error.message


def test_several_outputs_of_a_component_left_out_all_stand_for_its_input() -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["data_split_0"] = {
        "module": "HomoDataSplit",
        "input": {"data": {"data": ["data_transform_0.data"]}},
        "output": {"data": ["train_data", "validate_data", "test_data"]},
    }
    dsl["components"]["homo_lr_0"]["input"]["data"] = {
        "train_data": ["data_split_0.train_data"],
        "validate_data": ["data_split_0.validate_data"],
    }
    predict = derive_predict_dsl(dsl, ["reader_0", "data_transform_0", "homo_lr_0"])
    assert predict["components"]["homo_lr_0"]["input"]["data"] == {"test_data": ["data_transform_0.data"]}


def test_a_component_left_out_without_data_input_cannot_be_passed_through() -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["data_transform_0"]["input"] = {"model": ["reader_0.data"]}  # not a data input
    dsl["components"]["reader_0"]["output"]["model"] = ["model"]
    error = error_of(derive_predict_dsl, dsl, ["homo_lr_0"])
    assert "component data_transform_0 is not deployed and has no data input" in error.message


# Cache, outputs, providers --------------------------------------------------------------------------


def test_cache_is_copied_when_its_source_is_deployed() -> None:
    dsl = train_dsl("hetero_lr")
    dsl["components"]["intersection_0"]["output"]["cache"] = ["cache"]
    dsl["components"]["intersection_1"] = component(
        "Intersection", {"data": ["data_transform_0.data"]}, cache=["intersection_0.cache"]
    )
    predict = derive_predict_dsl(dsl, None)
    assert predict["components"]["intersection_0"]["output"] == {"data": ["data"], "cache": ["cache"]}
    assert predict["components"]["intersection_1"]["input"] == {
        "data": {"data": ["data_transform_0.data"]},
        "cache": ["intersection_0.cache"],
    }
    error = error_of(derive_predict_dsl, dsl, ["data_transform_0", "intersection_1"])
    assert "intersection_1 reads the cache intersection_0.cache, but intersection_0 is not deployed" in error.message


def test_non_null_outputs_are_copied_and_providers_kept() -> None:
    dsl = train_dsl("homo_lr")
    dsl["provider"] = "fate@1.11.4"
    dsl["components"]["homo_lr_0"]["provider"] = "fate@1.11.4"
    dsl["components"]["homo_lr_0"]["output"]["extra"] = None
    dsl["components"]["evaluation_0"]["output"]["custom"] = ["x"]
    predict = derive_predict_dsl(dsl, ["data_transform_0", "homo_lr_0", "evaluation_0"])
    assert predict["provider"] == "fate@1.11.4"
    assert predict["components"]["homo_lr_0"]["provider"] == "fate@1.11.4"
    assert predict["components"]["homo_lr_0"]["output"] == {"data": ["data"]}
    assert predict["components"]["evaluation_0"]["output"] == {"data": ["data"], "custom": ["x"]}
    assert "provider" not in predict["components"]["data_transform_0"]


# Errors of derive_predict_dsl ------------------------------------------------------------------------


def test_unknown_components_are_named() -> None:
    error = error_of(derive_predict_dsl, train_dsl("hetero_lr"), ["hetero_lr_0", "secureboost_0", "reader_9"])
    assert error.reason is Reason.INVALID_ARGUMENT
    assert error.message == (
        "components reader_9, secureboost_0 do not exist in the training DSL, so they cannot be deployed"
    )
    assert error.metadata == {"unknown_components": "reader_9,secureboost_0"}


def test_args_references_are_refused_as_fate_v2_does() -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["data_transform_0"]["input"]["data"] = {"data": ["args.train_data"]}
    error = error_of(derive_predict_dsl, dsl, None)
    assert "input data of component data_transform_0 refers to args" in error.message
    assert "DSL v2 has no args inputs" in error.message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.pop("hetero_lr_0"), "refers to hetero_lr_0, which is not a component"),
        (lambda c: c["hetero_lr_0"]["output"].update(data=["other"]), "hetero_lr_0 has no data output 'data'"),
        (lambda c: c["hetero_lr_0"]["output"].pop("model"), "hetero_lr_0 has no model output 'model'"),
        (lambda c: c["evaluation_0"]["input"]["data"].update(data=["hetero_lr_0"]), "'<component>.<output name>'"),
        (lambda c: c["evaluation_0"]["input"].update(data=["hetero_lr_0.data"]), "must be a JSON object"),
        (lambda c: c["evaluation_0"]["input"]["data"].update(data="hetero_lr_0.data"), "must be a list"),
        (lambda c: c["evaluation_0"].pop("module"), "component evaluation_0 has no module"),
        (lambda c: c.update({"bad/name": {"module": "Reader"}}), "component name 'bad/name' is not valid"),
        (lambda c: c["reader_0"].update(input={"data": {"data": ["evaluation_0.data"]}}), "dependency loop"),
        (lambda c: c.clear(), "has no components"),
    ],
)
def test_a_malformed_training_dsl_is_refused(change: Any, expected: str) -> None:
    dsl = train_dsl("hetero_lr")
    dsl["components"]["hetero_lr_1"] = component("HeteroLR", None, (), model=["hetero_lr_0.model"])
    change(dsl["components"])
    error = error_of(derive_predict_dsl, dsl, None)
    assert error.reason is Reason.INVALID_ARGUMENT
    assert error.message.startswith("the training DSL")
    assert expected in error.message


def test_a_loop_names_the_components_caught_in_it() -> None:
    dsl = train_dsl("homo_lr")
    dsl["components"]["data_transform_0"]["input"]["data"]["data"].append("evaluation_0.data")
    error = error_of(derive_predict_dsl, dsl, None)
    assert error.message == (
        "the training DSL: components data_transform_0, homo_lr_0, evaluation_0 are in or behind a dependency loop"
    )


# validate_predict_dsl ----------------------------------------------------------------------------


def test_a_user_predict_dsl_is_returned_as_a_copy() -> None:
    dsl = copy.deepcopy(HETERO_LR_NORMAL_PREDICT_DSL)
    checked = validate_predict_dsl(dsl, train_dsl("hetero_lr"))
    assert checked == HETERO_LR_NORMAL_PREDICT_DSL
    checked["components"].clear()
    assert dsl == HETERO_LR_NORMAL_PREDICT_DSL


def test_a_user_predict_dsl_with_an_unknown_component_is_refused() -> None:
    dsl = copy.deepcopy(HETERO_LR_NORMAL_PREDICT_DSL)
    dsl["components"]["hetero_secureboost_0"] = {"module": "HeteroSecureBoost"}
    error = error_of(validate_predict_dsl, dsl, train_dsl("hetero_lr"))
    assert error.reason is Reason.INVALID_ARGUMENT
    assert error.message == (
        "components hetero_secureboost_0 do not exist in the training DSL, so they cannot be deployed"
    )


def test_a_user_predict_dsl_must_keep_the_trained_module() -> None:
    dsl = copy.deepcopy(HETERO_LR_NORMAL_PREDICT_DSL)
    dsl["components"]["hetero_lr_0"]["module"] = "HomoLR"
    error = error_of(validate_predict_dsl, dsl, train_dsl("hetero_lr"))
    assert "gives component hetero_lr_0 the module HomoLR, but it was trained as HeteroLR" in error.message


def test_a_user_predict_dsl_reads_data_from_its_own_components() -> None:
    dsl = copy.deepcopy(HETERO_LR_NORMAL_PREDICT_DSL)
    del dsl["components"]["intersection_0"]
    error = error_of(validate_predict_dsl, dsl, train_dsl("hetero_lr"))
    assert error.message == (
        "the predict DSL: input test_data of component hetero_lr_0 refers to intersection_0, "
        "which is not a component of the DSL"
    )


def test_invalid_json_names_line_and_column() -> None:
    error = error_of(validate_predict_dsl, '{\n  "components": {\n    "reader_0": }\n}', train_dsl("hetero_lr"))
    assert error.reason is Reason.INVALID_ARGUMENT
    assert error.message == "the predict DSL is not valid JSON: Expecting value at line 3, column 17"


@pytest.mark.parametrize(
    ("dsl", "expected"),
    [
        ("[]", "the predict DSL must be a JSON object, not list"),
        ("{}", "the predict DSL has no components"),
        ('{"components": {"reader_0": {}}}', "the predict DSL: component reader_0 has no module"),
        ('{"components": {"reader_0": "Reader"}}', "the predict DSL: component reader_0 must be a JSON object"),
    ],
)
def test_a_user_predict_dsl_needs_components_with_modules(dsl: str, expected: str) -> None:
    assert error_of(validate_predict_dsl, dsl, train_dsl("hetero_lr")).message.startswith(expected)


# predict_conf_template ----------------------------------------------------------------------------


def test_predict_conf_template_of_the_hetero_lr_example() -> None:
    spec = ModelSpec(roles={"guest": [9999], "host": [10000, 10001], "arbiter": [10000]})
    conf = train_runtime_conf(spec)
    before = copy.deepcopy(conf)
    inference = derive_predict_dsl(train_dsl("hetero_lr"), None)
    template = predict_conf_template(conf, inference, spec.model_id, "20240101000000000000001")
    assert conf == before
    assert list(template) == ["dsl_version", "role", "initiator", "job_parameters", "component_parameters"]
    assert template["dsl_version"] == 2
    assert template["role"] == {"guest": [9999], "host": [10000, 10001], "arbiter": [10000]}
    assert template["initiator"] == {"role": "guest", "party_id": 9999}
    assert template["job_parameters"] == {
        "common": {
            **conf["job_parameters"]["common"],
            "model_id": spec.model_id,
            "model_version": "20240101000000000000001",
            "job_type": "predict",
        }
    }
    table = {"reader_0": {"table": {"name": "name_to_be_filled_0", "namespace": "namespace_to_be_filled_0"}}}
    assert template["component_parameters"] == {"role": {"guest": {"0": table}, "host": {"0": table, "1": table}}}


def test_predict_conf_template_counts_readers_in_dsl_order() -> None:
    inference = {
        "components": {
            "reader_1": {"module": "Reader", "output": {"data": ["data"]}},
            "data_transform_0": {"module": "DataTransform", "CodePath": "DataTransform"},
            "reader_0": {"module": "Reader", "output": {"data": ["data"]}},
        }
    }
    template = predict_conf_template(train_runtime_conf(ModelSpec()), inference, "m", "v")
    assert template["component_parameters"]["role"]["guest"]["0"] == {
        "reader_1": {"table": {"name": "name_to_be_filled_0", "namespace": "namespace_to_be_filled_0"}},
        "reader_0": {"table": {"name": "name_to_be_filled_1", "namespace": "namespace_to_be_filled_1"}},
    }


def test_predict_conf_template_keeps_role_job_parameters() -> None:
    conf = train_runtime_conf(ModelSpec())
    conf["job_parameters"] = {"common": {"task_cores": 2}, "role": {"guest": {"0": {"task_cores": 1}}}}
    template = predict_conf_template(conf, derive_predict_dsl(train_dsl("hetero_lr"), None), "m", "v")
    assert template["job_parameters"] == {
        "common": {"task_cores": 2, "model_id": "m", "model_version": "v", "job_type": "predict"},
        "role": {"guest": {"0": {"task_cores": 1}}},
    }


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("role", "the model's training runtime conf has no role"),
        ("initiator", "the model's training runtime conf has no initiator"),
        ("job_parameters", "the model's training runtime conf has no job_parameters.common"),
    ],
)
def test_predict_conf_template_needs_role_initiator_and_common(missing: str, expected: str) -> None:
    conf = train_runtime_conf(ModelSpec())
    del conf[missing]
    error = error_of(predict_conf_template, conf, derive_predict_dsl(train_dsl("hetero_lr"), None), "m", "v")
    assert error.reason is Reason.INVALID_ARGUMENT
    assert error.message.startswith(expected)


def test_predict_conf_template_needs_job_parameters_common() -> None:
    conf = train_runtime_conf(ModelSpec())
    conf["job_parameters"] = {"role": {}}
    error = error_of(predict_conf_template, conf, derive_predict_dsl(train_dsl("hetero_lr"), None), "m", "v")
    assert error.metadata == {"missing": "job_parameters.common"}
