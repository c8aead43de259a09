"""The JSON bodies of FATE-Flow's routes, read leniently as FATE-Flow reads them.

Ids arrive as ints or strings and become strings; an absent or null key is ``""``, left for the RPC's own
required-field check (:mod:`registry_server.required`) to name, so a body missing a key gets the same answer
over HTTP as over gRPC; keys a route does not read are ignored.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic.dataclasses import dataclass as section

from client.conf_reader import FATE_CONF, Flag, Text, Texts
from fate_registry.v1 import common_pb2 as common


@section(frozen=True, kw_only=True, config=FATE_CONF)
class ModelKeys:
    """The four keys naming one party's model."""

    role: Text = ""
    party_id: Text = ""
    model_id: Text = ""
    model_version: Text = ""

    def ref(self) -> common.PartyModelRef:
        return common.PartyModelRef(
            role=self.role, party_id=self.party_id, model_id=self.model_id, model_version=self.model_version
        )


@section(frozen=True, kw_only=True, config=FATE_CONF)
class QueryBody(ModelKeys):
    """``/v1/model/query``: the model keys and FATE's ``query_filters``."""

    query_filters: Texts = field(default_factory=list)


@section(frozen=True, kw_only=True, config=FATE_CONF)
class PredictBody(ModelKeys):
    """``filename`` set: the CLI's file mode; unset: the SDK's JSON mode."""

    filename: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class CheckpointBody(ModelKeys):
    """``step_index`` is read raw: FATE-Flow answers a bad one with its own HTTP 400."""

    component_name: Text = ""
    step_name: Text = ""
    step_index: Any = None


@section(frozen=True, kw_only=True, config=FATE_CONF)
class DeployBody:
    """``cpn_list``, ``predict_dsl``/``dsl`` and ``components_checkpoint`` come in several shapes, read raw."""

    model_id: Text = ""
    model_version: Text = ""
    cpn_list: Any = None
    predict_dsl: Any = None
    dsl: Any = None
    components_checkpoint: dict[str, Any] = field(default_factory=dict)


@section(frozen=True, kw_only=True, config=FATE_CONF)
class CpnList:
    """``cpn_list`` as a list (the SDK's); the CLI's string form is parsed by the route."""

    cpn_list: Texts = field(default_factory=list)


@section(frozen=True, kw_only=True, config=FATE_CONF)
class JobBody:
    """A body that names a model by its job id."""

    job_id: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class ModelTagBody(JobBody):
    """``/v1/model/model_tag/*``: a job id and a tag name."""

    tag_name: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class TagBody:
    """Every key of ``/v1/model/tag/*``; each route reads its own."""

    tag_name: Text = ""
    tag_desc: Text = ""
    new_tag_name: Text = ""
    new_tag_desc: Text = ""
    with_model: Flag = False
    limit: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class HomoDeployBody:
    """``/v1/model/homo/deploy``'s ``deployment_parameters``, passed on to the agent."""

    deployment_parameters: dict[str, Any] = field(default_factory=dict)


@section(frozen=True, kw_only=True, config=FATE_CONF)
class VersionBody:
    """``/v1/version/get``: the module whose version is asked (empty: FATE's)."""

    module: Text = ""
