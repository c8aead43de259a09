"""Mutual TLS on every hop, on real processes: `flow` → coordinator → agents → FATE-Serving → the agent's
HTTPS transfer endpoint; who is refused, and what they see.

One CA signs the coordinator (CN ``coordinator``), the agents (CN ``party-9999``, ``party-10000``), the
client ``alice`` (the coordinator's only allowed client) and the FATE-Serving test servers (``serving``).
A second, rogue CA signs another ``alice`` and another ``coordinator``: same names, wrong issuer.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpc_health.v1.health_pb2_grpc import HealthStub

from client.sdk import RegistryClient
from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.channels import TICKET_KEY, open_channel
from fate_registry.config import TlsConf
from fate_registry.errors import Reason, RegistryError, Retcode, from_rpc_error
from fate_registry.fate import model_service_pb2 as ms
from fate_registry.fate.model_service_pb2_grpc import ModelServiceStub
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import ImportModelHeader, PartyModelRef
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow, write_conf
from tests.support.certs import Authority, CertFiles, FederationCerts, make_federation_certs
from tests.support.cluster import Cluster
from tests.support.federation import fate_registry_command
from tests.support.processes import wait_for_port_file
from tests.support.serving import PullError, pull_model
from tests.support.serving_process import ServingTestServer, serving_servers

PARTIES = ("9999", "10000")
ROLES = {"guest": ["9999"], "host": ["10000"], "arbiter": ["10000"]}


@dataclass(frozen=True)
class Pki:
    certs: FederationCerts
    rogue_ca: Path
    rogue_alice: CertFiles
    rogue_coordinator: CertFiles

    @property
    def ca(self) -> Path:
        return self.certs.ca

    def client(self, files: CertFiles | None, ca: Path | None = None) -> TlsConf:
        """A client's TLS: trusting our CA (or ``ca``), presenting ``files`` when given."""
        if files is None:
            return TlsConf(ca=ca or self.ca)
        return TlsConf(cert=files.cert, key=files.key, ca=ca or self.ca)


def _server_tls(files: CertFiles, ca: Path, **extra: Any) -> dict[str, Any]:
    return {"cert": str(files.cert), "key": str(files.key), "ca": str(ca), "require_client_cert": True, **extra}


def _env(tls: TlsConf) -> dict[str, str]:
    """The environment `flow` reads its TLS settings from."""
    names = {"FATE_REGISTRY_TLS_CA": tls.ca, "FATE_REGISTRY_TLS_CERT": tls.cert, "FATE_REGISTRY_TLS_KEY": tls.key}
    return {name: str(path) if path else "" for name, path in names.items()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    certs = make_federation_certs(root / "ca", PARTIES, clients=("alice", "serving"))
    rogue = Authority.create(root / "rogue", name="rogue CA")
    return Pki(certs, rogue.ca, rogue.issue("alice"), rogue.issue("coordinator"))


@pytest.fixture(scope="module")
def servings(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[dict[str, ServingTestServer]]:
    """A FATE-Serving test server per party, serving gRPC over mutual TLS and pulling over HTTPS."""
    root = tmp_path_factory.mktemp("servings")
    tls = pki.certs.clients["serving"].tls(pki.ca, require_client_cert=True)
    with serving_servers(root, PARTIES, tls) as started:
        yield started


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, servings: dict[str, ServingTestServer]
) -> Iterator[Cluster]:
    certs = pki.certs
    parties = {
        pid: {
            "tls": _server_tls(certs.parties[pid], pki.ca),
            "serving_tls": {
                "cert": str(certs.parties[pid].cert),
                "key": str(certs.parties[pid].key),
                "ca": str(pki.ca),
            },
            "servings": [servings[pid].address],
        }
        for pid in PARTIES
    }
    coordinator = {"tls": _server_tls(certs.coordinator, pki.ca, allow=["alice"])}
    with Cluster.start(tmp_path_factory.mktemp("cluster"), parties, coordinator) as started:
        yield started


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return generate_model(tmp_path_factory.mktemp("model"), checkpoints=1)


def _import_conf(directory: Path, model: GeneratedModel, role: str, party: str) -> str:
    body = {
        "role": role,
        "party_id": int(party),
        "model_id": model.model_id,
        "model_version": model.version,
        "file": str(model.archives[role, party]),
        "force_update": True,
    }
    return write_conf(directory, f"import-{role}-{party}.json", body)


def _ref(model: GeneratedModel, role: str = "guest", party: str = "9999") -> PartyModelRef:
    return PartyModelRef(role=role, party_id=party, model_id=model.model_id, model_version=model.version)


# -- the happy path -----------------------------------------------------------------------------------


def test_import_export_deploy_load_over_mutual_tls_on_every_hop(
    cluster: Cluster, pki: Pki, servings: dict[str, ServingTestServer], model: GeneratedModel, tmp_path: Path
) -> None:
    alice = _env(pki.client(pki.certs.clients["alice"]))
    for role, party in model.archives:  # `flow` as a user runs it: one hop to the agent, with a ticket
        code, answer = flow(cluster, "model", "import", "-c", _import_conf(tmp_path, model, role, party), env=alice)
        assert code == 0 and answer["retcode"] == 0, answer
    assert (cluster.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version).is_dir()

    # relayed through the coordinator: client → coordinator → agent, both over mutual TLS
    tls = pki.client(pki.certs.clients["alice"])
    with RegistryClient(cluster.address, tls=tls, transfer="relay") as client:
        exported = client.export_model(_ref(model, "host", "10000"), tmp_path / "exported")
    assert exported.size > 0 and exported.path.name.startswith(f"host#10000#{model.model_id}")

    code, deployed = flow(
        cluster, "model", "deploy", "--model-id", model.model_id, "--model-version", model.version, env=alice
    )
    assert code == 0 and deployed["retcode"] == 0, deployed
    child = deployed["data"]["model_version"]

    load = {
        "initiator": {"party_id": "9999", "role": "guest"},
        "role": ROLES,
        "job_parameters": {"model_id": model.model_id, "model_version": child},
    }
    code, loaded = flow(cluster, "model", "load", "-c", write_conf(tmp_path, "load.json", load), env=alice)
    assert code == 0 and loaded["data"]["guest"] == {"9999": 0} and loaded["data"]["host"] == {"10000": 0}, loaded
    # FATE-Serving was called over TLS and (its load answered 0) pulled the model from the agent over HTTPS
    url = servings["9999"].records("publishLoad")[-1]["request"]["filePath"]
    assert url.startswith("https://")
    namespace = f"guest#9999#{model.model_id}"
    assert pull_model(url, child, namespace, 10, pki.certs.clients["serving"].tls(pki.ca))  # a holder of a CA cert
    for refused in (pki.client(None), pki.client(pki.rogue_alice)):  # no client certificate, another CA's
        with pytest.raises(PullError):
            pull_model(url, child, namespace, 10, refused)


# -- who is refused at the coordinator ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected", "retcode", "words"),
    [
        ("no certificate", Reason.UNAUTHENTICATED, Retcode.AUTHENTICATION_ERROR, "requires a client certificate"),
        ("another CA's certificate", Reason.UNAUTHENTICATED, Retcode.AUTHENTICATION_ERROR, "TLS handshake"),
        ("another party's certificate", Reason.PERMISSION_DENIED, Retcode.PERMISSION_ERROR, "CN=party-10000"),
        ("a certificate not on the allow list", Reason.PERMISSION_DENIED, Retcode.PERMISSION_ERROR, "CN=serving"),
        ("plain text", Reason.PARTY_UNAVAILABLE, Retcode.CONNECTION_ERROR, "requires TLS, or a client certificate"),
    ],
)
def test_the_coordinator_refuses_callers_it_does_not_allow(
    cluster: Cluster, pki: Pki, who: str, expected: Reason, retcode: int, words: str
) -> None:
    tls = {
        "no certificate": pki.client(None),
        "another CA's certificate": pki.client(pki.rogue_alice),
        "another party's certificate": pki.client(pki.certs.parties["10000"]),
        "a certificate not on the allow list": pki.client(pki.certs.clients["serving"]),
        "plain text": TlsConf(),
    }[who]
    with RegistryClient(cluster.address, tls=tls, timeout=10) as client, pytest.raises(RegistryError) as info:
        client.list_model_versions(pb.ListModelVersionsRequest())
    assert info.value.reason is expected and words in info.value.message, info.value.message
    # what a `flow` user sees: FATE's retcode and the same message, never a traceback
    code, answer = flow(cluster, "model", "tag-list", "-j", "20240101000000000000", env=_env(tls))
    assert code != 0 and answer["retcode"] == retcode and words in answer["retmsg"], answer


@dataclass(frozen=True)
class _NoAddress:
    """A target that leaves ``$FATE_REGISTRY_ADDRESS`` empty: ``flow`` goes where ``flow init`` said."""

    address: str = ""


def test_flow_init_remembers_the_tls_files(cluster: Cluster, pki: Pki, tmp_path: Path) -> None:
    alice = pki.certs.clients["alice"]
    host, port = cluster.address.rsplit(":", 1)
    env = {"FATE_REGISTRY_CLIENT_CONF": str(tmp_path / "flow.json")}
    tag_list = ("model", "tag-list", "-j", "20240101000000000000")
    files = ("--tls-ca", str(pki.ca), "--tls-cert", str(alice.cert), "--tls-key", str(alice.key))
    code, answer = flow(_NoAddress(), "init", "--ip", host, "--port", port, *files, env=env)
    assert (code, answer["retcode"]) == (0, 0), answer
    assert answer["data"]["tls"] == {"ca": str(pki.ca), "cert": str(alice.cert), "key": str(alice.key)}
    # no address and no TLS in the environment: the registry answers (the version is not there)
    code, answer = flow(_NoAddress(), *tag_list, env=env)
    assert answer["retcode"] == Retcode.EXCEPTION_ERROR and "20240101000000000000" in answer["retmsg"], answer
    # the environment's TLS wins over the saved files: only the CA, so no client certificate
    code, answer = flow(_NoAddress(), *tag_list, env={**env, **_env(pki.client(None))})
    assert answer["retcode"] == Retcode.AUTHENTICATION_ERROR, answer
    # initialised again without TLS, flow forgets the files and talks plain text
    code, answer = flow(_NoAddress(), "init", "--ip", host, "--port", port, env=env)
    assert code == 0 and "tls" not in answer["data"], answer
    code, answer = flow(_NoAddress(), *tag_list, env=env)
    assert answer["retcode"] == Retcode.CONNECTION_ERROR and "requires TLS" in answer["retmsg"], answer


# -- who is refused at an agent ---------------------------------------------------------------------------


def _agent_call(address: str, tls: TlsConf, request: agent_pb2.GetModelInfoRequest) -> None:
    with open_channel(address, tls) as channel:
        try:
            agent_pb2_grpc.PartyAgentServiceStub(channel).GetModelInfo(request, timeout=10)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, tls=tls.enabled) from None


def test_an_agent_takes_calls_only_from_the_coordinator(cluster: Cluster, pki: Pki, model: GeneratedModel) -> None:
    request = agent_pb2.GetModelInfoRequest(model=_ref(model))
    for files in (pki.certs.clients["alice"], pki.certs.parties["10000"]):
        with pytest.raises(RegistryError) as info:
            _agent_call(cluster.agent_address("9999"), pki.client(files), request)
        assert info.value.reason is Reason.PERMISSION_DENIED and "tls.allow" in info.value.message
    for tls in (pki.client(None), pki.client(pki.rogue_coordinator)):  # the handshake itself fails
        with pytest.raises(RegistryError) as info:
            _agent_call(cluster.agent_address("9999"), tls, request)
        assert info.value.reason is Reason.UNAUTHENTICATED and "TLS handshake" in info.value.message


def test_a_ticket_admits_a_client_only_for_the_transfer_it_names(
    cluster: Cluster, pki: Pki, model: GeneratedModel
) -> None:
    """Any certificate of the CA reaches the archive methods with a ticket; the ticket book then decides."""
    with open_channel(cluster.agent_address("9999"), pki.client(pki.certs.clients["alice"])) as channel:
        stub = agent_pb2_grpc.PartyAgentServiceStub(channel)
        request = agent_pb2.ExportModelRequest(model=_ref(model))
        with pytest.raises(grpc.RpcError) as rpc:
            list(stub.ExportModel(request, metadata=((TICKET_KEY, "forged"),), timeout=10))
    assert rpc.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert rpc.value.details() == "the transfer ticket is unknown or expired"


def test_fate_model_service_and_health_stay_open_to_any_certificate_of_the_ca(
    cluster: Cluster, pki: Pki, model: GeneratedModel
) -> None:
    with open_channel(cluster.agent_address("9999"), pki.client(pki.certs.clients["serving"])) as channel:
        answer = ModelServiceStub(channel).queryModel(ms.QueryModelRequest(queryType=0), timeout=10)
        health = HealthStub(channel).Check(HealthCheckRequest(), timeout=10)
    assert answer.retcode == 0 and health.status == HealthCheckResponse.SERVING


def test_an_agent_acts_only_for_its_own_party(cluster: Cluster, pki: Pki, model: GeneratedModel) -> None:
    coordinator = pki.client(pki.certs.coordinator)
    with pytest.raises(RegistryError) as info:
        _agent_call(
            cluster.agent_address("9999"),
            coordinator,
            agent_pb2.GetModelInfoRequest(model=_ref(model, "host", "10000")),
        )
    assert info.value.reason is Reason.PERMISSION_DENIED
    assert info.value.message == "this agent acts only for party 9999; the request names party 10000"
    # the same for a streamed import, whose first message names the target party
    header = ImportModelHeader(target=_ref(model, "host", "10000"), size=1)
    with open_channel(cluster.agent_address("9999"), coordinator) as channel:
        stub = agent_pb2_grpc.PartyAgentServiceStub(channel)
        with pytest.raises(grpc.RpcError) as rpc:
            stub.ImportModel(iter([agent_pb2.ImportModelRequest(header=header)]), timeout=10)
    assert rpc.value.code() is grpc.StatusCode.PERMISSION_DENIED and "only for party 9999" in (
        rpc.value.details() or ""
    )
    assert not (cluster.model_cache("9999") / f"host#10000#{model.model_id}").exists()


# -- a coordinator the agents do not trust ------------------------------------------------------------------


@pytest.mark.parametrize("impostor", ["rogue CA", "a client's certificate"])
def test_an_agent_refuses_a_coordinator_it_does_not_trust(
    cluster: Cluster, pki: Pki, model: GeneratedModel, tmp_path: Path, impostor: str
) -> None:
    """A second coordinator process, pointed at the real agents with a certificate they do not accept.

    It verifies the agents with our CA but presents its own certificate; its clients trust that
    certificate's CA.
    """
    files, client_ca = (
        (pki.rogue_coordinator, pki.rogue_ca) if impostor == "rogue CA" else (pki.certs.clients["alice"], pki.ca)
    )
    tls = {"cert": str(files.cert), "key": str(files.key), "ca": str(pki.ca)}
    conf: dict[str, Any] = {
        "coordinator": {"address": "127.0.0.1:0", "tls": tls},
        "parties": {pid: {"address": cluster.agent_address(pid)} for pid in PARTIES},
    }
    conf_path = tmp_path / "impostor.yaml"
    conf_path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    port_file, log_path = tmp_path / "impostor.addr", tmp_path / "impostor.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*fate_registry_command(), "server", "--conf", str(conf_path), "--data-dir", str(tmp_path / "data"),
             "--port-file", str(port_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        address = wait_for_port_file(process, port_file, 60, "the impostor coordinator", log_path)

        @dataclass(frozen=True)
        class Impostor:
            address: str

        # a client the impostor trusts asks it to import: the agent refuses the impostor's call
        alice = pki.client(pki.certs.clients["alice"], ca=client_ca)
        code, answer = flow(
            Impostor(address), "model", "import", "-c", _import_conf(tmp_path, model, "guest", "9999"), env=_env(alice)
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert code != 0, answer
    if impostor == "rogue CA":  # the agent closes the connection in the handshake: the coordinator says TLS refused
        assert answer["retcode"] == Retcode.AUTHENTICATION_ERROR and "party 9999 did not answer" in answer["retmsg"]
        assert "client certificate" in answer["retmsg"], answer
    else:
        assert answer["retcode"] == Retcode.PERMISSION_ERROR and "CN=alice" in answer["retmsg"], answer


# -- the FATE-Flow HTTP API over HTTPS ---------------------------------------------------------------------


def _https_version(address: str, ca: Path, files: CertFiles | None) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(ca))
    if files is not None:
        context.load_cert_chain(str(files.cert), str(files.key))
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    try:
        connection.request("POST", "/v1/version/get", body=b'{"module": "FATEFlow"}')
        answer: dict[str, Any] = json.loads(connection.getresponse().read())
        return answer
    finally:
        connection.close()


def test_the_fate_flow_http_api_is_https_admitting_the_allowed_callers(cluster: Cluster, pki: Pki) -> None:
    address = cluster.http_address()
    assert _https_version(address, pki.ca, pki.certs.clients["alice"])["data"] == {"FATEFlow": "1.11.2"}
    refused = _https_version(address, pki.ca, pki.certs.clients["serving"])
    assert refused["retcode"] == 108 and "not allowed" in refused["retmsg"], refused
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https_version(address, pki.ca, None)
