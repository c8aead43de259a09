"""The fields each RPC of the coordinator's client API requires, in one table, checked before the handler runs.

An empty field would otherwise act as a wildcard: the catalog reads an empty filter as "any", so an
empty model id asked for the predict DSL of whichever model came first. A field counts as empty when
it is unset, empty or only whitespace, or a list or map holding nothing else. A request that leaves a
required key empty is refused with FATE's answer for absent keys (retcode 101, "required parameters are
missing: a,b; ") naming every such key as FATE's confs name it: ``role``, not ``model.role``.

:class:`RequiredFields` checks every call whose request arrives parsed. The archive import, whose
handler takes the serialized messages of its stream, checks its first message itself
(:func:`refuse_missing`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message

from fate_registry.errors import missing_keys
from fate_registry.grpc_server import Behavior, HandlerInterceptor, wrap_handler

if TYPE_CHECKING:
    from fate_registry.grpc_server import Handler

REF_KEYS = ("role", "party_id", "model_id", "model_version")


@dataclass(frozen=True)
class Key:
    """A required key as FATE names it, and the request fields (dotted paths) carrying it.

    It is missing when any of them is empty.
    """

    name: str
    paths: tuple[str, ...]

    def missing(self, request: Message) -> bool:
        return any(_empty(_value(request, path)) for path in self.paths)

    def begun(self, request: Message) -> bool:
        """Whether the request gave any part of the key: a non-empty field, or a message on a path."""
        return any(_touched(request, path) or not _empty(_value(request, path)) for path in self.paths)


def keys(*names: str) -> tuple[Key, ...]:
    """Top-level fields, each a key of the same name."""
    return tuple(Key(name, (name,)) for name in names)


def ref_keys(at: str) -> tuple[Key, ...]:
    """The four keys of the PartyModelRef at ``at``, named as FATE's flat confs name them."""
    return tuple(Key(name, (f"{at}.{name}",)) for name in REF_KEYS)


@dataclass(frozen=True)
class Required:
    """Every key of ``every``, and, when ``one_of`` is given, every key of one of its groups.

    The groups are the ways a request may name the same thing, e.g. a model by its id and version or by a job id.
    """

    every: tuple[Key, ...] = ()
    one_of: tuple[tuple[Key, ...], ...] = ()

    def missing(self, request: Message) -> list[str]:
        """The names of the keys ``request`` lacks.

        When no group of ``one_of`` is complete, those the first group the request began lacks are named, else those of
        the first group.
        """
        names = [key.name for key in self.every if key.missing(request)]
        if self.one_of:
            lacking = [[key.name for key in group if key.missing(request)] for group in self.one_of]
            if all(lacking):
                begun = [
                    gap
                    for group, gap in zip(self.one_of, lacking, strict=True)
                    if any(key.begun(request) for key in group)
                ]
                names += (begun or lacking)[0]
        return names


MODEL = keys("model_id", "model_version")
MODEL_OR_JOB = Required(one_of=(MODEL, keys("job_id")))
PARTY_MODEL = Required(ref_keys("model"))

# Method of fate_registry.v1.RegistryService -> what its request must carry. Beyond these, a handler may
# refuse in FATE's own words (bind: "no service id"; a checkpoint without a step: "'step_index' or
# 'step_name' is required", retcode 400), and an agent refuses what is invalid for the party.
REQUIRED: dict[str, Required] = {
    "ImportModel": Required(ref_keys("header.target")),  # checked by the servicer on the stream's first message
    "ExportModel": PARTY_MODEL,
    "BeginTransfer": Required(one_of=(ref_keys("import_header.target"), ref_keys("export_model"))),
    "EndTransfer": Required((*keys("ticket"), *ref_keys("model"))),
    "StoreModel": PARTY_MODEL,
    "RestoreModel": PARTY_MODEL,
    "LoadModel": MODEL_OR_JOB,  # the parties: the request's role map, else the catalog's
    "BindModel": MODEL_OR_JOB,
    "UnloadModel": Required(MODEL),
    "UnbindModel": Required((*keys("service_ids"), *MODEL)),
    "MigrateModel": Required(
        (
            Key("migrate_initiator", ("migrate_initiator.role", "migrate_initiator.party_id")),
            *keys("role", "migrate_role", "model_id", "model_version", "execute_party"),
        )
    ),
    "DeployModel": Required(MODEL),
    "GetPredictDsl": Required(MODEL),
    "GetPredictConf": Required(MODEL),
    # a filter (empty role, party id: every party), but not of every model: a version or a model id
    "GetModelInfo": Required(one_of=(keys("model_version"), keys("model_id"))),
    "ListModelVersions": Required(),  # a listing: no model id lists every model's versions
    "ListModelTags": Required(keys("job_id")),
    "AddModelTag": Required(keys("job_id", "tag_name")),
    "RemoveModelTag": Required(keys("job_id", "tag_name")),
    "CreateTag": Required(keys("tag_name")),
    "QueryTag": Required(keys("tag_name")),
    "UpdateTag": Required(keys("tag_name")),
    "DeleteTag": Required(keys("tag_name")),
    "ListTags": Required(),  # a listing
    "HomoConvertModel": PARTY_MODEL,  # no framework: each component's default
    "HomoDeployModel": Required((*ref_keys("model"), *keys("service_id", "component_name", "deployment_type"))),
    "ListCheckpoints": Required((*ref_keys("model"), *keys("component_name"))),
    "GetCheckpoint": Required((*ref_keys("model"), *keys("component_name"))),
    "DeleteModel": PARTY_MODEL,
    "ListOperations": Required(),  # a listing: each empty filter matches every operation
}


def refuse_missing(method: str, request: Message) -> None:
    """Refuse ``request`` to ``method`` with FATE's missing-keys answer if it lacks a required key."""
    missing = REQUIRED[method].missing(request)
    if missing:
        raise missing_keys(missing)


class RequiredFields(HandlerInterceptor):
    """Refuses a call to ``service`` whose request lacks a required key (:data:`REQUIRED`), before its handler runs.

    The check runs when the handler is called, so a refused server stream fails before its first message; it raises, for
    the error interceptor (outside every other) to answer.
    """

    def __init__(self, service: str) -> None:
        self.prefix = f"/{service}/"

    def rewrite(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        if not details.method.startswith(self.prefix) or handler.request_streaming:
            return handler
        method = details.method.removeprefix(self.prefix)

        def checked(behavior: Behavior) -> Behavior:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                refuse_missing(method, request)
                return behavior(request, context)

            return run

        return wrap_handler(handler, checked, checked)


def _value(message: Message, path: str) -> object:
    """The field at ``path``; None when a message on the way is unset."""
    *parents, leaf = path.split(".")
    for name in parents:
        if not message.HasField(name):
            return None
        message = getattr(message, name)
    return getattr(message, leaf)


def _touched(message: Message, path: str) -> bool:
    """Whether a message on the way to ``path`` is set (a oneof member chosen, say)."""
    parents = path.split(".")[:-1]
    return bool(parents) and message.HasField(parents[0])


def _empty(value: object) -> bool:
    """Unset, empty or whitespace text, or a list or map (by its keys) with nothing else in it."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    assert isinstance(value, Iterable), f"a required field is text, a list or a map, not {type(value).__name__}"
    return all(_empty(item) for item in value)
