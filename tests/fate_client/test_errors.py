"""The errors a FATE user meets with the 1.11 ``flow`` CLI against the registry's HTTP API: FATE-Flow's retcodes
and messages, printed by the CLI (exit status 0, as the 1.11 CLI always exits), no traceback, no file written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GeneratedModel, generate_model
from tests.fate_client.conftest import ROLES, conf_file, guest_model, import_conf, import_with_flow
from tests.support.cluster import Cluster, agent_name
from tests.support.fate_client import FateClient, coordinator_with_http
from tests.support.federation import LocalFederation
from tests.support.serving_process import serving_servers

APP_KEY, SECRET_KEY = "fate-app", "fate-secret-not-logged"
AUTHENTICATION_ERROR = 109


def test_a_missing_key_names_it(client: FateClient, tmp_path: Path) -> None:
    model = generate_model(tmp_path, roles=ROLES)
    conf = {k: v for k, v in import_conf(model, "guest", "9999").items() if k != "model_version"}

    code, answer = client.flow("model", "import", "-c", conf_file(tmp_path, "import.json", conf))

    assert code == 0 and answer["retcode"] == 101 and "model_version" in answer["retmsg"], answer

    code, answer = client.flow("model", "migrate", "-c", conf_file(tmp_path, "migrate.json", {"model_id": "m"}))
    assert answer["retcode"] == 101 and answer["retmsg"].endswith("; "), answer  # FATE's shape, the keys named:
    for key in ("migrate_initiator", "role", "migrate_role", "model_version", "execute_party"):
        assert key in answer["retmsg"]


def test_an_unknown_model(client: FateClient, tmp_path: Path) -> None:
    model_id, version = "arbiter-10000#guest-9999#host-10000#model", "202001010000000000000"

    code, answer = client.flow("model", "get-model-info", "--model-id", model_id, "--model-version", version)
    assert code == 0 and answer["retcode"] == 100 and answer["data"] == [], answer
    assert answer["retmsg"].startswith("Query model info failed, cannot find model")

    code, answer = client.flow("model", "deploy", "--model-id", model_id, "--model-version", version)
    assert answer["retcode"] == 404, answer  # with a "data", which the pipeline SDK reads on a failed deploy
    assert answer["retmsg"] == f"Deploy model failed. Model {model_id} {version} not found."

    out = tmp_path / "dsl"
    code, answer = client.flow(
        "model", "get-predict-dsl", "--model-id", model_id, "--model-version", version, "-o", str(out)
    )
    assert answer["retcode"] == 210, answer  # not written into a DSL file and reported a success
    assert not out.exists() or not list(out.iterdir())

    code, answer = client.flow("model", "tag-list", "-j", "nosuch")
    assert answer["retcode"] == 100 and "Can not found model by job id: 'nosuch'." in answer["retmsg"], answer

    guest = guest_model(model_id, version)
    code, answer = client.flow("checkpoint", "get", *guest, "-cpn", "hetero_lr_0", "--step-index", "1")
    assert answer == {"retcode": 404, "retmsg": "The checkpoint was not found."}, answer

    code, answer = client.flow("checkpoint", "list", *guest, "-cpn", "hetero_lr_0")
    assert answer["retcode"] == 0 and answer["data"] == [], answer


def test_import_of_an_existing_version_needs_force_update(
    client: FateClient, imported: GeneratedModel, tmp_path: Path
) -> None:
    conf = import_conf(imported, "guest", "9999")

    code, answer = client.flow("model", "import", "-c", conf_file(tmp_path, "again.json", conf))
    assert code == 0 and answer == {"retcode": 409, "retmsg": "Model already exists."}, answer

    forced = conf_file(tmp_path, "forced.json", {**conf, "force_update": True})
    code, answer = client.flow("model", "import", "-c", forced)
    assert code == 0 and answer["retcode"] == 0, answer


def test_export_of_a_missing_model_prints_the_error_and_saves_nothing(client: FateClient, tmp_path: Path) -> None:
    model_id, version = "arbiter-10000#guest-9999#host-10000#model", "202001010000000000001"
    out = tmp_path / "out"
    conf = {"role": "guest", "party_id": 9999, "model_id": model_id, "model_version": version, "output_path": str(out)}

    ran = client.run("flow", "model", "export", "-c", conf_file(tmp_path, "export.json", conf))

    assert ran.returncode == 0 and "Traceback" not in ran.stdout + ran.stderr, ran
    answer = ran.answer()
    assert answer == {"retcode": 404, "retmsg": f"Model guest#9999#{model_id} {version} does not exist."}, answer
    assert not out.exists()

    no_keys = conf_file(tmp_path, "nokeys.json", {"output_path": str(out)})
    ran = client.run("flow", "model", "export", "-c", no_keys)
    assert "Traceback" not in ran.stdout + ran.stderr and ran.answer()["retcode"] != 0, ran
    assert not out.exists()


# -- authentication ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_federation(tmp_path_factory: pytest.TempPathFactory, fate_client_venv: Path) -> Iterator[str]:
    """A federation whose HTTP API requires FATE's signature; its ``host:port``."""
    conf = {"coordinator": coordinator_with_http(app_key=APP_KEY, secret_key=SECRET_KEY)}
    with LocalFederation.start(tmp_path_factory.mktemp("signed"), extra_conf=conf) as fed:
        yield fed.http_address
        logs = "".join(p.read_text(errors="replace") for p in fed.root.rglob("*.log"))
        assert SECRET_KEY not in logs


SKEWED_CLOCK_SCRIPT = """
import json, sys, time
real = time.time
time.time = lambda: real() + float(sys.argv[2])  # this client's clock is off by that many seconds
from flow_sdk.client import FlowClient

ip, port = sys.argv[1].rsplit(":", 1)
client = FlowClient(ip, int(port), "v1", app_key=sys.argv[3], secret_key=sys.argv[4])
print(json.dumps(client.model.get_model_info(model_version=sys.argv[5])))
"""


def test_signatures_are_checked_as_fate_flow_checks_them(signed_federation: str, tmp_path: Path) -> None:
    address = signed_federation
    good = FateClient.create(tmp_path / "good")
    good.init(address, APP_KEY, SECRET_KEY)
    code, answer = good.flow("model", "get-model-info", "--model-version", "202001010000000000002")
    assert answer["retcode"] == 100, answer  # through the check: the model is unknown

    model = generate_model(tmp_path, roles=ROLES)
    import_with_flow(good, model, tmp_path)  # a signed multipart request: the form fields are signed

    unsigned = FateClient.create(tmp_path / "unsigned")
    unsigned.init(address)
    code, answer = unsigned.flow("model", "get-model-info", "--model-version", model.version)
    assert answer["retcode"] == AUTHENTICATION_ERROR and "TIMESTAMP" in answer["retmsg"], answer

    wrong = FateClient.create(tmp_path / "wrong")
    wrong.init(address, APP_KEY, "not-the-secret")
    code, answer = wrong.flow("model", "get-model-info", "--model-version", model.version)
    assert answer == {"retcode": AUTHENTICATION_ERROR, "retmsg": "signature authentication failed"}, answer

    stranger = FateClient.create(tmp_path / "stranger")
    stranger.init(address, "someone-else", SECRET_KEY)
    code, answer = stranger.flow("model", "get-model-info", "--model-version", model.version)
    assert answer["retcode"] == AUTHENTICATION_ERROR and "APP_KEY" in answer["retmsg"], answer

    for skew, retcode in (("-30", 0), ("120", AUTHENTICATION_ERROR), ("-120", AUTHENTICATION_ERROR)):
        answer = good.python(SKEWED_CLOCK_SCRIPT, [address, skew, APP_KEY, SECRET_KEY, model.version])
        assert answer["retcode"] == retcode, (skew, answer)
        if retcode:
            assert answer["retmsg"] == "TIMESTAMP is more than 60 seconds away from the server time", answer

    # no upstream: a route the registry does not serve gets FATE-Flow's not-found answer
    code, answer = good.flow("job", "list")
    assert code == 0 and answer["retcode"] == 100 and "Not Found" in answer["retmsg"], answer


# -- a party that is down ----------------------------------------------------------------------------------


def test_a_party_that_is_down_is_named(tmp_path: Path, fate_client_venv: Path) -> None:
    with serving_servers(tmp_path / "serving", ("9999", "10000")) as servings:
        parties = {party: {"servings": [server.address]} for party, server in servings.items()}
        with Cluster.start(tmp_path / "cluster", parties, {"http": coordinator_with_http()["http"]}) as cluster:
            client = FateClient.create(tmp_path / "client")
            client.init(cluster.http_address())
            model = generate_model(tmp_path / "model", roles=ROLES)
            import_with_flow(client, model, tmp_path)
            cluster.kill(agent_name("10000"))

            code, answer = client.flow(
                "model", "deploy", "--model-id", model.model_id, "--model-version", model.version
            )

            assert code == 0 and answer["retcode"] == 101, answer
            detail = answer["data"]["detail"]
            assert detail["host"]["10000"]["retcode"] != 0 and "10000" in detail["host"]["10000"]["retmsg"]
            assert answer["data"]["guest"]["9999"] != 0  # all or nothing: the guest's part rolled back

            cluster.restart(agent_name("10000"))
