"""``python -m pipelines rehearse``: the same data options as ``run``, plus the rehearsal's own."""

from __future__ import annotations

import argparse
import glob
import json
import os


def add_parser(sub) -> None:
    from pipelines.__main__ import _add_run

    scratch = argparse.ArgumentParser(add_help=False).add_subparsers()
    _add_run(scratch)
    run_parser = scratch.choices["run"]
    p = sub.add_parser(
        "rehearse", parents=[run_parser], conflict_handler="resolve",
        help="execute compiled/<target>/training.yaml as the cluster would (isolated pods, GCS and "
             "MLflow-server stand-ins, platform spec, retries)")
    p.add_argument("--target", choices=("kubeflow", "vertex"), required=True)
    p.add_argument("--pipeline-file", default=None, help="compiled YAML to run (default: compiled/<target>/training.yaml)")
    p.add_argument("--serving-base", default=None,
                   help="serving_base_dir of the run: a gs:// URI, a PVC mount path of the spec, or a "
                        "folder (default: the deploy pod's PVC mount, else gs://<emulated bucket>/serving)")
    p.add_argument("--preempt", action="append", default=[], metavar="TASK",
                   help="kill this task's first attempt mid-epoch (e.g. train); its retryPolicy decides the rest")
    p.add_argument("--backoff-scale", type=float, default=1.0,
                   help="factor on the retry back-offs of the compiled retryPolicy (default 1: as compiled)")
    p.add_argument("--keep-sandboxes", action="store_true", help="keep every task attempt's sandbox")
    # --pipeline prediction: pipelines/rehearsal/prediction.py (--data, --runs-dir, --model-name shared)
    p.add_argument("--pipeline", choices=("training", "prediction"), default="training",
                   help="compiled pipeline to rehearse (prediction: score --data with the champion of an "
                        "earlier training rehearsal on the same --runs-dir)")
    p.add_argument("--out", default=None,
                   help="prediction: output_uri (default gs://<emulated bucket>/predictions/<run>)")
    p.add_argument("--version", default="", help="prediction: registered version to score with")
    p.add_argument("--alias", default="", help="prediction: registry alias to score with (default champion)")
    p.set_defaults(func=cmd_rehearse)


def rehearsed_model_name(runs_dir: str) -> str:
    """The model of the newest training rehearsal on ``runs_dir`` (what a prediction rehearsal scores
    with when --model-name is not given), else the parameter table's default."""
    from components._shared.params import PARAMS

    summaries = glob.glob(os.path.join(os.path.abspath(runs_dir), "run-*", "summary.json"))
    for path in sorted(summaries, key=os.path.getmtime, reverse=True):
        with open(path) as fh:
            summary = json.load(fh)
        if "rehearsal" in summary and summary.get("model_name"):
            return summary["model_name"]
    return PARAMS.model_name


def cmd_rehearse(args) -> int:
    from pipelines.__main__ import model_name_of_run, run_arguments
    from pipelines.local import format_summary
    from pipelines.rehearsal import prediction
    from pipelines.rehearsal.runner import rehearse

    if args.pipeline == "prediction":
        args.model_name = args.model_name or rehearsed_model_name(args.runs_dir)
        return prediction.cmd(args)
    data, label, params = run_arguments(args)
    summary = rehearse(args.target, data, label, runs_dir=args.runs_dir,
                       model_name=model_name_of_run(args, data, params),
                       params=params, preempt=args.preempt, serving_base=args.serving_base,
                       backoff_scale=args.backoff_scale, keep_sandboxes=args.keep_sandboxes,
                       pipeline_file=args.pipeline_file, quiet=not args.verbose,
                       progress_fd=None if args.quiet else 2 if args.json else 1)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        facts = summary["rehearsal"]
        for task in facts["tasks"]:
            if task.get("left_in_workdir"):
                print(f"  warning    {task['task']} left files in its pod's working directory, which a cluster "
                      f"discards: {', '.join(task['left_in_workdir'][:3])}{' ...' if len(task['left_in_workdir']) > 3 else ''}")
        print(f"  rehearsed  {facts['pipeline_file']} (sha256 {facts['pipeline_sha256'][:12]}) as {args.target}; "
              f"pipeline root {facts['pipeline_root']}; details {os.path.join(summary['run_dir'], 'rehearsal.json')}")
    return 0
