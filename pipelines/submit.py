"""``python -m pipelines submit --target kfp|vertex``: upload and start the compiled training pipeline.

Kubeflow: uploads ``compiled/kubeflow/training.yaml`` as the pipeline ``kfp-tf-gate-training``
(a new version only when the file changed), then starts a run of that version in the
experiment. Vertex: submits ``compiled/vertex/training.yaml`` as a PipelineJob. Exit status 0
when the run was created, 2 with one sentence otherwise.
"""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    from components._shared.launch.package import TRAINING_PIPELINE
    from pipelines.monitor import add_trigger_flags

    p = sub.add_parser(
        "submit",
        help="upload and start the compiled training pipeline on Kubeflow or Vertex AI",
        description="Upload and start the compiled training pipeline on Kubeflow or Vertex AI.",
    )
    p.add_argument("--target", choices=("kfp", "vertex"), required=True)
    p.add_argument(
        "--data", default=None, metavar="URI", help="data_uri of the run (gs://..., bq://...)"
    )
    p.add_argument("--label", default=None, help="label column of the run")
    p.add_argument(
        "--model-name", default=None, help="model_name of the run (pipeline default: churn-model)"
    )
    p.add_argument(
        "--run-name", default=None, help="run display name (default: pipeline name and time)"
    )
    p.add_argument(
        "--pipeline-name", default=TRAINING_PIPELINE, help="(kfp) name the pipeline is uploaded as"
    )
    p.add_argument(
        "--no-upload",
        action="store_true",
        help="(kfp) run the package directly (create_run_from_pipeline_package) without uploading it",
    )
    p.add_argument(
        "--job-id",
        default=None,
        help="(vertex) job id; a fixed id makes resubmitting the same job a no-op",
    )
    add_trigger_flags(p, experiment="kfp-tf-gate-training")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args) -> int:
    from components._shared.launch.package import (
        fetch_pipeline_file,
        parse_params,
        pipeline_parameters,
        pipeline_spec,
        timestamped,
    )
    from components._shared.names import check_model_name
    from pipelines.monitor import _data_uri, settings_from_args

    kfp, vertex = settings_from_args(args, args.target)
    user = parse_params(args.param)
    for name, value in (
        ("data_uri", args.data),
        ("label", args.label),
        ("model_name", args.model_name),
    ):
        if value is not None:
            user[name] = _data_uri(value) if name == "data_uri" else value
    if "model_name" in user:  # --model-name or --param model_name=...: refused before submitting
        check_model_name(user["model_name"])
    if args.target == "kfp":
        result = submit_kfp(kfp, user, args.run_name, args.pipeline_name, upload=not args.no_upload)
    else:
        template = vertex.template
        spec = (
            None
            if template.startswith(("gs://", "https://"))
            else pipeline_spec(fetch_pipeline_file(template))
        )
        arguments = pipeline_parameters(spec, {}, user)
        result = submit_vertex(
            vertex, arguments, args.run_name or timestamped(args.pipeline_name), args.job_id
        )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        state = "already exists" if result.get("status") == "exists" else "started"
        print(
            f"{result['target']} run {result.get('run_name')} ({result.get('run_id')}) {state}"
            + (f": {result['url']}" if result.get("url") else "")
        )
    return 0


def submit_kfp(settings, user_params: dict, name, pipeline_name: str, upload: bool = True) -> dict:
    """Upload (once per content) and run the compiled pipeline; or run an uploaded one by name."""
    import dataclasses

    from components._shared.launch.kfp import kfp_start_run, kfp_upload_and_run
    from components._shared.launch.package import (
        fetch_pipeline_file,
        is_pipeline_file,
        pipeline_parameters,
        pipeline_spec,
        timestamped,
    )

    name = name or timestamped(pipeline_name)
    spec = None
    if is_pipeline_file(settings.pipeline):
        settings = dataclasses.replace(settings, pipeline=fetch_pipeline_file(settings.pipeline))
        spec = pipeline_spec(settings.pipeline)
    arguments = pipeline_parameters(spec, {}, user_params)
    if not upload or not is_pipeline_file(settings.pipeline):
        return kfp_start_run(settings, name, arguments, dedupe=False)
    return kfp_upload_and_run(settings, name, arguments, pipeline_name)


def submit_vertex(settings, arguments: dict, display_name: str, job_id=None) -> dict:
    """Submit the compiled pipeline as a Vertex AI PipelineJob."""
    from components._shared.launch.vertex import vertex_start_run

    return vertex_start_run(
        settings, job_id, display_name, arguments, labels={"started-by": "kfp-tf-gate-submit"}
    )


if __name__ == "__main__":  # pragma: no cover
    from pipelines.__main__ import main

    sys.exit(main(["submit", *sys.argv[1:]]))
