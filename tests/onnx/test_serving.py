"""compile_for_serving for imported graphs (bridge/onnx/serving.py): AOTInductor-compiled.

The rewritten convolutions must equal torch's (rtol 1e-5 / atol 1e-5: another summation
order); each compiled graph (a small CNN with depthwise, 1x1, strided and grouped
convolutions, a transformer encoder block, an LSTM; all through torch's ONNX exporter)
must answer as onnxruntime does (rtol 1e-4 / atol 1e-5, float32 fused in another order) at
batch 1 and 3, and refuse inputs the compiled function cannot take, naming the input.
"""

from __future__ import annotations

import io
import warnings

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bridge
from bridge.errors import ConversionError, InvalidInputError
from bridge.onnx.serving import (
    INDUCTOR_CONFIGS,
    CompiledGraph,
    compile_for_serving,
    convolution_as_loops,
    decompositions,
)
from tests.parity import assert_parity, run_onnxruntime

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


class DepthwiseCNN(nn.Module):
    """A MobileNet-like block: strided stem, depthwise 3x3, 1x1 (one strided), grouped 3x3,
    pool, head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False),
            nn.BatchNorm2d(8), nn.Hardswish(),
            nn.Conv2d(8, 16, 1), nn.ReLU(),
            nn.Conv2d(16, 16, 1, stride=2), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=2),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder block: two-head self-attention, then an MLP."""

    def __init__(self, width: int = 16, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x):
        batch, steps, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, steps, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / (width // self.heads) ** 0.5, -1)
        x = x + self.out((weights @ v).transpose(1, 2).reshape(batch, steps, width))
        return x + self.mlp(self.norm2(x))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


def _built(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "cnn":
        module = DepthwiseCNN().eval()
        with torch.no_grad():  # non-trivial running statistics
            for norm in (module.features[1], module.features[4]):
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
        return module, torch.randn(2, 3, 16, 16)
    if name == "transformer":
        return EncoderBlock().eval(), torch.randn(2, 6, 16)
    return Recurrent().eval(), torch.randn(2, 5, 4)


def _exported(module: nn.Module, x: torch.Tensor, free_axes=(0,)) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17,
                          input_names=["x"],
                          dynamic_axes={"x": {axis: f"axis{axis}" for axis in free_axes}})
    return onnx.load_from_string(buffer.getvalue())


@pytest.fixture(scope="module")
def compiled():
    cache = {}

    def get(name: str):
        if name not in cache:
            module, x = _built(name)
            # the LSTM's time axis free in the graph, fixed by the compile
            model = _exported(module, x, (0, 1) if name == "lstm" else (0,))
            imported = bridge.from_onnx(model)
            cache[name] = model, imported, x, compile_for_serving(imported, [x[:1]])
        return cache[name]

    return get


# --- the convolution rewrite, against torch's own convolution (no compiling) ---

CONVOLUTIONS = [  # (channels in, out, kernel, stride, padding, dilation, groups, bias)
    (6, 6, 3, 1, 1, 1, 6, True),      # depthwise
    (6, 6, 5, 2, 2, 1, 6, False),     # depthwise, strided, 5x5
    (6, 6, 3, 1, 2, 2, 6, True),      # depthwise, dilated
    (6, 10, 1, 1, 0, 1, 1, True),     # 1x1
    (6, 10, 1, 2, 0, 1, 1, False),    # 1x1, strided (one window)
    (6, 10, 3, 2, 1, 1, 1, False),    # strided 3x3 (windows gathered, im2col)
    (6, 10, (1, 3), 1, (0, 1), 1, 1, True),  # rectangular
]


@pytest.mark.parametrize("case", CONVOLUTIONS)
def test_rewritten_convolution_equals_torch(case):
    ins, outs, kernel, stride, padding, dilation, groups, bias = case
    generator = torch.Generator().manual_seed(0)
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(2, ins, 9, 11, generator=generator)
    weight = torch.randn(outs, ins // groups, *kernel, generator=generator)
    b = torch.randn(outs, generator=generator) if bias else None
    pairs = [(v, v) if isinstance(v, int) else v for v in (stride, padding, dilation)]
    expected = F.conv2d(x, weight, b, *pairs, groups)
    actual = convolution_as_loops(x, weight, b, *pairs, groups)
    assert_parity(actual, expected, rtol=1e-5, atol=1e-5)


def test_other_groupings_keep_torchs_convolution():
    x, weight = torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3)
    assert convolution_as_loops(x, weight, None, [1, 1], [1, 1], [1, 1], 2) is NotImplemented
    assert convolution_as_loops(x, weight[:, :1], None, [1], "same", [1], 4) is NotImplemented


def test_exported_program_keeps_only_the_grouped_convolution():
    module, x = _built("cnn")
    imported = bridge.from_onnx(_exported(module, x))
    program = torch.export.export(imported, (x,)).run_decompositions(decompositions())
    convolutions = [node for node in program.graph.nodes
                    if node.op == "call_function" and "conv" in str(node.target)]
    assert len(convolutions) == 1 and convolutions[0].args[-1] == 2  # groups=2


# --- compiled graphs ---

@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "transformer", "lstm"])
def test_compiled_graph_matches_onnxruntime(compiled, name):
    model, imported, x, served = compiled(name)
    assert isinstance(served, CompiledGraph) and served.compile_seconds > 0
    assert served.input_shapes[0][0] is None  # the batch axis stayed free
    assert served.inductor_configs == INDUCTOR_CONFIGS  # not a fallback configuration
    for rows in (1, 3):
        batch = torch.cat([x, x])[:rows].contiguous() if rows > 2 else x[:rows]
        expected = run_onnxruntime(model, {"x": batch.numpy()})[0]
        actual = served(batch)
        assert isinstance(actual, torch.Tensor) and not actual.requires_grad
        assert_parity(actual, expected, **TOLERANCE, what=f"{name} at {rows} rows")


@pytest.mark.slow
def test_compiled_graph_refuses_inputs_it_cannot_take(compiled):
    _, imported, x, served = compiled("cnn")
    with pytest.raises(InvalidInputError, match=r"'x' has rank 4"):
        served(x[0:1, None])
    with pytest.raises(InvalidInputError, match=r"'x' has shape \(\?, 3, 16, 16\); got "
                                                r"\(2, 3, 16, 8\) \(axis 3 differs\)"):
        served(x[:, :, :, :8])
    with pytest.raises(InvalidInputError, match=r"'x' was compiled for torch.float32; got "
                                                r"torch.float64"):
        served(x.double())
    with pytest.raises(InvalidInputError, match="requires grad"):
        served(x.clone().requires_grad_())
    with pytest.raises(TypeError, match="takes 1 input"):
        served(x, x)
    empty = served(x[:0])  # compiled for one row or more: an empty batch runs eagerly
    assert empty.shape == (0, 5)


@pytest.mark.slow
def test_compiled_graph_fixes_other_axes_and_weights(compiled):
    _, imported, x, served = compiled("lstm")
    assert served.input_shapes == [(None, 5, 4)]
    longer = torch.randn(2, 7, 4)
    imported(longer)  # the graph takes any number of steps, the compiled function 5
    with pytest.raises(InvalidInputError, match=r"'x' was compiled for shape \(\?, 5, 4\); "
                                                r"got \(2, 7, 4\) \(axis 1 differs\)"):
        served(longer)
    before, saved = served(x), {k: v.clone() for k, v in imported.state_dict().items()}
    try:
        for tensor in imported.buffers():
            tensor.zero_()
        assert_parity(served(x), before, rtol=0, atol=0)  # the weights were folded in
    finally:
        imported.load_state_dict(saved)


def test_compile_for_serving_refuses_bad_arguments():
    module, x = _built("cnn")
    imported = bridge.from_onnx(_exported(module, x))
    with pytest.raises(TypeError, match="bridge.from_onnx"):
        compile_for_serving(module, [x])
    with pytest.raises(ValueError, match="max_batch must be a positive int; got 0"):
        compile_for_serving(imported, [x], max_batch=0)
    with pytest.raises(InvalidInputError, match=r"'x' has shape \(\?, 3, 16, 16\)"):
        compile_for_serving(imported, [x[:, :, :8]])
    with pytest.raises(InvalidInputError, match="at least one row"):
        compile_for_serving(imported, [x[:0]])
    with pytest.raises(ConversionError, match="could not run on the example inputs"):
        compile_for_serving(imported, [x.double()])
