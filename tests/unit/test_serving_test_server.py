"""The FATE-Serving test server answers like FATE-Serving 2.1, records what it gets and fails on demand."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from fate_registry.fate import model_service_pb2 as pb
from fate_registry.fate import model_service_pb2_grpc
from fate_registry.fate_models import ModelSpec, read_define_meta, write_party_model
from tests.support.serving import CRASH_EXIT_CODE, MODEL_INIT_MESSAGE, PIPELINE_KEY, Faults, ServingOptions
from tests.support.serving_process import ServingTestServer

TRANSFER_PATH = "/v1/model/transfer"


def transfer_map(version_dir: Path) -> dict[str, str]:
    """FATE-Flow's transfer ``data``: every buffer of the define meta's proto index, base64."""
    model_proto: dict[str, dict[str, dict[str, str]]] = read_define_meta(version_dir)["model_proto"]
    data = {}
    for component, aliases in model_proto.items():
        for alias, names in aliases.items():
            for name in names:
                buffer = (version_dir / "variables" / "data" / component / alias / name).read_bytes()
                data[f"{component}.{alias}:{name}"] = base64.b64encode(buffer).decode("ascii")
    return data


@dataclass
class TransferEndpoint:
    """FATE-Flow's ``POST /v1/model/transfer`` on a loopback port, serving generated models."""

    server: ThreadingHTTPServer
    models: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (namespace, name) → data
    answers: dict[tuple[str, str], tuple[int, bytes]] = field(default_factory=dict)  # overrides: status, body
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{TRANSFER_PATH}"

    def answer(self, namespace: str, name: str) -> tuple[int, bytes]:
        if (namespace, name) in self.answers:
            return self.answers[namespace, name]
        if (namespace, name) not in self.models:
            return 404, json.dumps({"retcode": 404, "retmsg": "model not found"}).encode()
        payload = {"retcode": 0, "retmsg": "success", "data": self.models[namespace, name]}
        return 200, json.dumps(payload).encode()


@pytest.fixture
def transfer() -> Iterator[TransferEndpoint]:
    endpoint: TransferEndpoint

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            endpoint.received.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": body})
            status, payload = endpoint.answer(body.get("namespace", ""), body.get("name", ""))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    endpoint = TransferEndpoint(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()
    thread.join(timeout=10)


@dataclass(frozen=True)
class Published:
    """A generated model whose guest 9999 and host 10000 slices the transfer endpoint serves."""

    spec: ModelSpec
    data: dict[tuple[str, str], dict[str, str]]  # (role, party_id) → transfer map

    def namespace(self, role: str, party_id: str) -> str:
        return self.spec.party_model_id(role, party_id)


@pytest.fixture
def published(tmp_path: Path, transfer: TransferEndpoint) -> Published:
    spec = ModelSpec()
    data = {}
    for role, party_id in (("guest", "9999"), ("host", "10000")):
        version_dir = write_party_model(tmp_path / "model_local_cache", spec, role, int(party_id))
        data[role, party_id] = transfer_map(version_dir)
        transfer.models[spec.party_model_id(role, party_id), spec.version] = data[role, party_id]
    return Published(spec, data)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[ServingTestServer]:
    with ServingTestServer.start(tmp_path / "serving") as server:
        yield server


@pytest.fixture
def stub(serving: ServingTestServer) -> Iterator[model_service_pb2_grpc.ModelServiceStub]:
    with grpc.insecure_channel(serving.address) as channel:
        yield model_service_pb2_grpc.ModelServiceStub(channel)


def load_request(spec: ModelSpec, role: str, party_id: str, file_path: str) -> pb.PublishRequest:
    """What FATE-Flow 1.11's ``publish_model.load_model`` sends (fate_serving.md §5.2)."""
    request = pb.PublishRequest(
        local=pb.LocalInfo(role=role, partyId=party_id), loadType="FATEFLOW", filePath=file_path
    )
    for name, party_ids in spec.roles.items():
        request.role[name].partyId.extend(str(p) for p in party_ids)
        for p in party_ids:
            info = request.model[name].roleModelInfo[str(p)]
            info.tableName = spec.version
            info.namespace = spec.party_model_id(name, p)
    return request


def bind_request(spec: ModelSpec, service_id: str) -> pb.PublishRequest:
    """What FATE-Flow 1.11's ``publish_model.bind_model_service`` sends: only the initiator's model (§5.3)."""
    role, party_id = spec.initiator_role, str(spec.initiator)
    request = pb.PublishRequest(serviceId=service_id, local=pb.LocalInfo(role=role, partyId=party_id))
    for name, party_ids in spec.roles.items():
        request.role[name].partyId.extend(str(p) for p in party_ids)
    info = request.model[role].roleModelInfo[party_id]
    info.tableName = spec.version
    info.namespace = spec.party_model_id(role, party_id)
    return request


def query(stub: model_service_pb2_grpc.ModelServiceStub, **fields: Any) -> list[pb.ModelInfoEx]:
    response = stub.queryModel(pb.QueryModelRequest(**fields), timeout=10)
    assert (response.retcode, response.message) == (0, "success")
    return list(response.modelInfos)


def load(
    stub: model_service_pb2_grpc.ModelServiceStub, model: Published, transfer: TransferEndpoint, role: str = "guest"
) -> pb.PublishResponse:
    party_id = "9999" if role == "guest" else "10000"
    response: pb.PublishResponse = stub.publishLoad(load_request(model.spec, role, party_id, transfer.url), timeout=10)
    return response


@pytest.mark.parametrize("encoded", [False, True], ids=["plain-url", "url-encoded"])
def test_load_pulls_the_model_over_http_and_parses_its_pipeline(
    stub: model_service_pb2_grpc.ModelServiceStub,
    transfer: TransferEndpoint,
    published: Published,
    serving: ServingTestServer,
    encoded: bool,
) -> None:
    spec = published.spec
    url = urllib.parse.quote(transfer.url, safe="") if encoded else transfer.url
    response = stub.publishLoad(load_request(spec, "host", "10000", url), timeout=10)
    assert (response.statusCode, response.message, response.error, response.data) == (0, "success", "", b"{}")

    namespace = published.namespace("host", "10000")
    assert transfer.received == [
        {
            "path": TRANSFER_PATH,
            "content_type": "application/json;charset=UTF-8",
            "body": {"name": spec.version, "namespace": namespace},
        }
    ]
    (info,) = query(stub, queryType=2, tableName=spec.version, namespace=namespace)
    assert (info.tableName, info.namespace, list(info.serviceIds), info.index) == (spec.version, namespace, [], 0)
    host, port = transfer.server.server_address[:2]
    assert info.resourceAdress == f"{host!s}:{port}"
    content = json.loads(info.content)
    assert content["pipeline"]["model_version"] == spec.version
    assert content["pipeline"]["model_id"] == spec.model_id
    assert content["pipeline"]["roles"] == {"guest": [9999], "host": [10000], "arbiter": [10000]}
    assert content["pipeline"]["parent"] is True
    assert content["components"] == sorted(published.data["host", "10000"])
    assert PIPELINE_KEY in content["components"]
    assert (content["role"], content["partId"]) == ("host", "10000")
    assert content["federationModelMap"] == {
        "9999": {
            "partId": "9999",
            "role": "guest",
            "tableName": spec.version,
            "namespace": published.namespace("guest", "9999"),
        }
    }


def test_an_arbiter_or_any_other_local_role_loads_as_host(
    stub: model_service_pb2_grpc.ModelServiceStub, transfer: TransferEndpoint, published: Published
) -> None:
    request = load_request(published.spec, "host", "10000", transfer.url)
    request.local.role = "arbiter"  # not guest, hence host: the host entry of 10000 is loaded
    assert stub.publishLoad(request, timeout=10).statusCode == 0
    (info,) = query(stub, queryType=0)
    assert json.loads(info.content)["role"] == "host"
    assert info.namespace == published.namespace("host", "10000")


def _drop_own_entry(request: pb.PublishRequest) -> None:
    del request.model["guest"].roleModelInfo["9999"]


def _drop_remote_role(request: pb.PublishRequest) -> None:
    del request.role["host"]


def _drop_remote_entry(request: pb.PublishRequest) -> None:
    del request.model["host"].roleModelInfo["10000"]


def _file_load_type(request: pb.PublishRequest) -> None:
    request.loadType = "FILE"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop_own_entry, "model info is invalid"),
        (_drop_remote_role, "the request's role map has no host"),
        (_drop_remote_entry, "the request's model map has no host 10000"),
        (_file_load_type, "load type 'FILE' is not supported by this test server"),
    ],
    ids=["own-entry", "remote-role", "remote-entry", "load-type"],
)
def test_load_rejects_a_malformed_request_with_110(
    stub: model_service_pb2_grpc.ModelServiceStub,
    transfer: TransferEndpoint,
    published: Published,
    mutate: Callable[[pb.PublishRequest], None],
    message: str,
) -> None:
    request = load_request(published.spec, "guest", "9999", transfer.url)
    mutate(request)
    response = stub.publishLoad(request, timeout=10)
    assert (response.statusCode, response.message) == (110, message)
    assert transfer.received == []
    assert query(stub, queryType=0) == []


def _not_found(endpoint: TransferEndpoint, key: tuple[str, str]) -> None:
    endpoint.models.pop(key)


def _retcode(endpoint: TransferEndpoint, key: tuple[str, str]) -> None:
    endpoint.answers[key] = 200, json.dumps({"retcode": 100, "retmsg": "no", "data": endpoint.models[key]}).encode()


def _empty_data(endpoint: TransferEndpoint, key: tuple[str, str]) -> None:
    endpoint.answers[key] = 200, json.dumps({"retcode": 0, "data": {}}).encode()


def _no_pipeline(endpoint: TransferEndpoint, key: tuple[str, str]) -> None:
    del endpoint.models[key][PIPELINE_KEY]


def _not_base64(endpoint: TransferEndpoint, key: tuple[str, str]) -> None:
    endpoint.models[key][PIPELINE_KEY] = "not base64!"


def _not_json(endpoint: TransferEndpoint, key: tuple[str, str]) -> None:
    endpoint.answers[key] = 200, b"<html>"


@pytest.mark.parametrize(
    "break_transfer",
    [_not_found, _retcode, _empty_data, _no_pipeline, _not_base64, _not_json],
    ids=["http-404", "retcode", "empty-data", "no-pipeline", "not-base64", "not-json"],
)
def test_a_failed_pull_is_model_init_error_123(
    stub: model_service_pb2_grpc.ModelServiceStub,
    transfer: TransferEndpoint,
    published: Published,
    break_transfer: Callable[[TransferEndpoint, tuple[str, str]], None],
) -> None:
    break_transfer(transfer, (published.namespace("guest", "9999"), published.spec.version))
    response = load(stub, published, transfer)
    assert (response.statusCode, response.message) == (123, MODEL_INIT_MESSAGE)
    assert len(transfer.received) == 1
    assert query(stub, queryType=0) == []


def test_an_unreachable_transfer_url_is_model_init_error_123(
    stub: model_service_pb2_grpc.ModelServiceStub, transfer: TransferEndpoint, published: Published
) -> None:
    url = transfer.url
    transfer.server.shutdown()
    transfer.server.server_close()  # nothing listens on that port any more
    response = stub.publishLoad(load_request(published.spec, "guest", "9999", url), timeout=10)
    assert (response.statusCode, response.message) == (123, MODEL_INIT_MESSAGE)


def test_bind_checks_the_service_id_then_that_the_model_is_loaded(
    stub: model_service_pb2_grpc.ModelServiceStub, transfer: TransferEndpoint, published: Published
) -> None:
    spec = published.spec
    for bad in ("", "   "):
        response = stub.publishBind(bind_request(spec, bad), timeout=10)
        assert (response.statusCode, response.message) == (110, "param service id is blank")
    for bad in ("a?b", "a:b", "a/b", "a&b"):
        response = stub.publishBind(bind_request(spec, bad), timeout=10)
        assert (response.statusCode, response.message) == (
            110,
            'Service id contains special characters, ["?",":","/","&"]',
        )

    key = f"{spec.version}_{published.namespace('guest', '9999')}"
    response = stub.publishBind(bind_request(spec, "svc-A"), timeout=10)
    assert (response.statusCode, response.message) == (104, f"model {key} is not exist ")

    assert load(stub, published, transfer).statusCode == 0
    response = stub.publishBind(bind_request(spec, "svc-A"), timeout=10)
    assert (response.statusCode, response.message, response.data) == (0, "success", b"{}")
    response = stub.publishOnline(bind_request(spec, "Other-B"), timeout=10)  # publishOnline is bind in 2.x
    assert response.statusCode == 0

    (info,) = query(stub, queryType=1, serviceId="SVC")  # case-insensitive substring
    assert list(info.serviceIds) == ["Other-B", "svc-A"]
    assert json.loads(info.content)["serviceIds"] == ["Other-B", "svc-A"]
    assert query(stub, queryType=1, serviceId="nothing") == []
    assert query(stub, queryType=7) == []


def test_bind_looks_the_model_up_under_the_first_party_of_the_role(
    stub: model_service_pb2_grpc.ModelServiceStub, transfer: TransferEndpoint, published: Published
) -> None:
    assert load(stub, published, transfer).statusCode == 0
    request = bind_request(published.spec, "svc")
    request.role["guest"].partyId.insert(0, "8888")  # the initiator is no longer the first guest
    response = stub.publishBind(request, timeout=10)
    assert (response.statusCode, response.message) == (110, "the request's model map has no guest 8888")


def test_unbind_and_unload_as_fate_serving(
    stub: model_service_pb2_grpc.ModelServiceStub, transfer: TransferEndpoint, published: Published
) -> None:
    spec = published.spec
    guest, host = published.namespace("guest", "9999"), published.namespace("host", "10000")
    not_loaded = " found model info, please check if the model is already loaded."

    response = stub.unbind(pb.UnbindRequest(serviceIds=["svc"], tableName=spec.version, namespace=guest), timeout=10)
    assert (response.statusCode, response.message) == (104, not_loaded)
    assert load(stub, published, transfer).statusCode == 0
    assert load(stub, published, transfer, role="host").statusCode == 0
    assert stub.publishBind(bind_request(spec, "svc"), timeout=10).statusCode == 0

    response = stub.unbind(pb.UnbindRequest(tableName=spec.version, namespace=guest), timeout=10)
    assert (response.statusCode, response.message) == (110, "param service id is blank")
    wrong_model = pb.UnbindRequest(serviceIds=["svc"], tableName=spec.version, namespace=host)
    response = stub.unbind(wrong_model, timeout=10)
    assert (response.statusCode, response.message) == (104, "unbind request info is error")
    unknown_id = pb.UnbindRequest(serviceIds=["svc", "other"], tableName=spec.version, namespace=guest)
    assert stub.unbind(unknown_id, timeout=10).statusCode == 104
    response = stub.unbind(pb.UnbindRequest(serviceIds=["svc"], tableName=spec.version, namespace=guest), timeout=10)
    assert (response.statusCode, response.message) == (0, "success")
    assert [list(info.serviceIds) for info in query(stub, queryType=0)] == [[], []]

    assert stub.publishBind(bind_request(spec, "svc"), timeout=10).statusCode == 0
    unloaded = stub.unload(pb.UnloadRequest(tableName=spec.version, namespace=guest), timeout=10)
    assert (unloaded.statusCode, unloaded.message) == (0, "success")
    assert [info.namespace for info in query(stub, queryType=0)] == [host]
    assert query(stub, queryType=1, serviceId="svc") == []  # its service ids went with it
    unloaded = stub.unload(pb.UnloadRequest(tableName=spec.version, namespace=guest), timeout=10)
    assert (unloaded.statusCode, unloaded.message) == (104, not_loaded)


def test_model_sync_calls_answer_130(stub: model_service_pb2_grpc.ModelServiceStub) -> None:
    assert stub.fetchModel(pb.FetchModelRequest(tableName="v", namespace="n"), timeout=10).statusCode == 130
    assert stub.modelTransfer(pb.ModelTransferRequest(tableName="v", namespace="n"), timeout=10).statusCode == 130


def test_every_request_is_recorded_with_the_fields_that_were_set(
    stub: model_service_pb2_grpc.ModelServiceStub,
    serving: ServingTestServer,
    transfer: TransferEndpoint,
    published: Published,
) -> None:
    spec = published.spec
    sent_load = load_request(spec, "guest", "9999", transfer.url)
    stub.publishLoad(sent_load, timeout=10, metadata=(("x-test", "yes"),))
    stub.publishBind(bind_request(spec, "svc"), timeout=10)
    stub.queryModel(pb.QueryModelRequest(queryType=0), timeout=10)

    records = serving.records()
    assert [r["method"] for r in records] == ["publishLoad", "publishBind", "queryModel"]
    loaded = records[0]
    assert set(loaded["request"]) == {"local", "role", "model", "loadType", "filePath"}  # no serviceId, tableName…
    assert loaded["request"]["local"] == {"role": "guest", "partyId": "9999"}
    assert loaded["request"]["role"] == {
        "guest": {"partyId": ["9999"]},
        "host": {"partyId": ["10000"]},
        "arbiter": {"partyId": ["10000"]},
    }
    assert loaded["request"]["model"]["arbiter"]["roleModelInfo"]["10000"] == {
        "tableName": spec.version,
        "namespace": published.namespace("arbiter", "10000"),
    }
    assert (loaded["request"]["loadType"], loaded["request"]["filePath"]) == ("FATEFLOW", transfer.url)
    assert pb.PublishRequest.FromString(base64.b64decode(loaded["raw"])) == sent_load
    assert loaded["metadata"]["x-test"] == "yes"

    bound = serving.records("publishBind")[0]["request"]
    assert set(bound) == {"local", "role", "model", "serviceId"}
    assert list(bound["model"]) == ["guest"]
    assert serving.records("queryModel")[0]["request"] == {}  # queryType 0 is the default: not on the wire


def test_faults_given_at_start_and_an_empty_file_path_uses_the_transfer_url(
    tmp_path: Path, transfer: TransferEndpoint, published: Published
) -> None:
    faults = Faults(fail_load=123, fail_load_message="boom", fail_bind=109, fail_bind_message="no bind")
    with (
        ServingTestServer.start(tmp_path / "failing", faults=faults, transfer_url=transfer.url) as serving,
        grpc.insecure_channel(serving.address) as channel,
    ):
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = load_request(published.spec, "guest", "9999", "")
        response = stub.publishLoad(request, timeout=10)
        assert (response.statusCode, response.message) == (123, "boom")
        assert transfer.received == []  # an injected failure pulls nothing
        response = stub.publishBind(bind_request(published.spec, "svc"), timeout=10)
        assert (response.statusCode, response.message) == (109, "no bind")
        assert [r["method"] for r in serving.records()] == ["publishLoad", "publishBind"]

        serving.set_control(Faults())  # behave: the empty filePath falls back to --transfer-url
        assert stub.publishLoad(request, timeout=10).statusCode == 0
        assert [r["body"]["name"] for r in transfer.received] == [published.spec.version]
        serving.clear_control()
        assert stub.publishLoad(request, timeout=10).statusCode == 123


def test_the_control_file_switches_a_running_server(
    stub: model_service_pb2_grpc.ModelServiceStub,
    serving: ServingTestServer,
    transfer: TransferEndpoint,
    published: Published,
) -> None:
    assert load(stub, published, transfer).statusCode == 0
    serving.set_control(Faults(fail_load=123, fail_load_message="model init failed"))
    response = load(stub, published, transfer)
    assert (response.statusCode, response.message) == (123, "model init failed")

    serving.set_control(Faults(drop="unavailable"))
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as raised:
            stub.queryModel(pb.QueryModelRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

    serving.set_control(Faults(drop="unavailable", drop_times=1))  # a transient failure: one call, then fine
    with pytest.raises(grpc.RpcError) as raised:
        load(stub, published, transfer)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert load(stub, published, transfer).statusCode == 0

    serving.control_path.write_text('{"fail_load": "soon"}', encoding="utf-8")  # invalid: calls fail loudly
    with pytest.raises(grpc.RpcError) as raised:
        stub.queryModel(pb.QueryModelRequest(), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNKNOWN

    serving.clear_control()
    assert len(query(stub, queryType=0)) == 1
    assert [r["method"] for r in serving.records()].count("publishLoad") == 4  # dropped calls are recorded too


def test_delay_holds_every_answer_and_gives_up_with_the_caller(
    stub: model_service_pb2_grpc.ModelServiceStub, serving: ServingTestServer
) -> None:
    serving.set_control(Faults(delay=1.0))
    started = time.monotonic()
    query(stub, queryType=0)
    assert time.monotonic() - started >= 1.0
    with pytest.raises(grpc.RpcError) as raised:
        stub.queryModel(pb.QueryModelRequest(), timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_crash_drops_the_connection_and_ends_the_process(
    stub: model_service_pb2_grpc.ModelServiceStub,
    serving: ServingTestServer,
    transfer: TransferEndpoint,
    published: Published,
) -> None:
    serving.set_control(Faults(drop="crash"))
    with pytest.raises(grpc.RpcError) as raised:
        load(stub, published, transfer)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert serving.wait_exit(timeout=10) == CRASH_EXIT_CODE
    assert [r["method"] for r in serving.records()] == ["publishLoad"]


def test_faults_and_options_are_validated() -> None:
    faults = Faults(fail_bind=104, delay=0.5, drop="unavailable", drop_times=2)
    assert Faults.from_json(faults.to_json()) == faults
    assert Faults.from_json('{"fail_load": 123}') == Faults(fail_load=123)
    for bad in ('{"fail_lod": 1}', "[]", '{"drop": "sometimes"}', '{"delay": -1}', '{"fail_load": true}'):
        with pytest.raises(ValueError):
            Faults.from_json(bad)
    with pytest.raises(ValueError, match="loopback"):
        ServingOptions(host="0.0.0.0")
