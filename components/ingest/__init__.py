"""Ingest stage: read, check the label, split deterministically."""
