"""The ``daskgmm`` command: batch jobs driven by config files.

Exit codes
----------
0  success
1  unexpected error (a bug: please report it)
2  usage or config error (bad option, invalid or unknown config key)
3  data error (missing or unreadable data, wrong shape or dtype, NaN/inf, missing chunks)
4  fit failure (degenerate component; not converged with --fail-on-no-convergence)
5  output error (the output exists and overwriting was not asked for; a model file is unreadable)
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import click

EXIT_OK, EXIT_BUG, EXIT_CONFIG, EXIT_DATA, EXIT_FIT, EXIT_OUTPUT = 0, 1, 2, 3, 4, 5


class JobError(click.ClickException):
    """An expected failure with its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"daskgmm: error: {self.format_message()}", err=True)


@contextmanager
def _phase(exit_code: int, *errors: type[BaseException]):
    """Turn the expected errors of one phase of a job into its exit code."""
    try:
        yield
    except JobError:
        raise
    except errors as exc:
        raise JobError(str(exc) if not isinstance(exc, KeyError) else exc.args[0], exit_code) from exc


def _config_errors():
    from .config import ConfigError

    return _phase(EXIT_CONFIG, ConfigError)


def _data_errors():
    return _phase(EXIT_DATA, FileNotFoundError, KeyError, ValueError, TypeError, OSError)


def _load(config_path, overrides):
    from .config import load_config

    with _config_errors():
        return load_config(config_path, overrides)


def _open_data(path: str, array: str | None, chunk_rows: int | None = None,
               allow_missing_chunks: bool = False, storage_options: dict | None = None):
    """The data as a validated row-chunked dask array."""
    from ._data import as_dataset, open_zarr_array

    with _data_errors():
        zarr_array = open_zarr_array(path, array, **(storage_options or {}))
        data = as_dataset(zarr_array, allow_missing_chunks=allow_missing_chunks)
    X = data.array
    if chunk_rows:
        X = X.rechunk({0: chunk_rows})
    return X


def _open_weights(cfg, X):
    """The config's per-row weights (``data.sample_weight``) in X's row chunks, or None."""
    if cfg is None or not cfg.data.sample_weight:
        return None
    from ._data import open_sample_weight

    with _data_errors():
        return open_sample_weight(cfg.data.path, cfg.data.sample_weight, X.chunks[0],
                                  **cfg.data.storage_options)


def _log(fmt: str, event: str, **fields) -> None:
    if fmt == "json":
        click.echo(json.dumps({"event": event, **fields}, default=float), err=True)
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
_log_option = click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                           show_default=True, help="Progress and summary lines: text, or one JSON object per line.")


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
    from .callbacks import Checkpoint, ProgressLog
    from .cluster import connect
    from .estimator import GaussianMixture
    from .outputs import check_writable
    from .persistence import save_model

    cfg = _load(config, overrides)
    overwrite = cfg.output.overwrite if overwrite is None else overwrite
    if cfg.output.model is None:
        raise JobError("output.model is not set: where should the model file go?", EXIT_CONFIG)
    with _phase(EXIT_OUTPUT, FileExistsError):
        check_writable(cfg.output.model, overwrite)
    if resume:
        if cfg.checkpoint is None:
            raise JobError("--resume needs a checkpoint section in the config.", EXIT_CONFIG)
        if not Path(cfg.checkpoint.path).exists():
            raise JobError(f"--resume: no checkpoint at {cfg.checkpoint.path!r}.", EXIT_DATA)
    with connect(cfg.cluster) as client:
        X = _open_data(cfg.data.path, cfg.data.array, cfg.data.chunk_rows,
                       cfg.data.allow_missing_chunks, cfg.data.storage_options)
        weights = _open_weights(cfg, X)
        with _phase(EXIT_CONFIG, ValueError, TypeError):
            model = GaussianMixture(**cfg.model.model_dump())
            model._validate_params()
            model._check_initial_parameters(X.shape[1])
        callbacks = [ProgressLog(sys.stderr, log_format)]
        if cfg.checkpoint is not None:
            callbacks.append(Checkpoint(cfg.checkpoint.path, cfg.checkpoint.interval))
        _log(log_format, "start", data=cfg.data.path, n_samples=X.shape[0], n_features=X.shape[1],
             chunks=len(X.chunks[0]), cluster=cfg.cluster.kind,
             workers=len(client.scheduler_info()["workers"]) if client else 0)
        started = time.perf_counter()
        from ._kernels import DegenerateComponentError

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence is reported in the summary
            with _data_errors(), _phase(EXIT_FIT, DegenerateComponentError):
                model.fit(X, sample_weight=weights, callbacks=callbacks,
                          resume_from=cfg.checkpoint.path if resume else None)
        seconds = time.perf_counter() - started
        with _data_errors():
            total, n = model._total_loglik(X, weights)
            bic = -2 * total + model._n_parameters() * math.log(n)
    with _phase(EXIT_OUTPUT, OSError):
        save_model(model, cfg.output.model, overwrite=overwrite)
    _log(log_format, "summary", converged=bool(model.converged_), iterations=int(model.n_iter_),
         log_likelihood=float(model.lower_bound_), bic=float(bic), seconds=round(seconds, 3),
         seconds_per_iteration=round(seconds / max(model.n_iter_, 1), 3), model=cfg.output.model)
    if fail_on_no_convergence and not model.converged_:
        raise JobError(f"EM did not converge in {model.n_iter_} iterations.", EXIT_FIT)


def _resolve(config, overrides, model_path, data_path, array):
    """The config (if any) and the model and data locations, options first."""
    cfg = _load(config, overrides) if config else None
    model_path = model_path or (cfg.output.model if cfg else None)
    data_path = data_path or (cfg.data.path if cfg else None)
    array = array or (cfg.data.array if cfg else None)
    if not model_path or not data_path:
        raise JobError("Give a CONFIG, or --model and --data.", EXIT_CONFIG)
    return cfg, model_path, data_path, array


def _load_model_and_data(cfg, model_path, data_path, array):
    from .persistence import ModelFileError, load_model

    with _phase(EXIT_OUTPUT, ModelFileError, FileNotFoundError):
        model = load_model(model_path)
    X = _open_data(data_path, array, cfg.data.chunk_rows if cfg else None,
                   cfg.data.allow_missing_chunks if cfg else False)
    return model, X


def _cluster_of(cfg):
    from .config import ClusterConfig

    return cfg.cluster if cfg else ClusterConfig()


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@click.option("--model", "model_path", help="Model file (default: output.model of CONFIG).")
@click.option("--data", "data_path", help="Zarr store with the data (default: data.path of CONFIG).")
@click.option("--array", help="Array inside the Zarr group (default: data.array of CONFIG).")
@click.option("--out", help="Zarr store to write (default: output.predictions of CONFIG).")
@click.option("--probabilities/--no-probabilities", default=None, help="Also write component probabilities.")
@click.option("--log-likelihood/--no-log-likelihood", default=None, help="Also write per-sample log-likelihood.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing prediction store.")
@click.option("--shard-rows", type=click.IntRange(min=1), default=None,
              help="Write sharded arrays with this many rows per shard (default: output.shard_rows).")
def predict(config, overrides, model_path, data_path, array, out, probabilities, log_likelihood, overwrite,
            shard_rows):
    """Write labels (and optionally probabilities, log-likelihoods) to a Zarr store.

    \b
    Examples:
      daskgmm predict configs/demo.yaml --probabilities
      daskgmm predict --model model.npz --data data.zarr --array X --out pred.zarr
    """
    from .cluster import connect
    from .outputs import write_predictions

    cfg, model_path, data_path, array = _resolve(config, overrides, model_path, data_path, array)
    out = out or (cfg.output.predictions if cfg else None)
    if not out:
        raise JobError("Give --out, or output.predictions in the config.", EXIT_CONFIG)
    pick = lambda flag, key: flag if flag is not None else (getattr(cfg.output, key) if cfg else False)  # noqa: E731
    with connect(_cluster_of(cfg)):
        model, X = _load_model_and_data(cfg, model_path, data_path, array)
        started = time.perf_counter()
        with _data_errors(), _phase(EXIT_OUTPUT, FileExistsError):
            write_predictions(model, X, out, probabilities=pick(probabilities, "probabilities"),
                              log_likelihood=pick(log_likelihood, "log_likelihood"),
                              overwrite=pick(overwrite, "overwrite"),
                              shard_rows=shard_rows or (cfg.output.shard_rows if cfg else None))
    click.echo(f"Wrote predictions for {X.shape[0]:,} rows to {out} in "
               f"{time.perf_counter() - started:.1f} s")


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@click.option("--model", "model_path", help="Model file (default: output.model of CONFIG).")
@click.option("--data", "data_path", help="Zarr store with the data.")
@click.option("--array", help="Array inside the Zarr group.")
@_log_option
def score(config, overrides, model_path, data_path, array, log_format):
    """Print the mean log-likelihood, BIC and AIC of a model on a data set (one pass).

    \b
    Examples:
      daskgmm score configs/demo.yaml
      daskgmm score --model model.npz --data data.zarr --array X --log-format json
    """
    from .cluster import connect

    cfg, model_path, data_path, array = _resolve(config, overrides, model_path, data_path, array)
    with connect(_cluster_of(cfg)):
        model, X = _load_model_and_data(cfg, model_path, data_path, array)
        with _data_errors():
            total, n = model._total_loglik(X, _open_weights(cfg, X))
    k = model._n_parameters()
    _log(log_format, "score", n_samples=n, log_likelihood=total / n,
         bic=-2 * total + k * math.log(n), aic=-2 * total + 2 * k)


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
@click.option("--criterion", type=click.Choice(["bic", "aic"]), default="bic", show_default=True)
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
    from .cluster import connect
    from .estimator import GaussianMixture
    from .outputs import check_writable
    from .persistence import model_arrays_and_metadata, write_model_file

    cfg = _load(config, overrides)
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
    with _phase(EXIT_OUTPUT, FileExistsError):
        for output in (cfg.output.model, table_path):
            if output:
                check_writable(output, overwrite)
    rows, best = [], None
    with connect(cfg.cluster):
        X = _open_data(cfg.data.path, cfg.data.array, cfg.data.chunk_rows,
                       cfg.data.allow_missing_chunks, cfg.data.storage_options)
        weights = _open_weights(cfg, X)
        from ._data import as_dataset
        from ._em import total_loglik
        from ._kernels import DegenerateComponentError
        from .estimator import fit_many

        models = []
        for ct in types:
            for k in grid_k:
                params = {**cfg.model.model_dump(), "n_components": k, "covariance_type": ct}
                params.update(weights_init=None, means_init=None, precisions_init=None)
                models.append(GaussianMixture(**params))
        # The whole grid in shared passes: each pass reads every chunk once for all candidates.
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _data_errors(), _phase(EXIT_FIT, DegenerateComponentError):
                fit_many(models, X, sample_weight=weights)
                data = as_dataset(X).with_weights(weights)
                scores = total_loglik(data, [m._fitted_params() for m in models],
                                      cfg.model.split_every)
        seconds = round(time.perf_counter() - started, 3)
        for model, score in zip(models, scores, strict=True):
            total, n = float(score["loglik"]), float(score["n"])
            p = model._n_parameters()
            row = {"n_components": model.n_components, "covariance_type": model.covariance_type,
                   "log_likelihood": total / n,
                   "bic": -2 * total + p * math.log(n), "aic": -2 * total + 2 * p,
                   "n_iter": int(model.n_iter_), "converged": bool(model.converged_)}
            rows.append(row)
            _log(log_format, "candidate", **row)
            if best is None or row[criterion] < best[0][criterion]:
                best = (row, model)
        _log(log_format, "selection", candidates=len(rows), seconds=seconds)
    click.echo(_format_table(rows, criterion, best[0]))
    if table_path:
        with _phase(EXIT_OUTPUT, OSError):
            _write_table(rows, table_path, overwrite)
    if cfg.output.model:
        with _phase(EXIT_OUTPUT, OSError):
            arrays, metadata = model_arrays_and_metadata(
                best[1], {"selection": {"criterion": criterion, "table": rows}})
            write_model_file(cfg.output.model, arrays, metadata, overwrite=overwrite)
        click.echo(f"Best by {criterion.upper()}: n_components={best[0]['n_components']}, "
                   f"covariance_type={best[0]['covariance_type']}; saved to {cfg.output.model}")


def _format_table(rows: list[dict], criterion: str, best: dict) -> str:
    head = f"{'n_components':>12} {'covariance':>10} {'log-lik':>12} {'BIC':>14} {'AIC':>14} {'iters':>5} {'conv':>5}"
    lines = [head]
    for r in rows:
        mark = "  <- best" if r is best else ""
        lines.append(f"{r['n_components']:>12} {r['covariance_type']:>10} {r['log_likelihood']:>12.5f} "
                     f"{r['bic']:>14.2f} {r['aic']:>14.2f} {r['n_iter']:>5} {str(r['converged']):>5}{mark}")
    return "\n".join(lines)


def _write_table(rows: list[dict], path: str, overwrite: bool) -> None:
    from .outputs import atomic_write_bytes

    if path.endswith(".json"):
        data = json.dumps(rows, indent=2).encode()
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        data = buffer.getvalue().encode()
    atomic_write_bytes(path, lambda f: f.write(data), overwrite=overwrite)


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
@click.option("--overwrite", is_flag=True, help="Replace an existing data set.")
def make_data(path, n_samples, n_features, n_components, separation, offset, dtype, chunk_rows, seed, overwrite):
    """Write a synthetic Gaussian mixture to a Zarr store, chunk by chunk.

    The store holds X, the true labels, weights, means and covariances.

    \b
    Examples:
      daskgmm make-data data.zarr --n-samples 10000000 --n-features 16 --n-components 8
      daskgmm make-data small.zarr --n-samples 5000 --dtype float32 --chunk-rows 1000
    """
    from .synthetic import make_mixture_zarr

    started = time.perf_counter()
    with _phase(EXIT_OUTPUT, FileExistsError):
        make_mixture_zarr(path, n_samples, n_features, n_components, separation=separation,
                          offset=offset, dtype=dtype, chunk_rows=chunk_rows, seed=seed,
                          overwrite=overwrite)
    click.echo(f"Wrote {n_samples:,} x {n_features} ({dtype}) to {path} in "
               f"{time.perf_counter() - started:.1f} s")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(model_path, as_json):
    """Show what a model file holds.

    \b
    Examples:
      daskgmm info model.npz
      daskgmm info model.npz --json
    """
    from .persistence import ModelFileError, model_summary

    with _phase(EXIT_OUTPUT, ModelFileError, FileNotFoundError):
        summary = model_summary(model_path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    p, f = summary["params"], summary["fitted"]
    click.echo(f"{summary['estimator']} (format {summary['format']} v{summary['format_version']})")
    click.echo(f"  n_components={p['n_components']}  covariance_type={p['covariance_type']}  "
               f"n_features={f['n_features_in_']}")
    click.echo(f"  converged={f['converged_']}  n_iter={f['n_iter_']}  "
               f"mean log-likelihood={f['lower_bound_']:.6f}")
    click.echo(f"  weights={summary['weights']}")
    click.echo("  versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()))
    if "checkpoint" in summary:
        click.echo(f"  checkpoint at iteration {summary['checkpoint']['n_iter']}")
    if "selection" in summary:
        click.echo(f"  selected by {summary['selection']['criterion']} from "
                   f"{len(summary['selection']['table'])} candidates")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", help="Zarr store to draw the 2-D projection's sample from.")
@click.option("--array", help="Array inside the Zarr group.")
@click.option("--out-dir", default="report", show_default=True, type=click.Path(file_okay=False))
@click.option("--sample", "n_sample", type=click.IntRange(min=10), default=5000, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing plots in --out-dir.")
def report(model_path, data_path, array, out_dir, n_sample, overwrite):
    """Write PNG plots: log-likelihood per iteration, BIC over n_components, 2-D projection.

    \b
    Examples:
      daskgmm report model.npz --data data.zarr --array X --out-dir report/
      daskgmm report model.npz --out-dir report/ --overwrite
    """
    from . import plots
    from .outputs import check_writable
    from .persistence import ModelFileError, load_model, model_summary

    with _phase(EXIT_OUTPUT, ModelFileError, FileNotFoundError):
        model = load_model(model_path)
        summary = model_summary(model_path)
    out = Path(out_dir)
    targets = {"log_likelihood": out / "log_likelihood.png"}
    if "selection" in summary:
        targets["selection"] = out / "selection.png"
    if data_path:
        targets["projection"] = out / "projection.png"
    with _phase(EXIT_OUTPUT, FileExistsError):
        for target in targets.values():  # all of them before any work
            check_writable(target, overwrite)
        written = [plots.plot_log_likelihood(model, targets["log_likelihood"], overwrite=overwrite)]
        if "selection" in targets:
            written.append(plots.plot_selection(summary["selection"], targets["selection"],
                                                overwrite=overwrite))
    if data_path:
        X = _open_data(data_path, array)
        with _data_errors(), _phase(EXIT_OUTPUT, FileExistsError):
            written.append(plots.plot_projection(model, X, targets["projection"], n_sample,
                                                 overwrite=overwrite))
    for path in written:
        click.echo(f"Wrote {path}")


def run() -> None:
    """Console-script entry point: map unexpected errors to exit code 1."""
    try:
        main(standalone_mode=False)
    except JobError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_BUG)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_CONFIG)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: show it in full
        import traceback

        traceback.print_exc()
        click.echo(f"daskgmm: unexpected error: {exc}", err=True)
        sys.exit(EXIT_BUG)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    run()
