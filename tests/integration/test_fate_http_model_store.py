"""``model/store`` and ``model/restore`` through the FATE-Flow HTTP API against a Redis model store (real
processes): done before the answer, which says so in FATE's shape."""

from __future__ import annotations

from tests.conftest import GeneratedModel
from tests.fate_http import call, import_archive
from tests.support.federation import LocalFederation


def test_store_then_restore_over_a_deleted_copy(synced_federation: LocalFederation, model: GeneratedModel) -> None:
    address = synced_federation.http_address
    ref = {"role": "guest", "party_id": "9999", "model_id": model.model_id, "model_version": model.version}
    assert import_archive(address, ref, model.archives["guest", "9999"]).json()["retcode"] == 0
    stored = call(address, "/v1/model/store", {**ref, "party_id": 9999, "force_update": True}).json()
    assert stored["retcode"] == 0 and "stored before this answer" in stored["retmsg"], stored
    assert stored["data"]["model_info"] == {"model_id": model.model_id, "model_version": model.version}
    assert len(stored["data"]["sha256"]) == 64
    restored = call(address, "/v1/model/restore", {**ref, "force_update": True}).json()
    assert restored["retcode"] == 0 and "restored before this answer" in restored["retmsg"], restored
    assert restored["jobId"] == restored["data"]["job_id"]
    assert restored["data"]["model_info"] == {"model_id": model.model_id, "model_version": model.version}
