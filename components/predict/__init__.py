"""Predict stage: score a table with a registered version, after checking it against its training schema."""
