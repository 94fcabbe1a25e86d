"""A bias-free ReLU MLP with tiny-cuda-nn's ``FullyFusedMLP`` parameter layout, in PyTorch.

``hidden_layers`` hidden layers of ``width`` neurons (ReLU), a linear output, no biases.
The weights are one flat parameter: the matrices in order (input -> hidden,
``hidden_layers - 1`` x hidden -> hidden, hidden -> output), each row-major
[rows = outputs, columns = inputs] like ``nn.Linear.weight``. tcnn pads the input width and
the output width to multiples of 16: the first matrix has ``padded_input`` columns (the
padded inputs are zeros, so the extra columns never matter) and the last has
``padded_output`` rows (the extra outputs are dropped). A torch ``nn.Linear`` stack is
recovered with ``fused_mlp_matrices`` and the slices ``[:, :input_dims]`` /
``[:output_dims]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Widths FullyFusedMLP is compiled for, and the alignment of its input and output widths.
TCNN_WIDTHS = (16, 32, 64, 128)
TCNN_ALIGNMENT = 16


def _aligned(width: int) -> int:
    return -(-width // TCNN_ALIGNMENT) * TCNN_ALIGNMENT


@dataclass(frozen=True)
class FusedMLPLayout:
    """Widths of the MLP: ``input_dims`` -> ``hidden_layers`` x ``width`` -> ``output_dims``."""

    input_dims: int
    output_dims: int
    width: int
    hidden_layers: int

    @property
    def padded_input(self) -> int:
        return _aligned(self.input_dims)

    @property
    def padded_output(self) -> int:
        return _aligned(self.output_dims)

    def matrix_shapes(self) -> list[tuple[int, int]]:
        """(rows, columns) of each weight matrix in the flat parameter, in order."""
        hidden = [(self.width, self.width)] * (self.hidden_layers - 1)
        return [(self.width, self.padded_input), *hidden, (self.padded_output, self.width)]

    @property
    def num_params(self) -> int:
        return sum(rows * columns for rows, columns in self.matrix_shapes())

    def tcnn_config(self) -> dict:
        """tiny-cuda-nn's network config of the same MLP."""
        return {
            "otype": "FullyFusedMLP",
            "activation": "ReLU",
            "output_activation": "None",
            "n_neurons": self.width,
            "n_hidden_layers": self.hidden_layers,
        }


def fused_mlp_matrices(params: Tensor, layout: FusedMLPLayout) -> list[Tensor]:
    """Views of the flat ``params`` [num_params] as the row-major matrices, padding included."""
    if params.numel() != layout.num_params:
        raise ValueError(
            f"fused_mlp_matrices: {params.numel()} values, the layout needs {layout.num_params}"
        )
    matrices, start = [], 0
    for rows, columns in layout.matrix_shapes():
        matrices.append(params[start : start + rows * columns].view(rows, columns))
        start += rows * columns
    return matrices


def fused_mlp_forward(inputs: Tensor, params: Tensor, layout: FusedMLPLayout) -> Tensor:
    """[P, input_dims] -> [P, output_dims] with the flat weights ``params``."""
    first, *hidden, last = fused_mlp_matrices(params, layout)
    x = F.relu(inputs @ first[:, : layout.input_dims].t())
    for matrix in hidden:
        x = F.relu(x @ matrix.t())
    return x @ last[: layout.output_dims].t()


def initial_fused_mlp_params(layout: FusedMLPLayout) -> Tensor:
    """Xavier-uniform matrices on their padded shapes (as tcnn initialises them), flat."""
    parts = []
    for rows, columns in layout.matrix_shapes():
        bound = math.sqrt(6.0 / (rows + columns))
        parts.append(torch.empty(rows * columns).uniform_(-bound, bound))
    return torch.cat(parts)


class FusedMLP(nn.Module):
    """The MLP with its flat weights as one parameter ``params``."""

    def __init__(self, layout: FusedMLPLayout) -> None:
        super().__init__()
        self.layout = layout
        self.params = nn.Parameter(initial_fused_mlp_params(layout))

    def forward(self, inputs: Tensor) -> Tensor:
        """[P, input_dims] -> [P, output_dims]."""
        return fused_mlp_forward(inputs, self.params, self.layout)
