"""Batch-job config files: YAML, validated in full before any work starts.

Unknown keys are errors (they catch typos); every error names the key, the
bad value and what is allowed. See the README for every key and its default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .._files import absolute_path
from ..exceptions import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _client_path(value: str | None) -> str | None:
    """A local path made absolute against the current directory (the client's); URLs kept.

    Tasks run in the workers' working directories: a relative path must not
    reach them (see :func:`daskgmm._files.absolute_path`).
    """
    return None if value is None else absolute_path(value)


class DataConfig(_Section):
    """Where the data are."""

    path: str = Field(description="Zarr store or Parquet file/folder: a local path or an fsspec URL")
    format: Literal["auto", "zarr", "parquet", "npy"] = Field(default="auto", description="auto: parquet for a path ending in .parquet, .parq or .pq, npy for .npy, else zarr")
    array: str | None = Field(default=None, description="array inside the Zarr group (None: the path is the array, or the group's only array)")
    columns: list[str] | None = Field(default=None, description="Parquet: the feature columns, in order (None: every column, all numeric)")
    sample_weight: str | None = Field(default=None, description="array in the same Zarr group (Parquet: a column) with one non-negative weight per row (None: unit weights)")
    chunk_rows: Annotated[int, Field(ge=1)] | None = Field(default=None, description="rechunk to this many rows per chunk")
    allow_missing_chunks: bool = False
    storage_options: dict[str, Any] = Field(default_factory=dict)

    _absolute_path = field_validator("path")(_client_path)


#: The model keys of one estimator only (the others are both estimators' parameters).
GAUSSIAN_ONLY = ("weights_init", "means_init", "precisions_init", "algorithm", "online_passes",
                 "batch_size", "learning_decay", "learning_offset", "missing")
BAYESIAN_ONLY = ("weight_concentration_prior_type", "weight_concentration_prior",
                 "mean_precision_prior", "mean_prior", "degrees_of_freedom_prior",
                 "covariance_prior")


class ModelConfig(_Section):
    """The estimator and every one of its parameters, with scikit-learn's defaults."""

    estimator: Literal["GaussianMixture", "BayesianGaussianMixture"] = Field(default="GaussianMixture", description="GaussianMixture (EM) or BayesianGaussianMixture (variational inference: give a generous n_components, and the data switch off those they do not need)")
    n_components: Annotated[int, Field(ge=1)] = 1
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    tol: Annotated[float, Field(ge=0)] = 1e-3
    reg_covar: Annotated[float, Field(ge=0)] = 1e-6
    max_iter: Annotated[int, Field(ge=0)] = 100
    n_init: Annotated[int, Field(ge=1)] = 1
    init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans"
    weights_init: list[float] | None = None
    means_init: list[list[float]] | None = None
    precisions_init: list | None = None
    random_state: Annotated[int, Field(ge=0)] | None = None
    warm_start: bool = False
    verbose: Annotated[int, Field(ge=0)] = 0
    verbose_interval: Annotated[int, Field(ge=1)] = 10
    split_every: Annotated[int, Field(ge=2)] = 8
    persist: Literal["auto"] | bool = "auto"
    chunk_size: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    algorithm: Literal["batch", "online"] = "batch"
    online_passes: Annotated[int, Field(ge=1)] = 2
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    learning_decay: Annotated[float, Field(gt=0.5, le=1.0)] = 0.6
    learning_offset: Annotated[float, Field(ge=0)] = 1.0
    missing: Literal["error", "marginalize"] = "error"
    weight_concentration_prior_type: Literal["dirichlet_process", "dirichlet_distribution"] = "dirichlet_process"
    weight_concentration_prior: Annotated[float, Field(gt=0)] | None = None
    mean_precision_prior: Annotated[float, Field(gt=0)] | None = None
    mean_prior: list[float] | None = None
    degrees_of_freedom_prior: float | None = None
    covariance_prior: float | list[float] | list[list[float]] | None = None

    @model_validator(mode="after")
    def _keys_of_the_estimator(self) -> ModelConfig:
        other = BAYESIAN_ONLY if self.estimator == "GaussianMixture" else GAUSSIAN_ONLY
        given = [key for key in other if key in self.model_fields_set]
        if given:
            raise ValueError(
                f"{', '.join('model.' + key for key in given)} "
                f"{'is a parameter' if len(given) == 1 else 'are parameters'} of "
                f"{'BayesianGaussianMixture' if self.estimator == 'GaussianMixture' else 'GaussianMixture'}"
                f", not of model.estimator {self.estimator}")
        return self


class TLSConfig(_Section):
    ca_file: str
    cert_file: str
    key_file: str

    _absolute_paths = field_validator("ca_file", "cert_file", "key_file")(_client_path)


class JobqueueConfig(_Section):
    system: Literal["slurm", "pbs"]
    cores: Annotated[int, Field(ge=1)]
    memory: str
    jobs: Annotated[int, Field(ge=1)] = 1
    queue: str | None = None
    walltime: str | None = None


class ClusterConfig(_Section):
    """Where the work runs."""

    kind: Literal["embedded", "local", "address", "jobqueue"] = "embedded"
    n_workers: Annotated[int, Field(ge=1)] = 2
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    memory_limit: str | None = Field(default=None, description="per worker, e.g. '4GiB'; None: dask's default share")
    address: str | None = None
    tls: TLSConfig | None = None
    jobqueue: JobqueueConfig | None = None

    @model_validator(mode="after")
    def _kind_needs(self) -> ClusterConfig:
        if self.kind == "address":
            if not self.address:
                raise ValueError("cluster.kind 'address' needs cluster.address (tcp://host:port or tls://host:port)")
            scheme = self.address.split("://", 1)[0] if "://" in self.address else ""
            if scheme not in ("tcp", "tls"):
                raise ValueError(f"cluster.address {self.address!r} must start with tcp:// or tls://")
            if scheme == "tls" and self.tls is None:
                raise ValueError("a tls:// cluster.address needs cluster.tls with ca_file, cert_file and key_file")
        if self.kind == "jobqueue" and self.jobqueue is None:
            raise ValueError("cluster.kind 'jobqueue' needs a cluster.jobqueue section")
        return self


class OutputConfig(_Section):
    model: str | None = Field(default=None, description="model file to write (.npz): a local path or an fsspec URL")
    predictions: str | None = Field(default=None, description="Zarr store for labels (and optional extras): a local path or an fsspec URL")
    imputed: str | None = Field(default=None, description="Zarr store for `daskgmm impute`: X with missing entries filled, as the array X")
    probabilities: bool = False
    log_likelihood: bool = False
    overwrite: bool = False
    shard_rows: Annotated[int, Field(ge=1)] | None = Field(default=None, description="rows per shard of the prediction arrays (None: not sharded)")
    storage_options: dict[str, Any] | None = Field(default=None, description="fsspec options for URL outputs (None: data.storage_options)")

    _absolute_paths = field_validator("model", "predictions", "imputed")(_client_path)


class CheckpointConfig(_Section):
    path: str
    interval: Annotated[int, Field(ge=1)] = 1

    @field_validator("path")
    @classmethod
    def _local_path(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("a checkpoint is rewritten every interval iterations and must be a "
                             "local path, not a URL (the model file may be a URL)")
        return absolute_path(value)


class JobConfig(_Section):
    """A whole batch job."""

    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    checkpoint: CheckpointConfig | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _data_is_a_mapping(cls, value):
        if isinstance(value, str):
            return {"path": value}
        return value

    @property
    def output_storage_options(self) -> dict[str, Any]:
        """fsspec options for the outputs: ``output.storage_options``, else ``data.storage_options``."""
        if self.output.storage_options is not None:
            return self.output.storage_options
        return self.data.storage_options

    @model_validator(mode="after")
    def _checkpoint_needs_one_init(self):
        if self.checkpoint is not None and self.model.n_init > 1:
            raise ValueError(f"a checkpoint holds one model's state: model.n_init must be 1 "
                             f"with checkpoint, got {self.model.n_init}")
        return self


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"Invalid config {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            parent = _section_for(item["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent else ""
            message = f"unknown key (allowed here: {allowed})"
            lines.append(f"  {key}: {message}")
            continue
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


def _section_for(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = JobConfig
    for part in loc:
        field = model.model_fields.get(str(part)) if model else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        model = candidates[0] if candidates else None
    return model


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a raw config.

    Parameters
    ----------
    raw : dict
        The config as read from YAML, not yet validated; it is not modified.
    overrides : list of str
        ``dotted.key=value`` items, applied in order (a later one wins). The
        key may name a nested section (``cluster.jobqueue.cores=4``); sections
        it names that are absent are created. The value, after the first
        ``=``, is parsed with ``yaml.safe_load`` (``4`` an int, ``null`` None).

    Returns
    -------
    dict
        A copy of ``raw`` with the overrides applied (the sections they touch
        copied, the others shared with ``raw``).
    """
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} is not of the form section.key=value.")
        dotted, value = item.split("=", 1)
        parts = dotted.strip().split(".")
        target = raw
        for part in parts[:-1]:
            node = target.get(part)
            if node is None:
                node = target[part] = {}
            elif not isinstance(node, dict):
                raise ConfigError(f"Override {item!r}: {part!r} is not a section.")
            else:
                node = target[part] = dict(node)
            target = node
        target[parts[-1]] = yaml.safe_load(value)
    return raw


def parse_config(raw: Any, source: str = "") -> JobConfig:
    """Validate a raw mapping as a :class:`JobConfig`; raise :class:`ConfigError` on any problem.

    Parameters
    ----------
    raw : Any
        The config as read from YAML (with overrides applied); anything but a
        mapping is refused.
    source : str, default=""
        What the config was read from (e.g. the file's quoted path), named in
        the error message.

    Returns
    -------
    JobConfig
        The validated config, defaults filled in and local paths made absolute.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"Invalid config {source}: the top level must be a mapping of sections "
                          f"(data, model, cluster, output, checkpoint), got {type(raw).__name__}.")
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source)) from None


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> JobConfig:
    """Read a YAML config (safely: no Python objects), apply overrides, validate.

    Relative paths in ``data``, ``output``, ``checkpoint`` and
    ``cluster.tls`` are taken relative to the current directory, as a shell
    user expects, and made absolute here: the workers of a cluster run in
    directories of their own. fsspec URLs are kept as they are.

    Parameters
    ----------
    path : str or os.PathLike
        The YAML file.
    overrides : sequence of str
        ``section.key=value`` overrides (values parsed as YAML).

    Returns
    -------
    JobConfig

    Raises
    ------
    ConfigError
        The file is missing or not YAML, or the config is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"No config file at {str(path)!r}.") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"Config {str(path)!r} is not valid YAML: {error}") from None
    return parse_config(apply_overrides(raw, list(overrides)) if isinstance(raw, dict) else raw,
                        repr(str(path)))


def estimator_params(model: ModelConfig) -> dict:
    """Keyword arguments for the estimator the model section names (``model.estimator``).

    Parameters
    ----------
    model : ModelConfig
        The validated ``model`` section of a job config.

    Returns
    -------
    dict
        Every parameter of that estimator by name (those the config leaves
        out at their defaults), as plain Python values (arrays as nested
        lists).
    """
    other = BAYESIAN_ONLY if model.estimator == "GaussianMixture" else GAUSSIAN_ONLY
    return {key: value for key, value in model.model_dump().items()
            if key != "estimator" and key not in other}


def make_estimator(model: ModelConfig):
    """The unfitted estimator the model section describes.

    Parameters
    ----------
    model : ModelConfig

    Returns
    -------
    daskgmm.GaussianMixture or daskgmm.BayesianGaussianMixture
    """
    if model.estimator == "BayesianGaussianMixture":
        from ..bayesian import BayesianGaussianMixture

        return BayesianGaussianMixture(**estimator_params(model))
    from ..estimator import GaussianMixture

    return GaussianMixture(**estimator_params(model))
