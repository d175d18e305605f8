"""Support-vector machine computations shared by the ONNX converters
(``bridge/onnx/ops/ml/svm.py``): libsvm's pairwise coupling as torch operations
(:mod:`bridge.svm.coupling`) and, for eager CPU calls, one-vs-one votes and the coupling as C
loops (:mod:`bridge.svm.native`, ``_svm.c``).
"""
