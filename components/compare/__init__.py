"""Compare stage: the promotion rule (gates, champion re-scoring, bootstrap)."""
