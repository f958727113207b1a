"""Streaming statistics: exact or sampled, bounded in memory, the same for any batching.

Every statistic of a schema and a transform spec is accumulated batch by batch, so a split of any size is profiled in
bounded memory. Exact, and the same for any batching: row and missing counts, min/max, mean,
std and skew (moments merged with Chan's formulas; one batch gives numpy's own numbers), value
counts while a column has at most COUNT_CAP distinct values. Sampled, the same for any
batching: quantile bins (and their frequencies) come from a uniform sample of at most
QUANTILE_SAMPLE finite values, chosen by the smallest of one random key per row drawn from one
seeded stream in row order; below QUANTILE_SAMPLE values the sample is every value, so the
numbers are exact. Above it a quantile's rank is off by about sqrt(p(1-p)/QUANTILE_SAMPLE)
(at most 0.0011, one standard deviation; QUANTILE_RANK_ERROR is three). Beyond COUNT_CAP
distinct values, counts are Misra-Gries counts (a value more frequent than rows/(COUNT_CAP/2)
is kept; each count is low by at most that) and distinct counts are estimated with a
k-minimum-values sketch (DISTINCT_SKETCH hashes, about 0.8% relative error).
"""

from __future__ import annotations

from typing import Optional

MAX_DOMAIN = 1000  # categorical values kept in a schema's domain (most frequent first)
QUANTILE_SAMPLE = 200_000  # values the quantile bins are fitted on
COUNT_CAP = 200_000  # distinct values counted exactly per column
DISTINCT_SKETCH = 16_384  # hashes kept by the distinct-count sketch
QUANTILE_RANK_ERROR = 3 * 0.5 / QUANTILE_SAMPLE ** 0.5  # 3 sd of a sampled quantile's rank


class Moments:
    """Count, mean and central moment sums (2nd and 3rd) of a stream of finite values."""

    def __init__(self):
        self.n, self.mean, self.m2, self.m3 = 0, 0.0, 0.0, 0.0

    def update(self, x) -> None:
        nb = len(x)
        if nb == 0:
            return
        mb = x.mean()
        d = x - mb
        m2b, m3b = (d ** 2).sum(), (d ** 3).sum()
        if self.n == 0:
            self.n, self.mean, self.m2, self.m3 = nb, mb, m2b, m3b
            return
        na, n = self.n, self.n + nb
        delta = mb - self.mean
        self.m3 = (self.m3 + m3b + delta ** 3 * na * nb * (na - nb) / n ** 2
                   + 3 * delta * (na * m2b - nb * self.m2) / n)
        self.m2 = self.m2 + m2b + delta ** 2 * na * nb / n
        self.mean = self.mean + delta * nb / n
        self.n = n

    @property
    def std(self) -> float:
        import numpy as np

        return float(np.sqrt(self.m2 / self.n)) if self.n else float("nan")

    @property
    def skew(self) -> float:
        return float((self.m3 / self.n) / (self.std ** 3 + 1e-12))


class Reservoir:
    """A uniform sample of at most ``k`` values of a stream, the same for any batching: each row
    gets a key from one seeded stream in row order; the sample is the values of the ``k``
    smallest keys (every value, in order, until there are more than ``k``)."""

    def __init__(self, k: int, seed: int = 0):
        import numpy as np

        self.k, self.rng = k, np.random.default_rng(seed)
        self.keys, self.values = [], []
        self.size = 0

    def update(self, values, keep=None) -> None:
        """Offer one batch of rows; ``keep``: a mask of the rows that may be sampled (a key is
        drawn for every row, so the sample does not depend on the batching)."""
        import numpy as np

        keys = self.rng.random(len(values))
        if keep is not None:
            keys, values = keys[keep], values[keep]
        if len(values) == 0:
            return
        self.keys.append(keys)
        self.values.append(np.asarray(values))
        self.size += len(values)
        if self.size > 2 * self.k:
            self._shrink()

    def _shrink(self) -> None:
        import numpy as np

        keys, values = np.concatenate(self.keys), np.concatenate(self.values)
        if len(keys) > self.k:
            idx = np.sort(np.argpartition(keys, self.k)[: self.k])
            keys, values = keys[idx], values[idx]
        self.keys, self.values, self.size = [keys], [values], len(keys)

    def sample(self, k: Optional[int] = None):
        """The sample (of the ``k`` smallest keys when given), in arrival order."""
        import numpy as np

        self._shrink()
        if not self.values:
            return np.zeros(0)
        keys, values = self.keys[0], self.values[0]
        if k is not None and len(keys) > k:
            values = values[np.sort(np.argpartition(keys, k)[:k])]
        return values


class DistinctSketch:
    """k-minimum-values estimate of a stream's distinct count (exact below ``k`` distinct hashes)."""

    def __init__(self, k: int = DISTINCT_SKETCH):
        import numpy as np

        self.k, self.h = k, np.zeros(0, dtype=np.uint64)

    def update_values(self, values) -> None:
        import numpy as np
        import pandas as pd

        values = np.asarray(values)
        if len(values):
            hashes = pd.util.hash_array(values)
            if len(self.h) == self.k:  # only hashes below the k-th smallest can enter
                hashes = hashes[hashes < self.h[-1]]
            self.h = np.unique(np.concatenate([self.h, hashes]))[: self.k]

    def estimate(self) -> float:
        if len(self.h) < self.k:
            return float(len(self.h))
        return (self.k - 1) / (float(self.h[self.k - 1]) / 2.0 ** 64)


class ValueCounts:
    """Counts of a categorical stream (strings), in order of first appearance; exact up to
    ``cap`` distinct values, then Misra-Gries counts and a distinct-count sketch."""

    def __init__(self, cap: int = COUNT_CAP):
        import numpy as np
        import pandas as pd

        self.cap = cap
        self.index = pd.Index([], dtype=object)
        self.counts = np.zeros(0, dtype=np.int64)
        self.total = 0  # non-missing values
        self.error = 0  # largest undercount of any value (0 while exact)
        self.sketch: Optional[DistinctSketch] = None

    def update(self, values) -> None:
        """``values``: a categorical Series of strings (see :func:`column_values`)."""
        import numpy as np
        import pandas as pd

        vc = values.value_counts(sort=False, dropna=True)
        keys = np.asarray(vc.index, dtype=object)
        counts = vc.to_numpy(dtype=np.int64)
        self.total += int(counts.sum())
        pos = self.index.get_indexer(keys)
        old = pos >= 0
        np.add.at(self.counts, pos[old], counts[old])
        if (~old).any():
            self.index = self.index.append(pd.Index(keys[~old], dtype=object))
            self.counts = np.concatenate([self.counts, counts[~old]])
        if self.sketch is not None:
            self.sketch.update_values(keys[counts > 0])
        if len(self.counts) > self.cap:
            self._prune()

    def _prune(self) -> None:
        import numpy as np

        if self.sketch is None:
            self.sketch = DistinctSketch()
            self.sketch.update_values(np.asarray(self.index[self.counts > 0], dtype=object))
        keep = self.cap // 2
        cut = int(np.partition(self.counts, len(self.counts) - keep - 1)[len(self.counts) - keep - 1])
        self.counts = self.counts - cut
        self.error += cut
        mask = self.counts > 0
        self.index, self.counts = self.index[mask], self.counts[mask]

    def series(self):
        """Non-zero counts, most frequent first (ties in order of first appearance, as pandas)."""
        import pandas as pd

        s = pd.Series(self.counts, index=self.index)
        return s[s > 0].sort_values(ascending=False)

    def distinct(self) -> float:
        return self.sketch.estimate() if self.sketch is not None else int((self.counts > 0).sum())

    def stats(self) -> dict:
        counts = self.series()
        top = counts.iloc[:MAX_DOMAIN]
        return {
            "domain": [str(v) for v in top.index],
            "frequencies": {str(k): float(v) / self.total for k, v in top.items()},
            "cardinality": int(round(self.distinct())),
        }


class NumericStream:
    """What :func:`numeric_stats` reports, accumulated over batches of a float64 view."""

    def __init__(self, sample: int = QUANTILE_SAMPLE, seed: int = 0):
        self.moments = Moments()
        self.lo, self.hi = None, None
        self.reservoir = Reservoir(sample, seed)
        self.exact = True

    def update(self, values) -> None:
        import numpy as np

        ok = np.isfinite(values)
        finite = values[ok]
        self.reservoir.update(values, ok)
        if len(finite):
            lo, hi = finite.min(), finite.max()
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
        self.moments.update(finite)

    def stats(self) -> dict:
        import numpy as np

        m = self.moments
        if m.n == 0:
            return {"min": None, "max": None, "mean": None, "std": None, "bins": []}
        sample = self.reservoir.sample()
        qs = np.unique(np.quantile(sample, np.linspace(0, 1, 11)))
        edges = qs[1:-1].tolist()
        # Every finite value while they fit in the sample: then the frequencies are exact.
        counts = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=len(edges) + 1)
        return {
            "min": float(self.lo),
            "max": float(self.hi),
            "mean": float(m.mean),
            "std": m.std,
            "bins": edges,
            "bin_freq": (counts / counts.sum()).tolist(),
            "skew": m.skew,
        }


class DistinctInts:
    """Whether an integer stream's values are all distinct: exact while they arrive in
    increasing order or number at most ``cap``; then by a distinct-count sketch."""

    def __init__(self, cap: int = 5 * COUNT_CAP):
        import numpy as np

        self.cap, self.dup, self.increasing, self.last = cap, False, True, None
        self.seen = np.zeros(0, dtype=np.int64)
        self.sketch = DistinctSketch()
        self.n = 0

    def update(self, values) -> None:
        import numpy as np

        if self.dup or len(values) == 0:
            return
        values = np.asarray(values, dtype=np.int64)
        u = np.unique(values)
        if len(u) < len(values):
            self.dup = True
            return
        self.n += len(values)
        self.sketch.update_values(u)
        if self.increasing and (self.last is None or values[0] > self.last) and bool(np.all(np.diff(values) > 0)):
            self.last = int(values[-1])
        else:
            self.increasing = False
        if self.seen is not None:
            if np.isin(u, self.seen).any():
                self.dup = True
                return
            self.seen = np.union1d(self.seen, u) if len(self.seen) + len(u) <= self.cap else None

    def all_distinct(self) -> bool:
        if self.dup:
            return False
        if self.increasing or self.seen is not None:
            return True
        return self.sketch.estimate() >= self.n * (1 - 3 / (DISTINCT_SKETCH - 2) ** 0.5)
