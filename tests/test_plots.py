"""The report's plots: PNG files, drawn without touching the process's matplotlib state."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

# Run in a fresh interpreter whose backend is set to svg first: the plots must
# leave it as it is, and must not import pyplot (whose figures are global).
MAKE_PLOTS = """
import sys

import matplotlib

matplotlib.use("svg")

import numpy as np

from daskgmm import GaussianMixture
from daskgmm.jobs import plots

out = sys.argv[1]
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 6.0])
model = GaussianMixture(2, random_state=0).fit(X)
table = [{"n_components": k, "covariance_type": ct, "bic": 100.0 / k, "aic": 90.0 / k}
         for ct in ("full", "diag") for k in (1, 2, 3)]
written = [plots.plot_log_likelihood(model, f"{out}/log_likelihood.png"),
           plots.plot_selection({"criterion": "bic", "table": table}, f"{out}/selection.png"),
           plots.plot_projection(model, X, f"{out}/projection.png", n_sample=300)]
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules, *written)
"""


def test_plots_leave_the_matplotlib_backend_unchanged_and_do_not_use_pyplot(tmp_path):
    result = subprocess.run([sys.executable, "-c", MAKE_PLOTS, str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    backend, pyplot_imported, *written = result.stdout.split()
    assert backend == "svg"
    assert pyplot_imported == "False"
    names = ("log_likelihood.png", "selection.png", "projection.png")
    assert written == [str(tmp_path / name) for name in names]
    for name in names:
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # tick positions and labels exist once drawn
    return fig.axes[0]


def _whole(ticks) -> bool:
    return all(float(t).is_integer() for t in ticks)


def test_the_log_likelihood_plot_has_whole_iterations_and_no_offset():
    from types import SimpleNamespace

    from daskgmm.jobs.plots import draw_log_likelihood

    # A fit that converges to many digits: matplotlib's default would label the y axis
    # as an offset (1e-7 - 1.3722989e1) and the x axis in half iterations.
    bounds = -13.722989 + 1e-7 * np.array([0.0, 0.5, 0.8, 0.9])
    model = SimpleNamespace(lower_bounds_=bounds, n_components=3, covariance_type="full")
    ax = _drawn(draw_log_likelihood(model))
    visible = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert visible and _whole(visible)
    assert ax.yaxis.get_offset_text().get_text() == ""
    labels = [label.get_text().replace("\u2212", "-") for label in ax.get_yticklabels()]
    assert all(label.startswith("-13.72298") for label in labels if label)


def test_the_selection_plot_rings_the_chosen_model_and_shows_bic_and_aic_where_they_meet():
    from daskgmm.jobs.plots import draw_selection

    # BIC and AIC equal for "diag": both must still be drawn, told apart by their markers.
    table = [{"n_components": k, "covariance_type": ct, "bic": b, "aic": b if ct == "diag" else b - 5}
             for ct, bics in (("full", (30.0, 20.0, 25.0)), ("diag", (31.0, 22.0, 21.0)))
             for k, b in zip((2, 3, 4), bics, strict=True)]
    ax = _drawn(draw_selection({"criterion": "bic", "table": table}))
    (chosen,) = [line for line in ax.get_lines() if line.get_gid() == "chosen"]
    assert list(chosen.get_xdata()) == [3] and list(chosen.get_ydata()) == [20.0]
    assert "chosen: 3 full (by BIC)" in [t.get_text() for t in ax.get_legend().get_texts()]
    lines = {line.get_label(): line for line in ax.get_lines()}
    bic, aic = lines["BIC diag"], lines["AIC diag"]
    assert list(bic.get_ydata()) == list(aic.get_ydata())  # they coincide ...
    assert bic.get_marker() != aic.get_marker() and aic.get_zorder() > bic.get_zorder()  # ... both show
    visible = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert visible and _whole(visible)
