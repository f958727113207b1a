"""The model card: one Markdown document per registered version, built from plain dicts.

:func:`model_card` is pure: the deploy step gathers what a run produced (ingest record, schema,
transform spec, training parameters, evaluation, promotion decision, export figures, lineage)
and the user's own fields, and gets back the text stored in three places with the same words:
the KFP ``model_card`` artifact, the MLflow model version's description (and its run's
``card/model_card.md``), and the Vertex AI model version's description.

Sections, in order: title (model, the registered version, its role), task, data, features,
hyperparameters, metrics (with the champion comparison), slices and fairness, TFLite, lineage,
then the user's fields: intended use, limitations, ethical considerations, owners. Every value
is written as a sentence or a table row, never as a Python ``dict``/``list`` text.

The user's fields come from a YAML or JSON file (:func:`load_fields`; a local path or any URI
:mod:`components._shared.object_store` reads, such as ``gs://``)::

    intended_use: Rank customers by churn risk for the retention team's monthly call list.
    limitations:
      - Trained on customers of the EU market only.
      - Not for decisions about individuals without human review.
    ethical_considerations: Region and age are inputs; slice gaps are checked before promotion.
    owners:
      - name: Retention analytics
        contact: retention-ml@example.com
"""

from __future__ import annotations

import datetime
import math
from typing import Optional

from components._shared.errors import ConfigError
from components._shared.text import plain

SECTIONS = ("Task", "Data", "Features", "Hyperparameters", "Metrics", "Slices and fairness", "TFLite",
            "Lineage", "Intended use", "Limitations", "Ethical considerations", "Owners")
USER_FIELDS = {  # file key -> section heading
    "intended_use": "Intended use",
    "limitations": "Limitations",
    "ethical_considerations": "Ethical considerations",
    "owners": "Owners",
}
# The registry's text field: MLflow's SQL stores declare the model version description VARCHAR(5000),
# which PostgreSQL, MySQL and SQL Server enforce and SQLite does not (see registry_limit).
REGISTRY_LIMIT = 5000
COMPACT_FEATURES = 30  # features named in the compact card
CARD_ARTIFACT = "card/model_card.md"  # where the full card sits in the version's run (see _shared.champion)

_NAMES = {"auc": "AUC", "pr_auc": "PR AUC", "log_loss": "log loss", "brier": "Brier score", "ece": "calibration error (ECE)",
          "f1": "F1", "max_auc_gap": "largest AUC gap between slices", "accuracy": "accuracy",
          "precision": "precision", "recall": "recall", "macro_f1": "macro F1", "weighted_f1": "weighted F1",
          "macro_auc": "macro AUC (one-vs-rest)", "rmse": "RMSE", "mae": "MAE", "r2": "R²", "mape": "MAPE",
          "min_demographic_parity_ratio": "smallest demographic parity ratio", "threshold": "decision threshold"}
_BINARY_METRICS = ("auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "ece",
                   "max_auc_gap", "min_demographic_parity_ratio", "threshold")


# --------------------------------------------------------------------------- user fields


def parse_fields(data, where: str = "the model card file") -> dict:
    """Check the user's fields (a mapping of :data:`USER_FIELDS` keys) and normalise them:
    strings stay strings, lists become lists of strings, owners may be names or
    ``{name, contact}`` mappings.

    Raises:
        ConfigError: Not a mapping, an unknown key, or a value of another shape.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping with keys {', '.join(USER_FIELDS)}, "
                          f"not a {type(data).__name__}")
    unknown = sorted(set(data) - set(USER_FIELDS))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}: use {', '.join(USER_FIELDS)}")
    out = {}
    for key, value in data.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, str):
            out[key] = value.strip()
        elif isinstance(value, list):
            out[key] = [_owner(v, where) if key == "owners" else _text(v, key, where) for v in value]
        else:
            raise ConfigError(f"{where}: {key} must be text or a list of texts, not a {type(value).__name__}")
    return out


def _text(value, key: str, where: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()
    raise ConfigError(f"{where}: every item of {key} must be text, got a {type(value).__name__}")


def _owner(value, where: str) -> str:
    if isinstance(value, dict):
        extra = sorted(set(value) - {"name", "contact"})
        if extra or not value.get("name"):
            raise ConfigError(f"{where}: an owner is a name or a mapping with 'name' (and optional 'contact'), "
                              f"got keys {', '.join(map(repr, sorted(value)))}")
        return f"{value['name']} ({value['contact']})" if value.get("contact") else str(value["name"])
    return _text(value, "owners", where)


def load_fields(uri: str) -> dict:
    """The user's fields from a YAML or JSON file (JSON is YAML); {} for an empty ``uri``.

    Raises:
        ConfigError: The file cannot be read or parsed, or its fields are not as documented.
    """
    if not uri:
        return {}
    import yaml

    try:
        if "://" in uri and not uri.startswith("file://"):
            from components._shared.object_store import filesystem

            fs, path = filesystem(uri)
            with fs.open(path, "r") as fh:
                text = fh.read()
        else:
            with open(uri.removeprefix("file://")) as fh:
                text = fh.read()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model card file {uri}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the model card file {uri} is neither YAML nor JSON: {exc}") from exc
    return parse_fields(data, f"the model card file {uri}")


# --------------------------------------------------------------------------- formatting


def _num(v, fmt: str = "{:.4f}") -> str:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return fmt.format(v)


def _cell(v) -> str:
    """A value for a table cell or sentence: text as is, numbers compactly, lists joined."""
    return plain(v, none="None").replace("|", "\\|").replace("\n", " ")


def _table(header: tuple, rows: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _days_to_date(days) -> str:
    try:
        return (datetime.date(1970, 1, 1) + datetime.timedelta(days=float(days))).isoformat()
    except (TypeError, ValueError, OverflowError):
        return "n/a"


# --------------------------------------------------------------------------- sections


def _role(alias: str, model_name: str) -> str:
    return {"champion": "champion: serves the model's traffic (alias `champion`)",
            "candidate": "candidate awaiting approval (alias `candidate`; promote it with "
                         f"`python -m pipelines approve --model-name {model_name}`)"}.get(alias, alias or "registered")


def approved(card: str, model_name: str, when: str) -> str:
    """``card`` (a candidate's, full or registry-sized) once ``approve`` made it champion: the title's
    role sentence says so; any other text is returned as it is."""
    return card.replace(_role("candidate", model_name),
                        f"{_role('champion', model_name)}, approved {when} after waiting as a candidate")


def _title(model_name: str, version: str, alias: str, pipeline_run: str) -> list:
    role = _role(alias, model_name)
    lines = [f"# Model card: {model_name} version {version}", "",
             f"Version {version} of the registered model `{model_name}`, {role}."]
    if pipeline_run:
        lines[-1] += f" Produced by pipeline run `{pipeline_run}`."
    return lines


def _task(task, ingest: dict) -> list:
    label = f"`{ingest.get('label', 'n/a')}`"
    if task.name == "multiclass":
        classes = ", ".join(f"`{c}`" for c in ingest.get("classes") or []) or "n/a"
        text = f"Multiclass classification of {label} into {len(ingest.get('classes') or [])} classes: {classes}."
    elif task.name == "regression":
        text = f"Regression of {label}; predictions are in the label's units."
    else:
        text = (f"Binary classification of {label}: the model outputs the probability of the positive value "
                f"`{ingest.get('positive_label', 'n/a')}`")
        text += f" (the other value is `{ingest['negative_label']}`)." if ingest.get("negative_label") else "."
    how = ingest.get("task_reason")
    return ["## Task", "", text + (f" How the task was chosen: {how}." if how else "")]


def _data(ingest: dict, schema: dict) -> list:
    rows = ingest.get("rows") or {}
    lines = ["## Data", "",
             f"Source `{ingest.get('source_uri', 'n/a')}`, content hash `{ingest.get('content_hash', 'n/a')}`.", ""]
    lines += _table(("split", "rows"), [(k, rows[k]) for k in ("train", "eval", "test") if k in rows]
                    + [("total", sum(v for v in rows.values() if isinstance(v, int)))])
    notes = []
    if ingest.get("split"):
        notes.append(f"Rows are split {ingest['split']}.")
    if ingest.get("dropped_missing_label"):
        notes.append(f"{ingest['dropped_missing_label']} rows without a label were dropped.")
    stamps = [(c, e) for c, e in ((schema or {}).get("columns") or {}).items() if e.get("kind") == "timestamp"]
    for col, e in stamps:
        if e.get("min") is not None:
            notes.append(f"Time range of `{col}` in the train split: {_days_to_date(e['min'])} to "
                         f"{_days_to_date(e['max'])}.")
    if not stamps:
        notes.append("The data has no timestamp column, so no time range is recorded.")
    return lines + ([""] + [" ".join(notes)] if notes else [])


def _features(spec: dict, compact: bool = False) -> list:
    if compact:
        names = [f"`{f['name']}` ({f.get('kind', 'numeric')})" for f in spec.get("numeric") or []]
        names += [f"`{f['name']}` (categorical)" for f in spec.get("categorical") or []]
        shown = ", ".join(names[:COMPACT_FEATURES])
        more = f" and {len(names) - COMPACT_FEATURES} more (the full card lists them)" if len(names) > COMPACT_FEATURES else ""
        return ["## Features", "", f"{len(names)} input features: {shown}{more}."]
    buckets = {b["name"]: len(b.get("boundaries") or []) + 1 for b in spec.get("buckets") or []}
    rows = []
    for f in spec.get("numeric") or []:
        steps = [f"missing -> median {f['fill']:.6g}" if isinstance(f.get("fill"), (int, float)) else "missing -> median"]
        if f.get("log"):
            steps.append("log1p")
        steps.append("standardised")
        if f["name"] in buckets:
            steps.append(f"also {buckets[f['name']]} quantile buckets (embedded)")
        rows.append((f"`{f['name']}`", f.get("kind", "numeric"), ", ".join(steps)))
    for f in spec.get("categorical") or []:
        rows.append((f"`{f['name']}`", "categorical",
                     f"vocabulary of {len(f.get('vocab') or [])} + out-of-vocabulary, embedded"))
    lines = ["## Features", "", f"{len(rows)} input features; the SavedModel applies these transforms itself "
             "(clients send raw values; timestamps become days since 1970-01-01).", ""] + _table(("feature", "kind", "transform"), rows)
    crosses = spec.get("crosses") or []
    if crosses:
        lines += ["", "Crosses: " + "; ".join(
            f"{' x '.join(c['columns'])} ({'hashed into ' if c.get('hashed') else ''}{c['size']} values)" for c in crosses)
            + "."]
    if spec.get("excluded"):
        lines += ["", "Not used as features: " + ", ".join(f"`{c}`" for c in spec["excluded"]) + "."]
    return lines


NOT_HYPERPARAMETERS = ("train_rows", "eval_rows", "features", "framework")  # train's bookkeeping params


def _hyperparameters(params: dict) -> list:
    lines = ["## Hyperparameters", ""]
    params = {k: v for k, v in params.items() if k not in NOT_HYPERPARAMETERS}
    if not params:
        return lines + ["Not recorded (train ran without an MLflow run, and the model artifact carries none)."]
    return lines + _table(("parameter", "value"), [(k, _param(v)) for k, v in sorted(params.items())])


def _param(v) -> str:
    """An MLflow param as written (a string): a logged sequence "(64, 32)" reads "64, 32"."""
    text = _cell(v)
    return text[1:-1] if text[:1] + text[-1:] in ("()", "[]") else text


def _metrics(task, evaluation: dict, decision: dict) -> list:
    m = evaluation.get("metrics") or {}
    keys = _BINARY_METRICS if task.name == "binary" else task.headline
    rows = [(_NAMES.get(k, k), _num(m.get(k))) for k in keys if _num(m.get(k)) != "n/a"]
    rows_note = f" ({m['rows']} rows)" if isinstance(m.get("rows"), int) else ""
    lines = ["## Metrics", "", f"On the test split{rows_note}; the primary metric is {_NAMES.get(task.primary, task.primary)} "
             f"({'higher' if task.higher_is_better else 'lower'} is better).", ""]
    lines += _table(("metric", "value"), rows)
    lines += ["", "### Champion comparison", ""]
    champion, comparison = decision.get("champion"), decision.get("comparison")
    if decision.get("champion_version") and champion:
        new, old = (decision.get("challenger") or m).get(task.primary), champion.get(task.primary)
        name = _NAMES.get(task.primary, task.primary)
        # compare's own words (decision.json's comparison_text); a decision without them gets the numbers
        lines.append((decision.get("comparison_text") or f"challenger {name} {_num(new)} vs champion {_num(old)} "
                      f"(version {decision['champion_version']}) on the same test rows") + ".")
        if comparison:
            low, high = _interval(comparison)
            lines.append(f"Paired bootstrap over {comparison.get('n_boot', 'n/a')} resamples of "
                         f"{comparison.get('rows', 'n/a')} test rows: 95% interval of the difference "
                         f"(challenger better when positive) [{_num(low, '{:+.4f}')}, {_num(high, '{:+.4f}')}].")
    elif decision.get("champion_version"):
        lines.append(f"Champion version {decision['champion_version']} was not compared on these rows.")
    else:
        lines.append("No champion was registered: the absolute gates alone decided.")
    reasons = decision.get("reasons") or []
    if reasons:
        lines += ["", "Promotion decision:", ""] + [f"- {r}" for r in reasons]
    return lines


def _interval(comparison: dict) -> tuple:
    if "improvement_low" in comparison:
        return comparison.get("improvement_low"), comparison.get("improvement_high")
    return comparison.get("ci_low"), comparison.get("ci_high")


def _slices(task, evaluation: dict, decision: dict, compact: bool = False) -> list:
    slices = evaluation.get("slices") or {}
    lines = ["## Slices and fairness", ""]
    if not slices:
        return lines + ["No slice column was evaluated (set `slice_columns`, or the model has no categorical feature)."]
    binary = task.name == "binary"
    key = "auc" if binary else ("accuracy" if task.name == "multiclass" else "rmse")
    gap_key = f"{key}_gap"
    for col, s in slices.items():
        if not isinstance(s, dict):
            continue
        parts = [f"{_NAMES.get(key, key)} gap {_num(s.get(gap_key))}"]
        if binary:
            parts.append(f"demographic parity ratio {_num(s.get('demographic_parity_ratio'))}")
        lines += [f"By `{col}`: " + ", ".join(parts) + ".", ""]
        if compact:
            continue
        header = ("value", "rows", _NAMES.get(key, key)) + (("positive rate", "predicted positive rate") if binary else ())
        rows = [(v, r.get("rows"), _num(r.get(key))) + ((_num(r.get("positive_rate"), "{:.3f}"),
                                                         _num(r.get("predicted_positive_rate"), "{:.3f}")) if binary else ())
                for v, r in (s.get("slices") or {}).items()]
        lines += _table(header, rows) + [""]
    gaps = [(s.get(gap_key), col) for col, s in slices.items() if isinstance(s, dict) and s.get(gap_key) is not None]
    if gaps:
        gap, col = max(gaps)
        gate = (decision.get("gates") or {}).get("max_auc_gap") if binary else None
        text = f"Largest {_NAMES.get(key, key)} gap: {_num(gap)} (by `{col}`)"
        if gate is None:
            text += "; no gap gate applies" + ("" if binary else f" to {task.name} models") + "."
        else:
            text += f"; the gate allows at most {_num(gate)}, so it " + ("passes." if gap <= gate else "fails.")
        lines.append(text)
    return lines


def _tflite(export: dict) -> list:
    lines = ["## TFLite", ""]
    if not export:
        return lines + ["No export figures were given to deploy (the export step's metrics)."]
    q = export.get("tflite_quantization")
    if not q:
        q = "none (float32 weights; float16 missed the parity bound)" if "tflite_float16_max_abs_diff" in export else "not recorded"
    rows = [("quantization", q),
            ("TFLite size", _bytes(export.get("tflite_bytes"))),
            ("SavedModel size", _bytes(export.get("saved_model_bytes"))),
            ("max abs difference TFLite vs SavedModel", _num(export.get("tflite_max_abs_diff"), "{:.2e}")),
            ("mean abs difference", _num(export.get("tflite_mean_abs_diff"), "{:.2e}")),
            ("rows compared", _num(export.get("parity_rows"), "{:.0f}")),
            ("single-row latency TFLite / SavedModel (ms)",
             f"{_num(export.get('tflite_latency_ms'), '{:.3f}')} / {_num(export.get('saved_model_latency_ms'), '{:.3f}')}")]
    if "tflite_float16_max_abs_diff" in export:
        rows.append(("float16 max abs difference (rejected)", _num(export["tflite_float16_max_abs_diff"], "{:.2e}")))
    if "tflite_class_agreement" in export:
        rows.append(("class agreement TFLite vs SavedModel", _num(export["tflite_class_agreement"], "{:.2%}")))
    return lines + ["Differences are in probabilities (classification) or label standard deviations (regression).",
                    ""] + _table(("figure", "value"), rows)


def _bytes(n) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "n/a"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _lineage(lineage: dict) -> list:
    run, url = lineage.get("training_run_id"), lineage.get("training_run_url")
    rows = [("training run (MLflow)", f"[{run}]({url})" if run and url else (f"`{run}`" if run else "not recorded")),
            ("pipeline run", f"`{lineage['pipeline_run']}`" if lineage.get("pipeline_run") else "not recorded"),
            ("image", f"`{lineage.get('image') or 'local'}`"),
            ("code version", f"kfp-tf-gate {lineage.get('code_version') or 'n/a'}"
             + (f" (git {lineage['git_sha']})" if lineage.get("git_sha") else "")),
            ("SavedModel", f"`{lineage['saved_model_uri']}`" if lineage.get("saved_model_uri") else "n/a")]
    if lineage.get("vertex_note"):
        rows.append(("Vertex AI", lineage["vertex_note"]))
    return ["## Lineage", ""] + _table(("what", "where"), rows)


def _user(fields: dict) -> list:
    lines = []
    missing = [h for k, h in USER_FIELDS.items() if not fields.get(k)]
    for key, heading in USER_FIELDS.items():
        lines += ["", f"## {heading}", ""]
        value = fields.get(key)
        if not value:
            lines.append("Not filled in.")
        elif isinstance(value, list):
            lines += [f"- {v}" for v in value]
        else:
            lines.append(value)
    if missing:
        lines += ["", f"_Not filled in: {', '.join(missing).lower()}. Write them in a YAML or JSON file "
                  "(keys " + ", ".join(USER_FIELDS) + ") passed as the pipeline parameter `model_card` "
                  "(`run --model-card FILE`; README \"Model card\")._"]
    return lines


# --------------------------------------------------------------------------- the card


def model_card(model_name: str, version: str, alias: str, *, ingest: dict, schema: Optional[dict] = None,
               spec: Optional[dict] = None, params: Optional[dict] = None, evaluation: Optional[dict] = None,
               decision: Optional[dict] = None, export: Optional[dict] = None, lineage: Optional[dict] = None,
               fields: Optional[dict] = None, compact: bool = False) -> str:
    """The card of one registered version (Markdown).

    Args:
        version: The registry's version number (MLflow).
        alias: ``champion`` or ``candidate`` (awaiting approval).
        ingest: Ingest's record (source, hash, rows per split, label, task, classes).
        schema: Validate's schema (timestamp columns give the time range).
        spec: The transform spec saved with the model (features and their transforms).
        params: Training hyperparameters, name -> value (the MLflow training run's params).
        evaluation, decision: Evaluate's and compare's results.
        export: Export's figures (quantization, sizes, TFLite vs SavedModel differences).
        lineage: ``training_run_id``, ``training_run_url``, ``pipeline_run``, ``image``,
            ``code_version``, ``git_sha``, ``saved_model_uri``, ``vertex_note``.
        fields: The user's fields (:func:`parse_fields`).
        compact: Features as one sentence and slices without their per-value tables (for a
            registry field with a length limit; see :func:`registry_text`).
    """
    from components._shared.task import task_of

    task = task_of(spec or ingest)
    evaluation, decision, lineage = evaluation or {}, decision or {}, lineage or {}
    parts = [_title(model_name, str(version), alias, lineage.get("pipeline_run", "")), _task(task, ingest),
             _data(ingest, schema or {}), _features(spec or {}, compact), _hyperparameters(params or {}),
             _metrics(task, evaluation, decision), _slices(task, evaluation, decision, compact), _tflite(export or {}),
             _lineage(lineage)]
    lines = []
    for part in parts:
        lines += part + [""]
    return "\n".join(lines[:-1] + _user(fields or {})).rstrip("\n") + "\n"


def registry_limit(tracking_uri: str) -> Optional[int]:
    """The description length the registry behind ``tracking_uri`` keeps: none for SQLite (it does
    not enforce VARCHAR lengths), :data:`REGISTRY_LIMIT` for any other store (a server's database is
    unknown from here)."""
    return None if (tracking_uri or "").startswith("sqlite:") else REGISTRY_LIMIT


def registry_text(card: str, compact: str = "", limit: Optional[int] = REGISTRY_LIMIT) -> str:
    """The card as a registry description: the whole card when it fits ``limit`` characters, else
    its ``compact`` rendering (:func:`model_card` with ``compact=True``) when that fits; otherwise
    the longest head that ends at a line, then a line naming where the full card is."""
    for text in (card, compact):
        if text and (limit is None or len(text) <= limit):
            return text
    card = compact or card
    note = f"\n\n_The card is longer than the registry's {limit} characters; the full card is the run artifact `{CARD_ARTIFACT}`._\n"
    head = card[: limit - len(note)]
    return head[: head.rfind("\n")] + note
