"""Build configuration beyond pyproject.toml: the optional C loops.

``bridge.trees._walk`` (the tree walk, ``bridge/trees/_walk.c``), ``bridge.svm._svm`` (SVM
votes and pairwise coupling, ``bridge/svm/_svm.c``), ``bridge.onnx._select`` (TopK with
ONNX's tie rule, ``bridge/onnx/_select.c``) and ``bridge._buffers`` (the serving
case's input checks, data addresses; ``bridge/_buffers.c``) are built when a C compiler is present
and skipped otherwise (``optional=True``): bridge then runs the same computations as torch
operations. They use only Python's C API, so one build serves every torch version. The SVM
loops must round every product and sum as torch does, so no compiler may fuse them into
multiply-adds (``-ffp-contract=off``; MSVC does not contract under its default /fp:precise).
"""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3"]
exact = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]
# TopK's distances: square roots of values clamped at 0 (no errno to set) and the clamp
# as a mask (no trap to keep), so the loops vectorize; the values are the same either way
roots = [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-fno-trapping-math"]
setup(ext_modules=[
    Extension("bridge.trees._walk", ["bridge/trees/_walk.c"], extra_compile_args=flags,
              optional=True),
    Extension("bridge.svm._svm", ["bridge/svm/_svm.c"], extra_compile_args=exact,
              optional=True),
    Extension("bridge.onnx._select", ["bridge/onnx/_select.c"], extra_compile_args=roots,
              optional=True),
    Extension("bridge._buffers", ["bridge/_buffers.c"], extra_compile_args=flags,
              optional=True),
])
