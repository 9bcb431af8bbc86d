"""How many variational iterations until a Bayesian mixture switches off what the data do not need.

``n_components=10`` on a mixture of 3 Gaussians (8 features, full covariances) in memory: for each
number of rows and each initialisation, the iteration at which 99% of the weight first sits on 3
components, or "not within" ``--max-iter``. Then the recipe for large data: a fit on the first
``--sample`` rows, warm-started on all rows for ``--warm-iter`` iterations. Not a timed benchmark:
it measures the algorithm (scikit-learn's, which daskgmm equals from the same start).

    python scripts/bayesian_switching_off.py
    python scripts/bayesian_switching_off.py --rows 3000,10000 --max-iter 200   # a quick look
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

TRUE_COMPONENTS = 3


def _data(rows: int, features: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(TRUE_COMPONENTS, features))
    factors = rng.normal(scale=0.5, size=(TRUE_COMPONENTS, features, features)) + np.eye(features)
    labels = rng.choice(TRUE_COMPONENTS, size=rows, p=[0.4, 0.4, 0.2])
    noise = rng.normal(size=(rows, features))
    return means[labels] + np.einsum("nij,nj->ni", factors[labels], noise)


def _held_by_three(weights: np.ndarray) -> float:
    return float(np.sort(weights)[-TRUE_COMPONENTS:].sum())


def _iterations_to_switch_off(X, max_iter: int, **params) -> tuple[int | None, float]:
    from daskgmm import BayesianGaussianMixture
    from daskgmm._variational import mixture_weights

    prior_type = params["weight_concentration_prior_type"]
    reached: list[int] = []

    def watch(info) -> bool:
        share = _held_by_three(mixture_weights(info.posterior.weight_concentration, prior_type))
        if share >= 0.99:
            reached.append(info.n_iter)
            return True  # stop: the question is answered
        return False

    model = BayesianGaussianMixture(n_components=10, max_iter=max_iter, tol=0.0, **params)
    model.fit(X, callbacks=[watch])
    return (reached[0] if reached else None), _held_by_three(model.weights_)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="3000,10000,100000")
    parser.add_argument("--inits", default="kmeans,k-means++,random_from_data")
    parser.add_argument("--prior-types", default="dirichlet_process,dirichlet_distribution")
    parser.add_argument("--max-iter", type=int, default=600)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--warm-iter", type=int, default=5)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # fits stopped early do not converge, by design

    from daskgmm import BayesianGaussianMixture

    print(f"n_components=10 on {TRUE_COMPONENTS} Gaussians, 8 features, full covariances, "
          "weight_concentration_prior=1e-3, random_state=0.\n")
    print("| rows | prior | init | iterations to 99% on 3 | share on 3 at the end | seconds |")
    print("|---|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        X = _data(rows)
        for prior_type in args.prior_types.split(","):
            for init in args.inits.split(","):
                started = time.perf_counter()
                reached, share = _iterations_to_switch_off(
                    X, args.max_iter, weight_concentration_prior_type=prior_type,
                    weight_concentration_prior=1e-3, init_params=init, random_state=0)
                shown = str(reached) if reached else f"not within {args.max_iter}"
                print(f"| {rows:,} | {prior_type} | {init} | {shown} | {share:.4f} | "
                      f"{time.perf_counter() - started:.1f} |", flush=True)

    rows = max(int(r) for r in args.rows.split(","))
    X = _data(rows)
    model = BayesianGaussianMixture(n_components=10, weight_concentration_prior=1e-3,
                                    init_params="random_from_data", random_state=0,
                                    warm_start=True, max_iter=args.max_iter)
    model.fit(X[: args.sample])
    on_sample, sample_iterations = _held_by_three(model.weights_), model.n_iter_
    model.set_params(max_iter=args.warm_iter, tol=0.0).fit(X)
    print(f"\nSample then warm start: {sample_iterations} iterations on the first "
          f"{min(args.sample, rows):,} rows put {on_sample:.4f} of the weight on 3 components; "
          f"{args.warm_iter} warm-started iterations on all {rows:,} rows keep "
          f"{_held_by_three(model.weights_):.4f} there.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
