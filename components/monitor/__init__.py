"""Monitor stage: drift, data quality and performance decay of recent data; the retraining trigger."""
