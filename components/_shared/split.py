"""The one definition of how rows are split into train, eval and test, in Python and in BigQuery SQL.

With an id column, a row's split is a function of its id alone, so a record never moves between
splits as the table grows, and BigQuery computes the same assignment in SQL as this module does
on a file:

    bucket = first 15 hex digits of SHA-256(id as text), as an integer, modulo 1,000,000
    split  = train if bucket < cut_eval, eval if bucket < cut_test, test otherwise

where ``cut_eval = round((1 - eval_fraction - test_fraction) * 1e6)`` and
``cut_test = round((1 - test_fraction) * 1e6)``. SHA-256 is in hashlib and in BigQuery
(``SHA256`` returns BYTES, ``TO_HEX`` gives lowercase hex; ``SUBSTR``, ``CAST('0x..' AS INT64)``,
``MOD``). 15 hex digits (60 bits) always fit a positive INT64: BigQuery refuses to cast
``'0x8000000000000000'`` and above to INT64 (https://blog.0101010.com/converting-hex-strings-to-int64-with-big-query/;
TO_HEX(SHA256(...)): https://sqlpey.com/question/google-bigquery-mastering-bigquery-sha256-function/). "The id as text" is Arrow's cast to string, which for integer, string, bool
and date ids is BigQuery's ``CAST(id AS STRING)``; a missing id is the empty string on both sides.

Without an id column, rows are split by position with a seeded uniform draw; :class:`Splitter`
continues the same random stream from batch to batch, so how the rows are batched does not change
the split.

Each rule has a name (:data:`RULE`, :data:`POSITION_RULE`, :data:`ROW_HASH_RULE`); :func:`rule_of`
gives the one a run used, with what it depends on (the id column, or the seed). Ingest records it
(``split_rule`` in ``ingest_info``), train in the model's lineage, and compare warns when the champion
was trained on splits made by another rule: then some of today's test rows may be rows it trained on.
A change to how a rule assigns rows must come with a new name.
"""

from __future__ import annotations

from typing import Optional

from components._shared.errors import DataError

BUCKETS = 1_000_000  # a row's bucket is in [0, BUCKETS); fractions are honoured to 1e-6
HEX_DIGITS = 15  # 60 bits of the SHA-256 digest: the largest whole number of hex digits a positive INT64 holds
SPLITS = (("train", 0), ("eval", 1), ("test", 2))  # split name and its code in an assignment array
# The split rules by name; a new version of a rule gets a new name (v1 of the id rule hashed otherwise).
RULE = "sha256-id-v2"  # by id: SHA-256 of the id's text, 15 hex digits, mod BUCKETS (files and BigQuery alike)
POSITION_RULE = "seeded-position-v1"  # files without an id: numpy default_rng(seed) draws by row position
ROW_HASH_RULE = "sha256-row-json-v1"  # bq:// without an id: the id rule applied to TO_JSON_STRING(row)


def rule_of(id_column: Optional[str], seed: int, *, eval_fraction: float, test_fraction: float,
            bigquery: bool = False) -> str:
    """The split rule a run used, as ingest records it: the rule's name and what the assignment depends on.

    Two runs with the same value put a row with the same values in the same split; e.g.
    ``sha256-id-v2:id=customer_id,eval=0.15,test=0.15`` or ``seeded-position-v1:seed=42,eval=0.15,test=0.15``
    (other fractions move the buckets' cuts, so rows can change splits under the same hash).
    """
    fractions = f"eval={float(eval_fraction):g},test={float(test_fraction):g}"
    if id_column:
        return f"{RULE}:id={id_column},{fractions}"
    return f"{ROW_HASH_RULE}:{fractions}" if bigquery else f"{POSITION_RULE}:seed={int(seed)},{fractions}"


def check_fractions(eval_fraction: float, test_fraction: float) -> None:
    """Raise DataError unless both fractions are in (0, 1) and sum to less than 1."""
    if not (0 < eval_fraction < 1 and 0 < test_fraction < 1 and eval_fraction + test_fraction < 1):
        raise DataError(
            f"eval_fraction ({eval_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and sum to less than 1"
        )


def cuts(eval_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(first eval bucket, first test bucket)."""
    check_fractions(eval_fraction, test_fraction)
    return round((1.0 - eval_fraction - test_fraction) * BUCKETS), round((1.0 - test_fraction) * BUCKETS)


def id_text(ids):
    """The ids as the text that is hashed: a pyarrow string array, missing ids as ''.

    ``ids``: a pyarrow Array or ChunkedArray, a pandas Series or a numpy array.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pa.array(ids, from_pandas=True)
    if pa.types.is_dictionary(ids.type):
        ids = ids.cast(ids.type.value_type)
    if pa.types.is_floating(ids.type):  # ids read as float (integers with a gap): the integer's text
        whole = pc.equal(ids, pc.floor(ids))
        if pc.all(pc.fill_null(whole, True)).as_py():
            ids = pc.cast(ids, pa.int64())
    return pc.fill_null(pc.cast(ids, pa.string()), "")


def id_buckets(ids):
    """Each id's bucket in [0, BUCKETS) as an int64 numpy array (see the module docstring)."""
    import hashlib

    import numpy as np

    text = id_text(ids)
    sha = hashlib.sha256
    digests = b"".join([sha(value.encode("utf-8")).digest()[:8] for value in text.to_pylist()])
    top60 = np.frombuffer(digests, dtype=">u8") >> np.uint64(64 - 4 * HEX_DIGITS)
    return (top60 % np.uint64(BUCKETS)).astype(np.int64)


def codes_from_buckets(buckets, eval_fraction: float, test_fraction: float):
    """int8 split codes (0 train, 1 eval, 2 test) of bucket numbers."""
    import numpy as np

    cut_eval, cut_test = cuts(eval_fraction, test_fraction)
    out = np.zeros(len(buckets), dtype=np.int8)
    out[buckets >= cut_eval] = 1
    out[buckets >= cut_test] = 2
    return out


def assign_by_id(ids, eval_fraction: float, test_fraction: float):
    """int8 split codes of ids (0 train, 1 eval, 2 test); the same as :func:`sql_split_code` in BigQuery."""
    check_fractions(eval_fraction, test_fraction)
    return codes_from_buckets(id_buckets(ids), eval_fraction, test_fraction)


def quote_column(name: str) -> str:
    """A column name as a BigQuery identifier (backquoted)."""
    if "`" in name or "\\" in name:
        raise DataError(f"the column name {name!r} cannot be used in BigQuery SQL (it holds a backquote or backslash)")
    return f"`{name}`"


def sql_bucket(column: str) -> str:
    """BigQuery SQL for a row's bucket from the id column ``column`` (a column name, quoted here)."""
    return sql_bucket_of_text(f"COALESCE(CAST({quote_column(column)} AS STRING), '')")


def sql_bucket_of_text(text_sql: str) -> str:
    """BigQuery SQL for the bucket of a STRING expression (the same rule as :func:`id_buckets` on its values)."""
    return f"MOD(CAST(CONCAT('0x', SUBSTR(TO_HEX(SHA256({text_sql})), 1, {HEX_DIGITS})) AS INT64), {BUCKETS})"


def sql_split_code(column: str, eval_fraction: float, test_fraction: float) -> str:
    """BigQuery SQL for a row's split code (0 train, 1 eval, 2 test), as :func:`assign_by_id` computes it."""
    return _sql_case(sql_bucket(column), eval_fraction, test_fraction)


def sql_split_code_of_text(text_sql: str, eval_fraction: float, test_fraction: float) -> str:
    """BigQuery SQL for the split code of a STRING expression (e.g. ``TO_JSON_STRING(t)``, a row's values)."""
    return _sql_case(sql_bucket_of_text(text_sql), eval_fraction, test_fraction)


def _sql_case(bucket: str, eval_fraction: float, test_fraction: float) -> str:
    cut_eval, cut_test = cuts(eval_fraction, test_fraction)
    return f"CASE WHEN {bucket} < {cut_eval} THEN 0 WHEN {bucket} < {cut_test} THEN 1 ELSE 2 END"


class Splitter:
    """Assigns splits batch by batch: by a hash of the id column, or by row position (seeded).

    By position, each batch continues the same random stream, so the codes of a table do not depend
    on how it is cut into batches, and the first ``n`` rows get ``numpy.random.default_rng(seed)
    .random(n)``'s assignment.
    """

    def __init__(self, id_column: Optional[str], eval_fraction: float, test_fraction: float, seed: int):
        import numpy as np

        check_fractions(eval_fraction, test_fraction)
        self.id_column = id_column or None
        self.eval_fraction = eval_fraction
        self.test_fraction = test_fraction
        self._rng = None if self.id_column else np.random.default_rng(seed)

    def assign(self, batch):
        """int8 codes (0 train, 1 eval, 2 test) of a batch: a pyarrow RecordBatch/Table or pandas DataFrame."""
        import numpy as np

        if self.id_column is None:
            n = batch.num_rows if hasattr(batch, "num_rows") else len(batch)
            u = self._rng.random(n)
            out = np.zeros(n, dtype=np.int8)
            out[u >= 1.0 - self.test_fraction - self.eval_fraction] = 1
            out[u >= 1.0 - self.test_fraction] = 2
            return out
        names = list(batch.column_names) if hasattr(batch, "column_names") else list(batch.columns)
        if self.id_column not in names:
            raise DataError(f"the id column {self.id_column!r} is not in the data (columns: {names[:20]})")
        ids = batch.column(self.id_column) if hasattr(batch, "column_names") else batch[self.id_column]
        return assign_by_id(ids, self.eval_fraction, self.test_fraction)
