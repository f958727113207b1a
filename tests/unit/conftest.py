"""Fixtures shared by the engineer tests: an encoded train split and its inferred schema."""

import pytest

LABEL = "churned"


@pytest.fixture(scope="module")
def train(churn_df):
    """2,000 rows of the churn table with the label encoded 0/1, as ingest writes it."""
    df = churn_df.copy()
    df[LABEL] = (df[LABEL] == "yes").astype("int8")
    return df.iloc[:2000].reset_index(drop=True)


@pytest.fixture(scope="module")
def schema(train):
    from components._shared.schema import infer_schema

    return infer_schema(train, LABEL, "yes", id_column="customer_id")
