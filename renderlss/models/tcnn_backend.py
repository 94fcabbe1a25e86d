"""tiny-cuda-nn kernels for the hash encoding and the fused MLP, on renderlss's parameters.

tinycudann is optional (CUDA only, compiled on install). Its torch modules keep their
parameters in an attribute ``params`` that every forward reads; here that attribute is
bound to the caller's parameter before each call, so the tcnn modules hold no state of
their own: one native module per layout and device serves every model (an EMA teacher,
a deep copy) and checkpoints are the same whichever backend computed them.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import torch
from torch import Tensor, nn

from renderlss.models.fused_mlp import FusedMLPLayout
from renderlss.models.hash_grid import HashGridLayout

_MODULES: dict[tuple, nn.Module] = {}


@functools.cache  # a failed import is not retried at every decoded chunk
def import_tcnn() -> ModuleType | None:
    """The ``tinycudann`` module, or None where it does not import (no CUDA build)."""
    try:
        return importlib.import_module("tinycudann")
    except (ImportError, OSError, RuntimeError):
        return None


def require_tcnn(where: str) -> ModuleType:
    """``tinycudann``, or an error that says how to get it or what to choose instead."""
    tcnn = import_tcnn()
    if tcnn is None:
        raise RuntimeError(
            f"{where}: backend 'tcnn' needs tinycudann, which does not import here "
            "(install it on a CUDA machine: pip install "
            "git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch), "
            "or choose backend 'auto' or 'torch'"
        )
    return tcnn


def _module(key: tuple, device: torch.device, make) -> nn.Module:
    """The native module of ``key`` on ``device``, made once."""
    key = (*key, str(device))
    if key not in _MODULES:
        with torch.cuda.device(device):
            _MODULES[key] = make()
    return _MODULES[key]


def _bound(module: nn.Module, params: Tensor, expected: int, what: str) -> nn.Module:
    native = int(module.params.numel())
    if native != expected:
        raise RuntimeError(
            f"{what}: tinycudann holds {native} parameters where renderlss's layout has "
            f"{expected}; this tinycudann version lays them out differently"
        )
    module.params = params
    return module


def tcnn_hash_grid_encode(positions: Tensor, params: Tensor, layout: HashGridLayout) -> Tensor:
    """tcnn's HashGrid on CUDA positions [P, 3] in [0, 1] -> [P, L * F] float32."""
    tcnn = require_tcnn("model.field_decoder")
    module = _module(
        ("encoding", tuple(sorted(layout.tcnn_config().items()))),
        positions.device,
        lambda: tcnn.Encoding(3, layout.tcnn_config(), dtype=torch.float32),
    )
    encoding = _bound(module, params, layout.num_params, "HashGrid")
    return encoding(positions.float().contiguous()).float()


def tcnn_fused_mlp_forward(inputs: Tensor, params: Tensor, layout: FusedMLPLayout) -> Tensor:
    """tcnn's FullyFusedMLP (half precision) on CUDA inputs [P, C_in] -> [P, C_out] float32."""
    tcnn = require_tcnn("model.field_decoder")
    module = _module(
        ("network", layout),
        inputs.device,
        lambda: tcnn.Network(layout.input_dims, layout.output_dims, layout.tcnn_config()),
    )
    network = _bound(module, params, layout.num_params, "FullyFusedMLP")
    return network(inputs.float().contiguous()).float()
