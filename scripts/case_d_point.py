"""One point of benchmark case d: a fit streamed from Zarr on a LocalCluster, or in memory.

Runs :func:`bench.run_out_of_core` for one size and mode, in this process, and prints
its row as JSON; handy for before/after comparisons of one change::

    python scripts/case_d_point.py 5505024 stream 3
    python scripts/case_d_point.py 5505024 memory 3

The data go to ``--data-dir`` (default /tmp/benchdata) and are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (the benchmark's own case d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="rows")
    parser.add_argument("mode", choices=["stream", "memory"])
    parser.add_argument("repeats", type=int)
    parser.add_argument("--data-dir", default="/tmp/benchdata")
    args = parser.parse_args()
    directory = Path(args.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = bench.make_out_of_core_data(directory, args.n)
    row = bench.run_out_of_core(str(path), args.mode, 2, args.repeats)
    print(json.dumps({key: row[key] for key in ("mode", "n", "seconds_per_iteration",
                                                "all_seconds_per_iteration", "peak_rss_mib",
                                                "log_likelihood")}))


if __name__ == "__main__":
    main()
