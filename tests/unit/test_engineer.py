"""Engineer core: statistics fitted on train only, vocabularies with an OOV bucket, encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components._shared.errors import DataError
from components._shared.labels import labels
from components._shared.schema import infer_schema
from components._shared.transform import check_columns, encode, raw_features
from components.engineer.core import fit_transform_spec

LABEL = "churned"


@pytest.fixture(scope="module")
def spec(train, schema):
    return fit_transform_spec(train, schema)


def _feature(spec, name):
    return next(f for f in spec["numeric"] + spec["categorical"] if f["name"] == name)


def test_spec_lists_every_feature_once(spec, schema):
    assert [f["name"] for f in spec["numeric"]] == [
        "signup_date",
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "data_gb",
        "support_calls",
        "senior_citizen",
    ]
    assert [f["name"] for f in spec["categorical"]] == [
        "contract",
        "payment_method",
        "internet_service",
        "region",
    ]
    assert spec["excluded"] == ["customer_id"]
    assert spec["label"] == LABEL and spec["positive_label"] == "yes"
    assert spec["train_rows"] == 2000


def test_numeric_statistics_come_from_the_train_split(spec, train):
    f = _feature(spec, "total_charges")
    values = train["total_charges"].to_numpy(dtype=float)
    fill = float(np.nanmedian(values))
    filled = np.where(np.isnan(values), fill, values)
    assert f["fill"] == pytest.approx(fill)
    assert f["log"] is False
    assert f["mean"] == pytest.approx(filled.mean())
    assert f["std"] == pytest.approx(filled.std())


def test_heavy_tailed_non_negative_column_gets_log1p(spec, train):
    f = _feature(spec, "data_gb")
    assert f["log"] is True
    values = train["data_gb"].to_numpy(dtype=float)
    logged = np.log1p(np.where(np.isnan(values), np.nanmedian(values), values))
    assert f["mean"] == pytest.approx(logged.mean())
    assert f["std"] == pytest.approx(logged.std())


def test_statistics_depend_only_on_the_rows_fitted(train, schema, churn_df):
    """The wrapper fits on the train split alone; rows it is not given leave no trace in the spec."""
    spec_a = fit_transform_spec(train, schema)
    others = churn_df.iloc[2000:].assign(
        **{LABEL: 0, "monthly_charges": 1000.0, "contract": "lifetime"}
    )
    spec_b = fit_transform_spec(pd.concat([train, others]), schema)
    assert fit_transform_spec(train, schema) == spec_a  # deterministic
    assert (
        _feature(spec_a, "monthly_charges")["mean"]
        < 100
        < _feature(spec_b, "monthly_charges")["mean"]
    )
    assert "lifetime" not in _feature(spec_a, "contract")["vocab"]
    assert "lifetime" in _feature(spec_b, "contract")["vocab"]


def test_vocabulary_is_most_frequent_first_and_capped(train, schema):
    spec = fit_transform_spec(train, schema, max_vocab=2)
    contract = _feature(spec, "contract")
    counts = train["contract"].value_counts()
    assert contract["vocab"] == list(counts.index[:2])
    assert contract["oov_share_train"] == pytest.approx(counts.iloc[2:].sum() / len(train))


def test_rare_values_go_to_the_oov_bucket(schema):
    df = pd.DataFrame(
        {
            "contract": ["a"] * 50 + ["b"] * 30 + ["c"] * 2,
            "tenure_months": np.arange(82),
            LABEL: np.arange(82) % 2,
        }
    )
    sch = infer_schema(df, LABEL)
    spec = fit_transform_spec(df, sch, min_frequency=5)
    assert _feature(spec, "contract")["vocab"] == ["a", "b"]
    codes = encode(
        pd.DataFrame({"contract": ["a", "b", "c", None], "tenure_months": [1.0] * 4}), spec
    )
    assert codes["categorical"][:, 0].tolist() == [1, 2, 0, 0]


def test_encode_maps_missing_and_unseen_values(spec, train):
    rows = train.head(4).copy()
    rows["contract"] = ["two-year", "satellite", None, "month-to-month"]
    rows["total_charges"] = [10.5, np.nan, 3.0, 4.0]
    out = encode(rows, spec)

    assert out["numeric"].dtype == np.float32 and out["categorical"].dtype == np.int32
    assert out["numeric"].shape == (4, len(spec["numeric"]))
    j = [f["name"] for f in spec["numeric"]].index("total_charges")
    assert out["numeric"][0, j] == pytest.approx(10.5)
    assert np.isnan(out["numeric"][1, j])  # imputation happens inside the model, not here
    vocab = _feature(spec, "contract")["vocab"]
    k = [f["name"] for f in spec["categorical"]].index("contract")
    assert out["categorical"][:, k].tolist() == [
        vocab.index("two-year") + 1,
        0,
        0,
        vocab.index("month-to-month") + 1,
    ]


def test_encode_timestamps_and_booleans_as_numbers(spec):
    rows = pd.DataFrame({f["name"]: [1.0, 2.0] for f in spec["numeric"]})
    rows["signup_date"] = pd.to_datetime(["1970-01-11", "2000-01-01"])
    rows["senior_citizen"] = [True, False]
    for f in spec["categorical"]:
        rows[f["name"]] = f["vocab"][0]
    out = encode(rows, spec)
    names = [f["name"] for f in spec["numeric"]]
    assert out["numeric"][:, names.index("signup_date")].tolist() == [10.0, 10957.0]
    assert out["numeric"][:, names.index("senior_citizen")].tolist() == [1.0, 0.0]


def test_raw_features_use_signature_names_and_empty_string_for_missing(spec, train):
    rows = train.head(3).copy()
    rows["region"] = ["north", None, "mars"]
    feats = raw_features(rows, spec)
    assert set(feats) == {f["input_name"] for f in spec["numeric"] + spec["categorical"]}
    assert feats["region"].tolist() == ["north", "", "mars"]
    assert feats["tenure_months"].dtype == np.float32


def test_labels_are_float32(train, spec):
    y = labels(train, spec)
    assert y.dtype == np.float32 and set(np.unique(y)) == {0.0, 1.0}


def test_missing_feature_column_names_the_column(spec, train):
    with pytest.raises(
        DataError, match=r"^the data has no column 'region', which the transform spec needs$"
    ):
        encode(train.drop(columns="region"), spec)
    with pytest.raises(DataError, match=r"^the test split has no column 'tenure_months'"):
        check_columns(train.drop(columns="tenure_months"), spec, where="test split")


def test_schema_feature_missing_from_train_names_it(schema, train):
    with pytest.raises(
        DataError, match=r"^the feature 'region' of the schema is not in the train split$"
    ):
        fit_transform_spec(train.drop(columns="region"), schema)


def test_no_features_left(train):
    df = train[["customer_id", LABEL]]
    sch = infer_schema(df, LABEL, id_column="customer_id")
    with pytest.raises(
        DataError, match=r"no features are left to train on after feature selection"
    ):
        fit_transform_spec(df, sch)


def test_input_names_are_tensorflow_safe_and_unique():
    df = pd.DataFrame(
        {
            "monthly charges ($)": np.arange(100.0),
            "monthly_charges___": np.arange(100.0) * 2,
            "2nd-plan": ["a", "b"] * 50,
            LABEL: [0, 1] * 50,
        }
    )
    spec = fit_transform_spec(df, infer_schema(df, LABEL))
    names = {f["name"]: f["input_name"] for f in spec["numeric"] + spec["categorical"]}
    assert names == {
        "monthly charges ($)": "monthly_charges____",
        "monthly_charges___": "monthly_charges___",
        "2nd-plan": "f_2nd_plan",
    }
    clash = pd.DataFrame({"a b": np.arange(100.0), "a_b": np.arange(100.0) + 1, LABEL: [0, 1] * 50})
    spec = fit_transform_spec(clash, infer_schema(clash, LABEL))
    assert [f["input_name"] for f in spec["numeric"]] == ["a_b", "a_b_2"]
