"""The ``scgde`` command line: ``demo``, ``train``, ``embed``, ``generate``.

Arguments and input paths are checked before torch, Lightning and scvi are imported, so
``scgde --help``, ``scgde --version`` and mistyped calls answer at once. Expected failures (a
missing file, an unknown set or obs key, data of the wrong kind) end with one ``scgde: error:``
line and exit status 2; nothing is written by a run that fails before its results exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scgde import __version__

#: errors raised for bad inputs; anything else is a bug and keeps its traceback
_INPUT_ERRORS = (KeyError, ValueError, OSError)
_RUN_INFO = "scgde_run.json"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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
    # KeyError's str() adds quotes around its message
    text = err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__


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


def _load_model(folder: Path, data: Path):
    from scgde.model import GDE

    return GDE.load(str(folder), adata=_read(data, "training data"))


def _check_data_for_model(model, adata, path: str) -> None:
    """A count (nb) model must be fed raw counts, from the layer it was trained on."""
    from scgde.data import RowFetcher

    if getattr(model.module, "likelihood", None) != "nb":
        return
    layer = model.adata_manager.registry["setup_args"].get("layer")
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"the model reads raw counts from layer {layer!r}, which {path} lacks (layers: {list(adata.layers)})."
        )
    where = "X" if layer is None else f"layers[{layer!r}]"
    try:
        RowFetcher(adata.X if layer is None else adata.layers[layer], where).check_counts()
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


def _cmd_train(args) -> None:
    data = _require_file(args.data, "data file")
    adata = _read(data, "data file")  # before importing torch: a bad file fails fast
    import scvi
    import torch

    from scgde.model import GDE

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    GDE.setup_anndata(adata, set_key=_set_key(args.set_key), layer=args.layer, batch_key=args.batch_key)
    # only the options the user gave: the rest are the model's own defaults
    model_options = {"n_latent": args.n_latent, "encoder": args.encoder, "generator": args.generator}
    model_options["likelihood"] = args.likelihood
    model = GDE(adata, **{k: v for k, v in model_options.items() if v is not None})
    train_options = {
        "max_epochs": args.max_epochs,
        "batches_per_epoch": args.batches_per_epoch,
        "sets_per_batch": args.sets_per_batch,
        "cells_per_set": args.cells_per_set,
        "accelerator": args.accelerator,
        "devices": args.devices,
        "strategy": args.strategy,
        "num_nodes": args.num_nodes,
        "precision": args.precision,
    }
    model.train(**{k: v for k, v in train_options.items() if v is not None})
    from scgde.model import is_global_zero

    if not is_global_zero():  # DDP: every process trained; the global-zero one writes
        return
    out = Path(args.out)
    model.save(str(out / "model"), overwrite=True)
    (out / "model" / _RUN_INFO).write_text(json.dumps({"data": str(data.resolve())}))
    history = model.history["train_loss"]
    if "validation_loss" in model.history:
        history = history.join(model.history["validation_loss"])
    history.to_csv(out / "history.csv")
    _write_sets(model, adata, out)
    print(f"[scgde] model saved to {out / 'model'}")


def _cmd_embed(args) -> None:
    folder, train_data = _model_files(args.model, args.model_data, "--model-data")
    _require_file(args.data, "data file")
    model = _load_model(folder, train_data)
    adata = _read(args.data, "data file", backed=args.backed)
    _check_data_for_model(model, adata, args.data)
    if args.shard is None:
        _write_sets(model, adata, Path(args.out), _set_key(args.set_key))
        return
    from scgde.data import set_labels

    index, count = args.shard
    _, names = set_labels(adata.obs, _set_key(args.set_key) or model.set_key)
    if index >= len(names):
        raise ValueError(f"--shard {index}/{count}: the data have only {len(names)} sets; use N <= {len(names)}.")
    emb = model.get_set_representation(adata, set_key=_set_key(args.set_key), sets=list(names[index::count]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emb.to_csv(out / "set_embeddings.csv")
    print(f"[scgde] wrote {len(emb)} set embeddings (shard {index}/{count}) to {out / 'set_embeddings.csv'}")


def _cmd_generate(args) -> None:
    folder, train_data = _model_files(args.model, args.data, "--data")
    model = _load_model(folder, train_data)
    # names are checked (unknown ones raise) when embedding; by default one pass embeds all training sets
    sets = args.sets if args.sets is not None else model.get_set_representation()
    cells = model.generate(sets, n_cells=args.n_cells, batch=args.batch)
    out = Path(args.out)
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
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--n-latent", type=_positive_int, default=None, help=default)
    p.add_argument("--encoder", default=None, help=default)
    p.add_argument("--generator", default=None, help=f"e.g. cvae, ddpm, flow ({default})")
    p.add_argument("--likelihood", default=None, choices=["gaussian", "nb"], help=f"nb needs raw counts ({default})")
    p.add_argument("--max-epochs", type=_positive_int, default=None, help=default)
    p.add_argument("--batches-per-epoch", type=_positive_int, default=None, help=default)
    p.add_argument("--sets-per-batch", type=_positive_int, default=None, help=default)
    p.add_argument("--cells-per-set", type=_positive_int, default=None, help=default)
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS if set)"
    )
    p.add_argument("--seed", type=int, default=0)
    scale = p.add_argument_group("devices and processes (Lightning; a SLURM/torchrun job runs this same command)")
    scale.add_argument("--accelerator", default=None, help="cpu, gpu, auto, ... (default: auto)")
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
    scale.add_argument("--precision", default=None, help="e.g. 32, bf16-mixed, 16-mixed (default: 32)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("embed", help="embed the sets of an .h5ad with a trained model")
    p.add_argument("model", help="model folder written by `scgde train` (RUN/model)")
    p.add_argument("data", help=".h5ad whose sets to embed (same genes, same kind of values as in training)")
    p.add_argument("--out", required=True, help="output folder (sets.h5ad, set_embeddings.csv)")
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


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
