"""KFP v2 components that train, gate and ship TensorFlow models.

One package per stage: ``<stage>/core.py`` is plain Python over files and DataFrames,
``<stage>/component.py`` is the KFP wrapper around it.
"""
