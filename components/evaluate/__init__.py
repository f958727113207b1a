"""Evaluate stage: metrics, ROC, confusion matrix, slices and fairness gaps."""
