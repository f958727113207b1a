"""Training input: a tf.data pipeline over a split's Parquet row groups, encoded batch by batch.

A split is one Parquet file or a folder of shards (``io.parquet_files``). The unit of reading is
a Parquet row group (ingest writes ~128k rows per group): it is read, encoded with the transform
spec (``components._shared.transform.encode``) and handed to tf.data, which prefetches the next
batches while the model trains on the current one. So the raw table is never held whole.

Memory: the encoded arrays are compact (4 bytes per feature and row). While a worker's share of
a split fits in ``cache_bytes`` (1 GiB by default, about 15M rows of 15 features) its encoded
row groups are kept after the first epoch, so later epochs do not re-read and re-encode Parquet
(the speed of the former in-memory arrays); beyond that every epoch streams again and memory stays
at about ``shuffle_rows`` rows whatever the split's size.

Shuffling (train split): each epoch visits the row groups in a seeded random order and shuffles
rows within a buffer of at least ``shuffle_rows`` rows (whole row groups); batches never mix
epochs. Seeded by (seed, epoch, worker), so a run is reproducible.

Workers: with W workers, worker k reads the k-th contiguous share of the split's rows (row groups,
or the part of one that falls in its share). Shares differ by at most one row and are trimmed (at
most W-1 rows in all) so that every worker has the same number of batches: the collective ops of
MultiWorkerMirroredStrategy need every worker to take each step.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from typing import Optional

from components._shared import io
from components._shared.errors import DataError, ModelError

logger = logging.getLogger(__name__)

CACHE_BYTES = 1 << 30
SHUFFLE_ROWS = 262_144


@dataclasses.dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of row group ``row_group`` of one Parquet file."""

    file: str
    row_group: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def row_groups(path: str) -> list[Piece]:
    """Every row group of a Parquet file or folder of shards, in order (footers only)."""
    pieces = []
    for f in io.parquet_files(path):
        md = io.open_parquet(f).metadata
        pieces += [Piece(f, g, 0, md.row_group(g).num_rows) for g in range(md.num_row_groups)
                   if md.row_group(g).num_rows]
    return pieces


def worker_rows(total: int, workers: int, worker: int, batch: int) -> tuple[int, int]:
    """Row range ``[lo, hi)`` of ``worker``'s share: contiguous, balanced, equal batch counts.

    Raises:
        ModelError: Fewer rows than workers.
    """
    if workers == 1:
        return 0, total
    base, extra = divmod(total, workers)
    if base == 0:
        raise ModelError(f"the split has {total} rows, fewer than the {workers} workers")
    if extra and base % batch == 0:  # the bigger shares would take one more (one-row) step
        extra = 0
    lo = worker * base + min(worker, extra)
    return lo, lo + base + (1 if worker < extra else 0)


def pieces_in(pieces: list[Piece], lo: int, hi: int) -> list[Piece]:
    """The parts of ``pieces`` (in order, covering rows 0..) that fall in ``[lo, hi)``."""
    out, pos = [], 0
    for p in pieces:
        a, b = max(lo, pos), min(hi, pos + p.rows)
        if a < b:
            out.append(Piece(p.file, p.row_group, p.start + a - pos, p.start + b - pos))
        pos += p.rows
    return out


class EncodedSplit:
    """One worker's share of a split, read row group by row group and encoded with the spec."""

    def __init__(self, path: str, spec: dict, workers: int = 1, worker: int = 0, batch: int = 1,
                 cache_bytes: int = CACHE_BYTES):
        self.path, self.spec, self.batch = path, spec, batch
        names = [f["name"] for f in spec["numeric"] + spec["categorical"]]
        present = set(io.read_parquet_schema_names(path))
        missing = [c for c in names + [spec["label"]] if c not in present]
        if missing:
            raise DataError(f"the data {path} has no column {missing[0]!r}, which the transform spec needs")
        self.columns = names + [spec["label"]]
        everything = row_groups(path)
        self.total_rows = sum(p.rows for p in everything)
        self.lo, self.hi = worker_rows(self.total_rows, workers, worker, batch) if self.total_rows else (0, 0)
        self.pieces = pieces_in(everything, self.lo, self.hi)
        self.rows = sum(p.rows for p in self.pieces)
        row_bytes = 4 * (len(spec["numeric"]) + len(spec["categorical"]) + 2)
        self._cache: Optional[dict] = {} if self.rows * row_bytes <= cache_bytes else None
        self._files: dict = {}

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def read(self, i: int) -> tuple[dict, object]:
        """Encoded arrays and labels of piece ``i``."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        from components._shared.labels import labels
        from components._shared.transform import encode

        p = self.pieces[i]
        pf = self._files.get(p.file) or self._files.setdefault(p.file, io.open_parquet(p.file))
        table = pf.read_row_group(p.row_group, columns=self.columns)
        if p.start or p.stop < table.num_rows:
            table = table.slice(p.start, p.rows)
        df = io.to_pandas(table)
        out = (encode(df, self.spec), labels(df, self.spec))
        if self._cache is not None:
            self._cache[i] = out
        return out

    def head(self, rows: int) -> dict:
        """The first ``rows`` encoded rows (a probe for the scorer check)."""
        import numpy as np

        parts, n = [], 0
        for i in range(len(self.pieces)):
            if n >= rows:
                break
            x, _ = self.read(i)
            parts.append(x)
            n += len(next(iter(x.values())))
        if not parts:
            return {}
        return {k: np.concatenate([x[k] for x in parts])[:rows] for k in parts[0]}

    def label_counts(self) -> object:
        """Rows per class of the WHOLE split, every worker's share included (binary: [negatives,
        positives]; multiclass: per class index), or None for regression. Reads the label column only,
        batch by batch."""
        import numpy as np
        import pyarrow as pa

        from components._shared.labels import labels
        from components._shared.task import REGRESSION, task_of

        if task_of(self.spec).name == REGRESSION:
            return None
        counts = np.zeros(2, dtype=np.int64)
        for batch in io.iter_parquet_batches(self.path, columns=[self.spec["label"]]):
            c = np.bincount(np.asarray(labels(io.to_pandas(pa.Table.from_batches([batch])), self.spec), dtype=np.int64))
            counts = np.pad(counts, (0, max(0, len(c) - len(counts))))
            counts[:len(c)] += c
        return counts

    def chunks(self, shuffle: bool = False, seed: int = 0, epoch: int = 0, worker: int = 0,
               class_weight: Optional[dict] = None, shuffle_rows: int = SHUFFLE_ROWS) -> Iterator[tuple]:
        """The share as a few large ``(x, y)`` or ``(x, y, sample_weight)`` chunks, in order or
        shuffled (row groups in a seeded order, rows permuted within buffers of at least
        ``shuffle_rows`` rows). tf.data cuts them into batches (``rebatch``), so Python touches
        each chunk once, not each batch."""
        import numpy as np

        rng = np.random.default_rng([seed, epoch, worker])
        order = rng.permutation(len(self.pieces)) if shuffle else range(len(self.pieces))
        xs: list = []
        ys: list = []
        held = 0

        def emit():
            x = {k: np.concatenate([p[k] for p in xs]) for k in xs[0]} if len(xs) > 1 else xs[0]
            y = np.concatenate(ys) if len(ys) > 1 else ys[0]
            if shuffle:
                perm = rng.permutation(len(y))
                x, y = {k: v[perm] for k, v in x.items()}, y[perm]
            return self._with_weights(x, y, class_weight)

        for i in order:
            x, y = self.read(int(i))
            xs.append(x)
            ys.append(y)
            held += len(y)
            if held >= shuffle_rows:
                yield emit()
                xs, ys, held = [], [], 0
        if held:
            yield emit()

    def batches(self, batch: int, **kwargs) -> Iterator[tuple]:
        """:meth:`chunks` cut into batches of ``batch`` rows across chunk boundaries (the last smaller)."""
        rest = None
        for chunk in self.chunks(**kwargs):
            if rest is not None:
                chunk = _concat(rest, chunk)
            n = len(chunk[1])
            full = n - n % batch
            for s in range(0, full, batch):
                yield _take(chunk, slice(s, s + batch))
            rest = _take(chunk, slice(full, n)) if full < n else None
        if rest is not None:
            yield rest

    @staticmethod
    def _with_weights(x: dict, y, class_weight: Optional[dict]) -> tuple:
        if class_weight is None:
            return x, y
        import numpy as np

        table = np.zeros(max(class_weight) + 1, dtype=np.float32)
        for k, w in class_weight.items():
            table[k] = w
        return x, y, table[y.astype(np.int64)]

    def num_batches(self, batch: int) -> int:
        return math.ceil(self.rows / batch)

    def dataset(self, batch: int, shuffle: bool = False, seed: int = 0, worker: int = 0,
                class_weight: Optional[dict] = None, shuffle_rows: int = SHUFFLE_ROWS):
        """The tf.data.Dataset of :meth:`batches`, a new shuffle each time it is iterated (epoch)."""
        import tensorflow as tf

        from components._shared.task import MULTICLASS, task_of

        epochs = iter(range(1 << 30))
        x_spec = {}
        if self.spec["numeric"]:
            x_spec["numeric"] = tf.TensorSpec((None, len(self.spec["numeric"])), tf.float32)
        if self.spec["categorical"]:
            x_spec["categorical"] = tf.TensorSpec((None, len(self.spec["categorical"])), tf.int32)
        y_dtype = tf.int32 if task_of(self.spec).name == MULTICLASS else tf.float32
        signature = (x_spec, tf.TensorSpec((None,), y_dtype))
        if class_weight is not None:
            signature += (tf.TensorSpec((None,), tf.float32),)

        if self.cached:
            ds = self._in_memory(batch, shuffle, seed, worker, class_weight)
        else:
            def gen():
                yield from self.chunks(shuffle, seed, next(epochs), worker, class_weight, shuffle_rows)

            ds = tf.data.Dataset.from_generator(gen, output_signature=signature).rebatch(batch)
        ds = ds.apply(tf.data.experimental.assert_cardinality(self.num_batches(batch)))
        return ds.prefetch(tf.data.AUTOTUNE)

    def _in_memory(self, batch: int, shuffle: bool, seed: int, worker: int, class_weight: Optional[dict]):
        """The share encoded once into tensors; each epoch a new seeded permutation of the rows,
        gathered batch by batch inside tf.data: how Keras feeds in-memory arrays (its
        ``ArrayDataAdapter``), so as fast as the former ``fit(x, y)`` path."""
        import tensorflow as tf

        chunk = next(self.chunks(shuffle_rows=self.rows + 1, class_weight=class_weight), None)
        self._cache = {}  # the tensors below hold the share now
        if chunk is None:
            return tf.data.Dataset.from_tensors(0).take(0)
        n = len(chunk[1])
        full = n // batch

        def batch_indices(_):
            order = tf.range(n, dtype=tf.int64)
            if shuffle:  # op seed + Keras's global seed: the same sequence of permutations every run
                order = tf.random.shuffle(order, seed=seed * 1000 + worker)
            head = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full * batch], [full, batch]))
            return head.concatenate(tf.data.Dataset.from_tensors(order[full * batch:])) if n % batch else head

        def gather(i, data):
            return tf.nest.map_structure(lambda t: tf.gather(t, i, axis=0), data)

        ds = tf.data.Dataset.range(1).flat_map(batch_indices)
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensors(tf.nest.map_structure(tf.constant, chunk)).repeat()))
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        options = tf.data.Options()
        # As Keras does for arrays: graph rewrites would copy the embedded share (large constants).
        options.experimental_optimization.apply_default_optimizations = False
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        return ds.with_options(options)


def _take(chunk: tuple, rows: slice) -> tuple:
    x, *rest = chunk
    return ({k: v[rows] for k, v in x.items()}, *(a[rows] for a in rest))


def _concat(a: tuple, b: tuple) -> tuple:
    import numpy as np

    return ({k: np.concatenate([a[0][k], b[0][k]]) for k in a[0]}, *(np.concatenate([u, v]) for u, v in zip(a[1:], b[1:], strict=True)))


def distributed_dataset(strategy, split: EncodedSplit, batch: int, **kwargs):
    """``split.dataset(batch, ...)``; with a multi-worker ``strategy`` each worker's pipeline
    through ``distribute_datasets_from_function`` (``batch`` is then per replica, and the
    share was chosen when ``split`` was made: no auto-sharding)."""
    if strategy is None:
        return split.dataset(batch, **kwargs)
    return strategy.distribute_datasets_from_function(lambda ctx: split.dataset(batch, **kwargs))


def class_weights_from_counts(task, counts, mode: str) -> Optional[dict]:
    """``components._shared.task.class_weights`` from per-class row counts instead of the labels
    (the same rule; a test checks they agree), so no step needs every label in memory."""
    import numpy as np

    from components._shared.task import BINARY, REGRESSION

    if counts is None or mode != "balanced" or task.name == REGRESSION or int(np.sum(counts)) == 0:
        return None
    n = int(np.sum(counts))
    if task.name == BINARY:
        pos = float(counts[1]) / n if len(counts) > 1 else 0.0
        return {0: 0.5 / (1 - pos), 1: 0.5 / pos} if 0 < pos < 1 else None
    k = int((counts > 0).sum())
    return {i: float(n / (k * c)) for i, c in enumerate(counts) if c > 0}
