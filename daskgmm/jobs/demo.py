"""The demo job: make a Zarr data set, fit it out-of-core on dask's local scheduler.

Run with ``python -m daskgmm.jobs.demo`` (or ``daskgmm-demo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .. import GaussianMixture
from .._zarr import open_zarr_array
from .synthetic import make_mixture_zarr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", default="demo-data/demo.zarr",
                        help="Zarr group to create or reuse (the README's session makes its own, mixture.zarr)")
    parser.add_argument("--n-samples", type=int, default=500_000)
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=5)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    path = Path(args.path)
    if not path.exists():
        started = time.perf_counter()
        make_mixture_zarr(path, args.n_samples, args.n_features, args.n_components,
                          chunk_rows=50_000, seed=args.seed)
        print(f"Wrote {args.n_samples:,} x {args.n_features} rows to {path} "
              f"in {time.perf_counter() - started:.1f} s")
    else:
        print(f"Reusing the data set at {path}")

    model = GaussianMixture(args.n_components, covariance_type=args.covariance_type,
                            random_state=args.seed)
    started = time.perf_counter()
    model.fit(open_zarr_array(path, "X"))
    seconds = time.perf_counter() - started
    np.set_printoptions(precision=3, suppress=True, linewidth=100)
    print(f"Fitted {model!r} in {seconds:.1f} s: {model.n_iter_} EM iterations, "
          f"converged={model.converged_}, mean log-likelihood {model.lower_bound_:.4f}")
    print("weights:", model.weights_)
    print("means:\n", model.means_)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
