"""Reliability catalogue: what bridge refuses and how it says so, one test per case.

- ``test_onnx_files.py``: files ``from_onnx`` cannot read (cut short, a directory, missing
  external data, corrupt initializers, malformed nodes).
- ``test_fuzz.py`` (with ``onnx_fuzz.py``): a few hundred truncated, bit-flipped and
  field-shuffled ONNX files; each gives a bridge error, never a crash or a hang.
- ``test_batch_size.py``: a fixed declared batch size is honoured, a symbolic one is free.
- ``test_shared_tensors.py``: imported modules with one tensor under several names trace,
  export, save with safetensors, deep-copy and pickle.
- ``test_converted_models.py``: unseen categories and estimators that do not convert.
- ``test_concurrency.py``: calls from a thread pool beside unpickling, converting, copying.
- ``test_net_errors.py``: nets given X of another rank, invalid ``set_params`` values, outputs
  that do not match y, integer X, parameters their module/criterion/optimizer refuse.
- ``test_net_files.py``: checkpoint files ``load_params`` cannot read; interrupted saves.
- ``test_net_fuzz.py`` (with ``net_fuzz.py``): a few hundred corrupted checkpoint files.
- ``test_net_concurrency.py``: fitted nets from a thread pool beside pickling and cloning.
- ``test_net_estimator_checks.py``: scikit-learn's conformance suite over every net class.
"""
