"""ONNX RNN, GRU and LSTM nodes on torch's fused recurrent kernels.

``torch.lstm``, ``torch.gru`` and ``torch.rnn_tanh``/``torch.rnn_relu`` run a whole
sequence in one call where :class:`~bridge.onnx.ops.rnn.OnnxRecurrent` loops over time
steps in Python. They compute the same cells as ONNX's defaults once the gate blocks are
reordered (LSTM ``iofc`` → torch ``ifgo``, GRU ``zrh`` → torch ``rzn``); a node whose
attributes or inputs ask for more (peepholes, clipping, other activations,
``sequence_lens``, ``input_forget``, GRU with ``linear_before_reset=0``) keeps the loop,
and so does every node when the conversion option ``fused_recurrent`` is False.
:class:`OnnxRecurrentStack` runs consecutive such layers as one multi-layer call; the
import's fx passes (:mod:`bridge.onnx.fusion`) make it.
"""

from __future__ import annotations

import torch
from torch import nn

from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted

# position in torch's gate order → ONNX gate block: LSTM i,f,g,o from i,o,f,c; GRU r,z,n from z,r,h
TORCH_GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
# activation codes of bridge.onnx.ops.rnn._ACTIVATIONS that the fused kernels compute
_SIGMOID, _TANH, _RELU = 2, 1, 0
_FUSED_ACTIVATIONS = {"LSTM": ([_SIGMOID, _TANH, _TANH],), "GRU": ([_SIGMOID, _TANH],),
                      "RNN": ([_TANH], [_RELU])}


def to_torch_gate_order(weight: torch.Tensor, order: list[int]) -> torch.Tensor:
    """Reorder the gate blocks along axis 0 of one direction's ``W``, ``R`` or bias;
    ``order`` is a value of ``TORCH_GATE_ORDER``."""
    blocks = weight.chunk(len(order), 0)
    return torch.cat([blocks[i] for i in order], 0)


def flat_weights(w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None, order: list[int],
                 directions: int) -> list[torch.Tensor]:
    """ONNX ``W``/``R``/``B`` → torch's flat list ``[w_ih, w_hh, b_ih, b_hh]`` per direction,
    gates in torch's order (``order``, a value of ``TORCH_GATE_ORDER``).

    A missing ``B`` becomes zero biases, as ONNX defines it.
    """
    gates = w.shape[1]
    if b is None:
        b = torch.zeros(directions, 2 * gates, dtype=w.dtype, device=w.device)
    flat: list[torch.Tensor] = []
    for d in range(directions):
        flat.append(to_torch_gate_order(w[d], order))
        flat.append(to_torch_gate_order(r[d], order))
        flat.append(to_torch_gate_order(b[d, :gates], order))
        flat.append(to_torch_gate_order(b[d, gates:], order))
    return flat


class OnnxFusedRecurrent(nn.Module):
    """One ONNX RNN/GRU/LSTM node on a fused torch kernel; returns ``(Y, Y_h, Y_c)``.

    Takes ``x``, the weights and the optional initial states. ``weights`` is torch's flat
    list (``[w_ih, w_hh, b_ih, b_hh]`` per direction, gates in torch order) when
    ``torch_order`` is True, which the converter prepares once from constant weights;
    otherwise it is ONNX's ``[W, R]`` or ``[W, R, B]``, reordered on every call.
    ``Y_c`` repeats ``Y_h`` for RNN and GRU, as in ``OnnxRecurrent``.
    """

    def __init__(self, cell: str, hidden_size: int, direction: str, layout: int,
                 nonlinearity: str, torch_order: bool):
        super().__init__()
        self.cell = cell
        self.gate_order = list(TORCH_GATE_ORDER[cell])
        self.hidden_size = hidden_size
        self.reverse = direction == "reverse"
        self.bidirectional = direction == "bidirectional"
        self.num_directions = 2 if self.bidirectional else 1
        self.batch_first = layout == 1
        self.nonlinearity = nonlinearity
        self.torch_order = torch_order

    def forward(
        self, x: torch.Tensor, weights: list[torch.Tensor],
        initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = weights
        if not self.torch_order:
            bias = weights[2] if len(weights) > 2 else None
            flat = flat_weights(weights[0], weights[1], bias, self.gate_order,
                                self.num_directions)
        time_axis = 1 if self.batch_first else 0
        batch = x.shape[1 - time_axis]
        zeros = initial_h is None or (self.cell == "LSTM" and initial_c is None)
        zero = torch.zeros(self.num_directions if zeros else 0, batch, self.hidden_size,
                           dtype=x.dtype, device=x.device)
        # torch's states are [directions, batch, hidden] whatever the layout
        h0 = zero if initial_h is None else _state(initial_h, self.batch_first)
        if self.reverse:
            x = torch.flip(x, [time_axis])
        if self.cell == "LSTM":
            c0 = zero if initial_c is None else _state(initial_c, self.batch_first)
            y, h_n, c_n = torch.lstm(x, [h0, c0], flat, True, 1, 0.0, False, self.bidirectional,
                                     self.batch_first)
        elif self.cell == "GRU":
            y, h_n = torch.gru(x, h0, flat, True, 1, 0.0, False, self.bidirectional,
                               self.batch_first)
            c_n = h_n
        elif self.nonlinearity == "relu":
            y, h_n = torch.rnn_relu(x, h0, flat, True, 1, 0.0, False, self.bidirectional,
                                    self.batch_first)
            c_n = h_n
        else:
            y, h_n = torch.rnn_tanh(x, h0, flat, True, 1, 0.0, False, self.bidirectional,
                                    self.batch_first)
            c_n = h_n
        if self.reverse:
            y = torch.flip(y, [time_axis])
        # torch: [steps, batch, directions * hidden]; ONNX: [steps, directions, batch, hidden]
        y = y.unflatten(2, (self.num_directions, self.hidden_size))
        if self.batch_first:  # ONNX layout 1: Y [batch, steps, directions, hidden]
            return y, h_n.transpose(0, 1), c_n.transpose(0, 1)
        return y.transpose(1, 2), h_n, c_n


class OnnxRecurrentStack(nn.Module):
    """Stacked recurrent layers in one fused torch call, made by the import's fx passes
    (:mod:`bridge.onnx.fusion`) from consecutive ONNX RNN/GRU/LSTM nodes whose zero
    initial states and final states play no part.

    Takes and returns torch's layout: ``x`` ``[steps, batch, features]`` (or
    ``[batch, steps, features]`` when ``batch_first``) and ``Y`` ``[steps, batch,
    directions * hidden]`` (``[batch, steps, ...]``), not ONNX's ``[steps, directions,
    batch, hidden]``. ``weights`` is torch's flat list, layer after layer.
    """

    def __init__(self, cell: str, hidden_size: int, num_layers: int, bidirectional: bool,
                 batch_first: bool, nonlinearity: str):
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.batch_first = batch_first
        self.nonlinearity = nonlinearity

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        batch = x.shape[0] if self.batch_first else x.shape[1]
        states = self.num_layers * (2 if self.bidirectional else 1)
        zero = torch.zeros(states, batch, self.hidden_size, dtype=x.dtype, device=x.device)
        arguments = (True, self.num_layers, 0.0, False, self.bidirectional, self.batch_first)
        if self.cell == "LSTM":
            return torch.lstm(x, [zero, zero], weights, *arguments)[0]
        if self.cell == "GRU":
            return torch.gru(x, zero, weights, *arguments)[0]
        if self.nonlinearity == "relu":
            return torch.rnn_relu(x, zero, weights, *arguments)[0]
        return torch.rnn_tanh(x, zero, weights, *arguments)[0]


def _state(state: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """An ONNX initial state as torch takes it: [directions, batch, hidden], contiguous."""
    return state.transpose(0, 1).contiguous() if batch_first else state.contiguous()


class _FusedRecurrentY(nn.Module):
    """Keeps output ``Y`` of a fused recurrent node that asks only for it."""

    def __init__(self, inner: OnnxFusedRecurrent):
        super().__init__()
        self.inner = inner

    def forward(
        self, x: torch.Tensor, weights: list[torch.Tensor],
        initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.inner(x, weights, initial_h, initial_c)[0]


def _input(node: OnnxNode, index: int) -> str | None:
    return node.inputs[index] if len(node.inputs) > index and node.inputs[index] else None


# operators whose output is all zeros when their first input is (shape-only operators)
_KEEPS_ZEROS = {"Expand", "Slice", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
                "Cast", "Tile", "Flatten"}


def is_zero(name: str, context: ConversionContext) -> bool:
    """Whether value ``name`` is all zeros whatever the graph inputs: a zero constant, a
    ``ConstantOfShape`` of zero, or one of those reshaped, sliced or broadcast."""
    producers = {output: node for node in context.graph.nodes() for output in node.outputs}
    for _ in range(len(producers) + 1):
        constant = context.constant(name)
        if constant is not None:
            return not bool(constant.any())
        node = producers.get(name)
        if node is None or node.domain != "":
            return False
        if node.op_type == "ConstantOfShape":
            value = node.attribute("value")
            return value is None or not bool(value.any())
        if node.op_type not in _KEEPS_ZEROS or not node.inputs:
            return False
        name = node.inputs[0]
    return False


def fused_recurrent(
    node: OnnxNode, context: ConversionContext, cell: str, hidden_size: int, direction: str,
    activations: list[int], clip: float, layout: int, linear_before_reset: bool,
    input_forget: bool,
) -> Converted | None:
    """Convert the node to :class:`OnnxFusedRecurrent`, or return None where a fused
    kernel would compute something else than ONNX asks (the caller then keeps the loop)."""
    directions = 2 if direction == "bidirectional" else 1
    if activations not in [codes * directions for codes in _FUSED_ACTIVATIONS[cell]]:
        return None
    if clip > 0 or input_forget or (cell == "GRU" and not linear_before_reset):
        return None
    if _input(node, 4) is not None:  # sequence_lens: finished sequences freeze their state
        return None
    peepholes = _input(node, 7)
    if peepholes is not None:
        value = context.constant(peepholes)
        if value is None or bool(value.any()):
            return None
    x, w, r, b = node.inputs[0], node.inputs[1], node.inputs[2], _input(node, 3)
    # a zero initial state is ONNX's default; dropping it spares computing its shape per call
    initial_h, initial_c = (name if name is None or not is_zero(name, context) else None
                            for name in (_input(node, 5), _input(node, 6)))
    constants = [context.constant(name) for name in (w, r, b) if name is not None]
    torch_order = all(value is not None for value in constants)
    if torch_order:  # reorder once here; the new constants become the module's buffers
        bias = context.constant(b) if b is not None else None
        flat = flat_weights(constants[0], constants[1], bias, TORCH_GATE_ORDER[cell], directions)
        owner = next((name for name in node.outputs if name), node.name or cell)
        weights = []
        for position, value in enumerate(flat):
            name = f"{owner}::torch_weight_{position}"
            context.constants[name] = value.contiguous()
            weights.append(name)
    else:
        weights = [w, r] + ([b] if b is not None else [])
    nonlinearity = "relu" if activations[0] == _RELU else "tanh"
    module = OnnxFusedRecurrent(cell, hidden_size, direction, layout, nonlinearity, torch_order)
    inputs = [x, weights, initial_h, initial_c if cell == "LSTM" else None]
    if len(node.outputs) == 1:
        return Converted(_FusedRecurrentY(module), inputs)
    return Converted(module, inputs)
