"""FATE's JSON answers, shaped from response messages."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from client import render
from client.sdk import ExportResult
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

MODEL_ID = "arbiter-10000#guest-9999#host-10000#model"
CREATED = datetime.datetime(2021, 11, 9, 3, 22, 16, tzinfo=datetime.UTC)


def ok(role: str, party_id: str, retmsg: str = "success") -> common.PartyResult:
    return common.PartyResult(role=role, party_id=party_id, retcode=0, retmsg=retmsg)


def local_date(moment: datetime.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# Envelope and errors ------------------------------------------------------------------------------


def test_envelope_leaves_out_null_values() -> None:
    assert render.envelope() == {"retcode": 0, "retmsg": "success"}
    assert render.envelope(data=[], job_id="") == {"retcode": 0, "retmsg": "success", "data": []}
    assert render.envelope(101, "failed", job_id="2021", meta={"a": 1}) == {
        "retcode": 101,
        "retmsg": "failed",
        "jobId": "2021",
        "meta": {"a": 1},
    }


def test_dumps_keeps_non_ascii_text() -> None:
    text = render.dumps(render.envelope(retmsg="模型"))
    assert "模型" in text
    assert text.startswith('{\n    "retcode": 0,')


def test_error_answers_carry_the_fate_retcode() -> None:
    assert render.error_answer(RegistryError(Reason.MODEL_NOT_FOUND, "Model x does not exist.")) == {
        "retcode": 404,
        "retmsg": "Model x does not exist.",
    }
    assert render.error_answer(RegistryError(Reason.INTERNAL, "boom", retcode=123))["retcode"] == 123


def test_unexpected_errors_name_the_class_only() -> None:
    answer = render.unexpected_answer(ValueError("password=hunter2 in /secret/path"))
    assert answer["retcode"] == 100
    assert "ValueError" in answer["retmsg"]
    assert "hunter2" not in answer["retmsg"]
    assert "(" not in answer["retmsg"]


def test_exit_code_follows_the_retcode() -> None:
    assert render.exit_code(render.envelope()) == 0
    assert render.exit_code(render.envelope(101, "failed")) == 1


# Multi-party answers ------------------------------------------------------------------------------


def test_load_answer_in_fates_shape() -> None:
    response = pb.LoadModelResponse(job_id="202111091122168817080", results=[ok("guest", "9999"), ok("host", "10000")])
    assert render.load_answer(response) == {
        "retcode": 0,
        "retmsg": "success",
        "jobId": "202111091122168817080",
        "data": {
            "guest": {"9999": 0},
            "host": {"10000": 0},
            "detail": {
                "guest": {"9999": {"retcode": 0, "retmsg": "success"}},
                "host": {"10000": {"retcode": 0, "retmsg": "success"}},
            },
        },
    }


def test_one_failed_party_fails_the_whole_answer() -> None:
    failed = common.PartyResult(
        role="host", party_id="10000", retcode=105, retmsg="party 10000 is unreachable", reason="PARTY_UNAVAILABLE"
    )
    answer = render.multi_party_answer([ok("guest", "9999"), ok("host", "10001"), failed])
    assert (answer["retcode"], answer["retmsg"]) == (101, "failed")
    assert answer["data"]["host"] == {"10001": 0, "10000": 105}
    assert answer["data"]["detail"]["host"]["10000"] == {
        "retcode": 105,
        "retmsg": "party 10000 is unreachable",
        "reason": "PARTY_UNAVAILABLE",
    }
    assert "jobId" not in answer


def test_bind_and_deploy_answers() -> None:
    bound = render.bind_answer(pb.BindModelResponse(service_id="123", results=[ok("guest", "9999")]))
    assert (bound["retcode"], bound["retmsg"]) == (0, "service id is 123")
    deployed = render.deploy_answer(
        pb.DeployModelResponse(model_id=MODEL_ID, model_version="202111032227378766180", results=[ok("arbiter", "1")])
    )
    assert deployed["data"]["model_id"] == MODEL_ID
    assert deployed["data"]["model_version"] == "202111032227378766180"
    assert deployed["data"]["arbiter"] == {"1": 0}


def test_migrate_answer_lists_the_archives() -> None:
    response = pb.MigrateModelResponse(
        job_id="2021",
        model_id="arbiter-100#guest-99#host-100#model",
        model_version="2021",
        results=[ok("guest", "9999")],
        archives=[pb.MigratedArchive(party=common.Party(role="guest", party_id="9999"), path="/tmp/g.zip")],
    )
    answer = render.migrate_answer(response)
    assert answer["jobId"] == "2021"
    assert answer["data"]["archives"] == {"guest": {"9999": "/tmp/g.zip"}}
    assert answer["data"]["guest"] == {"9999": 0}


# get-model-info -----------------------------------------------------------------------------------


def party_model_info(**extra: Any) -> common.PartyModelInfo:
    fields: dict[str, Any] = dict(
        role="guest",
        party_id="9999",
        model_id=MODEL_ID,
        model_version="202111091122168817080",
        roles_json='{"guest": [9999], "host": [10000], "arbiter": [10000]}',
        create_time=Timestamp(seconds=int(CREATED.timestamp())),
        loaded_times=2,
        size_kib=123,
        parent=True,
        initiator_role="guest",
        initiator_party_id="9999",
        fate_version="1.11.2",
        train_dsl_json='{"components": {}}',
        train_runtime_conf_json='{"dsl_version": 2}',
        inference_dsl_json='{"components": {"reader_0": {}}}',
        runtime_conf_on_party_json='{"local": {"role": "guest"}}',
        job_id="202111091122168817080",
        manifest_digest="ab" * 32,
        file_count=7,
        size_bytes=125_952,
    )
    return common.PartyModelInfo(**{**fields, **extra})


def test_model_info_rows_have_fates_query_columns_only() -> None:
    answer = render.model_info_answer(pb.GetModelInfoResponse(models=[party_model_info()]), detail=False)
    assert (answer["retcode"], answer["retmsg"]) == (0, "Query model info from db success.")
    assert answer["data"] == [
        {
            "f_create_date": local_date(CREATED),
            "f_role": "guest",
            "f_party_id": "9999",
            "f_roles": {"guest": [9999], "host": [10000], "arbiter": [10000]},
            "f_model_id": MODEL_ID,
            "f_model_version": "202111091122168817080",
            "f_loaded_times": 2,
            "f_size": 123,
            "f_parent": True,
        }
    ]


def test_model_info_rows_with_detail_have_every_column() -> None:
    info = party_model_info(parent_info_json='{"parent_model_id": "m", "parent_model_version": "v"}', imported=True)
    row = render.model_info_row(info, detail=True)
    assert row["f_parent_info"] == {"parent_model_id": "m", "parent_model_version": "v"}
    assert row["f_train_dsl"] == {"components": {}}
    assert row["f_train_runtime_conf"] == row["f_runtime_conf"] == {"dsl_version": 2}
    assert row["f_inference_dsl"] == {"components": {"reader_0": {}}}
    assert row["f_runtime_conf_on_party"] == {"local": {"role": "guest"}}
    assert row["f_imported"] == 1
    assert row["f_create_time"] == int(CREATED.timestamp()) * 1000
    assert (row["f_job_id"], row["f_initiator_role"], row["f_initiator_party_id"]) == (
        "202111091122168817080",
        "guest",
        "9999",
    )
    assert (row["f_manifest_digest"], row["f_size_bytes"], row["f_file_count"]) == ("ab" * 32, 125_952, 7)
    assert row["f_fate_version"] == "1.11.2"


def test_model_info_keeps_a_json_column_that_is_not_json_as_text() -> None:
    row = render.model_info_row(party_model_info(roles_json="not json"), detail=False)
    assert row["f_roles"] == "not json"


def test_no_model_is_fates_retcode_100_with_empty_data() -> None:
    answer = render.model_info_answer(pb.GetModelInfoResponse(), detail=True)
    assert answer["retcode"] == 100
    assert answer["retmsg"].startswith("Query model info failed, cannot find model from db and local model files.")
    assert answer["data"] == []


def test_model_info_lists_parties_whose_detail_failed() -> None:
    failure = common.PartyResult(role="host", party_id="10000", retcode=105, retmsg="unreachable", reason="X")
    response = pb.GetModelInfoResponse(models=[party_model_info()], failures=[failure])
    answer = render.model_info_answer(response, detail=True)
    assert answer["retcode"] == 0
    assert answer["meta"] == {"failures": {"host": {"10000": {"retcode": 105, "retmsg": "unreachable", "reason": "X"}}}}


# Single-party answers -----------------------------------------------------------------------------


def test_import_answer() -> None:
    ref = common.PartyModelRef(role="guest", party_id="9999", model_id=MODEL_ID, model_version="v1")
    result = common.ImportModelResult(model=ref, job_id="2022", manifest_digest="d" * 64, archive_sha256="a" * 64)
    assert render.import_answer(result) == {
        "retcode": 0,
        "retmsg": "success",
        "data": {
            "job_id": "2022",
            "role": "guest",
            "party_id": "9999",
            "model_id": MODEL_ID,
            "model_version": "v1",
            "sha256": "a" * 64,
            "manifest_digest": "d" * 64,
        },
    }


def test_export_answer() -> None:
    answer = render.export_answer(ExportResult(path=Path("/out/m.zip"), size=10, crc32=0xE))
    assert answer["retcode"] == 0
    assert answer["data"] == {"size": 10, "crc32": "0000000e"}
    assert answer["file"] == "/out/m.zip"
    assert answer["retmsg"] == "download successfully, please check /out/m.zip"


def test_checkpoint_answers() -> None:
    created = Timestamp()
    created.FromDatetime(datetime.datetime(2021, 11, 7, 2, 34, 54, 683015))
    checkpoint = common.Checkpoint(
        create_time=created,
        step_index=0,
        step_name="step_name",
        models={"LRParam": common.CheckpointBuffer(buffer_name="LRModelParam", sha1="e3cb")},
    )
    listed = render.checkpoint_list_answer(pb.ListCheckpointsResponse(checkpoints=[checkpoint]))
    assert listed["data"] == [
        {
            "create_time": "2021-11-07T02:34:54.683015",
            "step_index": 0,
            "step_name": "step_name",
            "models": {"LRParam": {"buffer_name": "LRModelParam", "sha1": "e3cb"}},
        }
    ]
    got = render.checkpoint_answer(pb.GetCheckpointResponse(checkpoint=checkpoint, models={"LRParam": b"\x01\x02"}))
    assert got["data"]["models"] == {"LRParam": "AQI="}


def test_homo_convert_rows_are_the_converted_components() -> None:
    ref = common.PartyModelRef(role="guest", party_id="9999", model_id=MODEL_ID, model_version="v1")
    path = "variables/data/homo_lr_0/model/converted_model/sklearn.joblib"
    response = pb.HomoConvertModelResponse(
        model=ref,
        converted_files=[path],
        components=[
            common.ConvertedComponent(
                component_name="homo_lr_0", model_alias="model", framework_name="sklearn", converted_model_path=path
            )
        ],
    )
    answer = render.homo_convert_answer(response)
    assert f"in model guest#9999#{MODEL_ID}:v1 completed" in answer["retmsg"]
    assert answer["data"] == [{"component_name": "homo_lr_0", "model_alias": "model", "converted_model_path": path}]


def test_tag_list_answer() -> None:
    assert render.tag_list_answer(pb.ListModelTagsResponse(tags=[pb.Tag(name="a", description="b")]))["data"] == {
        "tags": [{"name": "a", "description": "b"}],
        "count": 1,
    }


def test_paged_answers_carry_the_next_page_token() -> None:
    version = pb.ModelVersion(
        model_id=MODEL_ID,
        model_version="v1",
        create_time=Timestamp(seconds=int(CREATED.timestamp())),
        parties=[common.Party(role="guest", party_id="9999"), common.Party(role="host", party_id="10000")],
        size_bytes=8192,
        state="bound",
        tags=["prod"],
    )
    answer = render.versions_answer(pb.ListModelVersionsResponse(versions=[version], next_page_token="t2"))
    assert answer["meta"] == {"next_page_token": "t2"}
    assert answer["data"] == [
        {
            "model_id": MODEL_ID,
            "model_version": "v1",
            "create_date": local_date(CREATED),
            "roles": {"guest": ["9999"], "host": ["10000"]},
            "size_bytes": 8192,
            "state": "bound",
            "tags": ["prod"],
        }
    ]
    operation = pb.Operation(operation_id="1", operation="deploy", status="failed", retcode=101, retmsg="failed")
    answer = render.operations_answer(pb.ListOperationsResponse(operations=[operation]))
    assert "meta" not in answer
    assert json.loads(render.dumps(answer))["data"][0]["operation"] == "deploy"
