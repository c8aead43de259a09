"""HomoNN (FATE 1.10+ buffers) → PyTorch (fate_buffers.md §3.3).

``pytorch.pth`` is FATE's file: ``{"model": state_dict, "optimizer": optimizer state or None}``.
Beyond FATE: when ``HomoNNMeta.nn_define`` describes a Sequential of ``torch.nn`` layers (the form
FATE's pipeline writes: ``{"<index>-<name>": {"layer": "Linear", ...}}``), the network is rebuilt,
the trained weights loaded into it strictly, and, when its first layer gives the input width, it
is saved with ``torch.export`` in ``pytorch_module.pt2``: ``torch.export.load(path).module()`` runs
it without any FATE code (batch size free). The buffer's torch
pickle is read with ``weights_only=True``: a model file cannot run code in the agent.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fate_registry.fate.homo_nn_model_meta_pb2 import HomoNNMeta
from fate_registry.fate.homo_nn_model_param_pb2 import HomoNNParam
from party_agent.homo_convert.buffers import ComponentModel
from party_agent.homo_convert.frameworks import PYTORCH, PYTORCH_FILENAME, PYTORCH_MODULE_FILENAME, needs

META = "HomoNNMeta"
PARAM = "HomoNNParam"
_NOT_ARGUMENTS = frozenset({"layer", "initializer"})


def _network(model: ComponentModel, meta: HomoNNMeta, state: Any) -> Any:
    """The Sequential that ``nn_define`` describes, holding ``state``; None when it describes something else."""
    import torch

    try:
        define = json.loads(meta.nn_define[0]) if len(meta.nn_define) else None
    except ValueError:
        raise model.error("has an nn_define that is not JSON") from None
    if not isinstance(define, dict) or not define:
        return None
    layers: list[tuple[int, str, Any]] = []
    for key, spec in define.items():
        index, _, name = str(key).partition("-")
        layer = getattr(torch.nn, str(spec.get("layer", "")), None) if isinstance(spec, dict) else None
        if not index.isdigit() or not isinstance(layer, type) or not issubclass(layer, torch.nn.Module):
            return None
        arguments = {k: v for k, v in spec.items() if k not in _NOT_ARGUMENTS}
        try:
            with torch.device("meta"):  # no memory yet: the sizes come from the file, the weights from the buffer
                layers.append((int(index), name or index, layer(**arguments)))
        except (TypeError, ValueError):
            raise model.error(f"has a layer {key} that torch.nn.{spec['layer']} does not accept") from None
    network = torch.nn.Sequential(OrderedDict((name, layer) for _, name, layer in sorted(layers, key=lambda x: x[0])))
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, TypeError):
        raise model.error("holds weights that do not fit the network of its nn_define") from None
    return network.eval()


def convert(model: ComponentModel, directory: Path) -> list[Path]:
    """Write a homo NN model as a PyTorch state dict and a ``torch.export`` program; the files written."""
    meta = model.parse(META, HomoNNMeta)
    param = model.parse(PARAM, HomoNNParam)
    if not param.model_bytes:
        raise model.error("holds no model bytes (was it trained?)")
    with needs("torch", PYTORCH):
        import torch
    try:
        saved = torch.load(io.BytesIO(param.model_bytes), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError):
        raise model.error("holds model bytes that are not a torch state dict") from None
    state = saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not state:
        raise model.error("holds no trained weights (was it trained?)")
    network = _network(model, meta, state)
    path = directory / PYTORCH_FILENAME
    torch.save({"model": state, "optimizer": saved.get("optimizer")}, path)
    written = [path]
    width = getattr(network[0], "in_features", None) if network is not None else None
    if isinstance(width, int):  # the input's width is known: the network can be exported
        module_path = directory / PYTORCH_MODULE_FILENAME
        batch = torch.export.Dim("batch")
        exported = torch.export.export(network, (torch.zeros(2, width),), dynamic_shapes=({0: batch},))
        torch.export.save(exported, module_path)
        written.append(module_path)
    return written
