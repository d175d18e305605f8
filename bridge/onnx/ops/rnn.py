"""Recurrent layers: RNN, LSTM, GRU.

One module runs all three cells over time with ONNX's gate orders (LSTM ``iofc``,
GRU ``zrh``), directions, ``sequence_lens`` (finished sequences keep their state and
emit zeros), ``layout``, clipping, peepholes, ``input_forget`` and configurable
activations. Weights stay run-time inputs, so constant ones become parameters when
imported with ``trainable=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.rnn_fused import fused_recurrent
from bridge.onnx.registry import Converted, converter

# activation name → (code, default alpha, default beta, how many of alpha/beta it reads)
_ACTIVATIONS = {
    "relu": (0, 0.0, 0.0, 0),
    "tanh": (1, 0.0, 0.0, 0),
    "sigmoid": (2, 0.0, 0.0, 0),
    "affine": (3, 1.0, 0.0, 2),
    "leakyrelu": (4, 0.01, 0.0, 1),
    "thresholdedrelu": (5, 1.0, 0.0, 1),
    "scaledtanh": (6, 1.0, 1.0, 2),
    "hardsigmoid": (7, 0.2, 0.5, 2),
    "elu": (8, 1.0, 0.0, 1),
    "softsign": (9, 0.0, 0.0, 0),
    "softplus": (10, 0.0, 0.0, 0),
}
_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _activate(x: torch.Tensor, code: int, alpha: float, beta: float) -> torch.Tensor:
    if code == 0:
        return torch.relu(x)
    if code == 1:
        return torch.tanh(x)
    if code == 2:
        return torch.sigmoid(x)
    if code == 3:
        return alpha * x + beta
    if code == 4:
        return F.leaky_relu(x, alpha)
    if code == 5:
        return torch.where(x > alpha, x, torch.zeros_like(x))
    if code == 6:
        return alpha * torch.tanh(beta * x)
    if code == 7:
        return torch.clamp(alpha * x + beta, 0.0, 1.0)
    if code == 8:
        return F.elu(x, alpha)
    if code == 9:
        return x / (1 + x.abs())
    return F.softplus(x)


class OnnxRecurrent(nn.Module):
    """RNN, GRU or LSTM over a whole sequence; returns ``(Y, Y_h, Y_c)``.

    ``Y_c`` is the final cell state for LSTM and repeats ``Y_h`` for RNN and GRU.
    """

    def __init__(
        self, cell: str, hidden_size: int, directions: list[bool], activations: list[int],
        alphas: list[float], betas: list[float], clip: float, layout: int,
        linear_before_reset: bool, input_forget: bool,
    ):
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.directions = directions  # True = reverse, one entry per direction
        self.activations = activations  # per direction, the cell's activations in order
        self.alphas = alphas
        self.betas = betas
        self.clip = clip
        self.layout = layout
        self.linear_before_reset = linear_before_reset
        self.input_forget = input_forget
        self.per_direction = len(_DEFAULT_ACTIVATIONS[cell])

    def _gate(self, x: torch.Tensor, direction: int, which: int) -> torch.Tensor:
        if self.clip > 0:
            x = torch.clamp(x, -self.clip, self.clip)
        index = direction * self.per_direction + which
        return _activate(x, self.activations[index], self.alphas[index], self.betas[index])

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor,
        b: torch.Tensor | None = None, sequence_lens: torch.Tensor | None = None,
        initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None,
        peepholes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.layout == 1:
            x = x.transpose(0, 1)
            if initial_h is not None:
                initial_h = initial_h.transpose(0, 1)
            if initial_c is not None:
                initial_c = initial_c.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        hidden = self.hidden_size
        lengths = torch.full([batch], steps, dtype=torch.int64, device=x.device)
        if sequence_lens is not None:
            lengths = sequence_lens.to(torch.int64)
        time = torch.arange(steps, device=x.device).unsqueeze(1)
        valid = (time < lengths.unsqueeze(0)).unsqueeze(-1)  # [steps, batch, 1]
        outputs: list[torch.Tensor] = []
        finals_h: list[torch.Tensor] = []
        finals_c: list[torch.Tensor] = []
        for direction, reverse in enumerate(self.directions):
            order = time.expand(steps, batch)
            if reverse:  # reverse each sequence within its own length
                order = torch.where(valid.squeeze(-1), lengths.unsqueeze(0) - 1 - time, order)
            inputs = torch.gather(x, 0, order.unsqueeze(-1).expand(steps, batch, x.shape[2]))
            bias_w = torch.zeros(w.shape[1], dtype=x.dtype, device=x.device)
            bias_r = torch.zeros(r.shape[1], dtype=x.dtype, device=x.device)
            if b is not None:
                bias_w = b[direction, : w.shape[1]]
                bias_r = b[direction, w.shape[1]:]
            projected = torch.matmul(inputs, w[direction].t()) + bias_w
            h = torch.zeros(batch, hidden, dtype=x.dtype, device=x.device)
            if initial_h is not None:
                h = initial_h[direction]
            c = torch.zeros(batch, hidden, dtype=x.dtype, device=x.device)
            if initial_c is not None:
                c = initial_c[direction]
            p = torch.zeros(3 * hidden, dtype=x.dtype, device=x.device)
            if peepholes is not None:
                p = peepholes[direction]
            recurrent_weight = r[direction]
            step_outputs: list[torch.Tensor] = []
            for t in range(steps):
                keep = valid[t]
                if self.cell == "LSTM":
                    new_h, new_c = self._lstm_step(projected[t], h, c, recurrent_weight, bias_r,
                                                   p, direction)
                    c = torch.where(keep, new_c, c)
                elif self.cell == "GRU":
                    new_h = self._gru_step(projected[t], h, recurrent_weight, bias_r, direction)
                else:
                    gates = projected[t] + torch.matmul(h, recurrent_weight.t()) + bias_r
                    new_h = self._gate(gates, direction, 0)
                h = torch.where(keep, new_h, h)
                step_outputs.append(torch.where(keep, new_h, torch.zeros_like(new_h)))
            y = torch.stack(step_outputs, 0)
            if reverse:
                y = torch.gather(y, 0, order.unsqueeze(-1).expand(steps, batch, hidden))
            outputs.append(y)
            finals_h.append(h)
            finals_c.append(c)
        y = torch.stack(outputs, 1)  # [steps, directions, batch, hidden]
        y_h = torch.stack(finals_h, 0)
        y_c = torch.stack(finals_c, 0) if self.cell == "LSTM" else y_h
        if self.layout == 1:
            return y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        return y, y_h, y_c

    def _lstm_step(
        self, projected: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
        recurrent_weight: torch.Tensor, bias_r: torch.Tensor, peepholes: torch.Tensor,
        direction: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.hidden_size
        gates = projected + torch.matmul(h, recurrent_weight.t()) + bias_r
        i_in, o_in, f_in, c_in = gates[:, :n], gates[:, n:2 * n], gates[:, 2 * n:3 * n], gates[:, 3 * n:]
        i = self._gate(i_in + peepholes[:n] * c, direction, 0)
        if self.input_forget:
            f = 1 - i
        else:
            f = self._gate(f_in + peepholes[2 * n:] * c, direction, 0)
        candidate = self._gate(c_in, direction, 1)
        new_c = f * c + i * candidate
        o = self._gate(o_in + peepholes[n:2 * n] * new_c, direction, 0)
        index = direction * self.per_direction + 2
        new_h = o * _activate(new_c, self.activations[index], self.alphas[index], self.betas[index])
        return new_h, new_c

    def _gru_step(
        self, projected: torch.Tensor, h: torch.Tensor, recurrent_weight: torch.Tensor,
        bias_r: torch.Tensor, direction: int,
    ) -> torch.Tensor:
        n = self.hidden_size
        recurrent_zr = torch.matmul(h, recurrent_weight[: 2 * n].t()) + bias_r[: 2 * n]
        z = self._gate(projected[:, :n] + recurrent_zr[:, :n], direction, 0)
        reset = self._gate(projected[:, n:2 * n] + recurrent_zr[:, n:], direction, 0)
        if self.linear_before_reset:
            recurrent_h = reset * (torch.matmul(h, recurrent_weight[2 * n:].t()) + bias_r[2 * n:])
        else:
            recurrent_h = torch.matmul(reset * h, recurrent_weight[2 * n:].t()) + bias_r[2 * n:]
        candidate = self._gate(projected[:, 2 * n:] + recurrent_h, direction, 1)
        return (1 - z) * candidate + z * h


class _RecurrentY(nn.Module):
    """Keeps output ``Y`` of a recurrent node that asks only for it."""

    def __init__(self, inner: OnnxRecurrent):
        super().__init__()
        self.inner = inner

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor,
        b: torch.Tensor | None = None, sequence_lens: torch.Tensor | None = None,
        initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None,
        peepholes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.inner(x, w, r, b, sequence_lens, initial_h, initial_c, peepholes)[0]


def _convert_recurrent(node: OnnxNode, context: ConversionContext,
                       cell: str) -> nn.Module | Converted:
    direction = node.attribute("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ConversionError(
            f"{cell} node {node.name!r}: direction={direction!r}; expected forward, reverse "
            "or bidirectional"
        )
    directions = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    hidden_size = node.attribute("hidden_size")
    if hidden_size is None:
        r_value = context.constant(node.inputs[2])
        r_type = context.type_of(node.inputs[2])
        if r_value is not None:
            hidden_size = int(r_value.shape[-1])
        elif r_type is not None and r_type.shape and isinstance(r_type.shape[-1], int):
            hidden_size = int(r_type.shape[-1])
        else:
            raise ConversionError(f"{cell} node {node.name!r}: hidden_size is unknown")
    names = node.attribute("activations") or _DEFAULT_ACTIVATIONS[cell] * len(directions)
    per_direction = len(_DEFAULT_ACTIVATIONS[cell])
    if len(names) == per_direction and len(directions) == 2:
        names = names * 2
    if len(names) != per_direction * len(directions):
        raise ConversionError(
            f"{cell} node {node.name!r}: activations={names} has {len(names)} entries; "
            f"expected {per_direction * len(directions)} ({per_direction} per direction)"
        )
    given_alphas = list(node.attribute("activation_alpha", []))
    given_betas = list(node.attribute("activation_beta", []))
    codes, alphas, betas = [], [], []
    for name in names:
        entry = _ACTIVATIONS.get(name.lower())
        if entry is None:
            raise UnsupportedOperatorError(
                node.domain, node.op_type, node.since_version,
                reason=f"activation {name!r} is not supported; supported: "
                + ", ".join(sorted(_ACTIVATIONS)),
            )
        code, alpha, beta, reads = entry
        if reads >= 1 and given_alphas:
            alpha = float(given_alphas.pop(0))
        if reads >= 2 and given_betas:
            beta = float(given_betas.pop(0))
        codes.append(code)
        alphas.append(alpha)
        betas.append(beta)
    layout = int(node.attribute("layout", 0)) if node.since_version >= 14 else 0
    clip = float(node.attribute("clip", 0.0) or 0.0)
    linear_before_reset = bool(node.attribute("linear_before_reset", 0))
    input_forget = bool(node.attribute("input_forget", 0))
    if context.options.get("fused_recurrent", True):
        fused = fused_recurrent(node, context, cell, int(hidden_size), direction, codes, clip,
                                layout, linear_before_reset, input_forget)
        if fused is not None:
            return fused
    module = OnnxRecurrent(cell, int(hidden_size), directions, codes, alphas, betas, clip,
                           layout, linear_before_reset, input_forget)
    return module if len(node.outputs) > 1 else _RecurrentY(module)


@converter("RNN", versions=(1, 7, 14, 22))
def convert_rnn(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _convert_recurrent(node, context, "RNN")


@converter("GRU", versions=(1, 3, 7, 14, 22))
def convert_gru(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _convert_recurrent(node, context, "GRU")


@converter("LSTM", versions=(1, 7, 14, 22))
def convert_lstm(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _convert_recurrent(node, context, "LSTM")
