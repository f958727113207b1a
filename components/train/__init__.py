"""Train stage: Keras model from the transform spec, GPU-aware, checkpointed."""
