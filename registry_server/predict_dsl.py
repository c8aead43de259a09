"""Predict DSLs and predict conf templates, as FATE-Flow builds them for DSL v2; pure functions, no I/O.

- :func:`derive_predict_dsl` is FATE-Flow's ``DSLParserV2.deploy_component``: the predict DSL of a deploy
  given a component list (fate_flow.md §6.9).
- :func:`validate_predict_dsl` checks a predict DSL the user wrote (``deploy --dsl-path``) as FATE-Flow's
  ``verify_dsl(dsl, "predict")`` does, and also against the training DSL.
- :func:`predict_conf_template` is ``RuntimeConfParserV2.generate_predict_conf_template`` (§6.11).

A DSL is ``{"components": {<name>: {"module", "input", "output", "provider"?}}, "provider"?}``; a reference
is ``"<component>.<output name>"`` (fate_buffers.md §5.1). Every error is a :class:`RegistryError` with
reason INVALID_ARGUMENT (or INVALID_ID for a name that could not be a path component) whose message
names the component, key or reference at fault.
"""

from __future__ import annotations

import copy
import heapq
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fate_registry.errors import Reason, RegistryError

READER_MODULE: Final = "Reader"
PIPELINE_PREFIX: Final = "pipeline"
"""Deployed components read their own model as ``pipeline.<component>.<alias>``."""

DATA_KEY_RENAMES: Final = (
    ("data", "data"),
    ("train_data", "test_data"),
    ("validate_data", "test_data"),
    ("test_data", "test_data"),
)
"""Train input data key → predict key, in FATE's order: a deployed component keeps only the first one present."""

PASS_THROUGH_KEYS: Final = ("train_data", "eval_data", "test_data", "data")
"""What a component left out of the predict DSL stands for: the first reference of the first of these inputs."""

PREDICT_CONF_ROLES: Final = ("guest", "host")
"""The only roles the predict conf template fills Reader tables for."""

_MODEL_INPUTS: Final = (("model", "model"), ("isometric_model", "model"))
_CACHE_INPUTS: Final = (("cache", "cache"),)
_OUTPUT_KINDS: Final = ("data", "model", "cache")


def _invalid(message: str, **metadata: str) -> RegistryError:
    return RegistryError(Reason.INVALID_ARGUMENT, message, metadata)


@dataclass(frozen=True)
class _Dsl:
    """A checked DSL: its components and their topological order (DSL order among independent ones)."""

    components: Mapping[str, Mapping[str, Any]]
    outputs: Mapping[str, Mapping[str, list[str]]]
    """component → output kind (data, model, cache) → names."""
    order: tuple[str, ...]

    def module(self, name: str) -> str:
        module: str = self.components[name]["module"]
        return module


def _object(document: object, what: str) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise _invalid(f"{what} must be a JSON object, not {type(document).__name__}")
    return document


def _components(dsl: object, what: str) -> Mapping[str, Mapping[str, Any]]:
    """The ``components`` of a DSL, each an object with a module and a name FATE accepts."""
    components = _object(dsl, what).get("components")
    if not isinstance(components, Mapping) or not components:
        raise _invalid(f"{what} has no components: it needs a non-empty 'components' object", field="components")
    for name, spec in components.items():
        # FATE-Flow's _check_component_valid_names: letters, digits, '_' and '-' only.
        if not isinstance(name, str) or not name or not all(ch.isalpha() or ch.isdigit() or ch in "_-" for ch in name):
            raise _invalid(
                f"{what}: component name {name!r} is not valid; names consist of letters, digits, '_' and '-'",
                component=str(name),
            )
        if not isinstance(spec, Mapping):
            raise _invalid(f"{what}: component {name} must be a JSON object", component=name)
        module = spec.get("module")
        if not isinstance(module, str) or not module:
            raise _invalid(f"{what}: component {name} has no module", component=name)
    return components


def _outputs(name: str, spec: Mapping[str, Any], what: str) -> dict[str, list[str]]:
    output = spec.get("output", {})
    if not isinstance(output, Mapping):
        raise _invalid(f"{what}: the output of component {name} must be a JSON object", component=name)
    found: dict[str, list[str]] = {}
    for kind in _OUTPUT_KINDS:
        if kind in output:
            names = output[kind]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise _invalid(f"{what}: output {kind} of component {name} must be a list of names", component=name)
            found[kind] = names
    return found


def _split_reference(reference: object, owner: str, what: str) -> tuple[str, str]:
    """``"<component>.<output name>"`` → (component, output name)."""
    if isinstance(reference, str):
        component, _, output = reference.partition(".")
        if component and output:
            return component, output
    raise _invalid(
        f"{what}: component {owner} has the input {reference!r}; an input reads '<component>.<output name>'",
        component=owner,
    )


def _references(inputs: Mapping[str, Any], key: str, owner: str, what: str) -> list[str]:
    references = inputs[key]
    if not isinstance(references, list):
        raise _invalid(f"{what}: input {key} of component {owner} must be a list", component=owner)
    return references


def _parse_dsl(dsl: object, what: str, *, training: bool) -> _Dsl:
    """FATE-Flow's ``_init_components`` + ``_find_dependencies``: every input names an existing output.

    A training DSL's model, isometric_model and cache inputs are dependencies; in a predict DSL only
    cache is (its model inputs read ``pipeline.*``), as FATE has it. Data inputs are dependencies in both.
    """
    components = _components(dsl, what)
    outputs = {name: _outputs(name, spec, what) for name, spec in components.items()}
    upstream: dict[str, set[str]] = {name: set() for name in components}

    def check(owner: str, reference: object, kind: str, input_key: str) -> None:
        component, output = _split_reference(reference, owner, what)
        if component not in components:
            hint = " (DSL v2 has no args inputs: data comes from Reader components)" if component == "args" else ""
            raise _invalid(
                f"{what}: input {input_key} of component {owner} refers to {component}, "
                f"which is not a component of the DSL{hint}",
                component=owner,
            )
        declared = outputs[component].get(kind)
        # FATE checks the output name of data inputs, and only the output kind of the others.
        if declared is None or (kind == "data" and output not in declared):
            raise _invalid(
                f"{what}: input {input_key} of component {owner} refers to {reference}, "
                f"but {component} has no {kind} output {output!r}",
                component=owner,
            )
        upstream[owner].add(component)

    for name, spec in components.items():
        inputs = spec.get("input")
        if inputs is None:
            continue
        if not isinstance(inputs, Mapping):
            raise _invalid(f"{what}: the input of component {name} must be a JSON object", component=name)
        for key, kind in (*_MODEL_INPUTS, *_CACHE_INPUTS) if training else _CACHE_INPUTS:
            if key in inputs:
                for reference in _references(inputs, key, name, what):
                    check(name, reference, kind, key)
        if "data" in inputs:
            data = inputs["data"]
            if not isinstance(data, Mapping):
                raise _invalid(f"{what}: input data of component {name} must be a JSON object", component=name)
            for key in data:
                for reference in _references(data, key, name, what):
                    check(name, reference, "data", key)
    return _Dsl(components, outputs, _topological_order(components, upstream, what))


def _topological_order(
    components: Mapping[str, object], upstream: Mapping[str, set[str]], what: str
) -> tuple[str, ...]:
    """Kahn's algorithm taking the ready component that comes first in the DSL.

    FATE-Flow's own order among independent components depends on Python's string hashing (it keeps
    downstream lists as ``list(set(...))``), so it cannot be reproduced; any topological order gives
    the same predict DSL up to the order of its keys.
    """
    names = list(components)
    position = {name: index for index, name in enumerate(names)}
    downstream: dict[str, list[str]] = {name: [] for name in names}
    waiting = {name: len(upstream[name]) for name in names}
    for name in names:
        for parent in upstream[name]:
            downstream[parent].append(name)
    ready = [position[name] for name in names if not waiting[name]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in downstream[name]:
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, position[child])
    if len(order) < len(names):
        stuck = [name for name in names if waiting[name]]
        raise _invalid(f"{what}: components {', '.join(stuck)} are in or behind a dependency loop")
    return tuple(order)


def _unknown_components(names: Sequence[str], known: Mapping[str, object]) -> RegistryError | None:
    """FATE's DeployComponentNotExistError, naming every unknown component."""
    unknown = sorted(set(names) - set(known))
    if not unknown:
        return None
    return _invalid(
        f"components {', '.join(unknown)} do not exist in the training DSL, so they cannot be deployed",
        unknown_components=",".join(unknown),
    )


def derive_predict_dsl(train_dsl: Mapping[str, Any], cpn_list: Sequence[str] | None) -> dict[str, Any]:
    """The predict DSL FATE-Flow's ``deploy_component`` makes from a training DSL v2 (fate_flow.md §6.9).

    ``cpn_list`` names the components to deploy; None or empty deploys every training component.
    Components are visited in topological order. A deployed component keeps its module and reads its
    own models (``pipeline.<name>.<alias>`` for each ``output.model`` alias); its other non-null
    outputs are copied. Its training model inputs (``input.model``, ``input.isometric_model``) are not
    carried over, as in FATE. Of its data inputs only the first of data, train_data, validate_data,
    test_data is kept, renamed data → data and the others → test_data; ``input.cache`` is copied as is
    when it has data inputs, and its source must be deployed too (FATE-Flow's check of the predict DSL
    fails otherwise). Each data reference to a Reader or to a deployed component stays; one to
    a component left out is replaced by what that component passed through (the first reference of
    its first train_data, eval_data, test_data or data input, followed transitively). References to
    components absent from the predict DSL (a Reader left out) are then dropped, and an emptied
    ``input.data`` removed. Providers given in the training DSL are copied, as FATE-Flow 1.11 does.
    """
    dsl = _parse_dsl(train_dsl, "the training DSL", training=True)
    unknown = _unknown_components(cpn_list or (), dsl.components)
    if unknown is not None:
        raise unknown
    deployed = set(cpn_list) if cpn_list else set(dsl.components)

    predict: dict[str, dict[str, Any]] = {}
    passed: dict[str, dict[str, list[str]]] = {}  # component left out → its data output → references it stands for

    def resolve(reference: str) -> list[str]:
        component, output = reference.partition(".")[::2]
        if component in deployed or dsl.module(component) == READER_MODULE:
            return [reference]
        if component not in passed:
            raise _invalid(
                f"component {component} is not deployed and has no data input to pass on to its downstream "
                f"components; deploy it too",
                component=component,
            )
        return list(passed[component][output])

    for name in dsl.order:
        spec = dsl.components[name]
        inputs: Mapping[str, Any] | None = spec.get("input")
        if name not in deployed:
            data_outputs = dsl.outputs[name].get("data")
            if data_outputs and inputs is not None and "data" in inputs:
                source = _pass_through_source(name, inputs["data"])
                passed[name] = {output: resolve(source) for output in data_outputs}
            continue

        entry: dict[str, Any] = {"module": spec["module"]}
        if "output" in spec:
            output = spec["output"]
            if "model" in output:
                entry["input"] = {"model": [f"{PIPELINE_PREFIX}.{name}.{alias}" for alias in output["model"]]}
            copied = {
                key: copy.deepcopy(value) for key, value in output.items() if value is not None and key != "model"
            }
            if copied:
                entry["output"] = copied
        if inputs is not None:
            predict_input = entry.setdefault("input", {})
            if "data" in inputs:
                data = _predict_data(inputs["data"], resolve)
                kept = {key: [ref for ref in refs if ref.partition(".")[0] in predict] for key, refs in data.items()}
                kept = {key: refs for key, refs in kept.items() if refs}
                if kept:
                    predict_input["data"] = kept
                if "cache" in inputs:
                    predict_input["cache"] = [_deployed_cache(name, ref, predict) for ref in inputs["cache"]]
        predict[name] = entry

    for name, spec in dsl.components.items():
        if spec.get("provider") and name in predict:
            predict[name]["provider"] = copy.deepcopy(spec["provider"])
    result: dict[str, Any] = {"components": predict}
    if "provider" in train_dsl:
        result["provider"] = copy.deepcopy(train_dsl["provider"])
    return result


def _predict_data(data: Mapping[str, list[str]], resolve: Callable[[str], list[str]]) -> dict[str, list[str]]:
    """The first of the renamed data keys present, its references resolved (FATE keeps only that one)."""
    for train_key, predict_key in DATA_KEY_RENAMES:
        if train_key in data:
            return {predict_key: [ref for reference in data[train_key] for ref in resolve(reference)]}
    return {}


def _deployed_cache(name: str, reference: str, predict: Mapping[str, object]) -> str:
    """A cache input is copied as is; FATE-Flow's check of the predict DSL then fails unless its source is deployed."""
    source = reference.partition(".")[0]
    if source not in predict:
        raise _invalid(
            f"component {name} reads the cache {reference}, but {source} is not deployed; deploy it too",
            component=name,
        )
    return reference


def _pass_through_source(name: str, data: Mapping[str, list[str]]) -> str:
    """The reference a component left out of the predict DSL stands for (FATE's ``output_data_maps``)."""
    for key in PASS_THROUGH_KEYS:
        if key in data:
            if not data[key]:
                break
            source: str = data[key][0]
            return source
    raise _invalid(
        f"component {name} is not deployed, so its downstream components must read what it read, but its "
        f"input data has no reference under any of {', '.join(PASS_THROUGH_KEYS)}; deploy it too",
        component=name,
    )


def validate_predict_dsl(dsl: Mapping[str, Any] | str, train_dsl: Mapping[str, Any]) -> dict[str, Any]:
    """Check a predict DSL given by the user (``deploy --dsl-path``, as an object or JSON text); return it.

    It must be a JSON object with non-empty ``components``, each with a module, and pass FATE-Flow's
    ``verify_dsl(dsl, "predict")`` (valid names, data and cache inputs that name outputs of its own
    components, no loop). Beyond FATE, every component must exist in the training DSL with the same
    module, since deploy copies each one's trained model.
    """
    document: object = dsl
    if isinstance(dsl, str):
        try:
            document = json.loads(dsl)
        except json.JSONDecodeError as exc:
            raise _invalid(
                f"the predict DSL is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    predict_dsl = _object(document, "the predict DSL")
    checked = _parse_dsl(predict_dsl, "the predict DSL", training=False)
    train_components = _components(train_dsl, "the training DSL")
    unknown = _unknown_components(list(checked.components), train_components)
    if unknown is not None:
        raise unknown
    for name in checked.components:
        module, trained = checked.module(name), train_components[name]["module"]
        if module != trained:
            raise _invalid(
                f"the predict DSL gives component {name} the module {module}, but it was trained as {trained}",
                component=name,
            )
    return copy.deepcopy(dict(predict_dsl))


def predict_conf_template(
    train_runtime_conf: Mapping[str, Any], inference_dsl: Mapping[str, Any], model_id: str, model_version: str
) -> dict[str, Any]:
    """The predict runtime conf template of ``get-predict-conf`` (fate_flow.md §6.11).

    Role, initiator and job parameters come from the training conf, ``job_parameters.common`` updated
    with the model id and version and ``job_type: "predict"``. Each guest and host party index gets a
    table to fill for every Reader of ``inference_dsl``: ``name_to_be_filled_<i>`` /
    ``namespace_to_be_filled_<i>``, ``i`` counting Readers in DSL order. FATE shares one template object
    between the indexes; here each index gets its own copy (the JSON is the same).
    """
    role = train_runtime_conf.get("role")
    if not role or not train_runtime_conf.get("initiator"):
        missing = "role" if not role else "initiator"
        raise _invalid(
            f"the model's training runtime conf has no {missing}; a predict conf needs its role and initiator",
            missing=missing,
        )
    role = _object(role, "the role of the model's training runtime conf")
    job_parameters = train_runtime_conf.get("job_parameters")
    if not isinstance(job_parameters, Mapping) or not isinstance(job_parameters.get("common"), Mapping):
        raise _invalid(
            "the model's training runtime conf has no job_parameters.common to carry the model id and version",
            missing="job_parameters.common",
        )
    predict_common = {
        **job_parameters["common"],
        "model_id": model_id,
        "model_version": model_version,
        "job_type": "predict",
    }
    job_parameters = copy.deepcopy({**job_parameters, "common": predict_common})

    components = _components(inference_dsl, "the model's inference DSL")
    readers = [name for name, spec in components.items() if spec["module"] == READER_MODULE]
    tables = {
        reader: {"table": {"name": f"name_to_be_filled_{i}", "namespace": f"namespace_to_be_filled_{i}"}}
        for i, reader in enumerate(readers)
    }
    role_parameters: dict[str, dict[str, Any]] = {}
    for role_name, party_ids in role.items():
        if role_name in PREDICT_CONF_ROLES:
            if not isinstance(party_ids, list):
                raise _invalid(f"the model's training runtime conf lists role {role_name} as {party_ids!r}, not a list")
            role_parameters[role_name] = {str(index): copy.deepcopy(tables) for index in range(len(party_ids))}
    return {
        "dsl_version": 2,
        "role": copy.deepcopy(dict(role)),
        "initiator": copy.deepcopy(train_runtime_conf["initiator"]),
        "job_parameters": job_parameters,
        "component_parameters": {"role": role_parameters},
    }
