"""The report's plots: PNG files, drawn without touching the process's matplotlib state."""

from __future__ import annotations

import subprocess
import sys

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
