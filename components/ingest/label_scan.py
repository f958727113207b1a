"""What ingest learns about the label column as rows stream by, in memory that does not grow with rows.

:class:`LabelScan` (the first pass) counts missing labels and each distinct label value (up to
:data:`MAX_DISTINCT`), and for regression the values that are not finite numbers. From the distinct
values alone, the task and the binary encoding are decided exactly as they would be from the
whole column (:func:`components._shared.task.infer_task`, :func:`components._shared.labels.encode_label`
only look at which values occur). :class:`Moments` (the second pass) merges a regression label's
mean and central moments batch by batch (Pébay's formulas) for the heavy-tail warning.
"""

from __future__ import annotations

import math
from typing import Optional

MAX_DISTINCT = 100_000  # distinct label values counted exactly; beyond, the label is "many-valued"


def plain(col):
    """A label array without dictionary encoding."""
    import pyarrow as pa

    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def is_numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


class LabelScan:
    """Feed the label column of every batch (missing values included) with :meth:`update`."""

    def __init__(self):
        self.rows = 0  # labelled rows
        self.missing = 0
        self.overflow = False  # more than MAX_DISTINCT distinct values
        self.integer_valued = True  # every finite numeric value is a whole number
        self.bad = 0  # values that are not finite numbers (the regression check)
        self.bad_example = None
        self.type = None
        self._counts = None  # pyarrow Table: v (value), n (rows)

    def update(self, col) -> None:
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc

        col = plain(col)
        if col.null_count:
            self.missing += col.null_count
            col = col.filter(pc.is_valid(col))
        self.rows += len(col)
        if not len(col):
            return
        self.type = col.type
        counts = None
        if not self.overflow:
            counts = pc.value_counts(col)
            self._merge(pa.table({"v": counts.field("values"), "n": counts.field("counts")}))
        if is_numeric(col.type):
            v = col.to_numpy(zero_copy_only=False).astype(np.float64)
            finite = np.isfinite(v)
            if not finite.all():
                self.bad += int((~finite).sum())
                if self.bad_example is None:
                    self.bad_example = col.to_pandas()[~finite].iloc[0]
            self.integer_valued = self.integer_valued and bool(np.all(np.floor(v[finite]) == v[finite]))
        else:  # text (or bool, dates): which distinct values would not read as numbers, in row order
            counts = counts if counts is not None else pc.value_counts(col)
            values = counts.field("values").to_pandas()
            bad = ~np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64))
            if bad.any():
                self.bad += int(counts.field("counts").to_numpy()[bad].sum())
                if self.bad_example is None:
                    self.bad_example = values[bad].iloc[0]

    def _merge(self, table) -> None:
        import pyarrow as pa

        if self._counts is not None:
            both = pa.concat_tables([self._counts, table]).group_by("v").aggregate([("n", "sum")])
            table = pa.table({"v": both.column("v"), "n": both.column("n_sum")})
        self._counts = table
        if table.num_rows > MAX_DISTINCT:
            self.overflow, self._counts = True, None

    def distinct(self):
        """The distinct label values as a pandas Series of the column's dtype (empty when none)."""
        import pandas as pd

        if self._counts is None:
            return pd.Series([], dtype=object)
        return self._counts.column("v").to_pandas()

    @property
    def numeric(self) -> bool:
        return self.type is not None and is_numeric(self.type)


class Moments:
    """Count, mean, central moments 2-4, min and max of a float label, merged batch by batch."""

    def __init__(self):
        self.n, self.mean, self.m2, self.m3, self.m4 = 0, 0.0, 0.0, 0.0, 0.0
        self.lo, self.hi = math.inf, -math.inf

    def update(self, v) -> None:
        if not len(v):
            return
        nb, mb = len(v), float(v.mean())
        d = v - mb
        d2 = d * d
        m2b, m3b, m4b = float(d2.sum()), float((d2 * d).sum()), float((d2 * d2).sum())
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        if self.n == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = nb, mb, m2b, m3b, m4b
            return
        na, n = self.n, self.n + nb
        delta = mb - self.mean
        m4 = (self.m4 + m4b + delta ** 4 * na * nb * (na * na - na * nb + nb * nb) / n ** 3
              + 6 * delta ** 2 * (na * na * m2b + nb * nb * self.m2) / n ** 2
              + 4 * delta * (na * m3b - nb * self.m3) / n)
        m3 = (self.m3 + m3b + delta ** 3 * na * nb * (na - nb) / n ** 2
              + 3 * delta * (na * m2b - nb * self.m2) / n)
        self.m2 += m2b + delta ** 2 * na * nb / n
        self.m3, self.m4 = m3, m4
        self.mean += delta * nb / n
        self.n = n

    def heavy_tail_warning(self, label: str) -> Optional[str]:
        """:func:`components._shared.task.heavy_tail_warning` from the moments (the same rule and sentence)."""
        if self.n < 10:
            return None
        std = math.sqrt(self.m2 / self.n)
        if std == 0:
            return None
        kurt = (self.m4 / self.n) / std ** 4 - 3.0
        zmax = max(abs(self.hi - self.mean), abs(self.lo - self.mean)) / std
        if kurt > 10 or zmax > 10:
            return (f"the regression label {label!r} is heavy-tailed (excess kurtosis {kurt:.1f}, largest value "
                    f"{zmax:.1f} standard deviations from the mean): RMSE is dominated by a few rows; "
                    "consider predicting log1p of it")
        return None
