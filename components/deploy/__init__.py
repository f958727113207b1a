"""Deploy stage: registry alias, TF Serving push with warm-up check, Vertex AI endpoint."""
