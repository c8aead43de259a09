"""FATE-Flow's JSON where it differs from the registry's own ``flow``.

Model rows with FATE-Flow's columns, tags without a description as null, an import's answer with FATE's ``model_info``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from client import render
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

# FATE-Flow's t_machine_learning_model columns: a full row (no query_filters) has every one, null when unknown.
FATE_COLUMNS = (
    "f_archive_from_ip",
    "f_archive_sha256",
    "f_create_date",
    "f_create_time",
    "f_fate_version",
    "f_imported",
    "f_inference_dsl",
    "f_initiator_party_id",
    "f_initiator_role",
    "f_job_id",
    "f_loaded_times",
    "f_model_id",
    "f_model_version",
    "f_parent",
    "f_parent_info",
    "f_party_id",
    "f_role",
    "f_roles",
    "f_runtime_conf",
    "f_runtime_conf_on_party",
    "f_size",
    "f_train_dsl",
    "f_train_runtime_conf",
    "f_update_date",
    "f_update_time",
)
# The columns FATE's CLI asks for without --detail: the catalog holds them without asking the parties.
CATALOG_FILTERS = frozenset(
    {
        "create_date",
        "role",
        "party_id",
        "roles",
        "model_id",
        "model_version",
        "loaded_times",
        "size",
        "parent",
        "parent_info",
    }
)
CATALOG_FILTERS |= {"description"}  # not a column of FATE-Flow's: asked for by its CLI and dropped


def needs_detail(filters: Sequence[str]) -> bool:
    """Whether the parties are asked for their rows: a full row, or a filter naming a column the catalog lacks."""
    return not filters or not set(filters) <= CATALOG_FILTERS


def _integer_ids(roles: Any) -> Any:
    """FATE-Flow's ``f_roles`` holds party ids as numbers (as its runtime confs do)."""
    if not isinstance(roles, dict):
        return roles
    return {
        role: [int(p) if isinstance(p, str) and p.isdigit() else p for p in parties]
        if isinstance(parties, list)
        else parties
        for role, parties in roles.items()
    }


def model_row(info: common.PartyModelInfo, filters: Sequence[str]) -> dict[str, Any]:
    """A row as FATE-Flow answers it.

    With ``filters``, those columns FATE-Flow has (null when unknown); without, every FATE-Flow column followed by the
    registry's own (``f_manifest_digest``, ...).
    """
    ours = render.model_info_row(info, detail=True)
    ours["f_parent"] = True if info.parent else None  # FATE-Flow's deployed child: null, not false
    ours["f_roles"] = _integer_ids(ours.get("f_roles"))
    ours.setdefault("f_update_date", ours.get("f_create_date"))
    ours.setdefault("f_update_time", ours.get("f_create_time"))
    if filters:
        return {f"f_{name}": ours.get(f"f_{name}") for name in filters if f"f_{name}" in FATE_COLUMNS}
    row = {column: ours.get(column) for column in FATE_COLUMNS}
    row.update((key, value) for key, value in ours.items() if key not in row)
    return row


def model_info_answer(response: pb.GetModelInfoResponse, filters: Sequence[str]) -> render.Answer:
    """Parties whose rows could not be fetched are listed under ``meta.failures``, as the registry's flow does."""
    failures = render.party_map(response.failures)["detail"] if response.failures else None
    rows = [model_row(info, filters) for info in response.models]
    return render.envelope(
        retmsg=render.MODEL_INFO_FROM_DB, data=rows, meta={"failures": failures} if failures else None
    )


def tag_rows(tags: Iterable[pb.Tag], with_count: bool = False) -> list[dict[str, Any]]:
    """FATE-Flow's tags: a missing description is null."""
    return [
        {
            "name": tag.name,
            "description": tag.description or None,
            **({"model_count": tag.model_count} if with_count else {}),
        }
        for tag in tags
    ]


def tag_list_answer(tags: Iterable[pb.Tag]) -> render.Answer:
    """FATE-Flow's answer to ``tag list``: each tag's row, and their count."""
    rows = tag_rows(tags)
    return render.envelope(data={"tags": rows, "count": len(rows)})


def tagged_model(info: common.PartyModelInfo) -> dict[str, Any]:
    """A row of ``tag query --with-model``."""
    return {
        "model_id": info.model_id,
        "model_version": info.model_version,
        "model_size": info.size_kib,
        "role": info.role,
        "party_id": info.party_id,
    }


def imported_answer(result: common.ImportModelResult) -> render.Answer:
    """An import or restore: the registry's answer, with FATE-Flow's ``model_info`` and ``jobId``."""
    answer = render.import_answer(result)
    answer["data"]["model_info"] = {"model_id": result.model.model_id, "model_version": result.model.model_version}
    answer["jobId"] = result.job_id or None
    return {key: value for key, value in answer.items() if value is not None}
