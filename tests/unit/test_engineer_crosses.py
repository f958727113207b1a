"""Opt-in bucketization and feature crosses: boundaries fitted on train only, cross indices
(exact and hashed) against a numpy reference, bad settings, the same indices in Keras, float16
TFLite and mixed precision, and no training/serving skew through an exported model."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from components._shared.errors import ConfigError, DataError
from components._shared.params import with_defaults
from components._shared.schema import infer_schema
from components._shared.transform import encode
from components.engineer.core import (
    fit_transform_spec,
    parse_column_list,
    parse_crosses,
)

LABEL = "churned"


def _buckets(spec) -> dict:
    return {b["name"]: b["boundaries"] for b in spec["buckets"]}


def _filled(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.median(values[np.isfinite(values)]))


def bucket_reference(values, boundaries, fill) -> np.ndarray:
    """Number of boundaries <= the float32 value; a missing value takes the fill value's bucket."""
    b = np.asarray(boundaries, dtype=np.float32)
    x = np.asarray(values, dtype=np.float32)
    x = np.where(np.isnan(x), np.float32(fill), x)
    return np.searchsorted(b, x, side="right").astype(np.int32)


def cross_reference(indices: list, sizes: list, size: int, hashed: bool) -> np.ndarray:
    """Python-int reference (no overflow possible) of a cross's index per row."""
    from components._shared.model import cross_hash_multiplier

    clipped = [
        np.clip(np.asarray(i, dtype=np.int64), 0, s - 1)
        for i, s in zip(indices, sizes, strict=True)
    ]
    if not hashed:
        return np.ravel_multi_index(clipped, sizes).astype(np.int32)
    mult = cross_hash_multiplier(size)
    out = []
    for row in zip(*(c.tolist() for c in clipped), strict=True):
        h = 0
        for i in row:
            h = (h * mult + i % size) % size
        out.append(h)
    return np.asarray(out, dtype=np.int32)


# --------------------------------------------------------------------------- spec: buckets


def test_defaults_leave_the_spec_as_it_was(train, schema):
    spec = fit_transform_spec(train, schema)
    assert "buckets" not in spec and "crosses" not in spec
    assert fit_transform_spec(train, schema, bucketize=[], crosses=[]) == spec


def test_boundaries_are_unique_finite_train_quantiles_after_imputation(train, schema):
    spec = fit_transform_spec(
        train, schema, bucketize=["total_charges", "tenure_months"], num_buckets=4
    )
    # Spec order (the numeric features' order), whatever order they were asked in.
    assert [b["name"] for b in spec["buckets"]] == ["tenure_months", "total_charges"]
    values = train["total_charges"].to_numpy(dtype=float)
    assert np.isnan(values).any()  # imputed before the quantiles
    filled = _filled(values).astype(np.float32)
    bounds = np.asarray(_buckets(spec)["total_charges"])
    expected = np.quantile(filled.astype(np.float64), [0.25, 0.5, 0.75]).astype(np.float32)
    np.testing.assert_array_equal(bounds, expected)
    assert np.all(np.isfinite(bounds)) and np.all(np.diff(bounds) > 0)
    assert np.array_equal(bounds.astype(np.float32).astype(np.float64), bounds)  # float32 values
    counts = np.bincount(bucket_reference(filled, bounds, 0.0), minlength=4)
    assert counts.min() >= 0.2 * len(filled)  # about a quarter of the train rows each

    tenure = np.asarray(_buckets(spec)["tenure_months"])
    assert (
        len(tenure) == len(np.unique(tenure)) <= 3 and tenure.min() > train["tenure_months"].min()
    )


def test_boundaries_depend_only_on_the_rows_fitted(train, schema, churn_df):
    spec_a = fit_transform_spec(train, schema, bucketize=["monthly_charges"])
    others = churn_df.iloc[2000:].assign(**{LABEL: 0, "monthly_charges": 1000.0})
    spec_b = fit_transform_spec(pd.concat([train, others]), schema, bucketize=["monthly_charges"])
    assert fit_transform_spec(train, schema, bucketize=["monthly_charges"]) == spec_a
    a, b = _buckets(spec_a)["monthly_charges"], _buckets(spec_b)["monthly_charges"]
    assert max(a) < train["monthly_charges"].max() < max(b)


def test_star_bucketizes_every_numeric_feature_and_ties_collapse(train, schema):
    spec = fit_transform_spec(train, schema, bucketize=["*"], num_buckets=10)
    assert [b["name"] for b in spec["buckets"]] == [f["name"] for f in spec["numeric"]]
    buckets = _buckets(spec)
    assert buckets["senior_citizen"] == [0.5]  # a boolean has two buckets, not ten
    assert len(buckets["support_calls"]) < 9  # a few small counts: tied quantiles merge
    for bounds in buckets.values():
        assert len(bounds) == len(set(bounds)) and bounds == sorted(bounds)
        assert all(np.isfinite(bounds))


def test_a_column_almost_always_at_its_minimum_gets_one_bucket():
    df = pd.DataFrame({"x": [5.0] * 48 + [6.0, 7.0], "c": ["a", "b"] * 25, LABEL: [0, 1] * 25})
    spec = fit_transform_spec(df, infer_schema(df, LABEL), bucketize=["x"], crosses=[["x", "c"]])
    assert spec["buckets"] == [{"name": "x", "boundaries": []}]
    assert spec["crosses"] == [{"columns": ["x", "c"], "size": 3, "hashed": False}]


# --------------------------------------------------------------------------- spec: crosses


def test_cross_size_is_the_product_or_hashed_beyond_max_cross_size(train, schema):
    spec = fit_transform_spec(
        train,
        schema,
        bucketize=["tenure_months"],
        num_buckets=5,
        crosses=[("contract", "payment_method"), "region*internet_service*tenure_months"],
        max_cross_size=60,
    )
    size = {f["name"]: len(f["vocab"]) + 1 for f in spec["categorical"]}
    size["tenure_months"] = len(_buckets(spec)["tenure_months"]) + 1
    exact = size["contract"] * size["payment_method"]
    assert exact <= 60 < size["region"] * size["internet_service"] * size["tenure_months"]
    assert spec["crosses"] == [
        {"columns": ["contract", "payment_method"], "size": exact, "hashed": False},
        {"columns": ["region", "internet_service", "tenure_months"], "size": 60, "hashed": True},
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"bucketize": ["tenure_months", "tenure_monthz"]},
            r"^cannot bucketize 'tenure_monthz': it is not a numeric feature of the transform spec$",
        ),
        (
            {"bucketize": ["contract"]},
            r"^cannot bucketize 'contract': it is a categorical feature, not a numeric one$",
        ),
        (
            {"bucketize": ["customer_id"]},  # excluded id column
            r"^cannot bucketize 'customer_id': it is not a numeric feature",
        ),
        (
            {"crosses": [("contract", "payment")]},
            r"^the cross 'contract\*payment' names 'payment', which is not a feature of the "
            r"transform spec$",
        ),
        (
            {"crosses": [("contract", "tenure_months")]},
            r"^the cross 'contract\*tenure_months' uses the numeric feature 'tenure_months', "
            r"which is not bucketized: add it to the bucketized columns$",
        ),
        (
            {"bucketize": ["*"], "crosses": [("contract", "tenure_months"), ("region",)]},
            r"^the cross 'region' has a single column: a cross needs two or more$",
        ),
        (
            {"crosses": [("region", "contract", "region")]},
            r"^the cross 'region\*contract\*region' names 'region' more than once$",
        ),
    ],
)
def test_bad_bucketize_or_cross_names_the_column(train, schema, options, message):
    with pytest.raises(DataError, match=message):
        fit_transform_spec(train, schema, **options)


def test_bad_sizes_are_config_errors(train, schema):
    with pytest.raises(ConfigError, match=r"^num_buckets must be at least 2, got 1$"):
        fit_transform_spec(train, schema, bucketize=["*"], num_buckets=1)
    with pytest.raises(
        ConfigError, match=r"^max_cross_size must be from 2 to 1048576, got 2000000$"
    ):
        fit_transform_spec(
            train, schema, crosses=[("contract", "region")], max_cross_size=2_000_000
        )


def test_component_parameters_parse_into_lists():
    assert parse_column_list("") == [] and parse_column_list(" , ") == []
    assert parse_column_list("*") == ["*"]
    assert parse_column_list("tenure_months, monthly_charges") == [
        "tenure_months",
        "monthly_charges",
    ]
    assert parse_crosses("") == []
    assert parse_crosses("contract*payment_method, region * internet_service*tenure_months") == [
        ["contract", "payment_method"],
        ["region", "internet_service", "tenure_months"],
    ]
    assert parse_crosses("contract") == [["contract"]]  # rejected by fit_transform_spec


def test_engineer_component_writes_buckets_and_crosses(train, schema, tmp_path):
    from kfp.dsl import Artifact, Dataset

    from components.engineer.component import engineer_features

    data = Dataset(uri=str(tmp_path / "train_data"))
    io.write_parquet(train, data.path)
    sch = Artifact(uri=str(tmp_path / "schema"))
    io.write_json({**schema, "negative_label": "no"}, sch.path)
    out = Artifact(uri=str(tmp_path / "transform_spec"))
    engineer_features.python_func(
        **with_defaults(
            engineer_features,
            train_data=data,
            schema=sch,
            transform_spec=out,
            bucketize_columns="tenure_months,monthly_charges",
            num_buckets=5,
            crosses="contract*payment_method, region*tenure_months",
        )
    )
    spec = io.read_json(out.path)
    assert sorted(b["name"] for b in spec["buckets"]) == ["monthly_charges", "tenure_months"]
    assert len(_buckets(spec)["monthly_charges"]) == 4
    assert [c["columns"] for c in spec["crosses"]] == [
        ["contract", "payment_method"],
        ["region", "tenure_months"],
    ]
    assert out.metadata == {
        "numeric": len(spec["numeric"]),
        "categorical": len(spec["categorical"]),
        "bucketized": 2,
        "crosses": 2,
    }
    with pytest.raises(DataError, match=r"^the cross 'contract' has a single column"):
        engineer_features.python_func(
            **with_defaults(
                engineer_features,
                train_data=data, schema=sch, transform_spec=out, crosses="contract",
            )
        )


# --------------------------------------------------------------------------- model: indices


def _index_models(core, spec):
    """Keras models from the core's inputs to its bucket and cross indices."""
    import keras

    inputs = {k: keras.Input(t.shape[1:], dtype=t.dtype, name=k) for k, t in core.input.items()}
    buckets = core.get_layer("bucket_index")(inputs["numeric"])
    crosses = core.get_layer("cross_index")([inputs["categorical"], buckets])
    return (
        keras.Model({"numeric": inputs["numeric"]}, buckets),
        keras.Model(inputs, crosses),
    )


def _keras_indices(model, arrays):
    return np.asarray(model({k: v for k, v in arrays.items()}, training=False))


def _tflite_indices(model, arrays):
    from ai_edge_litert.interpreter import Interpreter

    from components._shared.model import convert_tflite

    runner = Interpreter(model_content=convert_tflite(model, "float16")).get_signature_runner()
    out = runner(**arrays)
    return np.asarray(next(iter(out.values())))


def _boundary_rows(spec, n_random: int = 200, seed: int = 0) -> dict:
    """Each boundary exactly, one float32 step either side, missing, +-inf, and random values."""
    rng = np.random.default_rng(seed)
    num = spec["numeric"]
    bounds = _buckets(spec)
    cols = []
    for f in num:
        b = np.asarray(bounds.get(f["name"], [0.0]), dtype=np.float32)
        edge = np.concatenate(
            [b, np.nextafter(b, np.float32(-np.inf)), np.nextafter(b, np.float32(np.inf))]
        )
        extra = np.asarray([np.nan, np.inf, -np.inf, -1e30, 1e30, 0.0, -0.0, f["fill"]], np.float32)
        spread = rng.normal(b.mean(), b.std() + 1.0, n_random).astype(np.float32)
        cols.append(np.concatenate([edge, extra, spread]))
    n = max(len(c) for c in cols)
    numeric = np.stack([np.resize(c, n) for c in cols], axis=1).astype(np.float32)
    sizes = [len(f["vocab"]) + 1 for f in spec["categorical"]]
    # A few out-of-range indices too: they fall back to the nearest valid one.
    categorical = np.stack([rng.integers(-2, s + 2, n) for s in sizes], axis=1).astype(np.int32)
    return {"numeric": numeric, "categorical": categorical}


@pytest.fixture(scope="module")
def wide_spec():
    """Large vocabularies (a hashed cross near the int32 limit), a bucketized timestamp-like
    feature whose boundaries float16 cannot hold, and a small exact cross."""
    rng = np.random.default_rng(3)
    n = 6000
    df = pd.DataFrame(
        {
            "a": [f"a{i}" for i in rng.integers(0, 3000, n)],
            "b": [f"b{i}" for i in rng.integers(0, 1500, n)],
            "c": rng.choice(["x", "y", "z"], n),
            "days": rng.normal(19877.3, 400.0, n).round(2),
            "amount": np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(3, 1, n)),
            LABEL: rng.integers(0, 2, n),
        }
    )
    return fit_transform_spec(
        df,
        infer_schema(df, LABEL),
        max_vocab=5000,
        bucketize=["days", "amount"],
        num_buckets=16,
        crosses=[("a", "b"), ("c", "days"), ("b", "amount", "c"), ("a", "days")],
        max_cross_size=2**20,
    )


def test_wide_spec_has_exact_and_hashed_crosses(wide_spec):
    size = {f["name"]: len(f["vocab"]) + 1 for f in wide_spec["categorical"]}
    size.update({b["name"]: len(b["boundaries"]) + 1 for b in wide_spec["buckets"]})
    assert size["a"] * size["b"] > 2**20 and size["days"] == 16 and size["c"] == 4
    assert [(c["size"], c["hashed"]) for c in wide_spec["crosses"]] == [
        (2**20, True),
        (4 * 16, False),
        (size["b"] * size["amount"] * 4, False),
        (size["a"] * 16, False),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("max_cross_size", [2**20, 97])
def test_indices_match_numpy_in_keras_and_float16_tflite(wide_spec, max_cross_size):
    from components._shared.model import build_core_model

    spec = dict(wide_spec)
    if max_cross_size != 2**20:  # every cross hashed, into a prime number of buckets
        spec["crosses"] = [{**c, "size": max_cross_size, "hashed": True} for c in spec["crosses"]]
    core = build_core_model(spec)
    bucket_model, cross_model = _index_models(core, spec)
    arrays = _boundary_rows(spec)

    names = [f["name"] for f in spec["numeric"]]
    fills = {f["name"]: f["fill"] for f in spec["numeric"]}
    expected_buckets = np.stack(
        [
            bucket_reference(
                arrays["numeric"][:, names.index(b["name"])], b["boundaries"], fills[b["name"]]
            )
            for b in spec["buckets"]
        ],
        axis=1,
    )
    sizes = {f["name"]: len(f["vocab"]) + 1 for f in spec["categorical"]}
    sizes.update({b["name"]: len(b["boundaries"]) + 1 for b in spec["buckets"]})
    cat_names = [f["name"] for f in spec["categorical"]]
    bucket_names = [b["name"] for b in spec["buckets"]]

    def column(name):
        if name in cat_names:
            return arrays["categorical"][:, cat_names.index(name)]
        return expected_buckets[:, bucket_names.index(name)]

    expected_crosses = np.stack(
        [
            cross_reference(
                [column(n) for n in c["columns"]],
                [sizes[n] for n in c["columns"]],
                c["size"],
                c["hashed"],
            )
            for c in spec["crosses"]
        ],
        axis=1,
    )
    assert expected_crosses.min() >= 0
    assert np.all(expected_crosses < np.asarray([c["size"] for c in spec["crosses"]]))

    numeric_only = {"numeric": arrays["numeric"]}
    np.testing.assert_array_equal(_keras_indices(bucket_model, numeric_only), expected_buckets)
    np.testing.assert_array_equal(_tflite_indices(bucket_model, numeric_only), expected_buckets)
    np.testing.assert_array_equal(_keras_indices(cross_model, arrays), expected_crosses)
    np.testing.assert_array_equal(_tflite_indices(cross_model, arrays), expected_crosses)
    if max_cross_size == 2**20:  # the hash spreads distinct pairs instead of piling them up
        upper = [sizes[n] - 1 for n in cat_names[:2]]
        pairs = {tuple(r) for r in np.clip(arrays["categorical"][:, :2], 0, upper).tolist()}
        assert len(np.unique(expected_crosses[:, 0])) >= 0.99 * len(pairs)


@pytest.mark.slow
def test_mixed_precision_computes_the_same_indices_and_numbers(wide_spec):
    import keras

    from components._shared.model import build_core_model, predict_proba

    arrays = _boundary_rows(wide_spec)
    reference = build_core_model(wide_spec)
    feeds = ({"numeric": arrays["numeric"]}, arrays)  # bucket model, cross model
    want = [
        _keras_indices(m, a)
        for m, a in zip(_index_models(reference, wide_spec), feeds, strict=True)
    ]
    want_numbers = np.asarray(reference.get_layer("numeric_preprocess")(arrays["numeric"]))
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        core = build_core_model(wide_spec)
        got = [
            _keras_indices(m, a) for m, a in zip(_index_models(core, wide_spec), feeds, strict=True)
        ]
        numbers = np.asarray(core.get_layer("numeric_preprocess")(arrays["numeric"]))
        probs = predict_proba(core, arrays)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert core.get_layer("dense_0").compute_dtype == "float16"  # the policy really applied
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.int32
        np.testing.assert_array_equal(g, w)
    # The raw numbers reach imputation and z-scoring in float32, not rounded to float16 first.
    assert numbers.dtype == np.float32
    np.testing.assert_allclose(numbers, want_numbers, rtol=0, atol=1e-6)
    finite = np.all(np.isfinite(arrays["numeric"]) | np.isnan(arrays["numeric"]), axis=1)
    assert probs.shape == (len(finite),) and np.all(np.isfinite(probs[finite]))


@pytest.mark.slow
def test_without_options_the_model_has_no_new_layers(train, schema):
    from components._shared.model import build_core_model

    core = build_core_model(fit_transform_spec(train, schema))
    names = {layer.name for layer in core.layers}
    assert not names & {"bucket_index", "bucket_embedding", "cross_index", "cross_embedding"}
    assert {"numeric_preprocess", "categorical_embedding"} <= names


# --------------------------------------------------------------------------- train + export

CROSSES = [("contract", "payment_method"), ("region", "internet_service", "tenure_months")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The shared small churn run, with every numeric feature bucketized and two crosses: one
    exact, one hashed (max_cross_size=100 is below its 5 * 4 * 9 combinations)."""
    from pipelines.data import generate_churn
    from tests.stage_helpers import prepare

    p = prepare(generate_churn(2500, seed=21), str(tmp_path_factory.mktemp("data")))
    spec = fit_transform_spec(
        io.read_parquet(p.train),
        p.schema,
        bucketize=["*"],
        num_buckets=8,
        crosses=CROSSES,
        max_cross_size=100,
    )
    spec["negative_label"] = p.info["negative_label"]
    assert [c["hashed"] for c in spec["crosses"]] == [False, True]
    return dataclasses.replace(p, spec=spec)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    from tests.stage_helpers import train_small

    model_dir = str(tmp_path_factory.mktemp("model"))
    return model_dir, train_small(prepared, model_dir, epochs=2)


@pytest.fixture(scope="module")
def exported(trained, prepared, tmp_path_factory):
    from components.export.core import export

    out = tmp_path_factory.mktemp("export")
    return export(
        trained[0], prepared.test, str(out / "saved_model"), str(out / "tflite"), "test-model"
    )


@pytest.fixture(scope="module")
def rows(prepared):
    """The awkward rows of test_train_export plus rows exactly at and one step beside bucket
    boundaries (a timestamp and a price)."""
    from tests.unit.test_train_export import awkward_frame

    df = awkward_frame(prepared.test)
    bounds = _buckets(prepared.spec)

    def beside(values):
        b = np.asarray(values, dtype=np.float32)
        steps = [np.nextafter(b, np.float32(-np.inf)), b, np.nextafter(b, np.float32(np.inf))]
        return np.stack(steps, axis=1).reshape(-1).astype(np.float64)

    days = beside(bounds["signup_date"])
    dates = df.iloc[[10] * len(days)].reset_index(drop=True)
    dates["signup_date"] = [pd.Timestamp("1970-01-01") + pd.Timedelta(days=float(d)) for d in days]
    prices = beside(bounds["monthly_charges"])
    charges = df.iloc[[11] * len(prices)].reset_index(drop=True)
    charges["monthly_charges"] = prices
    return pd.concat([df, dates, charges], ignore_index=True)


@pytest.mark.slow
def test_no_training_serving_skew_with_buckets_and_crosses(trained, exported, rows, prepared):
    """Same raw rows: the exported serving_default (raw features) vs the training-time path."""
    import tensorflow as tf

    from components._shared.model import load_core_model, predict_proba
    from tests.unit.test_train_export import _client_request, _serve

    spec = prepared.spec
    core = load_core_model(trained[0])
    assert {"bucket_index", "cross_index", "bucket_embedding", "cross_embedding"} <= {
        layer.name for layer in core.layers
    }
    training = predict_proba(core, encode(rows, spec))
    signatures = tf.saved_model.load(exported.saved_model_dir).signatures
    serving = _serve(signatures, _client_request(rows, spec))["probability"]
    np.testing.assert_allclose(serving, training, rtol=0, atol=1e-6)
    assert np.all(np.isfinite(serving))
    assert exported.metrics["serving_skew_max_abs_diff"] <= 1e-6
    # Clients still send raw features only: buckets and crosses add no signature inputs.
    assert set(signatures["serving_default"].structured_input_signature[1]) == {
        f["input_name"] for f in spec["numeric"] + spec["categorical"]
    }


@pytest.mark.slow
def test_tflite_and_scorer_match_with_buckets_and_crosses(trained, exported, rows, prepared):
    import tensorflow as tf

    from components._shared.model import (
        SCORER_FILE,
        load_core_model,
        load_scorer,
        predict_proba,
        tflite_predict,
    )
    from tests.unit.test_train_export import _client_request, _serve

    spec = prepared.spec
    print(
        f"\nTFLite (float16) vs SavedModel on the test split: max abs diff "
        f"{exported.metrics['tflite_max_abs_diff']:.2e}"
    )
    assert exported.metrics["tflite_max_abs_diff"] <= 1e-3
    assert exported.metrics["parity_rows"] == prepared.info["rows"]["test"]
    tflite_dir = os.path.dirname(exported.tflite_path)
    assert io.read_json(os.path.join(tflite_dir, "transform_spec.json")) == spec

    arrays = encode(rows, spec)
    with open(exported.tflite_path, "rb") as fh:
        lite = tflite_predict(fh.read(), arrays)
    signatures = tf.saved_model.load(exported.saved_model_dir).signatures
    served = _serve(signatures, _client_request(rows, spec))["probability"]
    print(
        f"TFLite (float16) vs SavedModel on awkward and boundary rows: max abs diff "
        f"{np.max(np.abs(lite - served)):.2e}"
    )
    assert np.max(np.abs(lite - served)) <= 1e-3

    # The fp32 TFLite scorer was written (within 1e-5 of Keras) and scores these rows too.
    assert os.path.exists(os.path.join(trained[0], SCORER_FILE))
    assert trained[1].metrics["scorer_max_abs_diff"] <= 1e-5
    keras_probs = predict_proba(load_core_model(trained[0]), arrays)
    np.testing.assert_allclose(load_scorer(trained[0])(arrays), keras_probs, rtol=0, atol=1e-5)


def test_a_boolean_in_a_cross_is_bucketized_at_one_half_without_configuration(train, schema):
    spec = fit_transform_spec(train, schema, crosses=[("contract", "senior_citizen")])
    assert spec["buckets"] == [{"name": "senior_citizen", "boundaries": [0.5]}]
    contract = next(f for f in spec["categorical"] if f["name"] == "contract")
    assert spec["crosses"] == [
        {"columns": ["contract", "senior_citizen"], "size": (len(contract["vocab"]) + 1) * 2, "hashed": False}
    ]
