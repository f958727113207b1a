"""Export stage: TF Serving SavedModel and TFLite with measured parity."""
