"""Signal processing: DFT, STFT, the Hann / Hamming / Blackman windows and MelWeightMatrix.

Complex values travel as a trailing axis of size 2 (real, imaginary), real signals as a
trailing axis of size 1, as ONNX specifies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    """``(..., 1)`` real or ``(..., 2)`` (real, imaginary) → a complex tensor ``(...)``
    (complex128 for float64 input, complex64 otherwise)."""
    work = x if x.dtype == torch.float64 else x.to(torch.float32)
    if x.shape[-1] == 1:
        return torch.complex(work[..., 0], torch.zeros_like(work[..., 0]))
    return torch.view_as_complex(work.contiguous())


class OnnxDFT(nn.Module):
    """Discrete Fourier transform along one axis (forward, inverse, one-sided variants)."""

    def __init__(self, axis: int | None, inverse: bool, onesided: bool):
        super().__init__()
        self.axis = axis
        self.inverse = inverse
        self.onesided = onesided

    def forward(self, x: torch.Tensor, dft_length: torch.Tensor | None = None,
                axis: torch.Tensor | None = None) -> torch.Tensor:
        chosen = self.axis if axis is None else int(axis.reshape(-1)[0])
        chosen = -2 if chosen is None else chosen
        chosen = chosen % x.dim()  # an axis of x; x's last axis holds the complex parts
        signal = _as_complex(x)
        length = x.shape[chosen]
        if dft_length is not None:
            length = int(dft_length.reshape(-1)[0])
        elif self.inverse and self.onesided:
            length = 2 * (x.shape[chosen] - 1)
        if self.inverse and self.onesided:
            return torch.fft.irfft(signal, n=length, dim=chosen).unsqueeze(-1).to(x.dtype)
        if self.inverse:
            result = torch.fft.ifft(signal, n=length, dim=chosen)
        else:
            result = torch.fft.fft(signal, n=length, dim=chosen)
            if self.onesided:
                result = result.narrow(chosen, 0, length // 2 + 1)
        return torch.view_as_real(result).to(x.dtype)


@converter("DFT", versions=(17, 20))
def convert_dft(node: OnnxNode, context: ConversionContext) -> Converted:
    inverse = bool(node.attribute("inverse", 0))
    onesided = bool(node.attribute("onesided", 0))
    inputs = list(node.inputs) + [""] * (3 - len(node.inputs))
    if node.since_version < 20:
        module = OnnxDFT(int(node.attribute("axis", 1)), inverse, onesided)
        return Converted(module, inputs=[inputs[0], inputs[1], None])
    return Converted(OnnxDFT(None, inverse, onesided), inputs=inputs)


class OnnxSTFT(nn.Module):
    """Short-time Fourier transform: windowed frames, one DFT each → (batch, frames, bins, 2)."""

    def __init__(self, onesided: bool):
        super().__init__()
        self.onesided = onesided

    def forward(self, signal: torch.Tensor, frame_step: torch.Tensor,
                window: torch.Tensor | None = None, frame_length: torch.Tensor | None = None
                ) -> torch.Tensor:
        step = int(frame_step.reshape(-1)[0])
        if frame_length is not None:
            length = int(frame_length.reshape(-1)[0])
        elif window is not None:
            length = window.shape[0]
        else:
            length = signal.shape[1]
        values = _as_complex(signal)  # (batch, samples)
        frames = values.unfold(1, length, step)  # (batch, frames, length)
        if window is not None:
            frames = frames * window.to(frames.real.dtype)
        spectrum = torch.fft.fft(frames, dim=-1)
        if self.onesided:
            spectrum = spectrum[..., : length // 2 + 1]
        return torch.view_as_real(spectrum).to(signal.dtype)


@converter("STFT", versions=(17,))
def convert_stft(node: OnnxNode, context: ConversionContext) -> Converted:
    inputs = list(node.inputs) + [""] * (4 - len(node.inputs))
    return Converted(OnnxSTFT(bool(node.attribute("onesided", 1))), inputs=inputs)


class OnnxWindow(nn.Module):
    """A generalized cosine window ``sum_k a_k cos(2 pi k n / N)`` of the given size.

    ``N`` is the size when ``periodic`` and size - 1 otherwise.
    """

    def __init__(self, coefficients: list[float], periodic: bool, dtype: torch.dtype):
        super().__init__()
        self.coefficients = coefficients
        self.periodic = periodic
        self.dtype = dtype

    def forward(self, size: torch.Tensor) -> torch.Tensor:
        count = int(size.reshape(-1)[0])
        period = count if self.periodic else count - 1
        n = torch.arange(count, dtype=torch.float64, device=size.device)
        window = torch.zeros(count, dtype=torch.float64, device=size.device)
        for k, coefficient in enumerate(self.coefficients):
            window = window + coefficient * torch.cos(2.0 * math.pi * k * n / period)
        return window.to(self.dtype)


def _window(node: OnnxNode, coefficients: list[float]) -> OnnxWindow:
    return OnnxWindow(coefficients, bool(node.attribute("periodic", 1)),
                      torch_dtype(int(node.attribute("output_datatype", 1))))


@converter("HannWindow", versions=(17,))
def convert_hann_window(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _window(node, [0.5, -0.5])


@converter("HammingWindow", versions=(17,))
def convert_hamming_window(node: OnnxNode, context: ConversionContext) -> nn.Module:
    alpha = 25.0 / 46.0  # ONNX's Hamming constants (not the rounded 0.54 / 0.46)
    return _window(node, [alpha, -(1.0 - alpha)])


@converter("BlackmanWindow", versions=(17,))
def convert_blackman_window(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _window(node, [0.42, -0.5, 0.08])


class OnnxMelWeightMatrix(nn.Module):
    """Triangular mel filterbank, ``(dft_length // 2 + 1, num_mel_bins)``, peaks of 1."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, num_mel_bins: torch.Tensor, dft_length: torch.Tensor,
                sample_rate: torch.Tensor, lower_edge_hertz: torch.Tensor,
                upper_edge_hertz: torch.Tensor) -> torch.Tensor:
        bins = int(num_mel_bins.reshape(-1)[0])
        length = int(dft_length.reshape(-1)[0])
        rate = int(sample_rate.reshape(-1)[0])
        # the mel edges in float32 then float64, the precisions the ONNX reference uses,
        # so that the integer bin boundaries agree with it
        edges_hertz = torch.stack([lower_edge_hertz.reshape(-1)[0], upper_edge_hertz.reshape(-1)[0]])
        mels = (torch.log1p(edges_hertz.to(torch.float32) / 700.0) * 2595.0).to(torch.float64)
        mels = mels / math.log(10.0)
        step = (mels[1] - mels[0]) / (bins + 2)
        positions = torch.arange(bins + 2, dtype=torch.float64, device=mels.device) * step + mels[0]
        hertz = 700.0 * torch.expm1(positions / 2595.0 * math.log(10.0))
        edges: list[int] = [int(v) for v in torch.floor((length + 1) * hertz / rate).tolist()]
        matrix = torch.zeros((length // 2 + 1, bins), dtype=torch.float64,
                             device=num_mel_bins.device)
        for i in range(bins):
            left, center, right = edges[i], edges[i + 1], edges[i + 2]
            if center == left:
                matrix[center, i] = 1.0
            else:
                for j in range(left, center + 1):
                    matrix[j, i] = (j - left) / (center - left)
            for j in range(center, right):
                matrix[j, i] = (right - j) / (right - center)
        return matrix.to(self.dtype)


@converter("MelWeightMatrix", versions=(17,))
def convert_mel_weight_matrix(node: OnnxNode, context: ConversionContext) -> nn.Module:
    dtype = torch_dtype(int(node.attribute("output_datatype", 1)))
    if dtype.is_complex or dtype == torch.bool:
        raise ConversionError(
            f"MelWeightMatrix node {node.name!r}: output_datatype {dtype} is not a real type"
        )
    return OnnxMelWeightMatrix(dtype)
