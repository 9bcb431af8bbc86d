"""Passes and fitted-model quality of the default initialisation, over seeds.

Issue 14, item 2: ``init_params="kmeans"`` must read the data at most three
times, and the fitted model must be as good: the final mean log-likelihood at
least today's, as a median over seeds, on the benchmark's data and on a real
data set. Run this once per tree and compare::

    python scripts/init_quality.py measure --out new.json
    PYTHONPATH=/path/to/old/tree python scripts/init_quality.py measure --out old.json
    python scripts/init_quality.py compare old.json new.json

Passes are counted at the pass boundary (``_passes.compute_pass``): a full
pass is any pass but the reads of sampled rows (``gmm-init-rows``), which
touch only the chunks holding those rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import make_data  # noqa: E402  (the benchmark's own data)


def data_sets() -> dict[str, tuple[np.ndarray, int, str]]:
    """name -> (X, n_components, covariance_type)."""
    from sklearn.datasets import load_digits, load_sample_images

    rng = np.random.default_rng(3)
    centres = rng.normal(scale=1.2, size=(6, 5))
    overlapping = np.concatenate([rng.normal(size=(20_000, 5)) + c for c in centres]) + 100.0
    digits = load_digits().data.astype(np.float64)
    # Real photographs' pixel colours (RGB), the classic colour-quantisation use.
    pixels = np.concatenate([image.reshape(-1, 3) for image in load_sample_images().images])
    return {
        "bench-a (200k x 16, K=8, full)": (make_data(200_000, 16, 8), 8, "full"),
        "overlapping (120k x 5, K=6, full)": (overlapping, 6, "full"),
        "image pixels (546,560 x 3, K=16, full)": (pixels.astype(np.float64), 16, "full"),
        "digits (1,797 x 64, K=10, diag)": (digits, 10, "diag"),
        "digits (1,797 x 64, K=10, full)": (digits, 10, "full"),
    }


def measure(seeds: list[int], chunks: int, only: str = "") -> list[dict]:
    from daskgmm import GaussianMixture, _passes

    names: Counter[str] = Counter()
    original = _passes.compute_pass

    def counting(graph, name):
        names[name.split("-", 1)[0] if not name.startswith("gmm-") else
              ("rows" if name == "gmm-init-rows" else
               "init" if name.startswith("gmm-init") else "em")] += 1
        return original(graph, name)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("daskgmm") and \
                getattr(module, "compute_pass", None) is original:
            module.compute_pass = counting  # type: ignore[attr-defined]

    rows = []
    for name, (X, k, covariance_type) in data_sets().items():
        if only not in name:
            continue
        chunk_size = -(-X.shape[0] // chunks)
        for seed in seeds:
            names.clear()
            model = GaussianMixture(k, covariance_type=covariance_type, random_state=seed,
                                    chunk_size=chunk_size)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X)
            seconds = time.perf_counter() - start
            rows.append({"data": name, "seed": seed, "init_passes": names["init"],
                         "row_reads": names["rows"], "em_passes": names["em"],
                         "n_iter": int(model.n_iter_), "seconds": seconds,
                         "score": float(model.score(X))})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def compare(old: list[dict], new: list[dict]) -> str:
    lines = ["| data | init passes (old -> new) | EM passes, median | final mean log-likelihood, "
             "median (old -> new) | mean (old -> new) | new >= old, seeds | seconds, median |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["data"] for r in old):
        o = [r for r in old if r["data"] == name]
        n = [r for r in new if r["data"] == name]
        better = sum(b["score"] >= a["score"] - 1e-9 * abs(a["score"])
                     for a, b in zip(o, n, strict=True))
        med = statistics.median
        lines.append(
            f"| {name} | {med(r['init_passes'] for r in o):g} -> {med(r['init_passes'] for r in n):g} "
            f"| {med(r['em_passes'] for r in o):g} -> {med(r['em_passes'] for r in n):g} "
            f"| {med(r['score'] for r in o):.6f} -> {med(r['score'] for r in n):.6f} "
            f"| {statistics.mean(r['score'] for r in o):.4f} -> "
            f"{statistics.mean(r['score'] for r in n):.4f} "
            f"| {better} of {len(o)} | {med(r['seconds'] for r in o):.2f} -> "
            f"{med(r['seconds'] for r in n):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", required=True)
    m.add_argument("--seeds", type=int, default=10)
    m.add_argument("--chunks", type=int, default=20, help="chunks per data set")
    m.add_argument("--only", default="", help="only the data sets whose name contains this")
    c = sub.add_parser("compare")
    c.add_argument("old")
    c.add_argument("new")
    args = parser.parse_args()
    if args.command == "measure":
        rows = measure(list(range(args.seeds)), args.chunks, args.only)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    else:
        print(compare(json.loads(Path(args.old).read_text()),
                      json.loads(Path(args.new).read_text())))


if __name__ == "__main__":
    main()
