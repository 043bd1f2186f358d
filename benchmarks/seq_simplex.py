"""The GDE paper's DNA simplex (Fig. 3, DNA-multinomial): sets of sequences mixed from three planted patterns.

Training: Dirichlet(1, 1, 1) mixtures of three random 4-letter patterns, each sequence a cyclic repeat of its
source from a random offset (10 letters). ``SeqGDE(adata)`` with ``train()`` and no arguments. Evaluation: the
55-point simplex grid (step 1/9), new sequences. Reported, each beside its baselines from the same run:

- Pearson and Spearman between latent L2 distances and composition L2 distances over the 1,485 grid pairs
  (paper, HyenaDNA GDE: r = 0.947); baselines: the untrained encoder (the model's initial weights), the set's mean
  one-hot profile and its mean 3-mer spectrum (both linear in the composition here, so near-perfect: they show the
  task's ceiling, not a weakness of GDE);
- generated sequences from each grid set's vector: the fraction that repeat one of the patterns (valid), and the
  mean absolute error between their source proportions and the set's composition, against predicting the training
  mean composition (1/3 each) and against the untrained model.

Usage: python -m benchmarks.seq_simplex [--quick] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import scvi
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

import scgde
from benchmarks import _common
from benchmarks._seq import set_spectra
from scgde.seq._model import GUIDANCE

TITLE = "DNA simplex (Fig. 3, DNA-multinomial): latent geometry and generated composition, 55-point grid"
SIZES = {
    "quick": {"n_train": 40, "set_size": 40, "eval_size": 60, "n_generate": 30},
    "full": {"n_train": 300, "set_size": 100, "eval_size": 1000, "n_generate": 200},
}
PAPER_R = 0.9467  # gde_method.md §5.5, dna_multinomial_hyena_dists.npy


def mean_one_hot(adata) -> np.ndarray:
    """Each set's mean position-wise one-hot profile."""
    tokens, _ = scgde.seq.get_alphabet("dna").encode(adata.obs["sequence"])
    one_hot = np.eye(scgde.seq.get_alphabet("dna").n_tokens)[tokens].reshape(len(tokens), -1)
    return pd.DataFrame(one_hot).groupby(adata.obs["set"].cat.codes.to_numpy()).mean().to_numpy()


def generated_composition(model, emb: pd.DataFrame, patterns, n: int, **options) -> tuple[np.ndarray, float]:
    """Source proportions of ``n`` sequences generated per embedding, and the fraction that repeat a pattern."""
    gen = model.generate(emb, n_samples=n, **options)
    source = scgde.datasets.dna_simplex_sources(list(gen.obs["sequence"]), patterns)
    sets = gen.obs["set"].cat.codes.to_numpy()
    props = np.stack([np.bincount(source[sets == i][source[sets == i] >= 0], minlength=3) for i in range(len(emb))])
    props = props / np.maximum(props.sum(1, keepdims=True), 1)
    return props, float(np.mean(source >= 0))


def run(args: argparse.Namespace) -> dict:
    size = SIZES["quick" if args.quick else "full"]
    scvi.settings.seed = args.seed
    train = scgde.datasets.synthetic_dna_simplex(n_sets=size["n_train"], set_size=size["set_size"], seed=args.seed)
    patterns = train.uns["patterns"]
    grid = scgde.datasets.simplex_grid(3, 9)
    test = scgde.datasets.synthetic_dna_simplex(
        set_size=size["eval_size"], compositions=grid, patterns=patterns, seed=args.seed + 1000
    )
    truth = pdist(grid)

    def readouts(m):
        """The grid sets' vectors, and the source proportions and validity of sequences generated from them."""
        emb = m.get_set_representation(test, set_key="set", progress_bar=False)
        return emb, *generated_composition(m, emb, patterns, size["n_generate"])

    fitted = _common.fit_model(
        scgde.seq.SeqGDE,
        train,
        setup={"set_key": "set"},
        quick_budget={"max_epochs": 3, "batches_per_epoch": 5} if args.quick else None,
        before_train=readouts,
    )
    model, train_s, epochs = fitted.model, fitted.train_s, fitted.epochs
    untrained_emb, untrained_props, untrained_valid = fitted.untrained
    emb, props, valid = readouts(model)
    guided_props, guided_valid = generated_composition(model, emb, patterns, size["n_generate"], guidance=3.0)
    reps = {
        "GDE latent (default SeqGDE)": emb.to_numpy(),
        "untrained encoder": untrained_emb.to_numpy(),
        "mean one-hot profile": mean_one_hot(test),
        "mean 3-mer spectrum": set_spectra(test.obs["sequence"], test.obs["set"].cat.codes.to_numpy(), 3),
    }
    geometry = pd.DataFrame(
        {
            name: {"Pearson r": pearsonr(pdist(x), truth).statistic, "Spearman": spearmanr(pdist(x), truth).statistic}
            for name, x in reps.items()
        }
    ).T
    geometry.index.name = "representation"
    generation = pd.DataFrame(
        {
            f"GDE (default SeqGDE: guidance {GUIDANCE:g})": {
                "valid sequences": valid,
                "composition MAE": np.abs(props - grid).mean(),
            },
            "GDE, guidance 3": {
                "valid sequences": guided_valid,
                "composition MAE": np.abs(guided_props - grid).mean(),
            },
            "untrained model": {
                "valid sequences": untrained_valid,
                "composition MAE": np.abs(untrained_props - grid).mean(),
            },
            "training mean (1/3 each)": {"valid sequences": np.nan, "composition MAE": np.abs(1 / 3 - grid).mean()},
        }
    ).T
    generation.index.name = "generator"
    metrics = {
        "GDE_r": geometry.iloc[0, 0],
        "untrained_r": geometry.iloc[1, 0],
        "MAE": generation.iloc[0, 1],
        "MAE_guided": generation.iloc[1, 1],
        "MAE_untrained": generation.iloc[2, 1],
        "valid": valid,
        "train_s": train_s,
    }
    command = f"python -m benchmarks.seq_simplex{' --quick' if args.quick else ''} --seed {args.seed}"
    markdown = "\n\n".join(
        [
            f"### {TITLE}",
            f"Command: `{command}`. Machine: {_common.machine()}, {args.threads} torch thread(s). "
            f"Training: {size['n_train']} sets x {size['set_size']} sequences, {train_s:.0f} s"
            f"{'' if epochs is None else f' ({epochs} epochs)'}; evaluation: 55 grid sets x {size['eval_size']}.",
            _common.markdown_table(geometry),
            f"Paper (HyenaDNA GDE): Pearson r = {PAPER_R}.",
            _common.markdown_table(generation),
        ]
    )
    return {"markdown": markdown, "metrics": metrics, "geometry": geometry, "generation": generation}


def main(argv: list[str] | None = None) -> dict:
    return _common.run_cli(__doc__, run, argv, "tiny sizes, for the test suite")


if __name__ == "__main__":
    main()
