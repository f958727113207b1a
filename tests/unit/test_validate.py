"""Validate core: schema inference, anomalies (each kind, its severity and sentence), drift, report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from components._shared.errors import ValidationError
from components._shared.schema import feature_names, infer_schema
from components.ingest.core import ingest
from components.validate.core import (
    raise_if_blocking,
    result_to_json,
)
from components.validate.core import (
    validate as validate_core,
)
from pipelines.data import generate_churn

LABEL = "churned"


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Train/eval/test exactly as ingest writes them (label 0/1, types as read from CSV)."""
    d = tmp_path_factory.mktemp("validate")
    generate_churn(1200, seed=11).to_csv(d / "data.csv", index=False)
    ingest(
        str(d / "data.csv"),
        LABEL,
        str(d / "train.parquet"),
        str(d / "eval.parquet"),
        str(d / "test.parquet"),
        id_column="customer_id",
    )
    return {s: io.read_parquet(str(d / f"{s}.parquet")) for s in ("train", "eval", "test")}


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    """Splits of a CSV whose numeric columns hold a little text, read exactly as ingest reads them."""
    d = tmp_path_factory.mktemp("corrupted")
    df = generate_churn(1200, seed=11).astype({"monthly_charges": object, "tenure_months": object})
    df.loc[df.index[::40], "monthly_charges"] = "unknown"  # 2.5% of rows
    df.loc[df.index[::100], "tenure_months"] = "n/a?"  # 1% of rows
    df.to_csv(d / "data.csv", index=False)
    ingest(
        str(d / "data.csv"),
        LABEL,
        str(d / "train.parquet"),
        str(d / "eval.parquet"),
        str(d / "test.parquet"),
        id_column="customer_id",
    )
    return {s: io.read_parquet(str(d / f"{s}.parquet")) for s in ("train", "eval", "test")}


@pytest.fixture(scope="module")
def reference(splits):
    """The schema of a clean first run (what a champion carries)."""
    return validate_core(
        splits["train"], {"eval": splits["eval"], "test": splits["test"]}, LABEL, "yes"
    )


validate = validate_core


def _set_rows(df, column, n, value):
    """A copy of ``df`` with the first ``n`` values of ``column`` replaced (any dtype, categoricals too)."""
    out = df.copy()
    dtype = out[column].dtype
    out[column] = out[column].astype(object)
    out.loc[out.index[:n], column] = value
    if isinstance(dtype, pd.CategoricalDtype):
        out[column] = out[column].astype("category")
    return out


def _messages(result, kind=None):
    return [a.text() for a in result.anomalies if kind is None or a.kind == kind]


def _kinds(result):
    return {a.kind for a in result.anomalies}


# --------------------------------------------------------------------------- first run


def test_clean_first_run_infers_kinds_and_has_no_blocking_anomaly(reference, tmp_path, splits):
    cols = reference.schema["columns"]
    kinds = {name: (e["kind"], e["role"]) for name, e in cols.items()}
    assert kinds == {
        "customer_id": ("id", "excluded"),
        "signup_date": ("timestamp", "feature"),
        "tenure_months": ("numeric", "feature"),
        "monthly_charges": ("numeric", "feature"),
        "total_charges": ("numeric", "feature"),
        "data_gb": ("numeric", "feature"),
        "support_calls": ("numeric", "feature"),
        "senior_citizen": ("boolean", "feature"),
        "contract": ("categorical", "feature"),
        "payment_method": ("categorical", "feature"),
        "internet_service": ("categorical", "feature"),
        "region": ("categorical", "feature"),
        "churned": ("label", "label"),
    }
    assert reference.blocking == []
    assert _messages(reference) == [
        "[warning] column 'customer_id' is excluded from features: a string that is unique per row (an identifier)"
    ]
    assert cols["contract"]["domain"][:1] == ["month-to-month"]
    assert sorted(cols["internet_service"]["domain"]) == ["dsl", "fiber", "none"]
    assert cols["tenure_months"]["min"] >= 0 and cols["tenure_months"]["max"] <= 72
    assert cols["payment_method"]["nullable"] and not cols["contract"]["nullable"]
    assert reference.schema["positive_label"] == "yes"
    assert reference.drift["reference"] == "train split"
    assert "evidently" not in reference.drift  # evidently's report is its own step (drift_report)
    assert set(reference.drift["psi"]) == set(feature_names(reference.schema))
    raise_if_blocking(reference)  # does not raise


def test_report_html_names_anomalies_and_columns(splits, tmp_path):
    path = tmp_path / "report.html"
    train = splits["train"].assign(constant_col=3)
    result = validate(train, {"test": splits["test"]}, LABEL, "yes", report_html=str(path))
    page = path.read_text()
    assert page.startswith("<!doctype html>")
    assert "Data validation: WARNINGS" in page
    assert "constant_column" in page and "column &#x27;constant_col&#x27; is constant" in page
    for name in feature_names(result.schema):
        assert f"<td>{name}</td>" in page


def test_id_text_and_constant_columns_are_excluded_with_a_warning(splits):
    n = len(splits["train"])
    train = splits["train"].assign(
        note=[f"the customer wrote a long complaint about invoice number {i}" for i in range(n)],
        row_number=np.arange(n),
        country="nl",
    )
    result = validate(train, {}, LABEL, "yes", exclude=["region"])
    cols = result.schema["columns"]
    assert (cols["note"]["kind"], cols["note"]["role"]) == ("text", "excluded")
    assert (cols["row_number"]["kind"], cols["row_number"]["role"]) == ("id", "excluded")
    assert (cols["country"]["kind"], cols["country"]["role"]) == ("constant", "excluded")
    assert (
        cols["region"]["role"] == "excluded"
        and cols["region"]["reason"] == "excluded by configuration"
    )
    assert "region" not in feature_names(result.schema)
    messages = _messages(result)
    assert (
        "[warning] column 'note' is excluded from features: free text (long, mostly unique values)"
        in messages
    )
    assert any(m.startswith("[warning] train: column 'country' is constant") for m in messages)
    assert result.blocking == []


def test_configured_id_column_is_excluded(splits):
    schema = infer_schema(splits["train"], LABEL, "yes", id_column="customer_id")
    assert schema["columns"]["customer_id"]["reason"] == "the configured id column"
    assert "customer_id" not in feature_names(schema)


def test_no_usable_feature_is_blocking(splits):
    train = splits["train"][["customer_id", LABEL]]
    result = validate(train, {}, LABEL, "yes")
    assert "[blocking] no usable feature columns remain after feature selection" in _messages(
        result
    )


# --------------------------------------------------------------------------- corrupted types


def test_text_in_a_numeric_column_is_a_blocking_corrupted_type(corrupted):
    result = validate(
        corrupted["train"], {"test": corrupted["test"]}, LABEL, "yes", id_column="customer_id"
    )

    found = {a.column: a for a in result.anomalies if a.kind == "corrupted_type"}
    assert set(found) == {"monthly_charges", "tenure_months"}
    anomaly = found["monthly_charges"]
    assert anomaly.severity == "blocking"
    assert anomaly.message.startswith(
        "train: column 'monthly_charges' is numeric except for text values such as 'unknown' ("
    )
    assert anomaly.message.endswith("of a sample); fix the data or exclude the column")
    assert "such as 'n/a?'" in found["tenure_months"].message
    with pytest.raises(
        ValidationError,
        match=r"^validation found 2 blocking anomalies: .*train: column "
        r"'monthly_charges' is numeric except for text values such as 'unknown'",
    ):
        raise_if_blocking(result)
    assert result_to_json(result)["status"] == "failed"


def test_text_in_a_numeric_column_against_the_reference_schema_is_a_type_change(
    corrupted, reference
):
    result = validate(
        corrupted["train"],
        {},
        LABEL,
        "yes",
        reference_schema=reference.schema,
        id_column="customer_id",
    )
    n_text = int((corrupted["train"]["tenure_months"].astype(str) == "n/a?").sum())
    assert n_text > 0
    assert (
        f"[blocking] train: column 'tenure_months' should be numeric but holds text such as 'n/a?' "
        f"({n_text} values)"
    ) in _messages(result, "type_change")
    with pytest.raises(
        ValidationError, match=r"blocking anomalies: .*'tenure_months' should be numeric"
    ):
        raise_if_blocking(result)


def test_corrupted_type_can_be_downgraded_to_a_warning(corrupted):
    result = validate(
        corrupted["train"],
        {},
        LABEL,
        "yes",
        id_column="customer_id",
        severity={"corrupted_type": "warning"},
    )
    assert {a.severity for a in result.anomalies if a.kind == "corrupted_type"} == {"warning"}
    assert result.schema["columns"]["monthly_charges"]["kind"] not in (
        "numeric",
        "timestamp",
        "boolean",
    )
    raise_if_blocking(result)


# --------------------------------------------------------------------------- against a reference


def test_same_data_against_its_own_schema_is_clean(splits, reference):
    result = validate(
        splits["train"],
        {"eval": splits["eval"], "test": splits["test"]},
        LABEL,
        "yes",
        reference_schema=reference.schema,
    )
    assert result.blocking == []
    # eval/test may stray a little outside the train split's ranges; nothing else is reported.
    assert {(a.kind, a.message.split(":")[0]) for a in result.anomalies} <= {
        ("excluded_column", "column 'customer_id' is excluded from features"),
        ("out_of_range", "eval"),
        ("out_of_range", "test"),
    }
    assert result.drift["reference"] == "champion schema"
    assert result.drift["psi_drift"]["drifted"] == []


def test_unseen_categories_warn_and_can_block(splits, reference):
    train = _set_rows(splits["train"], "region", 80, "antarctica")
    result = validate(train, {}, LABEL, "yes", reference_schema=reference.schema)
    [msg] = _messages(result, "unseen_categories")
    share = 80 / len(train)
    assert (
        msg
        == f"[warning] train: {share:.1%} of 'region' are values the schema has not seen ('antarctica')"
    )
    assert result.blocking == []

    strict = validate(
        train,
        {},
        LABEL,
        "yes",
        reference_schema=reference.schema,
        severity={"unseen_categories": "blocking"},
    )
    with pytest.raises(
        ValidationError, match=r"'region' are values the schema has not seen \('antarctica'\)"
    ):
        raise_if_blocking(strict)


def test_a_few_unseen_categories_under_the_share_are_tolerated(splits, reference):
    train = _set_rows(splits["train"], "region", 2, "antarctica")  # < 1% of rows
    result = validate(train, {}, LABEL, "yes", reference_schema=reference.schema)
    assert "unseen_categories" not in _kinds(result)


def test_missing_rate_jump_is_blocking(splits, reference):
    train = _set_rows(splits["train"], "tenure_months", len(splits["train"]) // 4, np.nan).astype(
        {"tenure_months": float}
    )
    result = validate(train, {}, LABEL, "yes", reference_schema=reference.schema)
    missing = train["tenure_months"].isna().mean()
    assert _messages(result, "missing_rate_jump") == [
        f"[blocking] train: column 'tenure_months' is missing in {missing:.1%} of rows (schema: 0.0%)"
    ]


def test_missing_rate_jump_in_the_test_split_on_a_first_run(splits):
    test = _set_rows(splits["test"], "contract", len(splits["test"]), None)
    result = validate(splits["train"], {"test": test}, LABEL, "yes")
    assert _messages(result, "missing_rate_jump") == [
        "[blocking] test: column 'contract' is entirely empty: every value is missing (schema: 0.0%)"
    ]


def test_missing_and_extra_columns(splits, reference):
    train = (
        splits["train"]
        .drop(columns="region")
        .assign(promo_code=lambda d: np.where(d.index % 2, "A", "B"))
    )
    result = validate(train, {}, LABEL, "yes", reference_schema=reference.schema)
    assert "[blocking] train: column 'region' of the schema is missing" in _messages(
        result, "missing_column"
    )
    assert _messages(result, "extra_column") == [
        "[warning] train: column 'promo_code' is not in the champion's schema; excluded from features, "
        "so the model takes the champion's inputs"
    ]
    # Really excluded: a new model input would break every client sending the champion's inputs.
    assert result.schema["columns"]["promo_code"]["role"] == "excluded"


def test_a_schema_file_adds_a_new_feature_and_its_own_constraints(splits, reference):
    train = splits["train"].assign(promo_code=lambda d: np.where(d.index % 2, "A", "B"))
    user = {"columns": {"promo_code": {"kind": "categorical", "role": "feature", "domain": ["A"]},
                        "support_calls": {"kind": "numeric", "role": "feature", "max": 2}}}
    result = validate(train, {"test": splits["test"]}, LABEL, "yes", reference_schema=reference.schema,
                      user_schema=user)
    assert result.schema["columns"]["promo_code"]["role"] == "feature"
    assert _messages(result, "extra_column") == [
        "[warning] train: column 'promo_code' is not in the champion's schema; a new feature, as the schema file lists it"
    ]
    out_of_range = _messages(result, "out_of_range")
    assert any(m.startswith("[warning] train (schema file): ") and "'support_calls' is outside the schema "
               "range [-inf, 2]" in m for m in out_of_range), out_of_range
    assert any(m.startswith("[warning] train (schema file): ") and "of 'promo_code' are values the schema "
               "has not seen ('B')" in m for m in _messages(result, "unseen_categories"))
    # The champion's own checks pass: its range for support_calls is the data's.
    assert not any(m.startswith("[warning] train: ") for m in out_of_range)


def test_a_schema_file_alone_constrains_without_fixing_the_feature_set(splits):
    user = {"columns": {"tenure_months": {"kind": "numeric", "role": "feature", "min": 1000}}}
    result = validate(splits["train"], {}, LABEL, "yes", user_schema=user)
    assert set(feature_names(result.schema)) >= {"tenure_months", "contract", "monthly_charges"}
    assert any("train (schema file): " in m and "'tenure_months' is outside the schema range [1000, inf]" in m
               for m in _messages(result, "out_of_range"))


def test_out_of_range_values_warn(splits, reference):
    train = _set_rows(splits["train"], "support_calls", 50, 99).astype({"support_calls": "int64"})
    result = validate(train, {}, LABEL, "yes", reference_schema=reference.schema)
    [msg] = _messages(result, "out_of_range")
    assert (
        msg.startswith("[warning] train: ")
        and "of 'support_calls' is outside the schema range [0, " in msg
    )


def test_positive_label_must_match_the_reference(splits, reference):
    result = validate(splits["train"], {}, LABEL, "no", reference_schema=reference.schema)
    assert _messages(result, "label_domain") == [
        "[blocking] the positive label is 'no' but the reference schema's is 'yes'"
    ]


def test_columns_excluded_in_the_reference_stay_excluded(splits, reference):
    ref = {
        **reference.schema,
        "columns": {k: dict(v) for k, v in reference.schema["columns"].items()},
    }
    ref["columns"]["region"].update(role="excluded", reason="excluded by configuration")
    result = validate(splits["train"], {}, LABEL, "yes", reference_schema=ref)
    assert result.schema["columns"]["region"]["role"] == "excluded"
    assert "region" not in feature_names(result.schema)


def test_strong_drift_is_reported(splits, reference):
    train = splits["train"].copy()
    for col, shift in (
        ("tenure_months", 40),
        ("monthly_charges", 80),
        ("total_charges", 4000),
        ("support_calls", 6),
        ("data_gb", 300),
    ):
        train[col] = train[col] + shift
    result = validate(
        train,
        {},
        LABEL,
        "yes",
        reference_schema=reference.schema,
        psi_drift_share=0.3,
    )
    [msg] = _messages(result, "drift")
    assert msg.startswith("[warning] ") and "of features drifted from the champion schema" in msg
    assert "30%" in msg  # the threshold it was judged against
    for col in ("tenure_months", "monthly_charges", "total_charges", "support_calls"):
        assert col in msg
    assert "contract" not in msg
    assert result.drift["psi"]["monthly_charges"] > 1.0
    assert {"tenure_months", "monthly_charges", "total_charges"} <= set(
        result.drift["psi_drift"]["drifted"]
    )


# --------------------------------------------------------------------------- splits and settings


def test_an_empty_split_is_blocking(splits):
    result = validate(
        splits["train"], {"eval": splits["eval"].head(0), "test": splits["test"]}, LABEL, "yes"
    )
    assert _messages(result, "too_few_rows") == [
        "[blocking] eval: 0 rows, fewer than the minimum 1"
    ]


def test_too_few_training_rows_is_blocking(splits):
    # id_column: under 100 rows a unique string is not recognised as an identifier.
    result = validate(splits["train"].head(30), {}, LABEL, "yes", id_column="customer_id")
    assert "[blocking] train: 30 rows, fewer than the minimum 50" in _messages(result)


def test_invalid_severity_override(splits):
    with pytest.raises(
        ValidationError, match=r"invalid severity override 'unseen_category': 'blocking'"
    ):
        validate(splits["train"], {}, LABEL, "yes", severity={"unseen_category": "blocking"})
    with pytest.raises(ValidationError, match=r"invalid severity override 'drift': 'fatal'"):
        validate(splits["train"], {}, LABEL, "yes", severity={"drift": "fatal"})


def test_blocking_message_lists_every_blocking_anomaly(splits, reference):
    train = _set_rows(
        splits["train"].drop(columns="contract"), "data_gb", len(splits["train"]) // 3, np.nan
    )
    train = train.astype({"data_gb": float})
    result = validate(
        train, {"eval": splits["eval"].head(0)}, LABEL, "no", reference_schema=reference.schema
    )
    with pytest.raises(ValidationError) as err:
        raise_if_blocking(result)
    text = str(err.value)
    assert text.startswith(f"validation found {len(result.blocking)} blocking anomalies: ")
    for fragment in (
        "column 'contract' of the schema is missing",
        "column 'data_gb' is missing in",
        "the positive label is 'no'",
        "eval: 0 rows",
    ):
        assert fragment in text


def test_timestamps_from_strings_become_numeric_features():
    df = pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=200, freq="D").strftime("%Y-%m-%d"),
            "x": np.arange(200) % 7,
            LABEL: np.arange(200) % 2,
        }
    )
    schema = infer_schema(df, LABEL)
    assert schema["columns"]["when"]["kind"] == "timestamp"
    assert schema["columns"]["when"]["min"] == pytest.approx(
        (pd.Timestamp("2024-01-01") - pd.Timestamp("1970-01-01")).days
    )


def test_a_mixed_object_column_is_reported_not_raised(splits):
    train = splits["train"].astype({"monthly_charges": object})
    train.loc[train.index[:20], "monthly_charges"] = "unknown"  # floats and strings in one column
    result = validate_core(train, {}, LABEL, "yes", id_column="customer_id")
    assert "corrupted_type" in _kinds(result)


# --------------------------------------------------------------------------- drift report (evidently)


def test_drift_report_first_run_compares_train_with_test(splits, reference, tmp_path):
    from components.validate.evidently_drift import drift_report

    paths = {}
    for split in ("train", "test"):
        paths[split] = str(tmp_path / f"{split}.parquet")
        io.write_parquet(splits[split], paths[split])
    summary = drift_report(reference.schema, paths["train"], paths["test"], None, str(tmp_path / "d.html"))
    assert (summary["reference"], summary["current"]) == ("this run's train split", "this run's test split")
    assert "error" not in summary and 0.0 <= summary["share"] <= 1.0
    assert set(summary["features"]) == set(feature_names(reference.schema)) == set(summary["columns"])
    assert summary["sample_rows"] == [len(splits["train"]), len(splits["test"])]
    assert (tmp_path / "d.html").stat().st_size > 10_000


def test_drift_report_against_a_champion_sample_finds_the_shifted_feature(splits, reference, tmp_path):
    from components.validate.evidently_drift import drift_report

    champion_sample = str(tmp_path / "reference.parquet")
    io.write_parquet(splits["train"].drop(columns=["region"]), champion_sample)  # an older feature set
    shifted = splits["train"].assign(monthly_charges=splits["train"]["monthly_charges"] * 3 + 50)
    train = str(tmp_path / "train.parquet")
    io.write_parquet(shifted, train)
    summary = drift_report(reference.schema, train, "unused", champion_sample, str(tmp_path / "d.html"),
                           sample_rows=500)
    assert summary["reference"] == "champion's reference sample"
    assert "region" not in summary["columns"]  # only the features both sides have
    assert summary["features"]["monthly_charges"]["drifted"] is True
    assert summary["features"]["contract"]["drifted"] is False
    assert summary["sample_rows"] == [500, 500]


def test_drift_report_failure_is_written_not_raised(splits, reference, tmp_path, monkeypatch):
    from components._shared import drift as shared_drift
    from components.validate import evidently_drift as mod

    def boom(*args, **kwargs):
        raise ValueError("unsupported column type")

    monkeypatch.setattr(shared_drift, "run_evidently", boom)  # where the one evidently call lives
    path = str(tmp_path / "train.parquet")
    io.write_parquet(splits["train"], path)
    summary = mod.drift_report(reference.schema, path, path, None, str(tmp_path / "d.html"))
    assert summary["error"] == "evidently failed: ValueError: unsupported column type"
    assert "unsupported column type" in (tmp_path / "d.html").read_text()


def test_schema_file_checks_and_defaults(tmp_path):
    import json

    from components._shared.errors import DataError
    from components.validate.component_io import fetch_reference, read_reference

    def write(obj):
        path = tmp_path / "s.json"
        path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
        return str(path)

    with pytest.raises(DataError, match=r"is not valid JSON"):
        fetch_reference(write("{nope"), "", "m", str(tmp_path / "r1"))
    with pytest.raises(DataError, match=r'has no "columns" object'):
        fetch_reference(write({"label": "y"}), "", "m", str(tmp_path / "r2"))
    with pytest.raises(DataError, match=r"""gives column 'x' no "kind"$"""):
        fetch_reference(write({"columns": {"x": {"max": 3}}}), "", "m", str(tmp_path / "r3"))

    path = write({"label": "y", "columns": {"x": {"kind": "numeric", "max": 3}, "y": {"kind": "label"}}})
    fetch_reference(path, "", "m", str(tmp_path / "ok"))
    ref = read_reference(str(tmp_path / "ok"))
    assert ref.schema is None and ref.sample_path is None
    assert ref.user_schema["columns"] == {"x": {"kind": "numeric", "max": 3, "role": "feature"},
                                          "y": {"kind": "label", "role": "label"}}
    assert ref.source == f"schema file {path} (schema inferred; no registry configured)"
