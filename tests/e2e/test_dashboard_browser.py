"""The dashboard in headless Chromium against a real federation (processes, FATE-Serving test servers): a
model imported, deployed, loaded, bound, migrated, and a deploy that failed. Each page shows what an operator
needs, search and paging work, a party stopped by PID shows as down, and ``/metrics`` moved by what was done.
Screenshots of every page are kept under the test's temporary directory (``screenshots/``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from registry_server.dashboard.health import DEADLINE_SECONDS
from tests.browser import chromium
from tests.conftest import GeneratedModel, generate_model
from tests.fate_http import call, import_archive
from tests.metrics_scrape import Samples, moved, moved_in_all, scrape
from tests.support.federation import LocalFederation
from tests.support.serving_process import ServingTestServer

ROLES = {"guest": [9999], "host": [10000], "arbiter": [10000]}
DOWN_WITHIN = 30.0
PAGE_WAIT = 30.0
PAGE_SLACK = 5.0  # seconds the health page may take beyond its deadline on a loaded machine


@dataclass
class Story:
    """What the federation went through before the pages are looked at."""

    model: GeneratedModel
    child: str
    migrated_model_id: str
    migrated_version: str
    before: Samples
    after: Samples
    agent_before: Samples
    agent_after: Samples


@pytest.fixture(scope="module")
def fed(serving_federation: LocalFederation) -> LocalFederation:
    return serving_federation


@pytest.fixture(scope="module")
def story(fed: LocalFederation, tmp_path_factory: pytest.TempPathFactory) -> Story:
    address = fed.http_address
    before, agent_before = scrape(address), scrape(fed.agent_http_address("9999"))
    model = generate_model(tmp_path_factory.mktemp("model"), checkpoints=2)
    for (role, party), archive in model.archives.items():
        fields = {"role": role, "party_id": party, "model_id": model.model_id, "model_version": model.version}
        assert import_archive(address, fields, archive).json()["retcode"] == 0
    ref = {"model_id": model.model_id, "model_version": model.version}
    assert call(address, "/v1/model/tag/create", {"tag_name": "champion"}).json()["retcode"] == 0
    tagged = call(address, "/v1/model/model_tag/create", {"job_id": model.version, "tag_name": "champion"}).json()
    assert tagged["retcode"] == 0, tagged
    deployed = call(address, "/v1/model/deploy", {**ref, "cpn_list": ["data_transform_0", "hetero_lr_0"]}).json()
    assert deployed["retcode"] == 0, deployed
    child = deployed["data"]["model_version"]
    published = {
        "initiator": {"role": "guest", "party_id": 9999},
        "role": ROLES,
        "job_parameters": {"model_id": model.model_id, "model_version": child},
    }
    assert call(address, "/v1/model/load", published).json()["retcode"] == 0
    assert call(address, "/v1/model/bind", {**published, "service_id": "svc-dash"}).json()["retcode"] == 0
    cpn_list = {"cpn_list": ["data_transform_0", "hetero_lr_0"]}
    no_step = {**ref, **cpn_list, "components_checkpoint": {"hetero_lr_0": {"step_index": 99}}}
    failed = call(address, "/v1/model/deploy", no_step).json()  # every party refuses: no such checkpoint
    assert failed["retcode"] != 0, failed
    migrate = {
        "job_parameters": {"federated_mode": "MULTIPLE"},
        "role": ROLES,
        "execute_party": ROLES,
        "migrate_initiator": {"role": "guest", "party_id": 99},
        "migrate_role": {"guest": [99], "host": [100], "arbiter": [100]},
        **ref,
    }
    migrated = call(address, "/v1/model/migrate", migrate).json()
    assert migrated["retcode"] == 0, migrated
    new = migrated["data"]
    agent_after = scrape(fed.agent_http_address("9999"))
    return Story(
        model, child, new["model_id"], new["model_version"], before, scrape(address), agent_before, agent_after
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as session:
        yield session


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _open(browser: webdriver.Chrome, fed: LocalFederation, path: str, **query: str) -> str:
    browser.get(f"http://{fed.http_address}/dashboard{path}" + (f"?{urlencode(query)}" if query else ""))
    return str(browser.find_element(By.TAG_NAME, "main").text)


def _follow(browser: webdriver.Chrome, element: WebElement, url_part: str) -> None:
    """Click ``element`` and wait for the page it leads to (its URL holds ``url_part``) to have loaded."""
    element.click()
    WebDriverWait(browser, PAGE_WAIT).until(
        lambda driver: (
            url_part in driver.current_url and driver.execute_script("return document.readyState") == "complete"
        )
    )


def _rows(browser: webdriver.Chrome, table: str) -> list[str]:
    return [str(row.text) for row in browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")]


def test_models_page_searches_and_pages(
    browser: webdriver.Chrome, fed: LocalFederation, story: Story, shots: Path
) -> None:
    text = _open(browser, fed, "/")
    browser.save_screenshot(str(shots / "models.png"))
    assert story.model.model_id in text and story.model.version in text and story.child in text
    assert "guest:9999" in text and "host:10000" in text
    assert story.migrated_model_id in text  # the migrated copy, with its new party ids
    browser.find_element(By.NAME, "party_id").send_keys("99")
    _follow(browser, browser.find_element(By.TAG_NAME, "button"), "party_id=99")
    searched = _rows(browser, "models")
    assert searched and all("guest:99" in row for row in searched) and story.migrated_model_id in searched[0]
    _open(browser, fed, "/", state="bound")  # loaded, then bound to svc-dash
    bound = _rows(browser, "models")
    assert len(bound) == 1 and story.child in bound[0] and "bound" in bound[0]
    _open(browser, fed, "/", state="loaded")
    assert _rows(browser, "models") == []
    _open(browser, fed, "/", state="parent", party_id="10000", role="host")
    parents = _rows(browser, "models")
    assert len(parents) == 1 and story.model.version in parents[0] and "parent" in parents[0]
    _open(browser, fed, "/", tag="champion")
    champions = _rows(browser, "models")
    assert len(champions) == 1 and story.model.version in champions[0] and "champion" in champions[0]
    first = _open(browser, fed, "/", model_id=story.model.model_id, page_size="1")
    assert len(_rows(browser, "models")) == 1 and story.child in first  # newest first: the deployed child
    _follow(browser, browser.find_element(By.LINK_TEXT, "next page"), "page_token=")
    second = _rows(browser, "models")
    assert len(second) == 1 and story.model.version in second[0]


def test_version_page_shows_each_party_and_the_predict_dsl(
    browser: webdriver.Chrome, fed: LocalFederation, story: Story, shots: Path
) -> None:
    text = _open(browser, fed, "/version", model_id=story.model.model_id, model_version=story.child)
    browser.save_screenshot(str(shots / "version.png"))
    parties = _rows(browser, "parties")
    assert len(parties) == len(story.model.archives) and all("deployed child" in row for row in parties)
    assert any(row.startswith("guest 9999") for row in parties)
    digests = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#parties td code")]
    assert all(len(digest) == 64 for digest in digests)
    assert "predict DSL" in text and "hetero_lr_0" in text and "deployed from" in text and story.model.version in text
    serving = _rows(browser, "serving")
    assert [row.split()[2] for row in serving] == ["bind", "load"]  # newest first: what FATE-Serving was told
    files = [row.split() for row in _rows(browser, "files-guest-9999")]
    assert files and all(len(cells) == 3 and cells[1].isdigit() and len(cells[2]) == 64 for cells in files)
    copies = _rows(browser, "stored-copies")
    assert len(copies) == len(story.model.archives) and all("none configured" in row for row in copies)
    _open(browser, fed, "/version", model_id=story.model.model_id, model_version=story.model.version)
    checkpoints = _rows(browser, "checkpoints-guest-9999")
    assert len(checkpoints) >= 2 and all(row.startswith("hetero_lr_0") for row in checkpoints)


def test_lineage_draws_the_parent_and_its_child_and_links_them(
    browser: webdriver.Chrome, fed: LocalFederation, story: Story, shots: Path
) -> None:
    _open(browser, fed, "/lineage", model_id=story.model.model_id)
    browser.save_screenshot(str(shots / "lineage.png"))
    model_id, version = story.model.model_id, story.model.version
    assert _rows(browser, "edges") == [
        f"{model_id} {version} {model_id} {story.child}",
        f"{model_id} {version} {story.migrated_model_id} {story.migrated_version}",
    ]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#lineage line")) == 2
    node = browser.find_element(By.XPATH, f"//*[local-name()='text'][contains(., '{story.child}')]")
    _follow(browser, node, f"model_version={story.child}")
    assert story.child in browser.find_element(By.TAG_NAME, "h1").text


def test_operations_page_shows_the_failed_deploy_with_its_partys_message(
    browser: webdriver.Chrome, fed: LocalFederation, story: Story, shots: Path
) -> None:
    text = _open(browser, fed, "/operations", model_id=story.model.model_id)
    for kind in ("import", "deploy", "load", "bind", "migrate"):
        assert kind in text
    _open(browser, fed, "/operations", model_id=story.model.model_id, outcome="failed")
    browser.save_screenshot(str(shots / "operations.png"))
    failed = _rows(browser, "operations")
    assert len(failed) == 1 and "deploy" in failed[0] and "failed" in failed[0]
    assert "guest:9999 retcode 404 The checkpoint was not found." in failed[0]


def test_a_party_stopped_by_pid_shows_as_down(
    browser: webdriver.Chrome,
    fed: LocalFederation,
    servings: dict[str, ServingTestServer],
    story: Story,
    shots: Path,
) -> None:
    _open(browser, fed, "/health")
    rows = {row.split()[0]: row for row in _rows(browser, "parties")}
    assert all(" up " in row and "GiB of" in row and "never" not in row for row in rows.values())
    assert all(f"{servings[party].address} up" in rows[party] for party in ("9999", "10000"))
    assert browser.find_element(By.ID, "model-store").text == "none configured"
    pid = fed.pids()["agent-10000"]
    os.kill(pid, signal.SIGSTOP)  # stopped, not killed: `up` would end the federation with a dead child
    try:
        deadline = time.monotonic() + DOWN_WITHIN
        while True:
            start = time.monotonic()
            _open(browser, fed, "/health")
            assert time.monotonic() - start < DEADLINE_SECONDS + PAGE_SLACK  # a stopped party does not hold it up
            rows = {row.split()[0]: row for row in _rows(browser, "parties")}
            if " down" in rows["10000"] or time.monotonic() > deadline:
                break
        browser.save_screenshot(str(shots / "health.png"))
        assert " down" in rows["10000"] and " up " in rows["9999"]
    finally:
        os.kill(pid, signal.SIGCONT)


def test_metrics_moved_by_what_was_done(story: Story) -> None:
    def operations(kind: str, outcome: str) -> float:
        return moved(story.before, story.after, "fate_registry_operations_total", kind=kind, outcome=outcome)

    assert operations("import", "success") == len(story.model.archives)
    assert operations("deploy", "success") == 1 and operations("deploy", "failed") == 1
    assert operations("load", "success") == 1 and operations("bind", "success") == 1
    assert operations("migrate", "success") == 1
    assert moved(story.before, story.after, "fate_registry_catalog_versions") == 3  # parent, child, migrated copy
    # Every call the coordinator made to party 9999's agent is one the agent served (nothing else calls it here).
    called = moved_in_all(story.before, story.after, "fate_registry_party_calls_total", party_id="9999")
    served = moved_in_all(
        story.agent_before,
        story.agent_after,
        "fate_registry_rpcs_total",
        service="fate_registry.agent.v1.PartyAgentService",
    )
    assert called == served and called >= 6  # at least import, 2 deploys, load, bind and migrate
    failures = moved(story.before, story.after, "fate_registry_party_calls_total", party_id="9999", outcome="failure")
    assert failures == 1  # the failed deploy's prepare, refused (no such checkpoint)
    serving = moved(story.agent_before, story.agent_after, "fate_registry_serving_calls_total", outcome="success")
    assert serving == 2  # party 9999's load and bind
