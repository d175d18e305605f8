"""bridge.dataset (Dataset, ValidSplit) and bridge.helper (SliceDict, SliceDataset, predefined_split, DataFrameTransformer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import KFold

from bridge.dataset import Dataset, ValidSplit, get_len, unpack_data, uses_placeholder_y
from bridge.helper import DataFrameTransformer, SliceDataset, SliceDict, predefined_split


def test_dataset_items_and_placeholder_y():
    ds = Dataset(np.arange(6, dtype=np.float32).reshape(3, 2))
    X0, y0 = ds[0]
    np.testing.assert_array_equal(X0, [0, 1])
    assert y0.tolist() == [0.0] and uses_placeholder_y(ds) and len(ds) == 3
    with pytest.raises(ValueError, match="inconsistent lengths"):
        Dataset(np.zeros((3, 2)), np.zeros(4))
    df_ds = Dataset(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), np.array([0, 1]))
    item, target = df_ds[1]
    assert set(item) == {"a", "b"} and target == 1


def test_get_len_and_unpack_data():
    assert get_len({"a": np.zeros(4), "b": np.zeros(4)}) == 4
    with pytest.raises(ValueError, match="different lengths"):
        get_len({"a": np.zeros(4), "b": np.zeros(3)})
    with pytest.raises(ValueError, match=r"\(X, y\) pair"):
        unpack_data((1, 2, 3))


@pytest.mark.parametrize("cv, n_valid", [(5, 20), (0.25, 25), (KFold(4), 25), ([(np.arange(90), np.arange(90, 100))], 10)])
def test_valid_split_sizes(cv, n_valid):
    ds = Dataset(np.zeros((100, 2)), np.repeat([0, 1], 50))
    train, valid = ValidSplit(cv)(ds, ds.y)
    assert len(valid) == n_valid and len(train) == 100 - n_valid
    assert not set(train.indices) & set(valid.indices)


def test_valid_split_stratified_keeps_class_balance():
    y = np.array([0] * 80 + [1] * 20)
    _, valid = ValidSplit(5, stratified=True)(Dataset(np.zeros((100, 1)), y), y)
    assert np.bincount(y[valid.indices]).tolist() == [16, 4]
    _, valid = ValidSplit(0.2, stratified=True, random_state=0)(Dataset(np.zeros((100, 1)), y), y)
    assert np.bincount(y[valid.indices]).tolist() == [16, 4]


def test_valid_split_errors():
    with pytest.raises(ValueError, match="positive"):
        ValidSplit(0)
    with pytest.raises(ValueError, match="random_state"):
        ValidSplit(5, random_state=0)
    with pytest.raises(ValueError, match="needs y"):
        ValidSplit(5, stratified=True)(Dataset(np.zeros((10, 1))))
    with pytest.raises(ValueError, match="rows"):
        ValidSplit(5)(Dataset(np.zeros((10, 1))), np.zeros(9))


def test_slice_dict_slices_rows():
    sd = SliceDict(a=np.arange(6).reshape(3, 2), b=torch.arange(3))
    assert len(sd) == 3 and sd.shape == (3,)
    part = sd[1:]
    assert isinstance(part, SliceDict) and len(part) == 2 and part["b"].tolist() == [1, 2]
    assert sd[np.array([2, 0])]["a"].tolist() == [[4, 5], [0, 1]]
    assert sd[0]["b"] == 0
    with pytest.raises(ValueError, match="same length"):
        SliceDict(a=np.zeros(2), b=np.zeros(3))
    with pytest.raises(ValueError, match="rows"):
        sd["c"] = np.zeros(5)
    with pytest.raises(TypeError):
        SliceDict.fromkeys(["a"])
    with pytest.raises(TypeError, match=r"must be arrays .*\['n'\] are not"):
        SliceDict(a=np.zeros(2), n=5)
    import pickle

    assert pickle.loads(pickle.dumps(sd))["a"].shape == (3, 2)


def test_slice_dataset_indexes_like_an_array():
    tensors = torch.utils.data.TensorDataset(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    X_view, y_view = SliceDataset(tensors, idx=0), SliceDataset(tensors, idx=1)
    assert len(X_view) == 5 and X_view.shape == (5,)
    assert X_view[1].tolist() == [2.0, 3.0]
    subset = y_view[np.array([4, 0])]
    assert isinstance(subset, SliceDataset) and int(subset[0]) == 4
    assert np.asarray(y_view[1:3]).tolist() == [1, 2]
    with pytest.raises(IndexError):
        X_view["a"]
    with pytest.raises(IndexError, match=r"idx=2\): the dataset's items have 2 parts"):
        SliceDataset(tensors, idx=2)[0]


def test_predefined_split_returns_given_validation():
    valid = Dataset(np.ones((3, 1)), np.ones(3))
    train = Dataset(np.zeros((7, 1)), np.zeros(7))
    got_train, got_valid = predefined_split(valid)(train, train.y)
    assert got_train is train and got_valid is valid


def test_dataframe_transformer_builds_module_inputs():
    df = pd.DataFrame({
        "height": [1.5, 1.7, 1.8], "count": [1, 2, 3], "flag": [True, False, True],
        "color": pd.Categorical(["red", "blue", "red"]),
    })
    transformer = DataFrameTransformer().fit(df)
    out = transformer.transform(df)
    assert out["X"].dtype == np.float32 and out["X"].shape == (3, 3)
    assert out["color"].tolist() == [1, 0, 1]
    signature = transformer.describe_signature(df)
    assert signature["color"]["input_units"] == 2 and signature["X"]["input_units"] == 3
    as_categories = DataFrameTransformer(treat_int_as_categorical=True).fit(df).transform(df)
    assert as_categories["count"].tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="unsupported"):
        DataFrameTransformer().fit(pd.DataFrame({"s": ["a", "b"]}))
    with pytest.raises(ValueError, match="not seen"):
        transformer.transform(df.assign(color=pd.Categorical(["green", "blue", "red"])))
