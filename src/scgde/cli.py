"""The ``scgde`` command line: ``demo``, ``train``, ``embed``, ``generate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _read(path: str):
    import anndata as ad

    return ad.read_h5ad(path)


def _load_model(model_dir: str, data: str | None):
    from scgde.model import GDE

    info_path = Path(model_dir) / "scgde_run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    data = data or info.get("data")
    if data is None:
        raise SystemExit(f"Pass --data: {model_dir} does not record the AnnData it was trained on.")
    return GDE.load(model_dir, adata=_read(data))


def _write_sets(model, adata, out: Path, set_key=None) -> None:
    from scgde.tl import embed_sets, set_adata

    embed_sets(model, adata, set_key=set_key)
    sets = set_adata(adata)
    sets.write_h5ad(out / "sets.h5ad")
    adata.uns["gde"]["embedding"].to_csv(out / "set_embeddings.csv")
    print(f"[scgde] wrote {sets.n_obs} set embeddings to {out / 'sets.h5ad'} and {out / 'set_embeddings.csv'}")


def _cmd_demo(args) -> None:
    from scgde._demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed)


def _cmd_train(args) -> None:
    import scvi

    from scgde.model import GDE

    scvi.settings.seed = args.seed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adata = _read(args.data)
    set_key = args.set_key if len(args.set_key) > 1 else args.set_key[0]
    GDE.setup_anndata(adata, set_key=set_key, layer=args.layer, batch_key=args.batch_key)
    model = GDE(
        adata, n_latent=args.n_latent, encoder=args.encoder, generator=args.generator, likelihood=args.likelihood
    )
    model.train(max_epochs=args.max_epochs, sets_per_batch=args.sets_per_batch, cells_per_set=args.cells_per_set)
    model.save(out / "model", overwrite=True)
    (out / "model" / "scgde_run.json").write_text(json.dumps({"data": str(Path(args.data).resolve())}))
    model.history["train_loss"].join(model.history.get("validation_loss")).to_csv(out / "history.csv")
    _write_sets(model, adata, out)
    print(f"[scgde] model saved to {out / 'model'}")


def _cmd_embed(args) -> None:
    model = _load_model(args.model, args.model_data)
    adata = _read(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_key = None if args.set_key is None else (args.set_key if len(args.set_key) > 1 else args.set_key[0])
    _write_sets(model, adata, out, set_key)


def _cmd_generate(args) -> None:
    model = _load_model(args.model, args.data)
    sets = args.sets or list(model.get_set_representation().index)
    out = model.generate(sets, n_cells=args.n_cells, batch=args.batch)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.write_h5ad(args.out)
    print(f"[scgde] wrote {out.n_obs} generated cells ({len(sets)} sets) to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scgde`` command."""
    parser = argparse.ArgumentParser(prog="scgde", description="Generative Distribution Embeddings for sets of cells.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train on sets of real PBMCs with known composition (no download)")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train a GDE on an .h5ad and embed its sets")
    p.add_argument("data", help="input .h5ad")
    p.add_argument("--set-key", nargs="+", required=True, help="obs column(s) defining the sets")
    p.add_argument("--out", required=True, help="output folder (model/, sets.h5ad, set_embeddings.csv)")
    p.add_argument("--layer", default=None)
    p.add_argument("--batch-key", default=None)
    p.add_argument("--n-latent", type=int, default=64)
    p.add_argument("--encoder", default="resnet")
    p.add_argument("--generator", default="cvae")
    p.add_argument("--likelihood", default=None, choices=["gaussian", "nb"])
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--sets-per-batch", type=int, default=32)
    p.add_argument("--cells-per-set", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("embed", help="embed the sets of an .h5ad with a trained model")
    p.add_argument("model", help="model folder written by `scgde train`")
    p.add_argument("data", help=".h5ad whose sets to embed (same genes)")
    p.add_argument("--out", required=True)
    p.add_argument("--set-key", nargs="+", default=None, help="default: the model's set key")
    p.add_argument("--model-data", default=None, help="the training .h5ad, if it moved")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("generate", help="generate cells for sets of the training data")
    p.add_argument("model")
    p.add_argument("--sets", nargs="+", default=None, help="set names (default: all)")
    p.add_argument("--n-cells", type=int, default=100)
    p.add_argument("--batch", default=None)
    p.add_argument("--out", required=True, help="output .h5ad")
    p.add_argument("--data", default=None, help="the training .h5ad, if it moved")
    p.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scgde`` command."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
