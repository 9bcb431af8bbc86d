"""daskgmm: Gaussian mixture models fitted by EM on data larger than memory."""

from ._data import MissingChunksError, open_zarr_array
from ._kernels import DegenerateComponentError
from .estimator import GaussianMixture

__version__ = "0.1.0"

__all__ = [
    "DegenerateComponentError",
    "GaussianMixture",
    "MissingChunksError",
    "open_zarr_array",
    "__version__",
]
