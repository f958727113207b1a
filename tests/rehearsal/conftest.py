"""One object-store emulator and MLflow servers shared by the rehearsal tests (session scope).

Each test uses its own runs dir and model name, so the shared registry never mixes two tests.
"""

import os

import pytest

from pipelines.data import ID_COLUMN, write_default_dataset
from pipelines.rehearsal.runner import Services, compiled_file
from pipelines.rehearsal.services import ObjectStore

ROWS = 2000


@pytest.fixture(scope="session")
def rehearsal_state(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rehearsal-services"))


@pytest.fixture(scope="session")
def object_store(rehearsal_state):
    with ObjectStore(os.path.join(rehearsal_state, "gcs")) as store:
        yield store


@pytest.fixture(scope="session")
def services_auth(rehearsal_state, object_store):
    """MLflow with basic auth: the Kubeflow spec hands its tasks the credentials secret."""
    with Services(rehearsal_state, mlflow_auth=True, store=object_store) as services:
        yield services


@pytest.fixture(scope="session")
def services_open(rehearsal_state, object_store):
    """MLflow without auth: the Vertex spec gives its tasks no credentials route."""
    with Services(rehearsal_state, mlflow_auth=False, store=object_store) as services:
        yield services


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rehearsal-data") / "churn.csv")
    return write_default_dataset(path, n_rows=ROWS)


@pytest.fixture
def pipeline_file():
    """The committed compiled file (the product), or KFP_TF_GATE_REHEARSE_COMPILED/<target>/training.yaml."""
    def path(target: str) -> str:
        other = os.environ.get("KFP_TF_GATE_REHEARSE_COMPILED")
        return os.path.join(other, target, "training.yaml") if other else compiled_file(target)
    return path


@pytest.fixture
def base_params():
    return {"id_column": ID_COLUMN, "epochs": 2}
