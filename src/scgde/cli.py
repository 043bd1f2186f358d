"""The ``scgde`` command line: ``demo``, ``train``, ``embed``, ``generate``.

Arguments, input paths and the names in the input files (obs columns, layers; read with h5py, without
the matrices) are checked before torch, Lightning and scvi are imported and before any matrix is
read, so ``scgde --help``, ``scgde --version`` and mistyped calls answer at once. Numbers that cannot
work are refused (a training step or a generated output larger than the memory available) or clipped
with a note (``--cells-per-set`` above the largest set). Expected failures (a missing file, an
unknown set or obs key, data of the wrong kind) end with one ``scgde: error:`` line, in terms of the
command's flags, and exit status 2; nothing is written by a run that fails before its results exist,
and results already there are replaced only with ``--overwrite``.

``scgde train`` prints its plan when the training starts (sets, cells, genes, the generator, how many
optimiser steps and why, the memory of a step), a time estimate after about 20 s, and a summary at
the end. Ctrl-C stops it after the current step (a second Ctrl-C at once) with exit status 130;
with ``--save-on-interrupt`` what was trained so far is saved as a finished run would be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

from scgde import __version__
from scgde._cli_checks import (
    ACCELERATORS,
    COUNT_GENERATORS,
    ENCODERS,
    GENERATORS,
    LIKELIHOODS,
    PRECISIONS,
    TRAIN_DEFAULTS,
    as_flags,
    available_memory,
    check_new_output,
    check_sets,
    gpu_present,
    peek_h5ad,
    size_text,
    step_bytes,
)

#: errors raised for bad inputs; anything else is a bug and keeps its traceback
_INPUT_ERRORS = (KeyError, ValueError, OSError, MemoryError)
_RUN_INFO = "scgde_run.json"
#: what ``scgde train --out RUN`` writes into RUN
_TRAIN_OUTPUTS = ("model", "history.csv", "sets.h5ad", "set_embeddings.csv")
#: exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)
_INTERRUPTED = 130
#: cells per network call of ``GDE.generate`` (its ``max_cells_per_call``), and the default hidden width
_GENERATE_CALL_CELLS = 65536
#: the share of the available memory a training step (and the data) may take
_MEMORY_SHARE = 0.8
_DEFAULT_HIDDEN = 128


class Interrupted(Exception):
    """A command stopped by Ctrl-C: ``main`` prints the message and exits with status 130."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _seed(text: str) -> int:
    """``--seed``: an integer from 0 to 2**32 - 1 (what numpy and Lightning accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {2**32 - 1}, got {text}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {2**32 - 1}, got {text}")
    return value


def _devices(text: str) -> int | str | list[int]:
    """``--devices``: a count (``2``), ``auto``, ``-1`` (all) or device ids (``0,1``)."""
    if text == "auto":
        return text
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part]
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a count, 'auto', -1 or ids like 0,1; got {text}") from None
    if value < -1 or value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive count, 'auto', -1 or ids like 0,1; got {text}")
    return value


def _shard(text: str) -> tuple[int, int]:
    """``--shard I/N``: the I-th (from 0) of N interleaved shares of the sets."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be I/N such as 0/4, got {text}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"needs 0 <= I < N, got {text}")
    return index, count


def _one_line(err: BaseException) -> str:
    """The error as one line, in the command's terms (``--layer``, not ``layer=None``)."""
    # KeyError's str() adds quotes around its message
    text = err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err)
    return as_flags(" ".join(line.strip() for line in text.splitlines() if line.strip())) or type(err).__name__


def _say(text: str) -> None:
    print(f"[scgde] {text}", flush=True)


def _require_file(path: str, what: str) -> Path:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    return Path(path)


def _read(path: str | Path, what: str, backed: bool = False):
    path = _require_file(str(path), what)
    import anndata as ad

    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as err:  # h5py and anndata raise many different types for a damaged file
        raise OSError(f"{what} {path} could not be read as .h5ad ({type(err).__name__}: {_one_line(err)}).") from err


def _model_files(model_dir: str, data: str | None, data_flag: str) -> tuple[Path, Path]:
    """The model folder and its training .h5ad, checked without importing torch."""
    folder = Path(model_dir)
    hint = "pass the model/ folder that `scgde train --out RUN` wrote (RUN/model)"
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist; {hint}.")
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(f"{model_dir} holds no model.pt, so it is not a saved model; {hint}.")
    if data is not None:
        return folder, _require_file(data, data_flag)
    info_path = folder / _RUN_INFO
    recorded = json.loads(info_path.read_text()).get("data") if info_path.is_file() else None
    if recorded is None:
        raise FileNotFoundError(f"{model_dir} does not record the .h5ad it was trained on; pass it with {data_flag}.")
    if not Path(recorded).is_file():
        raise FileNotFoundError(
            f"the training data {recorded} recorded in {info_path} no longer exists; pass its new path with {data_flag}."
        )
    return folder, Path(recorded)


def _load_model(folder: Path, data: Path, backed: bool = False):
    """The saved model with its training data (``backed``: read from disk as needed, not loaded)."""
    from scgde.model import GDE

    return GDE.load(str(folder), adata=_read(data, "training data", backed=backed))


def _check_data_for_model(model, adata, path: str) -> None:
    """A count (nb) model must be fed raw counts, from the layer it was trained on."""
    from scgde.data import layer_fetcher

    if getattr(model.module, "likelihood", None) != "nb":
        return
    layer = model.adata_manager.registry["setup_args"].get("layer")
    fix = f"the model reads raw counts from that layer, which {path} lacks: pass a file that has it"
    fetcher = layer_fetcher(adata, layer, name="adata", fix=fix)
    where = fetcher.name.removeprefix("adata.")
    try:
        fetcher.check_counts()
    except ValueError:
        raise ValueError(
            f"the model was trained on raw counts (likelihood='nb', from {where}), but {where} of {path} has "
            f"negative or non-integer values (log-normalised?); pass a file whose {where} holds raw counts."
        ) from None


def _write_sets(model, adata, out: Path, set_key=None) -> None:
    from scgde.tl import embed_sets, set_adata

    embed_sets(model, adata, set_key=set_key)
    sets = set_adata(adata)
    out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    sets.write_h5ad(out / "sets.h5ad")
    adata.uns["gde"]["embedding"].to_csv(out / "set_embeddings.csv")
    print(f"[scgde] wrote {sets.n_obs} set embeddings to {out / 'sets.h5ad'} and {out / 'set_embeddings.csv'}")


def _set_key(values: list[str] | None):
    return None if values is None else (values if len(values) > 1 else values[0])


def _cmd_demo(args) -> None:
    from scgde._demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed)


def _run_info(folder: Path) -> dict:
    """What ``scgde train`` recorded beside the model (training data, set key, layer); ``{}`` if nothing."""
    path = folder / _RUN_INFO
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _warnings_as_notes():
    """The model's warnings about the data (cells in no set, tiny sets, ...) as ``[scgde] note:`` lines, with flags."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for item in caught:
        if not issubclass(item.category, UserWarning) or issubclass(item.category, DeprecationWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
        elif str(item.message) not in seen and not _launched_rank():
            seen.add(str(item.message))
            _say(f"note: {as_flags(' '.join(str(item.message).split()))}")


def _launched_rank() -> int | None:
    """The rank of the current process when a launcher (Lightning's DDP, torchrun, SLURM) started it as one of several."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(name)
        if (
            value is not None
            and value.isdigit()
            and (name != "SLURM_PROCID" or os.environ.get("SLURM_NTASKS", "1") != "1")
        ):
            return int(value)
    return None


def _out_folder(out: Path, names, overwrite: bool) -> None:
    """Refuse an ``--out`` folder that is a file, or that holds results of an earlier run (without ``--overwrite``)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; pass a folder (it is created if needed).")
    check_new_output([out / name for name in names], overwrite)


def _train_options(args, info, sizes) -> tuple[dict, list[str]]:
    """``train()``'s options from the flags, checked against the data; and the notes about clipped values.

    Refuses a training step that would not fit in the memory available (when it runs on the CPU).
    """
    notes = []
    sets_per_batch = args.sets_per_batch or TRAIN_DEFAULTS["sets_per_batch"]
    cells_per_set = args.cells_per_set or TRAIN_DEFAULTS["cells_per_set"]
    largest = int(sizes.max())
    if args.cells_per_set is not None and args.cells_per_set > largest:
        # more would only repeat cells: smaller sets are drawn with replacement up to --cells-per-set
        cells_per_set = largest
        notes.append(
            f"--cells-per-set {args.cells_per_set:,} is more than the largest set ({largest:,} cells): using "
            f"{largest:,} (smaller sets are drawn with replacement to that size)."
        )
    if args.sets_per_batch is not None and args.sets_per_batch > len(sizes):
        notes.append(
            f"--sets-per-batch {args.sets_per_batch:,} is more than the {len(sizes):,} sets: a step draws sets (or "
            "neighbourhoods of cells) more than once."
        )
    n_latent = args.n_latent or TRAIN_DEFAULTS["n_latent"]
    likelihood = args.likelihood or "gaussian"
    on_gpu = args.accelerator in ("gpu", "cuda") or (args.accelerator in (None, "auto") and gpu_present())
    # every process of a multi-process (DDP) run on this machine reads the data and takes its own steps
    devices = args.devices if isinstance(args.devices, int) and args.devices > 0 else 1
    processes = len(args.devices) if isinstance(args.devices, list) else devices
    step = processes * step_bytes(sets_per_batch, cells_per_set, info.n_vars, n_latent, likelihood)
    data = processes * sum(info.matrix_bytes.values())
    # a process launched as one rank of a multi-process run decides nothing about memory: the ranks would
    # disagree (each sees what the others already took), and a refusal in one would leave the others waiting
    free = None if _launched_rank() is not None else available_memory()
    budget = None if on_gpu or free is None else _MEMORY_SHARE * free
    if budget is not None and step + data > budget:
        per_set = step / sets_per_batch
        fits = int(max(0, budget - data) // per_set)
        if args.sets_per_batch is None and fits >= 1:
            # the default batch does not fit: bound it (the user chose none); a given one is refused below
            notes.append(
                f"a step of the default {sets_per_batch} sets x {cells_per_set:,} cells x {info.n_vars:,} genes would "
                f"need about {size_text(step)} of the {size_text(free)} of memory available: using --sets-per-batch "
                f"{fits} (about {size_text(fits * per_set)}); pass --sets-per-batch to choose, or keep fewer genes."
            )
            sets_per_batch = args.sets_per_batch = fits
        else:
            shape = f"{sets_per_batch:,} sets x {cells_per_set:,} cells x {info.n_vars:,} genes"
            of_processes = f" in each of {processes} processes" if processes > 1 else ""
            fix = (
                f"lower --sets-per-batch (at most {fits:,} fits) or --cells-per-set"
                if fits
                else "lower --cells-per-set (even one set of this size does not fit)"
            )
            latent = f", lower --n-latent ({n_latent:,})" if n_latent > info.n_vars else ""
            raise MemoryError(
                f"a training step of {shape}{of_processes} needs about {size_text(step)} of memory (and the data "
                f"{size_text(data)}), more than {size_text(budget)} ({_MEMORY_SHARE:.0%} of the {size_text(free)} "
                f"available): {fix}{latent}, or keep fewer genes "
                "(e.g. highly variable ones)."
            )
    options = {
        "max_epochs": args.max_epochs,
        "batches_per_epoch": args.batches_per_epoch,
        "sets_per_batch": args.sets_per_batch,
        "cells_per_set": cells_per_set if args.cells_per_set is not None else None,
        "accelerator": args.accelerator,
        "devices": args.devices,
        "strategy": args.strategy,
        "num_nodes": args.num_nodes,
        "precision": args.precision,
    }
    if args.threads is not None and args.threads > (os.cpu_count() or args.threads):
        notes.append(f"--threads {args.threads} is more than the {os.cpu_count()} CPU cores: using {os.cpu_count()}.")
        args.threads = os.cpu_count()
    return {k: v for k, v in options.items() if v is not None}, notes


def _check_train_args(args) -> tuple:
    """Everything ``scgde train`` can check without torch and without reading a matrix."""
    out = Path(args.out)
    _out_folder(out, _TRAIN_OUTPUTS, args.overwrite)
    info = peek_h5ad(args.data, "data file")
    keys = list(args.set_key)
    sizes, n_missing = check_sets(info, keys)
    info.check_layer(args.layer)
    if args.batch_key is not None:
        info.check_obs_key(args.batch_key, "--batch-key")
    if args.likelihood == "nb" and args.generator not in (None, *COUNT_GENERATORS):
        raise ValueError(
            f"--likelihood nb (raw counts) needs --generator {' or '.join(COUNT_GENERATORS)}, not "
            f"--generator {args.generator}; omit --generator or pass --generator {COUNT_GENERATORS[0]}."
        )
    options, notes = _train_options(args, info, sizes)
    return out, info, sizes, n_missing, options, notes


def _plan_text(args, info, sizes, n_missing, model, options):
    """The plan's text, given the steps the trainer will take (see :class:`scgde._cli_train.TrainMonitor`)."""
    module = getattr(model, "module", None)
    generator = type(getattr(module, "generator", None)).__name__.removesuffix("Generator").lower()
    source = "X" if args.layer is None else f"layers[{args.layer!r}]"
    missing = f" ({n_missing:,} cells without a set label are left out)" if n_missing else ""
    singles = int((sizes == 1).sum())
    single = f"; {singles:,} sets of 1 cell" if singles else ""
    head = (
        f"{int(sizes.sum()):,} cells in {len(sizes):,} sets ({' x '.join(args.set_key)}){missing}{single}, "
        f"{info.n_vars:,} genes from {source}; generator {generator}, likelihood {getattr(module, 'likelihood', '?')}"
        f", n_latent {getattr(module, 'n_latent', '?')}."
    )

    def plan(steps, epochs, batches) -> str:
        chosen = getattr(model, "_default_plan", None) or {}  # the model's default step rule, as train() ran it
        sets_per_batch = chosen.get("sets_per_batch", options.get("sets_per_batch", TRAIN_DEFAULTS["sets_per_batch"]))
        cells_per_set = chosen.get("cells_per_set", options.get("cells_per_set", TRAIN_DEFAULTS["cells_per_set"]))
        length = "an unknown number of" if steps is None else f"{steps:,}"
        text = (
            f"{head}\n[scgde] plan: {length} optimiser steps ({epochs:,} epoch{'s' if epochs != 1 else ''} x "
            f"{batches:,} batches of {sets_per_batch:,} sets x {cells_per_set:,} cells), "
        )
        if args.max_epochs is not None:
            text += "as --max-epochs asks"
        elif "steps" in chosen and chosen.get("n_train_cells"):
            passes = chosen["steps"] * sets_per_batch * cells_per_set / chosen["n_train_cells"]
            passes = f"{passes:,.0f}" if passes >= 10 else f"{passes:.2g}"
            few = " (few sets: trained as neighbourhoods of cells)" if chosen.get("few_sets") else ""
            text += (
                f"the model's default for {chosen['n_train_cells']:,} training cells{few}: {passes} passes over "
                "them (--max-epochs sets another length)"
            )
        else:
            text += "the model's default length (--max-epochs sets another)"
        likelihood = getattr(module, "likelihood", "gaussian")
        step = step_bytes(sets_per_batch, cells_per_set, info.n_vars, getattr(module, "n_latent", 16), likelihood)
        return text + f"; about {size_text(step)} of memory a step."

    return plan


def _cmd_train(args) -> None:
    out, info, sizes, n_missing, train_options, notes = _check_train_args(args)  # before torch: fails fast
    if not _launched_rank():  # once, not once per process
        for note in notes:
            _say(f"note: {note}")
    data = info.path
    adata = _read(data, "data file")
    import pandas as pd
    import scvi
    import torch

    from scgde._cli_train import StopRequest, TrainMonitor, duration, last_value

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    from scgde.model import GDE

    # only the options the user gave: the rest are the model's own defaults
    model_options = {"n_latent": args.n_latent, "encoder": args.encoder, "generator": args.generator}
    model_options["likelihood"] = args.likelihood
    with _warnings_as_notes():
        GDE.setup_anndata(adata, set_key=_set_key(args.set_key), layer=args.layer, batch_key=args.batch_key)
        model = GDE(adata, **{k: v for k, v in model_options.items() if v is not None})
    stop = StopRequest()
    monitor = TrainMonitor(_plan_text(args, info, sizes, n_missing, model, train_options), stop)
    at_once = "training was stopped at once (Ctrl-C twice) after {:,} steps; nothing was saved."
    try:
        with stop:
            _train(model, {**train_options, "callbacks": [monitor]})
    except KeyboardInterrupt:
        raise Interrupted(at_once.format(monitor.steps)) from None
    except SystemExit as exc:  # Lightning's answer to a KeyboardInterrupt: sys.exit(1)
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise Interrupted(at_once.format(monitor.steps)) from None
        raise
    from scgde.model import is_global_zero

    interrupted = stop.requested or bool(getattr(model, "training_interrupted_", False))
    of = f" of {monitor.planned:,}" if monitor.planned else ""
    if interrupted and not args.save_on_interrupt:
        raise Interrupted(
            f"training was interrupted after {monitor.steps:,}{of} steps; nothing was saved "
            "(pass --save-on-interrupt to keep what was trained)."
        )
    if not is_global_zero():  # DDP: every process trained; the global-zero one writes
        return
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "model"), overwrite=True)
    record = {"data": str(data.resolve()), "set_key": list(args.set_key), "layer": args.layer}
    (out / "model" / _RUN_INFO).write_text(json.dumps(record))
    # the losses per epoch (none when Ctrl-C came before the first epoch ended)
    logged = [model.history[key] for key in ("train_loss", "validation_loss") if key in model.history]
    history = logged[0].join(logged[1:]) if logged else pd.DataFrame(columns=["train_loss"])
    history.to_csv(out / "history.csv")
    _write_sets(model, adata, out)
    print(f"[scgde] model saved to {out / 'model'}")
    train_loss, val_loss = last_value(model.history, "train_loss"), last_value(model.history, "validation_loss")
    losses = [
        f"{name} {value:.4g}" for name, value in (("train", train_loss), ("validation", val_loss)) if value is not None
    ]
    _say(
        f"{'interrupted' if interrupted else 'done'}: {monitor.steps:,}{of} optimiser steps in "
        f"{duration(monitor.seconds)}; final loss: {', '.join(losses) or 'not logged'}; wrote {out / 'model'}, "
        f"{out / 'history.csv'} (losses per epoch), {out / 'sets.h5ad'} and {out / 'set_embeddings.csv'} "
        f"({len(sizes):,} set embeddings)."
    )
    if interrupted:
        raise Interrupted(
            f"training was interrupted after {monitor.steps:,}{of} steps; what was trained is saved in {out}."
        )


def _train(model, options: dict) -> None:
    """``model.train(**options)``, with Lightning's configuration errors and running out of memory in CLI terms."""
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # pragma: no cover
        MisconfigurationException = ValueError
    import torch

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    try:
        model.train(**options)
    except MisconfigurationException as err:
        raise ValueError(f"Lightning refused the device options: {_one_line(err)}") from None
    except (out_of_memory, MemoryError) as err:
        raise MemoryError(
            f"a training step ran out of memory ({type(err).__name__}); lower --sets-per-batch or --cells-per-set, "
            "or keep fewer genes."
        ) from None
    except RuntimeError as err:
        if "can't allocate memory" not in str(err) and "out of memory" not in str(err):
            raise
        raise MemoryError(
            "a training step ran out of memory; lower --sets-per-batch or --cells-per-set, or keep fewer genes."
        ) from None


def _cmd_embed(args) -> None:
    out = Path(args.out)
    _out_folder(out, ["set_embeddings.csv"] if args.shard else ["sets.h5ad", "set_embeddings.csv"], args.overwrite)
    folder, train_data = _model_files(args.model, args.model_data, "--model-data")
    info = peek_h5ad(args.data, "data file")
    recorded = _run_info(folder)
    if args.set_key is not None:
        for key in args.set_key:
            info.check_obs_key(key, "--set-key")
    elif recorded.get("set_key"):
        for key in recorded["set_key"]:
            if key not in info.obs_columns:
                raise KeyError(
                    f"the model's set key {key!r} is not a column of obs in {info.where} (columns: "
                    f"{info.obs_columns}); pass the column that names the sets with --set-key."
                )
    if recorded.get("layer") and recorded["layer"] not in info.layers:
        raise KeyError(
            f"the model reads layer {recorded['layer']!r}, which {info.where} lacks (layers: {info.layers}); "
            "pass a file with that layer."
        )
    model = _load_model(folder, train_data, backed=args.backed)
    same = not args.backed and Path(args.data).resolve() == Path(train_data).resolve()
    # the training data again: the copy the model holds (read once, not twice)
    adata = model.adata if same else _read(args.data, "data file", backed=args.backed)
    _check_data_for_model(model, adata, args.data)
    if args.shard is None:
        _write_sets(model, adata, out, _set_key(args.set_key))
        return
    from scgde.data import set_labels

    index, count = args.shard
    _, names = set_labels(adata.obs, _set_key(args.set_key) or model.set_key)
    if index >= len(names):
        raise ValueError(f"--shard {index}/{count}: the data have only {len(names)} sets; use N <= {len(names)}.")
    emb = model.get_set_representation(adata, set_key=_set_key(args.set_key), sets=list(names[index::count]))
    out.mkdir(parents=True, exist_ok=True)
    emb.to_csv(out / "set_embeddings.csv")
    print(f"[scgde] wrote {len(emb)} set embeddings (shard {index}/{count}) to {out / 'set_embeddings.csv'}")


def _generate_bytes(n_sets: int, n_cells: int, n_vars: int, n_hidden: int) -> tuple[float, float]:
    """Bytes of the generated cells (float32) and rough working memory of one network call of ``GDE.generate``."""
    output = 4.0 * n_sets * n_cells * n_vars
    per_call = min(n_sets * n_cells, max(n_cells, _GENERATE_CALL_CELLS))  # whole sets, up to 65,536 cells a call
    return output, 4.0 * per_call * (4 * n_vars + 8 * n_hidden)


def _check_generate_memory(n_sets: int, n_cells: int, n_vars: int, n_hidden: int, all_sets: bool) -> None:
    """Refuse ``scgde generate`` whose cells (and one network call's working memory) exceed the memory available."""
    free = available_memory()
    if free is None:
        return
    output, work = _generate_bytes(n_sets, n_cells, n_vars, n_hidden)
    if output + work <= free:
        return
    low, high = 0, n_cells  # the largest --n-cells that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if sum(_generate_bytes(n_sets, mid, n_vars, n_hidden)) <= free else (low, mid - 1)
    which = "every training set; choose some with --sets" if all_sets else "from --sets"
    raise MemoryError(
        f"--n-cells {n_cells:,} x {n_sets:,} set{'s' if n_sets != 1 else ''} ({which}) x {n_vars:,} genes would be "
        f"{size_text(output)} of float32 values (and about {size_text(work)} while generating), more than the "
        f"{size_text(free)} of memory available; lower --n-cells (at most about {low:,} fits) or pass fewer --sets."
    )


def _cmd_generate(args) -> None:
    out = Path(args.out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; pass the path of the .h5ad to write.")
    check_new_output([out], args.overwrite)
    folder, train_data = _model_files(args.model, args.data, "--data")
    info = peek_h5ad(train_data, "training data")
    keys = _run_info(folder).get("set_key")
    n_sets = len(args.sets) if args.sets is not None else (len(check_sets(info, keys)[0]) if keys else None)
    if n_sets:  # the cells alone: the model's width is known once it is loaded
        _check_generate_memory(n_sets, args.n_cells, info.n_vars, 0, args.sets is None)
    model = _load_model(folder, train_data, backed=True)  # only the cells of the sets to embed are read
    # names are checked (unknown ones raise) when embedding; by default one pass embeds all training sets
    sets = args.sets if args.sets is not None else model.get_set_representation()
    n_hidden = int(model.init_params_.get("non_kwargs", {}).get("n_hidden", _DEFAULT_HIDDEN) or _DEFAULT_HIDDEN)
    _check_generate_memory(len(sets), args.n_cells, len(model.var_names), n_hidden, args.sets is None)
    cells = model.generate(sets, n_cells=args.n_cells, batch=args.batch)
    out.parent.mkdir(parents=True, exist_ok=True)
    cells.write_h5ad(out)
    print(f"[scgde] wrote {cells.n_obs} generated cells ({cells.obs['set'].nunique()} sets) to {out}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scgde`` command."""
    parser = argparse.ArgumentParser(prog="scgde", description="Generative Distribution Embeddings for sets of cells.")
    parser.add_argument("--version", action="version", version=f"scgde {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train on sets of real PBMCs with known composition (no download)")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="a short smoke run (under a minute)")
    p.add_argument("--seed", type=_seed, default=0, help="0 to 2**32 - 1")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train a GDE on an .h5ad and embed its sets")
    p.add_argument(
        "data", help="input .h5ad (X: log-normalised expression; or raw counts with --layer/--likelihood nb)"
    )
    p.add_argument("--set-key", nargs="+", required=True, help="obs column(s) defining the sets")
    p.add_argument("--out", required=True, help="output folder (model/, sets.h5ad, set_embeddings.csv, history.csv)")
    p.add_argument("--layer", default=None, help="layer to model instead of X (e.g. counts)")
    p.add_argument("--batch-key", default=None, help="obs column with the experimental batch")
    default = "default: the model's"
    p.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in --out (refused otherwise)"
    )
    p.add_argument(
        "--save-on-interrupt",
        action="store_true",
        help="on Ctrl-C, save what was trained so far (model and embeddings) before exiting with status 130",
    )
    p.add_argument("--n-latent", type=_positive_int, default=None, help=default)
    p.add_argument("--encoder", default=None, choices=ENCODERS, help=f"set encoder ({default}: resnet)")
    p.add_argument(
        "--generator", default=None, choices=GENERATORS, help=f"cell generator ({default}: flow; cvae for nb)"
    )
    p.add_argument("--likelihood", default=None, choices=LIKELIHOODS, help=f"nb needs raw counts ({default})")
    p.add_argument(
        "--max-epochs", type=_positive_int, default=None, help=f"{default} rule (the plan printed says how many steps)"
    )
    p.add_argument("--batches-per-epoch", type=_positive_int, default=None, help=default)
    p.add_argument(
        "--sets-per-batch",
        type=_positive_int,
        default=None,
        help=f"{default} (64), fewer if a step would not fit in memory; a given value that does not fit is refused",
    )
    p.add_argument(
        "--cells-per-set",
        type=_positive_int,
        default=None,
        help=f"{default} (100); a given value above the largest set is lowered to its size",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS if set)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="0 to 2**32 - 1")
    scale = p.add_argument_group("devices and processes (Lightning; a SLURM/torchrun job runs this same command)")
    scale.add_argument("--accelerator", default=None, choices=ACCELERATORS, help="(default: auto)")
    scale.add_argument(
        "--devices", type=_devices, default=None, help="count, auto, -1 (all) or ids 0,1 (default: auto)"
    )
    scale.add_argument(
        "--strategy",
        default=None,
        help="e.g. ddp (one process per device; torchrun/SLURM) or ddp_spawn (default: auto)",
    )
    scale.add_argument(
        "--num-nodes", type=_positive_int, default=None, help="machines of a multi-node job (default: 1)"
    )
    scale.add_argument(
        "--precision", default=None, choices=PRECISIONS, metavar="PRECISION", help="e.g. bf16-mixed (default: 32)"
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("embed", help="embed the sets of an .h5ad with a trained model")
    p.add_argument("model", help="model folder written by `scgde train` (RUN/model)")
    p.add_argument("data", help=".h5ad whose sets to embed (same genes, same kind of values as in training)")
    p.add_argument("--out", required=True, help="output folder (sets.h5ad, set_embeddings.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace embeddings already in --out")
    p.add_argument("--set-key", nargs="+", default=None, help="default: the model's set key")
    p.add_argument("--model-data", default=None, help="the training .h5ad, if it moved")
    p.add_argument("--backed", action="store_true", help="read the data from disk as needed (bounded memory)")
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="embed only every N-th set from the I-th (one job per shard; writes set_embeddings.csv only)",
    )
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("generate", help="generate cells for sets of the training data")
    p.add_argument("model", help="model folder written by `scgde train` (RUN/model)")
    p.add_argument("--sets", nargs="+", default=None, help="set names (default: all)")
    p.add_argument("--n-cells", type=_positive_int, default=100, help="cells per set")
    p.add_argument("--batch", default=None, help="batch to generate in (models trained with --batch-key)")
    p.add_argument("--out", required=True, help="output .h5ad")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--data", default=None, help="the training .h5ad, if it moved")
    p.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scgde`` command.

    Parameters
    ----------
    argv
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except _INPUT_ERRORS as err:
        parser.exit(2, f"scgde: error: {_one_line(err)}\n")
    except Interrupted as stop:
        parser.exit(_INTERRUPTED, f"scgde: {stop}\n")
    except KeyboardInterrupt:
        parser.exit(_INTERRUPTED, "scgde: interrupted (Ctrl-C).\n")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
