"""The content hash of what ingest wrote, computed as the rows stream by.

SHA-256 over the column names and types, then per column the bytes of its values in row order
(numbers, booleans and dates as fixed-width values with missing ones zeroed, text as its UTF-8
bytes and each value's length) and which values are missing. Every input is a concatenation
over rows, so the hash does not depend on how rows were cut into batches, files or shards.
"""

from __future__ import annotations

import hashlib


class ContentHash:
    """Feed record batches of one schema with :meth:`update`; :meth:`hexdigest` at the end."""

    def __init__(self, schema):
        self._header = ",".join(f"{f.name}:{f.type}" for f in schema).encode()
        # Per column: values (fixed width or text bytes), lengths (text only), missing flags.
        self._parts = [[hashlib.sha256(), hashlib.sha256(), hashlib.sha256()] for _ in schema]

    def update(self, batch) -> None:
        for parts, column in zip(self._parts, batch.columns, strict=True):
            _feed(parts, column)

    def hexdigest(self) -> str:
        h = hashlib.sha256(self._header)
        for parts in self._parts:
            for part in parts:
                h.update(part.digest())
        return h.hexdigest()


def _feed(parts, arr) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    values, lengths, valid = parts
    if isinstance(arr, pa.ChunkedArray):
        for chunk in arr.chunks:
            _feed(parts, chunk)
        return
    valid.update(arr.is_valid().to_numpy(zero_copy_only=False).tobytes())
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.cast(t.value_type), t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values.update(pc.fill_null(arr, pa.scalar(0, type=t)).to_numpy(zero_copy_only=False).tobytes())
    elif pa.types.is_boolean(t):
        values.update(pc.fill_null(arr, False).to_numpy(zero_copy_only=False).tobytes())
    elif pa.types.is_temporal(t) and t.bit_width in (32, 64):
        ints = arr.view(pa.int32() if t.bit_width == 32 else pa.int64())
        values.update(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False).tobytes())
    else:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            text = arr.cast(pa.large_binary())
        else:
            try:
                text = arr.cast(pa.large_string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # nested values: their text
                text = pa.array([None if v is None else str(v) for v in arr.to_pylist()], type=pa.large_string())
        lengths.update(pc.fill_null(pc.binary_length(text), -1).to_numpy(zero_copy_only=False).tobytes())
        text = pa.concat_arrays([pc.fill_null(text, "" if pa.types.is_large_string(text.type) else b"")])
        offsets, data = text.buffers()[1], text.buffers()[2]
        if data is not None and len(text):
            import numpy as np

            ends = np.frombuffer(offsets, dtype=np.int64)[text.offset: text.offset + len(text) + 1]
            values.update(memoryview(data)[int(ends[0]): int(ends[-1])])
