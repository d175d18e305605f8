"""Seeded corruptions of small ONNX files, and the child process that feeds them to ``from_onnx``.

The test (``test_fuzz.py``) writes the corrupted files and runs this module as a separate
process, so that a crash (a signal) or a hang is seen from outside and pinned to the one file
that caused it: the child prints ``start <i>`` before each file and ``done <i> <outcome>`` after.
"""

from __future__ import annotations

import copy
import json
import random
import sys

import onnx

#: The corruptions, each applied to every seed graph (see MUTATIONS).
KINDS = ("truncated", "bit-flipped", "field-shuffled")


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut the file at a random offset (the empty file included)."""
    return data[:rng.randrange(0, len(data))]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    """Flip one to eight random bits."""
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(mutable))
        mutable[position] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def shuffle_fields(data: bytes, rng: random.Random) -> bytes:
    """Reorder or swap fields of the parsed model: nodes, node inputs/outputs, attributes,
    initializer names and dims, graph inputs/outputs, opsets."""
    model = onnx.ModelProto()
    model.ParseFromString(data)
    graph = model.graph

    def shuffled(repeated) -> None:
        items = list(repeated)
        if items and hasattr(items[0], "CopyFrom"):  # messages: detach before clearing
            items = [copy.deepcopy(item) for item in items]
        rng.shuffle(items)
        del repeated[:]
        repeated.extend(items)

    choice = rng.randrange(7)
    nodes = list(graph.node)
    if choice == 0 and len(nodes) > 1:
        shuffled(graph.node)
    elif choice == 1 and nodes:
        node = rng.choice(graph.node)
        field = node.input if (rng.random() < 0.5 and node.input) else node.output
        if len(field) > 1:
            shuffled(field)
        elif field:
            names = [n for other in graph.node for n in other.input] + [i.name for i in graph.input]
            field[0] = rng.choice(names)
    elif choice == 2 and len(nodes) > 1:
        first, second = rng.sample(range(len(nodes)), 2)
        left, right = graph.node[first], graph.node[second]
        saved = list(left.attribute)
        del left.attribute[:]
        left.attribute.extend(right.attribute)
        del right.attribute[:]
        right.attribute.extend(saved)
    elif choice == 3 and graph.initializer:
        tensor = rng.choice(graph.initializer)
        if len(tensor.dims) > 1:
            shuffled(tensor.dims)
        else:
            tensor.dims.append(rng.randint(0, 3))
    elif choice == 4 and len(graph.initializer) > 1:
        first, second = rng.sample(list(graph.initializer), 2)
        first.name, second.name = second.name, first.name
    elif choice == 5:
        graph.input[0].name, graph.output[0].name = graph.output[0].name, graph.input[0].name
    else:
        opset = rng.choice(model.opset_import)
        opset.version = rng.choice([0, 1, 7, 99, -1])
    return model.SerializeToString()


MUTATIONS = {"truncated": truncate, "bit-flipped": flip_bits, "field-shuffled": shuffle_fields}


def outcome(path: str) -> dict:
    """Import one file; describe what happened (never raises).

    Accepted by the test: a :class:`bridge.errors.BridgeError` (for an unreadable file an
    ``InvalidModelError`` whose message names the path), or a clean import when the
    corruption happened to be harmless (a flipped bit in a weight, say: ONNX files carry
    no checksum). Anything else is reported as ``other-error``.
    """
    from bridge import from_onnx
    from bridge.errors import BridgeError, InvalidModelError

    try:
        from_onnx(path)
    except BridgeError as error:
        named = not isinstance(error, InvalidModelError) or path in str(error)
        return {"result": "bridge-error", "type": type(error).__name__, "names_file": named,
                "message": str(error)[:300]}
    except Exception as error:  # the test reports these as failures
        return {"result": "other-error", "type": type(error).__name__,
                "message": str(error)[:300]}
    return {"result": "imported"}


def main(paths: list[str]) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import bridge  # noqa: F401  (import before the first "start", outside the per-file bound)

    print("ready", flush=True)
    for index, path in enumerate(paths):
        print(f"start {index}", flush=True)
        print(f"done {index} {json.dumps(outcome(path))}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
