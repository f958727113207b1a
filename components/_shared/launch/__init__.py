"""Start runs of a compiled pipeline: Kubeflow Pipelines or Vertex AI Pipelines.

Below both the stages and the CLI: the monitor component and ``python -m pipelines
monitor|submit`` use it; it imports neither. Split by concern:

- :mod:`.package`: the compiled pipeline file (fetch, PipelineSpec), run parameters, run names;
- :mod:`.kfp`: ``kfp.Client`` settings, authentication, runs and uploads, error sentences;
- :mod:`.vertex`: ``aiplatform.PipelineJob`` settings, jobs, error sentences (shared with deploy);
- :mod:`.launcher`: the monitor's ``launcher(decision) -> run info`` for a target.

Running the training pipeline on this machine (kfp.local) belongs to the CLI layer
(``pipelines/monitor.py``), which hands a launcher for it in. Heavy clients (kfp, aiplatform)
are imported only inside the functions that call them.
"""
