"""Model tags on a real SQLite database: FATE's answers, and no duplicate under concurrent calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from fate_registry.config import DatabaseConf
from fate_registry.db import open_database
from fate_registry.errors import Reason, RegistryError, Retcode
from registry_server.tag_store import TagStore

MODEL = "arbiter-10000#guest-9999#host-10000#model"
VERSION = "202401020304050607080"
OTHER = "202401020304050607081"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[peewee.Database]:
    database = open_database(DatabaseConf(engine="sqlite", path=tmp_path / "registry.db"))
    yield database
    database.close()


@pytest.fixture
def store(db: peewee.Database) -> TagStore:
    return TagStore(db)


def _names(store: TagStore, job_id: str) -> list[str]:
    return [tag.name for tag in store.tags_of(job_id)[0]]


def test_add_list_remove(store: TagStore) -> None:
    assert store.tags_of(VERSION) == ([], "")
    assert store.add(VERSION, "prod", MODEL) == f"Adding prod tag for model with job id: {VERSION} successfully."
    store.add(VERSION, "best-auc", MODEL)
    store.add(OTHER, "prod", MODEL)
    assert _names(store, VERSION) == ["prod", "best-auc"]
    assert [(t.name, t.description) for t in store.tags_of(OTHER)[0]] == [("prod", "")]

    message = store.remove(VERSION, "prod", MODEL)
    assert message == f"'prod' tag has been removed from tag list of model {MODEL} {VERSION}."
    assert _names(store, VERSION) == ["best-auc"]
    assert _names(store, OTHER) == ["prod"]  # a tag hangs on a version; the other keeps it


def test_tags_survive_a_new_store_on_the_same_database(db: peewee.Database, store: TagStore) -> None:
    store.add(VERSION, "prod", MODEL)
    assert _names(TagStore(db), VERSION) == ["prod"]


def test_adding_a_tag_twice_is_refused_with_fates_message(store: TagStore) -> None:
    store.add(VERSION, "prod", MODEL)
    with pytest.raises(RegistryError) as info:
        store.add(VERSION, "prod", MODEL)
    assert info.value.message == f"Model {MODEL} {VERSION} already been tagged as tag 'prod'."
    assert info.value.reason is Reason.MODEL_EXISTS
    assert info.value.fate_retcode == Retcode.EXCEPTION_ERROR
    assert _names(store, VERSION) == ["prod"]


def test_removing_an_unknown_tag(store: TagStore) -> None:
    with pytest.raises(RegistryError) as info:
        store.remove(VERSION, "nope", MODEL)
    assert info.value.message == "Can not found 'nope' tag."
    assert info.value.fate_retcode == Retcode.EXCEPTION_ERROR


def test_removing_a_tag_the_model_lacks(store: TagStore) -> None:
    store.add(OTHER, "prod", MODEL)
    with pytest.raises(RegistryError) as info:
        store.remove(VERSION, "prod", MODEL)
    assert info.value.message == f"Model {MODEL} {VERSION} does not have tag 'prod'."
    store.remove(OTHER, "prod", MODEL)
    with pytest.raises(RegistryError) as again:
        store.remove(OTHER, "prod", MODEL)  # the tag stays; the link is gone
    assert again.value.message == f"Model {MODEL} {OTHER} does not have tag 'prod'."


def test_tags_come_in_pages_in_the_order_they_were_added(store: TagStore) -> None:
    names = [f"tag-{i}" for i in range(5)]
    for name in names:
        store.add(VERSION, name, MODEL)
    store.add(OTHER, "elsewhere", MODEL)
    pages, token = [], ""
    for _ in range(10):
        page, token = store.tags_of(VERSION, 2, token)
        pages.append([t.name for t in page])
        if not token:
            break
    assert pages == [["tag-0", "tag-1"], ["tag-2", "tag-3"], ["tag-4"]]
    with pytest.raises(RegistryError) as info:
        store.tags_of(VERSION, 2, "not-a-token")
    assert info.value.reason is Reason.INVALID_ARGUMENT


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_blank_tag_names_are_refused(store: TagStore, name: str) -> None:
    for call in (store.add, store.remove):
        with pytest.raises(RegistryError) as info:
            call(VERSION, name, MODEL)
        assert info.value.reason is Reason.INVALID_ARGUMENT
        assert "tag_name" in info.value.message
    assert store.tags_of(VERSION) == ([], "")


def test_tag_names_are_bounded_by_fates_column(store: TagStore) -> None:
    store.add(VERSION, "t" * 100, MODEL)
    with pytest.raises(RegistryError) as info:
        store.add(VERSION, "t" * 101, MODEL)
    assert info.value.reason is Reason.INVALID_ARGUMENT
    assert "100" in info.value.message


def test_concurrent_adds_of_one_tag_link_it_once(store: TagStore) -> None:
    threads = 20
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def add() -> None:
        barrier.wait()
        try:
            outcome = store.add(VERSION, "prod", MODEL)
        except RegistryError as exc:
            outcome = exc.message
        with lock:
            outcomes.append(outcome)

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    success = f"Adding prod tag for model with job id: {VERSION} successfully."
    duplicate = f"Model {MODEL} {VERSION} already been tagged as tag 'prod'."
    assert sorted(outcomes) == sorted([success] + [duplicate] * (threads - 1))
    assert _names(store, VERSION) == ["prod"]


def test_concurrent_adds_of_distinct_new_tags_all_succeed(store: TagStore) -> None:
    threads = 20
    barrier = threading.Barrier(threads)
    errors: list[RegistryError] = []

    def add(index: int) -> None:
        barrier.wait()
        try:
            # half the threads race to create the same new tag, each for its own version
            store.add(f"{VERSION}{index}", "shared" if index % 2 else f"tag-{index}", MODEL)
        except RegistryError as exc:
            errors.append(exc)

    workers = [threading.Thread(target=add, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert [_names(store, f"{VERSION}{i}") for i in range(4)] == [["tag-0"], ["shared"], ["tag-2"], ["shared"]]


def test_a_query_longer_than_any_tag_name_finds_none(store: TagStore) -> None:
    """SQLite refuses a LIKE pattern past 50,000 bytes; such a text cannot be inside a tag name anyway."""
    store.add(VERSION, "champion", MODEL)
    for text in ("x" * 101, "a" * 60_000):
        with pytest.raises(RegistryError) as caught:
            store.matching(text)
        assert caught.value.reason is Reason.MODEL_NOT_FOUND
        assert "No tags found." in str(caught.value)
    assert [t.name for t in store.matching("champ")] == ["champion"]
