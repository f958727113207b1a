"""Child process of validate: ``python -m components.validate.drift_report WORKDIR``.

Reads WORKDIR/reference.parquet and WORKDIR/current.parquet, runs evidently's
DataDriftPreset, writes WORKDIR/evidently.html and WORKDIR/evidently.json.
"""

import os
import sys


def main(workdir: str) -> int:
    from components._shared import io
    from components.validate.core import evidently_drift

    ref = io.read_parquet(os.path.join(workdir, "reference.parquet"))
    cur = io.read_parquet(os.path.join(workdir, "current.parquet"))
    result = evidently_drift(ref, cur, list(ref.columns), os.path.join(workdir, "evidently.html"))
    result["html"] = os.path.join(workdir, "evidently.html")
    io.write_json(result, os.path.join(workdir, "evidently.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
