"""daskgmm: Gaussian mixture models fitted by EM on data larger than memory."""

from ._data import MissingChunksError, open_zarr_array
from ._em import IterationInfo
from ._kernels import DegenerateComponentError
from .callbacks import Checkpoint, ProgressLog
from .estimator import GaussianMixture, fit_many
from .persistence import ModelFileError, load_model, save_model

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "DegenerateComponentError",
    "GaussianMixture",
    "IterationInfo",
    "MissingChunksError",
    "ModelFileError",
    "ProgressLog",
    "load_model",
    "fit_many",
    "open_zarr_array",
    "save_model",
    "__version__",
]
