"""The ``daskgmm`` command: batch jobs driven by config files.

Exit codes
----------
0  success
1  unexpected error (a bug: please report it)
2  usage or config error (bad option, invalid or unknown config key, a --set value that is
   not YAML; a scheduler that cannot be reached in time or refuses the connection;
   --resume of a checkpoint written with other parameters)
3  data error (missing or unreadable data, wrong shape or dtype, NaN/inf, missing chunks;
   a log-likelihood that overflows under the model; --resume of a checkpoint of other data)
4  fit failure (degenerate component; statistics that overflow; not converged with
   --fail-on-no-convergence; workers that could not run a pass: WorkerLostError,
   NoWorkersError)
5  output error (the output exists and overwriting was not asked for, or cannot be written
   there; a model file or checkpoint that is unreadable or fails the model file schema)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

EXIT_OK, EXIT_BUG, EXIT_CONFIG, EXIT_DATA, EXIT_FIT, EXIT_OUTPUT = 0, 1, 2, 3, 4, 5


class JobError(click.ClickException):
    """An expected failure with its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"daskgmm: error: {self.format_message()}", err=True)


# The library's messages name its Python keywords; the command's name its own options.
_IN_THE_COMMANDS_WORDS = (
    ("use missing='marginalize'.",
     "set model.missing: marginalize in the config (--set model.missing=marginalize)."),
    ("Pass allow_missing_chunks=True if",
     "Set data.allow_missing_chunks: true in the config (--set data.allow_missing_chunks=true) if"),
    ("; name the one to use.",
     "; set data.array in the config (--set data.array=NAME; --array for predict, score, "
     "check and report)."),
)


def _in_the_commands_words(message: str) -> str:
    for library, command in _IN_THE_COMMANDS_WORDS:
        message = message.replace(library, command)
    return message


@contextmanager
def _phase(exit_code: int, *errors: type[BaseException]):
    """Turn the expected errors of one phase of a job into its exit code."""
    try:
        yield
    except JobError:
        raise
    except errors as exc:
        message = str(exc) if not isinstance(exc, KeyError) else exc.args[0]
        raise JobError(_in_the_commands_words(message), exit_code) from exc


def _config_errors():
    from ..exceptions import ConfigError

    return _phase(EXIT_CONFIG, ConfigError)


def _data_errors():
    # ImportError: a URL whose fsspec filesystem is not installed (the message names the extra).
    return _phase(EXIT_DATA, FileNotFoundError, KeyError, ValueError, TypeError, OSError,
                  ImportError)


def _load(config_path, overrides):
    import yaml

    from .config import load_config

    with _config_errors():
        try:
            return load_config(config_path, overrides)
        except yaml.YAMLError as error:  # the file's own YAML errors are ConfigErrors
            raise JobError(_bad_override(overrides, error), EXIT_CONFIG) from None


def _bad_override(overrides, error) -> str:
    """Which ``--set`` value is not (safe) YAML, and why."""
    import yaml

    for item in overrides:
        value = item.split("=", 1)[1] if "=" in item else ""
        try:
            yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = " ".join(str(exc).split())
            return (f"--set {item!r}: the value is not valid YAML ({reason}); values are read as "
                    "plain YAML (numbers, strings, lists, mappings), never as Python objects.")
    return f"A --set value is not valid YAML: {' '.join(str(error).split())}"


def _cluster_errors():
    """A scheduler that cannot be reached, or refuses us: a config error (exit 2)."""
    from ..exceptions import ClusterConnectionError

    return _phase(EXIT_CONFIG, ClusterConnectionError)


PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def _data_format(path: str, data_format: str = "auto") -> str:
    if data_format != "auto":
        return data_format
    if str(path).rstrip("/").endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "npy" if str(path).endswith(".npy") else "zarr"


def _open_data(path: str, array: str | None, chunk_rows: int | None = None,
               allow_missing_chunks: bool = False, storage_options: dict | None = None,
               log_format: str = "text", data_format: str = "auto",
               columns: list[str] | None = None, weight_column: str | None = None,
               missing: str = "error"):
    """The data as a validated row-chunked dask array (one warning if no checksum guards it).

    ``missing``: the model's; with ``marginalize``, Parquet nulls are read as NaN.
    """
    from .._data import as_dataset
    from .._zarr import has_checksum, open_zarr_array

    if _data_format(path, data_format) == "parquet":
        from .._parquet import open_parquet

        if weight_column is not None and columns is None:
            raise JobError(f"data.sample_weight is the column {weight_column!r}: give "
                           "data.columns too, so that the weights are not also a feature.",
                           EXIT_CONFIG)

        with _data_errors():
            data = as_dataset(open_parquet(path, columns, nulls_as_nan=missing == "marginalize",
                                           **(storage_options or {})))
    elif _data_format(path, data_format) == "npy":
        from .._npy import open_npy

        with _data_errors():
            data = as_dataset(open_npy(path))
    else:
        with _data_errors(), _metadata_file_named(path, array), _not_zarr(path):
            zarr_array = open_zarr_array(path, array, **(storage_options or {}))
            data = as_dataset(zarr_array, allow_missing_chunks=allow_missing_chunks)
            if not has_checksum(zarr_array):
                _warn(log_format, _unchecked_data_message(zarr_array))
    X = data.array
    if chunk_rows:
        X = X.rechunk({0: chunk_rows})
    return X


def _open_config_data(cfg, log_format: str):
    """The config's data (``data.*``), as :func:`_open_data` opens them."""
    return _open_data(cfg.data.path, cfg.data.array, cfg.data.chunk_rows,
                      cfg.data.allow_missing_chunks, cfg.data.storage_options, log_format,
                      cfg.data.format, cfg.data.columns, cfg.data.sample_weight,
                      cfg.model.missing)


@contextmanager
def _not_zarr(path: str):
    """A local file or folder that exists but is no Zarr store: say what daskgmm reads."""
    try:
        yield
    except FileNotFoundError as exc:
        if "://" not in str(path) and os.path.exists(path):
            raise JobError(
                f"{path!r} is not a Zarr array or group. daskgmm reads Zarr (data.format: zarr), "
                "Parquet files or folders of them (data.format: parquet, with data.columns; "
                f"a path ending in {', '.join(PARQUET_SUFFIXES)} is taken for Parquet) and 2-D "
                ".npy files (data.format: npy, or a path ending in .npy).",
                EXIT_DATA) from exc
        raise


@contextmanager
def _metadata_file_named(path: str, array: str | None):
    """Name the Zarr metadata file that a JSON parser failed on (a truncated ``zarr.json``)."""
    try:
        yield
    except ValueError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, json.JSONDecodeError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        where = _json_file_holding(cause.doc, path, array)
        what = (f"the Zarr metadata file {where}" if where
                else f"a Zarr metadata file (zarr.json) of {path}")
        raise JobError(f"Cannot read the data: {what} is not valid JSON ({cause.msg}: line "
                       f"{cause.lineno} column {cause.colno}); it is truncated or damaged.",
                       EXIT_DATA) from exc


def _json_file_holding(doc: str, path: str, array: str | None) -> str | None:
    """The local Zarr metadata file whose text is ``doc``, or None."""
    if "://" in path:
        return None
    root = Path(path)
    folders = [root]
    for part in (array or "").strip("/").split("/"):
        if part:
            folders.append(folders[-1] / part)
    for folder in folders:
        for name in ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"):
            candidate = folder / name
            try:
                if candidate.is_file() and candidate.read_bytes().decode(errors="replace") == doc:
                    return str(candidate)
            except OSError:
                continue
    return None


def _unchecked_data_message(zarr_array) -> str:
    from .._zarr import codec_description

    return (f"the Zarr array {zarr_array.store_path} has no checksum in its codecs "
            f"({', '.join(codec_description(zarr_array)) or 'none'}): a corrupted chunk would be "
            "read as wrong numbers without any error. Rewrite it with checksums: "
            "daskgmm rewrite SOURCE DEST (see daskgmm check).")


def _warn(fmt: str, message: str) -> None:
    if fmt == "json":
        from ..callbacks import json_event

        click.echo(json_event("warning", message=message), err=True)
    else:
        click.echo(f"daskgmm: warning: {message}", err=True)


def _output_errors():
    """Outputs that exist (without --overwrite) or cannot be written: exit 5.

    ImportError: an output URL whose fsspec filesystem is not installed (the message names the extra).
    """
    from ..exceptions import OutputError

    return _phase(EXIT_OUTPUT, OutputError, ImportError)


def _open_weights(cfg, X):
    """The config's per-row weights (``data.sample_weight``) in X's row chunks, or None."""
    if cfg is None or not cfg.data.sample_weight:
        return None
    from .._data import open_sample_weight

    with _data_errors():
        if _data_format(cfg.data.path, cfg.data.format) == "parquet":
            from .._parquet import open_parquet

            # A column of the same files: its chunks are the same row groups as X's.
            return open_parquet(cfg.data.path, [cfg.data.sample_weight],
                                **cfg.data.storage_options)[:, 0].rechunk({0: X.chunks[0]})
        return open_sample_weight(cfg.data.path, cfg.data.sample_weight, X.chunks[0],
                                  **cfg.data.storage_options)


@contextmanager
def _convergence_reported():
    """Silence ConvergenceWarning, which the job reports itself (``converged`` in the fit's
    summary, a column of the selection table); every other warning reaches the user."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


def _log(fmt: str, event: str, **fields) -> None:
    if fmt == "json":
        from ..callbacks import json_event

        click.echo(json_event(event, **fields), err=True)
    else:
        text = "  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        click.echo(f"{event}: {text}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskgmm")
def main() -> None:
    """Fit Gaussian mixture models on data larger than memory (Dask + Zarr).

    \b
    Exit codes: 0 ok, 1 unexpected error, 2 usage/config error, 3 data error,
    4 fit failure, 5 output error.
    """


_set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                           help="Override a config value (YAML syntax), e.g. --set model.n_components=8.")
#: The --log-format of the command being run, for the messages that come before or
#: after the command's own code (warnings while opening data, errors in :func:`run`).
_LOG_FORMAT = {"value": "text"}


def _remember_log_format(ctx, param, value: str) -> str:
    _LOG_FORMAT["value"] = value
    return value


def _log_format_option(expose_value: bool = True):
    return click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, is_eager=True, callback=_remember_log_format,
                        expose_value=expose_value,
                        help="Progress, summary, warning and error lines: text, or one strict "
                             "JSON object per line, each with a UTC timestamp.")


_log_option = _log_format_option()
_log_format_only = _log_format_option(expose_value=False)


class _JSONObject(click.ParamType):
    """A JSON object given on the command line, such as fsspec storage options."""

    name = "JSON"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"{value!r} is not JSON ({exc.msg}).", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} is not a JSON object ({{\"key\": value, ...}}).", param, ctx)
        return parsed


_storage_options_option = click.option(
    "--storage-options", type=_JSONObject(), default=None,
    help="fsspec options for an s3:// (or other URL) path, as a JSON object: endpoint_url, "
         "key, secret, ... (default: the filesystem's own, such as AWS_* environment variables).")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@_set_option
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in the config.")
@click.option("--fail-on-no-convergence", is_flag=True, help="Exit with code 4 if EM did not converge.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing model file.")
@_log_option
def fit(config, overrides, resume, fail_on_no_convergence, overwrite, log_format):
    """Fit the model a CONFIG file describes and write the model file.

    \b
    Examples:
      daskgmm fit configs/demo.yaml
      daskgmm fit configs/demo.yaml --set model.n_components=8 --log-format json
      daskgmm fit configs/demo.yaml --resume
    """
    from .._files import check_writable
    from ..callbacks import ProgressLog
    from ..checkpoints import Checkpoint
    from ..model_files import save_model
    from .cluster import connect
    from .config import make_estimator
    from .outputs import check_output

    cfg = _load(config, overrides)
    overwrite = cfg.output.overwrite if overwrite is None else overwrite
    if cfg.output.model is None:
        raise JobError("output.model is not set: where should the model file go?", EXIT_CONFIG)
    with _phase(EXIT_OUTPUT, OSError, ImportError):  # before any work: exists, or cannot be written there
        check_output(cfg.output.model, overwrite, cfg.output_storage_options)
        if cfg.checkpoint is not None:
            check_writable(cfg.checkpoint.path, True)
    if resume:
        if cfg.checkpoint is None:
            raise JobError("--resume needs a checkpoint section in the config.", EXIT_CONFIG)
        if not Path(cfg.checkpoint.path).exists():
            raise JobError(f"--resume: no checkpoint at {cfg.checkpoint.path!r}.", EXIT_DATA)
        from ..exceptions import ModelFileError
        from ..persistence import read_model_file

        with _phase(EXIT_OUTPUT, ModelFileError):  # checked against the schema before any work
            _, checkpoint_metadata = read_model_file(cfg.checkpoint.path)
        done = int(checkpoint_metadata["fitted"]["n_iter_"])
        if log_format == "json":
            _log(log_format, "resume", from_iteration=done, checkpoint=cfg.checkpoint.path)
        else:
            click.echo(f"resuming from iteration {done} ({cfg.checkpoint.path})", err=True)
    with _cluster_errors(), connect(cfg.cluster, announce=_announce_dashboard) as client:
        X = _open_config_data(cfg, log_format)
        weights = _open_weights(cfg, X)
        with _phase(EXIT_CONFIG, ValueError, TypeError):
            model = make_estimator(cfg.model)
            model._validate_params()
            model._check_initial_parameters(X.shape[1])
        from .progress import FitProgress, bars_wanted

        timing = _EMTiming()
        bars = FitProgress(_em_steps(model, X)) if bars_wanted(log_format) else None
        # On a terminal the bars show the iterations; in logs, one line each.
        callbacks = [bars or ProgressLog(sys.stderr, log_format), timing]
        if cfg.checkpoint is not None:
            callbacks.append(Checkpoint(cfg.checkpoint.path, cfg.checkpoint.interval))
        _log(log_format, "start", data=cfg.data.path, n_samples=X.shape[0], n_features=X.shape[1],
             chunks=len(X.chunks[0]), cluster=cfg.cluster.kind,
             workers=len(client.scheduler_info()["workers"]) if client else 0)
        started = time.perf_counter()
        from ..exceptions import (
            CheckpointDataError,
            CheckpointParamsError,
            DegenerateComponentError,
            ModelFileError,
            NonFiniteError,
            WorkerLostError,
        )

        with _convergence_reported():
            # A checkpoint of another job: exit 2 for other parameters, 3 for other data.
            # Finite data whose statistics overflow: a fit failure, like a degenerate component.
            # A checkpoint that fails the model file schema: exit 5, as for model files.
            with _data_errors(), _phase(EXIT_FIT, DegenerateComponentError, WorkerLostError,
                                        NonFiniteError), \
                    _phase(EXIT_DATA, CheckpointDataError), _phase(EXIT_CONFIG, CheckpointParamsError), \
                    _phase(EXIT_OUTPUT, ModelFileError):
                with bars.watching() if bars else contextlib.nullcontext(), \
                        _pass_events(log_format):
                    model.fit(X, sample_weight=weights, callbacks=callbacks,
                              resume_from=cfg.checkpoint.path if resume else None)
        seconds = time.perf_counter() - started
        with _data_errors():
            quality = _fit_quality(model, X, weights)
    with _phase(EXIT_OUTPUT, OSError):
        save_model(model, cfg.output.model, overwrite=overwrite,
                   storage_options=cfg.output_storage_options)
    _log(log_format, "summary", converged=bool(model.converged_),
         iterations=int(model.n_iter_), iterations_run=timing.iterations, **quality,
         estimator=cfg.model.estimator, seconds=round(seconds, 3),
         init_seconds=round(max(seconds - timing.seconds, 0.0), 3),
         seconds_per_iteration=round(timing.seconds / max(timing.iterations, 1), 3),
         model=cfg.output.model)
    if fail_on_no_convergence and not model.converged_:
        raise JobError(f"EM did not converge in {model.n_iter_} iterations.", EXIT_FIT)


def _fit_quality(model, X, weights) -> dict[str, Any]:
    """The fit's summary of its result: the mean log-likelihood and BIC (one more pass) of
    a Gaussian mixture; a Bayesian mixture's lower bound and how many components the data
    kept (those holding 99% of the weight)."""
    from .plots import components_holding, is_bayesian

    if is_bayesian(model):
        return {"lower_bound": float(model.lower_bound_),
                "components_holding_99pct": components_holding(model.weights_, 0.99)}
    return {"log_likelihood": float(model.lower_bound_),
            "bic": float(model.information_criteria(X, weights)["bic"])}


@contextmanager
def _pass_events(log_format: str):
    """In JSON logs, a ``pass`` event after each pass over the data: its name, its phase
    (``init`` for the initialisation's, ``em`` for EM's, ``other``) and its number."""
    if log_format != "json":
        yield
        return
    from .._passes import watch_passes

    count = {"n": 0}

    def event(name: str) -> None:
        count["n"] += 1
        phase = ("init" if name.startswith("gmm-init") else
                 "em" if name in ("gmm-estep", "gmm-online-estep") else "other")
        _log("json", "pass", name=name, phase=phase, number=count["n"])

    with watch_passes(event):
        yield


def _em_steps(model, X) -> int:
    """The most EM steps the fit can take: ``max_iter``, or online EM's batches x passes."""
    if model.algorithm != "online":
        return int(model.max_iter)
    if model.batch_size == "auto":  # the data's own row chunks
        batches = len(X.chunks[0])
    else:
        batches = -(-X.shape[0] // int(model.batch_size))
    return int(model.online_passes * batches)


class _EMTiming:
    """The EM iterations this run made and their seconds (a fit callback).

    The rest of a fit's time is its initialisation (or, resumed, reading the
    checkpoint): after ``--resume`` the iterations made before do not count.
    """

    def __init__(self) -> None:
        # By iteration number: with n_init candidates fitted together, each pass's
        # callback comes once per candidate, with the same seconds.
        self._seconds: dict[int, float] = {}

    def __call__(self, info) -> None:
        self._seconds[info.n_iter] = info.seconds

    @property
    def iterations(self) -> int:
        return len(self._seconds)

    @property
    def seconds(self) -> float:
        return sum(self._seconds.values())


def _resolve(config, overrides, model_path, data_path, array):
    """The config (if any) and the model and data locations, options first.

    Local paths are made absolute here, on the client: the workers run in
    directories of their own.
    """
    from .._files import absolute_path

    cfg = _load(config, overrides) if config else None
    model_path = model_path or (cfg.output.model if cfg else None)
    data_path = data_path or (cfg.data.path if cfg else None)
    array = array or (cfg.data.array if cfg else None)
    if not model_path or not data_path:
        raise JobError("Give a CONFIG, or --model and --data.", EXIT_CONFIG)
    return cfg, absolute_path(model_path), absolute_path(data_path), array


def _load_model_and_data(cfg, model_path, data_path, array, log_format="text"):
    from ..exceptions import ModelFileError
    from ..model_files import load_model

    with _phase(EXIT_OUTPUT, ModelFileError, FileNotFoundError, ImportError):
        model = load_model(model_path, cfg.output_storage_options if cfg else None)
    X = _open_data(data_path, array, cfg.data.chunk_rows if cfg else None,
                   cfg.data.allow_missing_chunks if cfg else False,
                   cfg.data.storage_options if cfg else None, log_format=log_format,
                   data_format=cfg.data.format if cfg else "auto",
                   columns=cfg.data.columns if cfg else None, missing=model.missing)
    return model, X


_model_and_data_options = [
    click.option("--model", "model_path", help="Model file (default: output.model of CONFIG)."),
    click.option("--data", "data_path", help="Zarr store with the data (default: data.path of CONFIG)."),
    click.option("--array", help="Array inside the Zarr group (default: data.array of CONFIG)."),
]


def _with_model_and_data_options(command):
    for option in reversed(_model_and_data_options):
        command = option(command)
    return command


def _destination(cfg, out: str | None, key: str) -> str:
    """``--out``, else the config's ``output.<key>``: made absolute, or a usage error if neither."""
    from .._files import absolute_path

    out = out or (getattr(cfg.output, key) if cfg else None)
    if not out:
        raise JobError(f"Give --out, or output.{key} in the config.", EXIT_CONFIG)
    return absolute_path(out)


def _report_rows_written(event: str, what: str, n_samples: int, out: str, seconds: float) -> None:
    if _LOG_FORMAT["value"] == "json":
        _log("json", event, n_samples=n_samples, out=out, seconds=round(seconds, 3))
    else:
        click.echo(f"Wrote {what} for {n_samples:,} rows to {out} in {seconds:.1f} s")


def _same_or_inside(path: str, other: str) -> bool:
    """Whether the store ``path`` is ``other`` or contains it (so that replacing it loses ``other``)."""
    path, other = path.rstrip("/"), other.rstrip("/")
    return other == path or other.startswith(path + "/")


def _cluster_of(cfg):
    from .config import ClusterConfig

    return cfg.cluster if cfg else ClusterConfig()


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@_with_model_and_data_options
@click.option("--out", help="Zarr store to write (default: output.predictions of CONFIG).")
@click.option("--probabilities/--no-probabilities", default=None, help="Also write component probabilities.")
@click.option("--log-likelihood/--no-log-likelihood", default=None, help="Also write per-sample log-likelihood.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing prediction store.")
@click.option("--shard-rows", type=click.IntRange(min=1), default=None,
              help="Write sharded arrays with this many rows per shard (default: output.shard_rows).")
@_log_format_only
def predict(config, overrides, model_path, data_path, array, out, probabilities, log_likelihood, overwrite,
            shard_rows):
    """Write labels (and optionally probabilities, log-likelihoods) to a Zarr store.

    \b
    Examples:
      daskgmm predict configs/demo.yaml --probabilities
      daskgmm predict --model model.npz --data data.zarr --array X --out pred.zarr
    """
    from .cluster import connect
    from .outputs import check_output, write_predictions

    cfg, model_path, data_path, array = _resolve(config, overrides, model_path, data_path, array)
    out = _destination(cfg, out, "predictions")
    pick = lambda flag, key: flag if flag is not None else (getattr(cfg.output, key) if cfg else False)  # noqa: E731
    storage_options = cfg.output_storage_options if cfg else None
    with _output_errors():  # before any work
        check_output(out, pick(overwrite, "overwrite"), storage_options)
    with _cluster_errors(), connect(_cluster_of(cfg), announce=_announce_dashboard):
        model, X = _load_model_and_data(cfg, model_path, data_path, array, _LOG_FORMAT["value"])
        started = time.perf_counter()
        from .progress import bars_wanted, task_bar

        with _data_errors(), _output_errors(), \
                task_bar("predict", bars_wanted(_LOG_FORMAT["value"])):
            write_predictions(model, X, out, probabilities=pick(probabilities, "probabilities"),
                              log_likelihood=pick(log_likelihood, "log_likelihood"),
                              overwrite=pick(overwrite, "overwrite"),
                              shard_rows=shard_rows or (cfg.output.shard_rows if cfg else None),
                              storage_options=storage_options)
    _report_rows_written("predictions", "predictions", int(X.shape[0]), out,
                         time.perf_counter() - started)


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@_with_model_and_data_options
@click.option("--out", help="Zarr store to write (default: output.imputed of CONFIG).")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing store.")
@click.option("--shard-rows", type=click.IntRange(min=1), default=None,
              help="Write a sharded array with this many rows per shard (default: output.shard_rows).")
@_log_format_only
def impute(config, overrides, model_path, data_path, array, out, overwrite, shard_rows):
    """Write the data with each missing entry (NaN) filled by its conditional mean.

    The model must be fitted with model.missing: marginalize. The store holds
    one float64 array, X, with the data's row chunks; observed entries are
    copied as they are.

    \b
    Examples:
      daskgmm impute configs/missing.yaml
      daskgmm impute --model model.npz --data data.zarr --array X --out filled.zarr
    """
    from .cluster import connect
    from .outputs import check_output, write_imputed
    from .plots import is_bayesian

    cfg, model_path, data_path, array = _resolve(config, overrides, model_path, data_path, array)
    out = _destination(cfg, out, "imputed")
    if _same_or_inside(out, data_path):
        raise JobError(f"The imputed data would replace the data they are computed from "
                       f"({data_path}): give another --out (output.imputed).", EXIT_CONFIG)
    overwrite = overwrite if overwrite is not None else (cfg.output.overwrite if cfg else False)
    storage_options = cfg.output_storage_options if cfg else None
    with _output_errors():  # before any work
        check_output(out, overwrite, storage_options)
    with _cluster_errors(), connect(_cluster_of(cfg), announce=_announce_dashboard):
        model, X = _load_model_and_data(cfg, model_path, data_path, array, _LOG_FORMAT["value"])
        if is_bayesian(model):
            raise JobError(f"The model {model_path} is a BayesianGaussianMixture, which does not "
                           "marginalize missing entries; impute needs a GaussianMixture fitted "
                           "with model.missing: marginalize.", EXIT_CONFIG)
        if model.missing != "marginalize":
            raise JobError(f"The model {model_path} was fitted with model.missing: {model.missing}; "
                           "impute needs one fitted with model.missing: marginalize.", EXIT_CONFIG)
        started = time.perf_counter()
        from .progress import bars_wanted, task_bar

        with _data_errors(), _output_errors(), \
                task_bar("impute", bars_wanted(_LOG_FORMAT["value"])):
            write_imputed(model, X, out, overwrite=overwrite,
                          shard_rows=shard_rows or (cfg.output.shard_rows if cfg else None),
                          storage_options=storage_options)
    _report_rows_written("imputed", "imputed data", int(X.shape[0]), out,
                         time.perf_counter() - started)


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@_with_model_and_data_options
@_log_option
def score(config, overrides, model_path, data_path, array, log_format):
    """Print the mean log-likelihood, BIC and AIC of a model on a data set (one pass).

    \b
    Examples:
      daskgmm score configs/demo.yaml
      daskgmm score --model model.npz --data data.zarr --array X --log-format json
    """
    from .cluster import connect
    from .plots import is_bayesian

    cfg, model_path, data_path, array = _resolve(config, overrides, model_path, data_path, array)
    with _cluster_errors(), connect(_cluster_of(cfg), announce=_announce_dashboard):
        model, X = _load_model_and_data(cfg, model_path, data_path, array, log_format)
        if is_bayesian(model):
            raise JobError(f"The model {model_path} is a BayesianGaussianMixture, which has no "
                           "likelihood to score with BIC and AIC (its lower bound is in "
                           "`daskgmm info`); score a GaussianMixture.", EXIT_CONFIG)
        with _data_errors():
            criteria = model.information_criteria(X, _open_weights(cfg, X))
    if not math.isfinite(criteria["log_likelihood"]):
        # A Gaussian density is never 0: a non-finite log-likelihood of finite data and a
        # valid model file means that values overflowed float64.
        raise JobError(
            f"The log-likelihood of the data under the model is "
            f"{criteria['log_likelihood'] * criteria['n_samples']}: values overflow float64 "
            "(rows so far from every component, in Mahalanobis distance, that their squared "
            "distances exceed about 1e308). Scale the data as they were when the model was "
            "fitted, or fit the model on these data.", EXIT_DATA)
    _log(log_format, "score", **criteria)


def _parse_int_list(text: str) -> list[int]:
    values: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            values.extend(range(int(lo), int(hi) + 1))
        else:
            values.append(int(part))
    return values


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@_set_option
@click.option("--n-components", "n_components_text", default="1-8", show_default=True,
              help="Values to try: a list and/or ranges, e.g. 2-9 or 2,4,8.")
@click.option("--covariance-types", default="full", show_default=True,
              help="Comma-separated covariance types to try.")
@click.option("--criterion", type=click.Choice(["bic", "aic", "icl"]), default="bic", show_default=True,
              help="BIC, AIC, or ICL (BIC penalised by the entropy of the hard classification: "
                   "prefers well-separated clusters).")
@click.option("--table", "table_path", help="Write the table here (.csv or .json).")
@click.option("--overwrite", is_flag=True, default=None,
              help="Replace an existing model file and table.")
@_log_option
def select(config, overrides, n_components_text, covariance_types, criterion, table_path, overwrite, log_format):
    """Fit a grid of n_components x covariance types; print BIC/AIC; save the best model.

    \b
    Examples:
      daskgmm select configs/demo.yaml --n-components 2-9 --covariance-types full,diag
      daskgmm select configs/demo.yaml --table selection.csv
    """
    from ..estimator import GaussianMixture, information_criteria_many
    from ..model_files import save_model
    from .cluster import connect
    from .config import estimator_params
    from .outputs import check_output

    cfg = _load(config, overrides)
    if cfg.model.estimator != "GaussianMixture":
        raise JobError(f"select compares GaussianMixture models by {criterion.upper()}; "
                       f"model.estimator is {cfg.model.estimator}, which has no likelihood to "
                       "penalise: fit it with `daskgmm fit` (give a generous n_components and "
                       "the data switch off what they do not need).", EXIT_CONFIG)
    try:
        grid_k = _parse_int_list(n_components_text)
    except ValueError:
        raise JobError(f"--n-components {n_components_text!r} is not a list of integers or ranges.",
                       EXIT_CONFIG) from None
    types = [t.strip() for t in covariance_types.split(",")]
    bad = [t for t in types if t not in ("full", "tied", "diag", "spherical")]
    if bad or not grid_k or min(grid_k) < 1:
        raise JobError(f"Invalid grid: covariance types {bad or types}, n_components {grid_k}; "
                       "allowed: full, tied, diag, spherical and integers >= 1.", EXIT_CONFIG)
    overwrite = cfg.output.overwrite if overwrite is None else overwrite
    with _phase(EXIT_OUTPUT, OSError, ImportError):
        for output in (cfg.output.model, table_path):
            if output:
                check_output(output, overwrite, cfg.output_storage_options)
    rows, best = [], None
    with _cluster_errors(), connect(cfg.cluster, announce=_announce_dashboard):
        X = _open_config_data(cfg, log_format)
        weights = _open_weights(cfg, X)
        from ..estimator import fit_many
        from ..exceptions import DegenerateComponentError, NonFiniteError

        models = []
        for ct in types:
            for k in grid_k:
                params = {**estimator_params(cfg.model), "n_components": k,
                          "covariance_type": ct}
                params.update(weights_init=None, means_init=None, precisions_init=None)
                models.append(GaussianMixture(**params))
        # The whole grid in shared passes: each pass reads every chunk once for all candidates.
        started = time.perf_counter()
        with _convergence_reported():
            with _data_errors(), _phase(EXIT_FIT, DegenerateComponentError, NonFiniteError):
                from .progress import FitProgress, bars_wanted

                if bars_wanted(log_format):
                    bars = FitProgress(max(m.max_iter for m in models), n_models=len(models))
                    with bars.watching():
                        fit_many(models, X, sample_weight=weights, callbacks=[bars])
                else:
                    with _pass_events(log_format):
                        fit_many(models, X, sample_weight=weights)
                scores = information_criteria_many(models, X, weights)
        seconds = round(time.perf_counter() - started, 3)
        for model, score in zip(models, scores, strict=True):
            row = {"n_components": model.n_components, "covariance_type": model.covariance_type,
                   "log_likelihood": score["log_likelihood"], "bic": score["bic"],
                   "aic": score["aic"], "icl": score["icl"], "n_iter": int(model.n_iter_),
                   "converged": bool(model.converged_)}
            rows.append(row)
            _log(log_format, "candidate", **row)
            if best is None or row[criterion] < best[0][criterion]:
                best = (row, model)
        _log(log_format, "selection", candidates=len(rows), seconds=seconds)
    click.echo(_format_table(rows, criterion, best[0]))
    if table_path:
        with _phase(EXIT_OUTPUT, OSError):
            _write_table(rows, table_path, overwrite, cfg.output_storage_options)
    if cfg.output.model:
        with _phase(EXIT_OUTPUT, OSError):
            save_model(best[1], cfg.output.model, overwrite=overwrite,
                       metadata={"selection": {"criterion": criterion, "table": rows}},
                       storage_options=cfg.output_storage_options)
        click.echo(f"Best by {criterion.upper()}: n_components={best[0]['n_components']}, "
                   f"covariance_type={best[0]['covariance_type']}; saved to {cfg.output.model}")


def _format_table(rows: list[dict], criterion: str, best: dict) -> str:
    head = (f"{'n_components':>12} {'covariance':>10} {'log-lik':>12} {'BIC':>14} {'AIC':>14} "
            f"{'ICL':>14} {'iters':>5} {'conv':>5}")
    lines = [head]
    for r in rows:
        mark = "  <- best" if r is best else ""
        lines.append(f"{r['n_components']:>12} {r['covariance_type']:>10} {r['log_likelihood']:>12.5f} "
                     f"{r['bic']:>14.2f} {r['aic']:>14.2f} {r['icl']:>14.2f} {r['n_iter']:>5} "
                     f"{str(r['converged']):>5}{mark}")
    return "\n".join(lines)


def _write_table(rows: list[dict], path: str, overwrite: bool, storage_options: dict) -> None:
    from .._objectstore import write_file

    if path.endswith(".json"):
        data = json.dumps(rows, indent=2).encode()
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        data = buffer.getvalue().encode()
    write_file(path, lambda f: f.write(data), overwrite=overwrite, storage_options=storage_options)


@main.command("make-data")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--n-samples", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option("--n-features", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--n-components", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--separation", type=click.FloatRange(min=0), default=4.0, show_default=True,
              help="Scale of the random means relative to unit covariances.")
@click.option("--offset", type=float, default=0.0, show_default=True, help="Added to every value.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--missing-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0,
              show_default=True, help="Set this fraction of X's entries to NaN, at random.")
@click.option("--overwrite", is_flag=True, help="Replace an existing data set.")
@_storage_options_option
@_log_format_only
def make_data(path, n_samples, n_features, n_components, separation, offset, dtype, chunk_rows, seed,
              missing_fraction, overwrite, storage_options):
    """Write a synthetic Gaussian mixture to a Zarr store, chunk by chunk.

    The store holds X, the true labels, weights, means and covariances.

    \b
    Examples:
      daskgmm make-data data.zarr --n-samples 10000000 --n-features 16 --n-components 8
      daskgmm make-data small.zarr --n-samples 5000 --dtype float32 --chunk-rows 1000
      daskgmm make-data holes.zarr --n-samples 100000 --missing-fraction 0.2
      daskgmm make-data s3://bucket/data.zarr --storage-options '{"endpoint_url": "http://127.0.0.1:9000"}'
    """
    from .synthetic import make_mixture_zarr

    started = time.perf_counter()
    from .progress import bars_wanted, row_bar

    with _output_errors(), row_bar("make-data", n_samples, bars_wanted(_LOG_FORMAT["value"])) as rows:
        make_mixture_zarr(path, n_samples, n_features, n_components, separation=separation,
                          offset=offset, dtype=dtype, chunk_rows=chunk_rows, seed=seed,
                          overwrite=overwrite, progress=rows, storage_options=storage_options,
                          missing_fraction=missing_fraction)
    click.echo(f"Wrote {n_samples:,} x {n_features} ({dtype}) to {path} in "
               f"{time.perf_counter() - started:.1f} s")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_storage_options_option
@_log_format_only
def info(model_path, as_json, storage_options):
    """Show what a model file holds.

    \b
    Examples:
      daskgmm info model.npz
      daskgmm info model.npz --json
    """
    from ..exceptions import ModelFileError
    from ..persistence import model_summary

    with _phase(EXIT_OUTPUT, ModelFileError, FileNotFoundError, ImportError):
        summary = model_summary(model_path, storage_options)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from .plots import components_holding

    p, f = summary["params"], summary["fitted"]
    bayesian = summary["estimator"] == "daskgmm.BayesianGaussianMixture"
    click.echo(f"{summary['estimator']} (format {summary['format']} v{summary['format_version']})")
    click.echo(f"  n_components={p['n_components']}  covariance_type={p['covariance_type']}  "
               f"n_features={f['n_features_in_']}")
    bound = "lower bound" if bayesian else "mean log-likelihood"
    click.echo(f"  converged={f['converged_']}  n_iter={f['n_iter_']}  "
               f"{bound}={f['lower_bound_']:.6f}")
    click.echo(f"  weights={summary['weights']}")
    if bayesian:
        priors = summary["priors"]
        click.echo(f"  weight_concentration_prior_type={p['weight_concentration_prior_type']}  "
                   f"weight_concentration_prior_={priors['weight_concentration_prior_']:.6g}")
        click.echo(f"  {components_holding(summary['weights'], 0.99)} of {p['n_components']} "
                   "components hold 99% of the weight")
    click.echo("  versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()))
    if "checkpoint" in summary:
        click.echo(f"  checkpoint at iteration {summary['checkpoint']['n_iter']}")
    if "selection" in summary:
        click.echo(f"  selected by {summary['selection']['criterion']} from "
                   f"{len(summary['selection']['table'])} candidates")


@main.command()
@click.argument("data_path", metavar="DATA")
@click.option("--array", help="Check only this array of the group (default: every array).")
@click.option("--verify", is_flag=True,
              help="Read every chunk once, one at a time, and name any that fail to read or decode.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_log_format_only
def check(data_path, array, verify, as_json):
    """Say what a Zarr data set holds and what of it can be checked.

    For each array: shape, dtype, chunking, missing chunks (never written:
    zarr reads them as the fill value without an error), codecs and whether
    they carry a checksum. Without a checksum, a corrupted chunk decodes to
    wrong numbers with no error, and no reader can detect it: rewrite the
    store with `daskgmm rewrite`. With --verify, every stored chunk is read
    once (never the whole array) and the chunks that fail are named.
    Exit 3 if chunks are missing or fail to read.

    \b
    Examples:
      daskgmm check data.zarr
      daskgmm check data.zarr --array X --verify
      daskgmm check s3://bucket/data.zarr --json
    """
    from .._zarr import describe_zarr_array, open_zarr_arrays, stored_chunk_indices, verify_chunks

    reports = []
    with _data_errors():
        for zarr_array in open_zarr_arrays(data_path, array):
            report = describe_zarr_array(zarr_array)
            if verify:
                failures = verify_chunks(zarr_array, stored_chunk_indices(zarr_array)[0])
                report["verified"] = {"chunks_read": report["n_chunks"] - report["n_missing"],
                                      "failed": [{"index": list(f.index), "where": f.where,
                                                  "error": f.error} for f in failures]}
            reports.append(report)
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    else:
        for report in reports:
            click.echo(_format_check(report))
    bad = [r["path"] for r in reports if r["n_missing"] or r.get("verified", {}).get("failed")]
    if bad:
        raise JobError(f"{len(bad)} array(s) with missing or unreadable chunks: {', '.join(bad)}",
                       EXIT_DATA)


def _format_check(report: dict) -> str:
    shape = " x ".join(str(n) for n in report["shape"]) or "scalar"
    chunking = f"chunks {tuple(report['chunks'])}"
    if report["shards"]:
        chunking += f" in shards {tuple(report['shards'])}"
    lines = [f"{report['path']}: {shape} {report['dtype']}, {chunking}, "
             f"{report['n_chunks']} stored chunk(s), zarr format {report['zarr_format']}"]
    codecs = ", ".join(report["codecs"]) or "none"
    if report["checksum"]:
        lines.append(f"  codecs: {codecs}; checksum: yes (a corrupted chunk fails to read)")
    else:
        lines.append(f"  codecs: {codecs}; checksum: NO: a corrupted chunk decodes to wrong numbers "
                     "without any error and cannot be detected; rewrite with `daskgmm rewrite`")
    if report["n_missing"]:
        where = ", ".join(f"chunk {tuple(m['index'])} ({m['where']})" for m in report["missing"])
        more = ", ..." if report["n_missing"] > len(report["missing"]) else ""
        lines.append(f"  missing chunks: {report['n_missing']} of {report['n_chunks']} (never "
                     f"written; read as the fill value): {where}{more}")
    else:
        lines.append("  missing chunks: none")
    if "verified" in report:
        failed = report["verified"]["failed"]
        read = report["verified"]["chunks_read"]
        if failed:
            lines.append(f"  verify: {len(failed)} of {read} chunk(s) failed to read:")
            lines.extend(f"    chunk {tuple(f['index'])} ({f['where']}): {f['error']}" for f in failed)
        elif report["checksum"]:
            lines.append(f"  verify: all {read} chunk(s) read and matched their checksums")
        else:
            lines.append(f"  verify: all {read} chunk(s) decoded without error, which without a "
                         "checksum does not show that they are intact")
    return "\n".join(lines)


@main.command()
@click.argument("source", metavar="SOURCE")
@click.argument("dest", metavar="DEST", type=click.Path(file_okay=False))
@click.option("--array", help="Copy only this array of the group (default: every array).")
@click.option("--allow-missing-chunks", is_flag=True,
              help="Copy never-written chunks as the fill value instead of refusing the source.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at DEST (DEST may be SOURCE).")
@_storage_options_option
@_log_format_only
def rewrite(source, dest, array, allow_missing_chunks, overwrite, storage_options):
    """Copy a Zarr store, chunk by chunk, into one whose every chunk carries a CRC32C checksum.

    Shapes, dtypes, chunks, shards, fill values and attributes are kept; the
    chunks are encoded with Blosc LZ4 + CRC32C, as every store daskgmm
    writes. The new store is put in place only when complete. A checksum
    guards from now on: a chunk corrupted before is copied as it decodes.

    \b
    Examples:
      daskgmm rewrite data.zarr checked.zarr
      daskgmm rewrite data.zarr data.zarr --overwrite     # in place
      daskgmm rewrite s3://bucket/raw.zarr s3://bucket/checked.zarr
    """
    from .outputs import rewrite_with_checksums

    started = time.perf_counter()
    with _data_errors(), _output_errors():
        written = rewrite_with_checksums(source, dest, name=array, overwrite=overwrite,
                                         allow_missing_chunks=allow_missing_chunks,
                                         **(storage_options or {}))
    click.echo(f"Wrote {written} with a checksum on every chunk in "
               f"{time.perf_counter() - started:.1f} s")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", help="Zarr store to draw the 2-D projection's sample from.")
@click.option("--array", help="Array inside the Zarr group.")
@click.option("--out-dir", default="report", show_default=True, type=click.Path(file_okay=False))
@click.option("--sample", "n_sample", type=click.IntRange(min=10), default=5000, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing plots in --out-dir.")
@_storage_options_option
@_log_format_only
def report(model_path, data_path, array, out_dir, n_sample, overwrite, storage_options):
    """Write PNG plots: log-likelihood (a Bayesian model's lower bound) per iteration, the
    weights (which components the data switched off), BIC over n_components (a model chosen
    by select), and a 2-D projection of the data (with --data).

    \b
    Examples:
      daskgmm report model.npz --data data.zarr --array X --out-dir report/
      daskgmm report model.npz --out-dir report/ --overwrite
    """
    from .._files import check_writable
    from ..exceptions import ModelFileError
    from ..model_files import load_model
    from ..persistence import model_summary
    from . import plots

    with _phase(EXIT_OUTPUT, ModelFileError, FileNotFoundError, ImportError):
        model = load_model(model_path, storage_options)
        summary = model_summary(model_path, storage_options)
    out = Path(out_dir)
    targets = {"log_likelihood": out / "log_likelihood.png", "weights": out / "weights.png"}
    if "selection" in summary:
        targets["selection"] = out / "selection.png"
    if data_path:
        targets["projection"] = out / "projection.png"
    with _phase(EXIT_OUTPUT, OSError):
        for target in targets.values():  # all of them before any work
            check_writable(target, overwrite)
        written = [plots.plot_log_likelihood(model, targets["log_likelihood"], overwrite=overwrite),
                   plots.plot_weights(model, targets["weights"], overwrite=overwrite)]
        if "selection" in targets:
            written.append(plots.plot_selection(summary["selection"], targets["selection"],
                                                overwrite=overwrite))
    if data_path:
        X = _open_data(data_path, array, storage_options=storage_options, log_format=_LOG_FORMAT["value"])
        with _data_errors(), _phase(EXIT_OUTPUT, FileExistsError):
            written.append(plots.plot_projection(model, X, targets["projection"], n_sample,
                                                 overwrite=overwrite))
    for path in written:
        click.echo(f"Wrote {path}")


def _announce_dashboard(link: str, problem: str | None) -> None:
    """The dashboard's address when it serves, or why not: a line, or a JSON ``dashboard`` event."""
    if _LOG_FORMAT["value"] == "json":
        _log("json", "dashboard", url=link, serving=problem is None, problem=problem)
    elif problem is None:
        click.echo(f"Dask dashboard: {link} (while this command runs)", err=True)
    else:
        click.echo(f"Dask dashboard: not available at {link}: {problem}", err=True)


def _report_error(message: str, exit_code: int, **fields) -> None:
    """An error line on stderr: ``daskgmm: error: ...``, or a JSON ``error`` event."""
    if _LOG_FORMAT["value"] == "json":
        from ..callbacks import json_event

        click.echo(json_event("error", message=message, exit_code=exit_code, **fields), err=True)
    else:
        click.echo(f"daskgmm: error: {message}", err=True)


def run() -> None:
    """Console-script entry point: map unexpected errors to exit code 1."""
    _LOG_FORMAT["value"] = "text"
    try:
        main(standalone_mode=False)
    except JobError as exc:
        _report_error(exc.format_message(), exc.exit_code)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _report_error("Aborted.", EXIT_BUG)
        sys.exit(EXIT_BUG)
    except click.ClickException as exc:
        if _LOG_FORMAT["value"] == "json":
            _report_error(exc.format_message(), EXIT_CONFIG)
        else:
            exc.show()
        sys.exit(EXIT_CONFIG)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: show it in full
        import traceback

        if _LOG_FORMAT["value"] == "json":
            _report_error(f"unexpected error: {exc}", EXIT_BUG, traceback=traceback.format_exc())
        else:
            traceback.print_exc()
            click.echo(f"daskgmm: unexpected error: {exc}", err=True)
        sys.exit(EXIT_BUG)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    run()
