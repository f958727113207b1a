"""Validate stage: schema inference and enforcement, anomalies, drift."""
