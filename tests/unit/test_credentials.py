"""MLflow credentials from Secret Manager (the Vertex route): read through the real
google-cloud-secret-manager client (REST) from a fake Secret Manager server; errors are one
sentence naming the secret and never its contents."""

from __future__ import annotations

import json

import pytest

from components._shared.credentials import (
    ENDPOINT_ENV,
    PASSWORD_ENV,
    SECRET_ENV,
    USERNAME_ENV,
    load_mlflow_credentials,
    secret_version_name,
)
from components._shared.errors import ConfigError
from tests.fakes.secret_manager_server import SecretManagerServer

SECRET = "projects/proj/secrets/mlflow-credentials"
PASSWORD = "s3cr3t-pa55word"


@pytest.fixture
def server(monkeypatch):
    for key in (USERNAME_ENV, PASSWORD_ENV, SECRET_ENV, "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    with SecretManagerServer() as srv:
        monkeypatch.setenv(ENDPOINT_ENV, srv.url)
        yield srv


def test_credentials_come_from_the_secret_through_the_real_client(server, monkeypatch):
    server.add(SECRET, json.dumps({"username": "old", "password": "old-pw"}).encode())
    server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    monkeypatch.setenv(SECRET_ENV, SECRET)

    assert load_mlflow_credentials() is True

    import os
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("admin", PASSWORD)
    assert server.requests == [f"/v1/{SECRET}/versions/latest:access"]


def test_a_pinned_version_is_read(server, monkeypatch):
    version = server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    server.add(SECRET, json.dumps({"username": "next", "password": "next-pw"}).encode())
    monkeypatch.setenv(SECRET_ENV, version)

    load_mlflow_credentials()

    import os
    assert os.environ[USERNAME_ENV] == "admin"


def test_credentials_already_in_the_environment_win(server, monkeypatch):
    server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(USERNAME_ENV, "kube-user")
    monkeypatch.setenv(PASSWORD_ENV, "kube-pw")

    assert load_mlflow_credentials() is False

    import os
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("kube-user", "kube-pw")
    assert server.requests == []


def test_no_secret_named_does_nothing(server):
    assert load_mlflow_credentials() is False
    assert server.requests == []


def _one_sentence_without_values(message: str) -> None:
    assert "\n" not in message and message.count(". ") == 0
    assert PASSWORD not in message and "admin" not in message


def test_a_missing_secret_is_one_sentence_naming_it(server, monkeypatch):
    server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    monkeypatch.setenv(SECRET_ENV, "projects/proj/secrets/other")

    with pytest.raises(ConfigError) as err:
        load_mlflow_credentials()

    message = str(err.value)
    assert "projects/proj/secrets/other/versions/latest does not exist" in message
    _one_sentence_without_values(message)
    import os
    assert USERNAME_ENV not in os.environ


def test_a_denied_secret_is_one_sentence_naming_it_and_the_role(server, monkeypatch):
    server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    server.denied.add(SECRET)
    monkeypatch.setenv(SECRET_ENV, SECRET)

    with pytest.raises(ConfigError) as err:
        load_mlflow_credentials()

    message = str(err.value)
    assert f"{SECRET}/versions/latest" in message and "(HTTP 403)" in message
    assert "roles/secretmanager.secretAccessor" in message
    _one_sentence_without_values(message)


def test_a_payload_that_is_not_the_expected_json_never_echoes_it(server, monkeypatch):
    server.add(SECRET, f"admin:{PASSWORD}".encode())
    monkeypatch.setenv(SECRET_ENV, SECRET)

    with pytest.raises(ConfigError) as err:
        load_mlflow_credentials()

    assert "is not JSON" in str(err.value)
    _one_sentence_without_values(str(err.value))


@pytest.mark.parametrize("bad", ["mlflow-credentials", "projects/p/secrets/", "projects/p/secrets/s/versions/"])
def test_a_malformed_secret_name_is_refused(bad):
    with pytest.raises(ConfigError, match="projects/PROJECT/secrets/NAME"):
        secret_version_name(bad)


def test_registry_configure_loads_the_credentials(server, monkeypatch, tmp_path):
    from components._shared import registry

    server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    monkeypatch.setenv(SECRET_ENV, SECRET)

    registry.configure(f"sqlite:///{tmp_path}/mlflow.db")

    import os
    assert os.environ[USERNAME_ENV] == "admin"


def test_the_wiring_check_reaches_a_password_protected_server_with_the_secret(server, monkeypatch):
    from components._shared.wiring import check_cluster_wiring
    from tests.unit.test_wiring import FakeMlflow

    server.add(SECRET, json.dumps({"username": "admin", "password": PASSWORD}).encode())
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with FakeMlflow(password=PASSWORD) as mlflow:
        check_cluster_wiring(mlflow.url, "gs://bucket/serving")
    assert server.requests and mlflow.paths

