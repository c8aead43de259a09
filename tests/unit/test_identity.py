from __future__ import annotations

import pytest

from fate_registry.errors import Reason, RegistryError
from fate_registry.identity import (
    JobIdGenerator,
    archive_name,
    gen_model_id,
    parse_party_model_id,
    party_model_id,
    validate_name,
)


def test_model_id_sorts_roles_and_unique_ids_in_their_own_type() -> None:
    roles = {"host": [10001, 10000, 10000], "guest": [9999], "arbiter": [10000]}
    assert gen_model_id(roles) == "arbiter-10000#guest-9999#host-10000_10001#model"
    # strings sort lexicographically, as FATE's sorted() does on str ids
    assert gen_model_id({"guest": ["9999", "10000"]}) == "guest-10000_9999#model"
    assert gen_model_id({}) == "all#model"


def test_party_model_id_round_trip() -> None:
    pmid = party_model_id("guest", 9999, "arbiter-10000#guest-9999#host-10000#model")
    assert pmid == "guest#9999#arbiter-10000#guest-9999#host-10000#model"
    assert parse_party_model_id(pmid) == ("guest", "9999", "arbiter-10000#guest-9999#host-10000#model")
    assert archive_name(pmid, "202111091122168817080") == f"{pmid}_202111091122168817080.zip"
    with pytest.raises(RegistryError):
        parse_party_model_id("guest#9999")


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a\\b", "x..y", "a\x00b", "tab\there", "x" * 256])
def test_unsafe_names_are_refused(bad: str) -> None:
    with pytest.raises(RegistryError) as info:
        validate_name(bad, "model_version")
    assert info.value.reason is Reason.INVALID_ID
    assert "model_version" in info.value.message


def test_job_ids_are_fate_shaped_and_strictly_increasing() -> None:
    gen = JobIdGenerator()
    ids = [gen.next() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) >= 21 and i.isdigit() for i in ids)
    assert ids == sorted(ids, key=lambda i: (i[:20], int(i[20:])))
