"""Ingest from BigQuery: BigQuery splits, filters and counts; rows stream out through the Storage Read API.

For ``bq://project.dataset.table`` and ``bq://project?query=...``, no step holds the table:

1. One statistics query (row count, missing labels, the label's distinct values, each candidate id
   column's distinct and missing counts, an order-free fingerprint of the rows) decides the task,
   the positive label and the id column with the same rules as the file path.
2. One ``CREATE TABLE ... AS SELECT`` writes the labelled rows with their split code
   (:func:`components._shared.split.sql_split_code`, the file path's hash of the id column) to a
   temporary table that expires after a day (and is dropped at the end).
3. A query over that table counts rows and label values per split, so an empty or one-label
   split fails before any row is read.
4. Each split is read through the BigQuery Storage Read API: a read session whose row restriction
   selects the split, several streams read in parallel threads, written as they arrive to sharded
   Parquet (:class:`components._shared.io.ShardWriter`) with the label encoded as the file path does.

Without an id column a row's split is a hash of its values (``TO_JSON_STRING``): BigQuery has no
row order, so the file path's seeded split by row position does not exist here.

``BIGQUERY_EMULATOR_HOST`` (REST, ``http://host:port``) and ``BIGQUERY_STORAGE_EMULATOR_HOST``
(gRPC, ``host:port``) point both clients at a local stand-in with anonymous credentials.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
import uuid
from typing import Optional

from components._shared import io
from components._shared import split as splits
from components._shared.errors import DataError
from components._shared.params import PARAMS

logger = logging.getLogger(__name__)

SPLIT_COLUMN = "_ingest_split"  # the split code column of the temporary table
TEMP_DATASET = "kfp_tf_gate_tmp"  # dataset of the temporary tables, in the billing project
TEMP_HOURS = 24  # a temporary table expires after this, should the ingest pod die before dropping it
MAX_STREAMS = 8  # read streams asked for per split (BigQuery may give fewer)
LABEL_VALUES = 1000  # the label's distinct values fetched (task inference needs at most 21)
HEAVY_TAIL_SAMPLE = 200_000  # regression: labels of the train split the heavy-tail check looks at


@dataclasses.dataclass
class Source:
    uri: str
    project: str
    sql: str  # what FROM takes: `p.d.t` or (query)
    table: Optional[str] = None  # p.d.t for a table source


def parse_uri(uri: str) -> Source:
    """``bq://project.dataset.table`` or ``bq://project?query=...`` -> :class:`Source`."""
    from urllib.parse import parse_qs, unquote, urlparse

    parsed = urlparse(uri)
    query = parse_qs(parsed.query).get("query", [None])[0]
    target = parsed.netloc + parsed.path
    if query:
        if not target:
            raise DataError(f"{uri} names no project: use bq://project?query=...")
        return Source(uri, target, f"({unquote(query)})")
    parts = target.split(".")
    if len(parts) != 3 or not all(parts):
        raise DataError(f"{uri} is not bq://project.dataset.table or bq://project?query=...")
    return Source(uri, parts[0], f"`{target}`", table=target)


def clients(project: str):
    """(google.cloud.bigquery.Client, BigQueryReadClient) for ``project``, or for the stand-in the
    ``BIGQUERY_EMULATOR_HOST`` / ``BIGQUERY_STORAGE_EMULATOR_HOST`` variables name."""
    try:
        from google.cloud import bigquery
        from google.cloud.bigquery_storage_v1 import BigQueryReadClient
    except ImportError as exc:  # pragma: no cover - depends on image
        raise DataError(f"reading bq:// needs google-cloud-bigquery and google-cloud-bigquery-storage: {exc}") from exc
    rest, rpc = os.environ.get("BIGQUERY_EMULATOR_HOST"), os.environ.get("BIGQUERY_STORAGE_EMULATOR_HOST")
    if not (rest or rpc):
        return bigquery.Client(project=project), BigQueryReadClient()
    import grpc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    if not (rest and rpc):
        raise DataError("set both BIGQUERY_EMULATOR_HOST and BIGQUERY_STORAGE_EMULATOR_HOST to use a BigQuery stand-in")
    endpoint = rest if "://" in rest else f"http://{rest}"
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=endpoint))
    # no message size limit, as the client's own channel to BigQuery (an Arrow batch can exceed gRPC's 4 MB default)
    channel = grpc.insecure_channel(rpc, options=[("grpc.max_send_message_length", -1),
                                                  ("grpc.max_receive_message_length", -1)])
    reader = BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    return client, reader


def _rows(client, sql: str) -> list[dict]:
    return [dict(r.items()) for r in client.query(sql).result()]


def _schema(client, source: Source) -> tuple[list, Optional[str]]:
    """([(name, BigQuery type)] of the source's columns, the location its data is in)."""
    if source.table:
        fields = client.get_table(source.table).schema
        p, d, _ = source.table.split(".")
        location = client.get_dataset(f"{p}.{d}").location
    else:  # a query runs where the tables it reads are: its job's location
        job = client.query(f"SELECT * FROM {source.sql} AS t LIMIT 0")
        fields = job.result().schema
        location = job.location
    return [(f.name, f.field_type.upper()) for f in fields], location


INTEGER_TYPES = ("INTEGER", "INT64")
TEXT_TYPES = ("STRING",)


def _statistics(client, source: Source, label: str, candidates: list) -> dict:
    """One scan: rows, missing labels, distinct labels, candidates' distinct and missing counts, fingerprint."""
    q = splits.quote_column
    parts = ["COUNT(*) AS n_rows", f"COUNTIF({q(label)} IS NULL) AS missing", f"COUNT(DISTINCT {q(label)}) AS labels",
             f"BIT_XOR(CAST(CONCAT('0x', SUBSTR(TO_HEX(SHA256(TO_JSON_STRING(t))), 1, {splits.HEX_DIGITS})) AS INT64))"
             " AS fingerprint"]
    for i, name in enumerate(candidates):
        parts += [f"COUNT(DISTINCT {q(name)}) AS distinct_{i}", f"COUNTIF({q(name)} IS NULL) AS null_{i}"]
    return _rows(client, f"SELECT {', '.join(parts)} FROM {source.sql} AS t")[0]


def _detect_id(client, source: Source, types: dict, label: str, stats: dict, candidates: list):
    """The file path's id rule (components/_shared/schema.py) on BigQuery's counts: (name, reason) or (None, None)."""
    import pandas as pd

    from components._shared.schema import is_id_candidate, pick_id_column

    n = stats["n_rows"]
    found = []
    for i, name in enumerate(candidates):
        if stats[f"null_{i}"] or n == 0:
            continue
        is_int = types[name] in INTEGER_TYPES
        sample = None
        if not is_int:
            values = _rows(client, f"SELECT {splits.quote_column(name)} AS v FROM {source.sql} AS t LIMIT 2000")
            sample = pd.Series([r["v"] for r in values], dtype=object)
        if is_id_candidate(name, is_int, n, stats[f"distinct_{i}"], sample):
            found.append((not is_int, i, name))
    return pick_id_column(found)


def _choose_id(client, source, types, label, id_column, stats, candidates):
    """(id column, "given" | "detected" | None, how rows are split, warning or None)."""
    from components.ingest.result import NO_ID

    given = (id_column or "").strip()
    name, source_kind = None, None
    if given and given.lower() != NO_ID:
        if given not in types:
            raise DataError(f"the id column {given!r} is not in {source.uri} (columns: {list(types)[:20]})")
        name, source_kind, how = given, "given", f"by a hash of the given id column {given!r}"
    elif not given:
        found, reason = _detect_id(client, source, types, label, stats, candidates)
        if found:
            name, source_kind = found, "detected"
            how = (f"by a hash of the id column {found!r}, detected ({reason}); "
                   "set id_column to choose another, or 'none' to split by each row's values")
    if name:
        if types[name] not in INTEGER_TYPES + TEXT_TYPES + ("BOOL", "BOOLEAN", "DATE"):
            raise DataError(f"the id column {name!r} of {source.uri} is {types[name]}; use an INTEGER or STRING "
                            "column, whose text is the same in BigQuery and in files")
        return name, source_kind, how, None
    how = ("by a hash of each row's values, as id_column is 'none'" if given else
           "by a hash of each row's values: no id column was given or found")
    warning = (f"rows are split {how}; a row whose values change can move to another split, so the champion "
               "comparison may favour the champion: set id_column to a column that identifies a row")
    return None, None, how, warning


def _decide_task(client, source, label, types, task, positive_label, stats):
    """(task, reason, positive, negative, {raw label value: encoded value} or None for regression)."""
    import pandas as pd

    from components._shared.labels import encode_label
    from components._shared.task import BINARY, MULTICLASS, class_key, infer_task

    q = splits.quote_column(label)
    values = [r["v"] for r in _rows(client, f"SELECT {q} AS v, COUNT(*) AS n FROM {source.sql} AS t "
                                            f"WHERE {q} IS NOT NULL GROUP BY v ORDER BY n DESC LIMIT {LABEL_VALUES}")]
    series = pd.Series(values)
    task, reason = infer_task(series, label, task)
    if task == BINARY:
        _, pos, neg = encode_label(series, label, positive_label)
        return task, reason, pos, neg, {v: int(class_key(v) == pos) for v in values}
    if task == MULTICLASS:
        if stats["labels"] > len(values):
            raise DataError(f"the label {label!r} of {source.uri} has {stats['labels']} values, more than the "
                            f"{LABEL_VALUES} classes multiclass ingest from BigQuery takes")
        return task, reason, None, None, {v: class_key(v) for v in values}
    if types[label] not in INTEGER_TYPES + ("FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC"):
        raise DataError(f"the regression label {label!r} of {source.uri} is {types[label]}, not a number")
    return task, reason, None, None, None


def _temp_table(client, location: Optional[str]) -> str:
    """A new table name in the temporary dataset, created in ``location`` (the source's) if missing."""
    from google.cloud import bigquery

    dataset = bigquery.Dataset(f"{client.project}.{TEMP_DATASET}")
    if location:
        dataset.location = location
    dataset.default_table_expiration_ms = TEMP_HOURS * 3600 * 1000
    client.create_dataset(dataset, exists_ok=True)
    return f"{client.project}.{TEMP_DATASET}.ingest_{uuid.uuid4().hex[:16]}"


def split_sql(source: Source, label: str, id_column: Optional[str], eval_fraction: float, test_fraction: float,
              destination: str) -> str:
    """The statement that writes the labelled rows with their split code to ``destination``."""
    if id_column:
        code = splits.sql_split_code(id_column, eval_fraction, test_fraction)
    else:
        code = splits.sql_split_code_of_text("TO_JSON_STRING(t)", eval_fraction, test_fraction)
    return (f"CREATE TABLE `{destination}`\n"
            f"OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {TEMP_HOURS} HOUR)) AS\n"
            f"SELECT t.*, {code} AS {SPLIT_COLUMN}\nFROM {source.sql} AS t\n"
            f"WHERE {splits.quote_column(label)} IS NOT NULL")


def _split_counts(client, table: str, label: str, by_value: bool) -> dict:
    """{code: {"rows": n, "labels": distinct, "values": {raw value: n} (classification)}}."""
    q = splits.quote_column(label)
    out = {code: {"rows": 0, "labels": 0, "values": {}} for _, code in splits.SPLITS}
    if by_value:
        for r in _rows(client, f"SELECT {SPLIT_COLUMN} AS s, {q} AS v, COUNT(*) AS n FROM `{table}` GROUP BY s, v"):
            entry = out[r["s"]]
            entry["rows"] += r["n"]
            entry["labels"] += 1
            entry["values"][r["v"]] = r["n"]
    else:
        for r in _rows(client, f"SELECT {SPLIT_COLUMN} AS s, COUNT(*) AS n, COUNT(DISTINCT {q}) AS d "
                               f"FROM `{table}` GROUP BY s"):
            out[r["s"]].update(rows=r["n"], labels=r["d"])
    return out


def read_split(reader, project: str, table: str, code: int, columns: list, max_streams: int = MAX_STREAMS):
    """Yield the split's rows as pyarrow RecordBatches: one read session (row restriction on the split
    code, the columns projected), its streams read in parallel threads. Returns the session first
    (``next`` of the generator), then batches in arrival order."""
    from google.cloud.bigquery_storage_v1 import types

    p, d, t = table.split(".")
    session = reader.create_read_session(
        parent=f"projects/{project}",
        read_session=types.ReadSession(
            table=f"projects/{p}/datasets/{d}/tables/{t}", data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(selected_fields=columns,
                                                            row_restriction=f"{SPLIT_COLUMN} = {code}")),
        max_stream_count=max_streams)
    yield session
    if not session.streams:
        return
    batches: queue.Queue = queue.Queue(maxsize=2 * len(session.streams))
    done = object()
    stop = threading.Event()

    import pyarrow as pa

    schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))

    def pump(stream_name: str) -> None:
        try:
            for response in reader.read_rows(stream_name):  # ReadRowsStream resumes after a dropped connection
                if stop.is_set():
                    return
                data = response.arrow_record_batch.serialized_record_batch
                if data:
                    batches.put(pa.ipc.read_record_batch(pa.py_buffer(data), schema))
        except BaseException as exc:  # handed to the consumer, which raises it
            batches.put(exc)
        finally:
            batches.put(done)

    threads = [threading.Thread(target=pump, args=(s.name,), daemon=True, name=f"bq-read-{i}")
               for i, s in enumerate(session.streams)]
    for th in threads:
        th.start()
    try:
        running = len(threads)
        while running:
            item = batches.get()
            if item is done:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        while any(th.is_alive() for th in threads):  # unblock producers waiting on a full queue
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass


def _encode(batch, label: str, task: str, mapping: Optional[dict]):
    """The batch with its label encoded as the file path writes it (binary int8, multiclass string, regression float64)."""
    import pyarrow as pa

    from components._shared.task import BINARY, MULTICLASS, REGRESSION, regression_values

    i = batch.schema.get_field_index(label)
    col = batch.column(i)
    if task == REGRESSION:
        new = pa.array(regression_values(col.to_pandas(), label), type=pa.float64())
    else:
        encoded = col.dictionary_encode()
        keys = [mapping.get(v) for v in encoded.dictionary.to_pylist()]
        if task == BINARY:
            new = pa.array(keys, type=pa.int8()).take(encoded.indices)
        elif task == MULTICLASS:
            new = pa.array(keys, type=pa.string()).take(encoded.indices)
        else:  # pragma: no cover - the task table has three tasks
            raise DataError(f"unknown task {task!r}")
    return batch.set_column(i, label, new)


def ingest_bigquery(data_uri: str, label: str, train_path: str, eval_path: str, test_path: str,
                    id_column: Optional[str] = None, positive_label: Optional[str] = None,
                    eval_fraction: float = PARAMS.eval_fraction, test_fraction: float = PARAMS.test_fraction,
                    seed: int = PARAMS.seed, min_rows: int = PARAMS.min_rows, task: str = PARAMS.task,
                    max_streams: int = MAX_STREAMS):
    """Ingest a BigQuery table or query into three folders of Parquet shards (see the module docstring).

    ``seed`` is unused: without an id column BigQuery splits by a hash of each row's values.

    Returns:
        components.ingest.result.IngestResult, with ``read_sessions`` (not saved in ingest_info): per split,
        the session's stream count, row restriction and read seconds; ``sql``: seconds of the queries.

    Raises:
        DataError: Bad URI, missing table or column, no credentials, unusable label, an empty split.
    """
    import google.api_core.exceptions as gexc
    import google.auth.exceptions

    try:
        return _ingest(data_uri, label, train_path, eval_path, test_path, id_column, positive_label,
                       eval_fraction, test_fraction, min_rows, task, max_streams)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise DataError(f"cannot read {data_uri}: no Google Cloud credentials found "
                        "(set GOOGLE_APPLICATION_CREDENTIALS or run on a service account)") from exc
    except gexc.NotFound as exc:
        raise DataError(f"cannot read {data_uri}: {getattr(exc, 'message', exc)}") from exc
    except (gexc.BadRequest, gexc.Forbidden) as exc:
        raise DataError(f"BigQuery refused a request for {data_uri}: {getattr(exc, 'message', exc)}") from exc


def _ingest(data_uri, label, train_path, eval_path, test_path, id_column, positive_label, eval_fraction,
            test_fraction, min_rows, task, max_streams):
    import hashlib

    import numpy as np

    from components._shared.task import REGRESSION, heavy_tail_warning
    from components.ingest.result import IngestResult

    if not label:
        raise DataError("no label column was given (set --label)")
    splits.check_fractions(eval_fraction, test_fraction)
    source = parse_uri(data_uri)
    client, reader = clients(source.project)
    sql_started = time.perf_counter()
    schema, location = _schema(client, source)
    types = dict(schema)
    names = [n for n, _ in schema]
    if label not in types:
        raise DataError(f"the label column {label!r} is not in the data {data_uri} (columns: {', '.join(names[:20])})")
    if len(names) < 2:
        raise DataError(f"the data {data_uri} has only the label column; there are no features")
    if SPLIT_COLUMN in types:
        raise DataError(f"the data {data_uri} has a column named {SPLIT_COLUMN!r}, which ingest uses; rename it")
    from components._shared.schema import id_like_name

    candidates = [n for n, t in schema if n != label and id_like_name(n) and t in INTEGER_TYPES + TEXT_TYPES]
    stats = _statistics(client, source, label, candidates)
    if stats["n_rows"] == 0:
        raise DataError(f"the data {data_uri} has no rows")
    dropped = int(stats["missing"])
    labelled = int(stats["n_rows"]) - dropped
    if dropped:
        logger.warning("dropping %d rows whose label %r is missing (in BigQuery)", dropped, label)
    if labelled < min_rows:
        raise DataError(f"the data {data_uri} has {labelled} labelled rows; at least {min_rows} are needed")
    task, task_reason, pos, neg, mapping = _decide_task(client, source, label, types, task, positive_label, stats)
    logger.info("%s", task_reason)
    warnings = []
    id_name, id_source, how, no_id = _choose_id(client, source, types, label, id_column, stats, candidates)
    if no_id:
        warnings.append(no_id)
        logger.warning("%s", no_id)
    else:
        logger.info("rows are split %s", how)
    fingerprint = stats["fingerprint"] if stats["fingerprint"] is not None else 0
    digest = hashlib.sha256(f"bigquery:{schema}:{labelled}:{fingerprint & (2**64 - 1):016x}".encode()).hexdigest()

    temp = _temp_table(client, location)
    statement = split_sql(source, label, id_name, eval_fraction, test_fraction, temp)
    logger.info("splitting in BigQuery into %s", temp)
    client.query(statement).result()
    try:
        counts = _split_counts(client, temp, label, by_value=task != REGRESSION)
        for name, code in splits.SPLITS:
            c = counts[code]
            if c["rows"] == 0:
                if id_name:
                    distinct = stats[f"distinct_{candidates.index(id_name)}"] if id_name in candidates else None
                    if distinct is not None and distinct < stats["n_rows"]:
                        raise DataError(
                            f"the {name} split of {data_uri} is empty: rows are split by the id column {id_name!r}, "
                            f"which has {distinct} distinct value{'s' if distinct != 1 else ''} in {stats['n_rows']} rows")
                raise DataError(f"the {name} split of {data_uri} is empty ({labelled} rows in all); use more data")
            if name != "eval" and task != REGRESSION and c["labels"] < 2:
                raise DataError(f"the {name} split of {data_uri} has only one label value; use more data")
        classes = None
        if task == "multiclass":
            from components.ingest.result import class_warnings

            keyed = {code: {mapping[v] for v in counts[code]["values"]} for _, code in splits.SPLITS}
            classes = class_warnings(keyed, warnings)
        rows, sessions, tail = {}, {"sql": {"seconds": round(time.perf_counter() - sql_started, 3)}}, []
        for (name, code), path in zip(splits.SPLITS, (train_path, eval_path, test_path), strict=True):
            started = time.perf_counter()
            batches = read_split(reader, client.project, temp, code, names, max_streams)
            session = next(batches)
            sessions[name] = {"streams": len(session.streams), "row_restriction": session.read_options.row_restriction}
            with io.ShardWriter(path) as out:
                for batch in batches:
                    batch = batch.select(names) if batch.schema.names != names else batch
                    batch = _encode(batch, label, task, mapping)
                    if task == REGRESSION and name == "train" and sum(map(len, tail)) < HEAVY_TAIL_SAMPLE:
                        tail.append(batch.column(label).to_numpy())
                    out.write(batch)
            rows[name] = out.rows
            sessions[name]["seconds"] = round(time.perf_counter() - started, 3)
            if out.rows != counts[code]["rows"]:
                raise DataError(f"the {name} split of {data_uri} read {out.rows} rows through the Storage Read API "
                                f"but BigQuery counted {counts[code]['rows']}")
            logger.info("read the %s split: %d rows in %d stream(s)", name, out.rows, len(session.streams))
    finally:
        client.delete_table(temp, not_found_ok=True)
    if task == REGRESSION and tail:
        heavy = heavy_tail_warning(np.concatenate(tail)[:HEAVY_TAIL_SAMPLE], label)
        if heavy:
            warnings.append(heavy)
            logger.warning("%s", heavy)
    logger.info("ingested %s: rows %s, %s, read sessions %s", data_uri, rows, task, sessions)
    result = IngestResult(source_uri=data_uri, label=label, positive_label=pos, negative_label=neg, rows=rows,
                          columns=names, content_hash=digest, dropped_missing_label=dropped, id_column=id_name,
                          id_column_source=id_source, split=how, warnings=warnings, task=task,
                          task_reason=task_reason, classes=classes)
    result.read_sessions = sessions  # not a dataclass field: for logs and tests, not ingest_info
    return result
