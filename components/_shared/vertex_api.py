"""Where the Vertex AI API is, for every stage that calls it (train's CustomJob launcher, the rollout's
endpoint target): Google's endpoint and the run's credentials by default; ``KFP_TF_GATE_VERTEX_API_ENDPOINT``
(an ``http(s)://host:port`` URL) points the client at another REST endpoint with anonymous credentials —
the Vertex stand-in of the tests and the rehearsal (``tests/fakes``, ``pipelines/rehearsal/jobs.py``).
Nothing sets it on a cluster."""

from __future__ import annotations

import os

VERTEX_ENDPOINT_ENV = "KFP_TF_GATE_VERTEX_API_ENDPOINT"


def stand_in_endpoint() -> str:
    """The endpoint ``KFP_TF_GATE_VERTEX_API_ENDPOINT`` names, "" when unset."""
    return os.environ.get(VERTEX_ENDPOINT_ENV, "").strip()


def client_options() -> dict:
    """``aiplatform.init`` keywords for that endpoint (REST, anonymous credentials); {} when unset."""
    endpoint = stand_in_endpoint()
    if not endpoint:
        return {}
    from google.auth.credentials import AnonymousCredentials

    return {"api_endpoint": endpoint, "api_transport": "rest", "credentials": AnonymousCredentials()}
