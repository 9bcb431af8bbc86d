"""PNG plots for ``daskgmm report``.

Drawn on :class:`matplotlib.figure.Figure` objects, never through pyplot: the
process's backend, and pyplot's figures, stay as the caller left them, and no
display is needed (a figure saved as PNG is rendered by Agg whatever the backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._files import atomic_write_bytes
from .._param_constraints import BAYESIAN

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    return fig, fig.subplots()


def _save(fig: Figure, path: Path, overwrite: bool) -> Path:
    fig.tight_layout()
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png"), overwrite=overwrite)
    return path


def is_bayesian(model) -> bool:
    """Whether ``model`` is a :class:`daskgmm.BayesianGaussianMixture` (its model file's name)."""
    return getattr(model, "_estimator_name", None) == BAYESIAN


def components_holding(weights, share: float) -> int:
    """The fewest components whose weights add up to ``share`` of the total.

    How many components a Bayesian mixture's data kept: the others were
    switched off (their weights went to about zero).

    Parameters
    ----------
    weights : array-like of shape (n_components,)
    share : float
        In (0, 1].

    Returns
    -------
    int
    """
    ordered = np.sort(np.asarray(weights, dtype=np.float64))[::-1]
    total = ordered.sum()
    return int(min(np.searchsorted(np.cumsum(ordered), share * total * (1 - 1e-12)) + 1,
                   ordered.size))


def switched_on(weights) -> np.ndarray:
    """Which components a Bayesian mixture's data kept: the fewest that hold 99% of the
    weight (:func:`components_holding`); the others were switched off."""
    weights = np.asarray(weights, dtype=np.float64)
    kept = np.zeros(weights.size, dtype=bool)
    kept[np.argsort(weights, kind="stable")[::-1][:components_holding(weights, 0.99)]] = True
    return kept


def draw_log_likelihood(model) -> Figure:
    """The figure of :func:`plot_log_likelihood`: whole-number iterations, and the
    log-likelihood's own values on the y axis (no offset such as ``1e-7-1.37e1``)."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    bounds = np.asarray(model.lower_bounds_)
    ax.plot(np.arange(1, bounds.size + 1), bounds, marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    if is_bayesian(model):
        ax.set_xlabel("variational iteration")
        ax.set_ylabel("lower bound")
    else:
        ax.set_xlabel("EM iteration")
        ax.set_ylabel("mean log-likelihood")
    ax.set_title(f"{model.n_components} components, {model.covariance_type} covariance")
    ax.grid(alpha=0.3)
    return fig


def plot_log_likelihood(model, path: str | Path, *, overwrite: bool = True) -> Path:
    """Mean log-likelihood per EM iteration (a Bayesian mixture's lower bound per iteration).

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted model.
    path : str or Path
        The PNG file to write.
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.exceptions.OutputExistsError`.

    Returns
    -------
    Path
    """
    return _save(draw_log_likelihood(model), Path(path), overwrite)


def draw_weights(model) -> Figure:
    """The figure of :func:`plot_weights`: one bar per component, in the model's order."""
    fig, ax = _figure()
    weights = np.asarray(model.weights_)
    bayesian = is_bayesian(model)
    in_use = switched_on(weights) if bayesian else np.ones(weights.size, dtype=bool)
    ax.bar(np.arange(weights.size), weights, color=np.where(in_use, "tab:blue", "tab:gray"))
    ax.set_xticks(np.arange(weights.size))
    ax.set_xlabel("component")
    ax.set_ylabel("weight")
    kept = int(in_use.sum())
    ax.set_title(f"{kept} of {weights.size} components hold 99% of the weight"
                 + (" (grey: switched off)" if kept < weights.size else "") if bayesian
                 else f"the weights of the {weights.size} components")
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_weights(model, path: str | Path, *, overwrite: bool = True) -> Path:
    """The fitted weights: for a Bayesian mixture, which components the data switched off.

    For a Bayesian mixture the fewest components that hold 99% of the weight
    are drawn in blue and the others, switched off, in grey; a Gaussian
    mixture's bars are all blue.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted model.
    path : str or Path
        The PNG file to write.
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.exceptions.OutputExistsError`.

    Returns
    -------
    Path
    """
    return _save(draw_weights(model), Path(path), overwrite)


def draw_selection(selection: dict) -> Figure:
    """The figure of :func:`plot_selection`.

    BIC is a solid line with filled circles, AIC a dashed line with crosses
    drawn over it, so that both show where they coincide; the chosen model
    (lowest ``selection['criterion']``) is ringed and labelled; the
    n_components axis has whole numbers only.
    """
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    table = selection["table"]
    criterion = selection.get("criterion", "bic")
    for ct in sorted({row["covariance_type"] for row in table}):
        rows = sorted((r for r in table if r["covariance_type"] == ct), key=lambda r: r["n_components"])
        ks = [r["n_components"] for r in rows]
        (bic,) = ax.plot(ks, [r["bic"] for r in rows], marker="o", markersize=7, lw=2,
                         label=f"BIC {ct}", zorder=2)
        ax.plot(ks, [r["aic"] for r in rows], ls="--", marker="x", markersize=9, color=bic.get_color(),
                alpha=0.8, label=f"AIC {ct}", zorder=3)
        if all(r.get("icl") is not None for r in rows):  # tables of earlier releases have none
            ax.plot(ks, [r["icl"] for r in rows], ls=":", marker="+", markersize=10,
                    color=bic.get_color(), alpha=0.8, label=f"ICL {ct}", zorder=3)
    chosen = min(table, key=lambda r: r[criterion])
    ax.plot([chosen["n_components"]], [chosen[criterion]], marker="o", markersize=16, fillstyle="none",
            color="black", lw=0, mew=2, zorder=4, gid="chosen",
            label=f"chosen: {chosen['n_components']} {chosen['covariance_type']} (by {criterion.upper()})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("n_components")
    ax.set_ylabel("criterion (lower is better)")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_selection(selection: dict, path: str | Path, *, overwrite: bool = True) -> Path:
    """BIC and AIC over n_components, one colour per covariance type, the chosen model ringed.

    Parameters
    ----------
    selection : dict
        The ``selection`` section of a model file written by ``daskgmm select``
        (``criterion`` and ``table``).
    path : str or Path
        The PNG file to write.
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.exceptions.OutputExistsError`.

    Returns
    -------
    Path
    """
    return _save(draw_selection(selection), Path(path), overwrite)


def _full_covariances(model) -> np.ndarray:
    k, d = model.means_.shape
    cov = model.covariances_
    return {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: np.stack([np.eye(d) * c for c in cov]),
    }[model.covariance_type]()


def plot_projection(model, X, path: str | Path, n_sample: int = 5000, seed: int = 0, *,
                    overwrite: bool = True) -> Path:
    """A uniform sample of rows projected on its first two principal axes,
    coloured by component, with each component's 2-sigma covariance ellipse.

    Parameters
    ----------
    model : GaussianMixture
        A fitted model.
    X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
        The data to sample rows from.
    path : str or Path
        The PNG file to write.
    n_sample : int, default=5000
        Rows to sample.
    seed : int, default=0
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.exceptions.OutputExistsError`.

    Returns
    -------
    Path
    """
    from matplotlib import colormaps
    from matplotlib.patches import Ellipse

    from .._data import as_dataset
    from .._init import sample_rows

    data = as_dataset(X)
    sample = sample_rows(data, n_sample, np.random.RandomState(seed))
    centre = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - centre, full_matrices=False)
    axes = vt[:2].T if vt.shape[0] >= 2 else np.hstack([vt.T, np.zeros_like(vt.T)])
    projected = (sample - centre) @ axes
    labels = np.asarray(model.predict(sample))
    fig, ax = _figure()
    colours = colormaps["tab10"]
    ax.scatter(projected[:, 0], projected[:, 1], c=[colours(label % 10) for label in labels], s=4,
               alpha=0.5)
    kept = switched_on(model.weights_) if is_bayesian(model) else np.ones(len(model.weights_), bool)
    for k, (mean, cov) in enumerate(zip(model.means_, _full_covariances(model), strict=True)):
        if not kept[k]:
            continue  # a component the data switched off: no ellipse
        m2 = (mean - centre) @ axes
        c2 = axes.T @ cov @ axes
        values, vectors = np.linalg.eigh(c2)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        width, height = 2 * 2 * np.sqrt(np.maximum(values[::-1], 0))
        ax.add_patch(Ellipse(m2, width, height, angle=angle, fill=False, color=colours(k % 10), lw=2))
        ax.annotate(str(k), m2, ha="center", va="center", weight="bold")
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title(f"{sample.shape[0]:,} sampled rows, coloured by component")
    return _save(fig, Path(path), overwrite)
