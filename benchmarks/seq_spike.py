"""Viral spike proteins (the paper's GISAID task, Fig. 9): month and country of sets of spike proteins.

GISAID's sequences cannot be redistributed, so two open stand-ins from ``../shared/data``:

- **monthly variants** (``scgde.datasets.spike_variant_sets``): 30 months (2020-03 to 2022-08) x 8 sets x 16 spike
  proteins, each protein the 1,273-aa reference with substitutions drawn at the month's GISAID frequencies
  (EVEscape's monthly counts; substitutions independent, so linkage is lost). Target: the month.
- **GenBank genomes** (``scgde.datasets.nextstrain_spike_sets``): real spike proteins translated from the
  Nextstrain example genomes; after dropping proteins with a deletion and incomplete chunks, 272 proteins in 68
  disjoint sets of 4 within month x country (2019-12 to 2020-05, 6 countries, 54 of the sets from the USA).
  Targets: the month and the country.

All proteins are substitution variants of one 1,273-aa reference, so the model reads only their polymorphic sites
(residues that differ from the most common one in at least 5 proteins of the variant sets, or 2 of the GenBank
proteins; every other column is constant or nearly so); this keeps training on 2 CPU cores in minutes. ``SeqGDE(alphabet="protein")`` is trained
with ``train(cells_per_set=16)`` (the paper's set size; 4 for the GenBank chunks) and otherwise its defaults. The
paper's protocol: 10 random 50/50 splits of the sets; ``Ridge(alpha=0.1)`` for the month (test MAE, months) and
``LinearSVC`` for the country (test accuracy), on standardised features; also the month with the ridge penalty tuned
by leave-one-out on the training sets (fairer to the high-dimensional baselines). Baselines, with the same readouts: the
set's mean one-hot encoding of the full proteins, its mean amino-acid 2-mer composition, the untrained encoder, and
the training mean (month) or majority class (country), and the mean one-hot encoding of the same polymorphic sites the
model reads. Month = the set's calendar month counted from 2019-12. Mean over the splits and its standard error with
Nadeau and Bengio's correction for overlapping splits (the naive s.e.m. would be ~3x smaller).

Usage: python -m benchmarks.seq_spike [--quick] [--seed 0] [--threads 1] [--data FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

import scgde
from benchmarks import _common, _seq

#: the folder holding spike_mutation_counts_evescape/ and sarscov2_genbank_nextstrain/ (beside the repository)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TITLE = "Viral spike proteins (GISAID stand-ins, Fig. 9): month and country from sets of spike proteins"
MIN_CARRIERS = 5
N_SPLITS = 10
AMINO = "ACDEFGHIKLMNPQRSTVWYX"


def polymorphic_sites(sequences: pd.Series, min_carriers: int) -> np.ndarray:
    """Columns where at least ``min_carriers`` proteins differ from the most common residue."""
    residues = np.array([list(s) for s in sequences])
    consensus = pd.DataFrame(residues).mode().iloc[0].to_numpy()
    carriers = (residues != consensus) & (residues != "X")  # an ambiguous residue is no variant
    return np.flatnonzero(carriers.sum(0) >= min_carriers)


def reduce_to_sites(adata, sites: np.ndarray):
    """A copy whose sequences are the residues at ``sites`` (the model's input)."""
    residues = np.array([list(s) for s in adata.obs["sequence"]])[:, sites]
    out = adata.copy()
    out.obs["full_sequence"] = out.obs["sequence"]
    out.obs["sequence"] = ["".join(r) for r in residues]
    return out


def mean_one_hot(adata, codes: np.ndarray, n_sets: int, key: str = "full_sequence") -> np.ndarray:
    """Each set's mean one-hot encoding of its proteins (``obs[key]``), ``(n_sets, length * 21)``."""
    lookup = np.full(256, AMINO.index("X"))
    lookup[np.frombuffer(AMINO.encode(), np.uint8)] = np.arange(len(AMINO))
    idx = lookup[np.array([np.frombuffer(s.encode(), np.uint8) for s in adata.obs[key]])]
    one_hot = np.zeros((len(idx), idx.shape[1], len(AMINO)), np.float32)
    np.put_along_axis(one_hot, idx[..., None], 1.0, axis=2)
    return pd.DataFrame(one_hot.reshape(len(idx), -1)).groupby(codes).mean().reindex(range(n_sets)).to_numpy()


def mean_2mers(adata, codes: np.ndarray, n_sets: int) -> np.ndarray:
    """Each set's mean amino-acid 2-mer composition of its full proteins, ``(n_sets, 441)``."""
    lookup = {a: i for i, a in enumerate(AMINO)}
    rows = []
    for s in adata.obs["full_sequence"]:
        ids = np.array([lookup.get(a, lookup["X"]) for a in s])
        rows.append(np.bincount(ids[:-1] * len(AMINO) + ids[1:], minlength=len(AMINO) ** 2) / (len(ids) - 1))
    return pd.DataFrame(np.array(rows)).groupby(codes).mean().reindex(range(n_sets)).to_numpy()


def corrected_sem(values, test_share: float) -> float:
    """Standard error of a mean over overlapping random splits, Nadeau & Bengio's correction (1/J + n_test/n_train)."""
    values = np.asarray(values, float)
    return float(np.sqrt((1 / len(values) + test_share / (1 - test_share)) * values.var(ddof=1)))


def readouts(features: dict, month: np.ndarray, country: np.ndarray | None, seed: int) -> pd.DataFrame:
    """Month MAE (ridge) and country accuracy (linear SVM) over random 50/50 splits: mean and s.e.m."""
    rows = {}
    splits = list(ShuffleSplit(N_SPLITS, test_size=0.5, random_state=seed).split(month))
    for name, x in features.items():
        mae, mae_cv, acc = [], [], []
        for tr, te in splits:
            if x is None:  # the training mean / majority class
                mae.append(np.abs(month[te] - month[tr].mean()).mean())
                mae_cv.append(mae[-1])
                if country is not None:
                    labels, counts = np.unique(country[tr], return_counts=True)
                    acc.append((country[te] == labels[counts.argmax()]).mean())
                continue
            ridge = make_pipeline(StandardScaler(), Ridge(alpha=0.1)).fit(x[tr], month[tr])
            mae.append(np.abs(ridge.predict(x[te]) - month[te]).mean())
            # the same with the penalty chosen by leave-one-out on the training sets (high-dimensional baselines)
            tuned = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13))).fit(x[tr], month[tr])
            mae_cv.append(np.abs(tuned.predict(x[te]) - month[te]).mean())
            if country is not None:
                svm = make_pipeline(StandardScaler(), LinearSVC(max_iter=10_000)).fit(x[tr], country[tr])
                acc.append((svm.predict(x[te]) == country[te]).mean())
        sem = lambda v: corrected_sem(v, test_share=0.5)
        rows[name] = {
            "month MAE (months)": np.mean(mae),
            "s.e.m.": sem(mae),
            "month MAE, tuned ridge": np.mean(mae_cv),
            "s.e.m.  ": sem(mae_cv),
        }
        if country is not None:
            rows[name] |= {"country accuracy": np.mean(acc), "s.e.m. ": sem(acc)}
    table = pd.DataFrame(rows).T
    table.index.name = "set representation"
    return table


def task(adata, set_key: str, cells_per_set: int, min_carriers: int, args, country: bool):
    """Train the default protein SeqGDE on ``adata``'s polymorphic sites; compare readouts with the baselines."""
    sites = polymorphic_sites(adata.obs["sequence"], min_carriers)
    reduced = reduce_to_sites(adata, sites)
    info = reduced.obs.groupby(set_key, observed=True).agg(month=("month", "first"), country=("location", "first"))
    # the set's calendar month, counted from 2019-12 (a per-sequence days // 30 can split one month in two)
    year_month = info["month"].str.split("-", expand=True).astype(int)
    info["month"] = (year_month[0] - 2019) * 12 + year_month[1] - 12
    codes = pd.Categorical(reduced.obs[set_key], categories=info.index).codes
    fitted = _seq.fit_default(
        reduced,
        {"set_key": set_key, "alphabet": "protein", "unknown": "mask"},
        args.quick,
        seed=args.seed,
        quick_budget={**_seq.QUICK_BUDGET, "cells_per_set": 4},
        cells_per_set=cells_per_set,
    )
    model, untrained, train_s = fitted.model, fitted.untrained, fitted.train_s
    embed = lambda m: m.get_set_representation(progress_bar=False).loc[info.index].to_numpy()
    features = {
        "GDE (default protein SeqGDE)": embed(model),
        "untrained encoder": embed(untrained),
        "mean one-hot (full proteins)": mean_one_hot(reduced, codes, len(info)),
        "mean one-hot (the model's polymorphic sites)": mean_one_hot(reduced, codes, len(info), "sequence"),
        "mean 2-mer composition (full proteins)": mean_2mers(reduced, codes, len(info)),
        "training mean / majority class": None,
    }
    table = readouts(
        features, info["month"].to_numpy(float), info["country"].to_numpy() if country else None, args.seed
    )
    facts = {
        "sets": len(info),
        "proteins": reduced.n_obs,
        "sites": len(sites),
        "train_s": train_s,
    }
    return table, facts


def run(args: argparse.Namespace) -> dict:
    evescape, nextstrain = (
        Path(args.data) / "spike_mutation_counts_evescape",
        Path(args.data) / "sarscov2_genbank_nextstrain",
    )
    variants = scgde.datasets.spike_variant_sets(
        evescape / "single_mutant_count_by_month.csv", evescape / "SPIKE_SARS2.fasta", seed=args.seed
    )
    variants.obs["location"] = "GISAID"
    genbank = scgde.datasets.nextstrain_spike_sets(
        nextstrain / "example_sequences.fasta.gz", nextstrain / "example_metadata.tsv", min_set_size=4
    )
    genbank = genbank[genbank.obs["sequence"].str.len() == 1273].copy()  # substitution variants only
    chunk = genbank.obs.groupby("set", observed=True).cumcount() // 4
    genbank.obs["chunk"] = genbank.obs["set"].astype(str) + "|" + chunk.astype(str)
    genbank = genbank[genbank.obs.groupby("chunk")["chunk"].transform("size").to_numpy() == 4].copy()
    if args.quick:
        keep = variants.obs["months_since_2019_12"].isin(variants.obs["months_since_2019_12"].unique()[::6])
        variants = variants[keep.to_numpy()].copy()
    monthly, facts_m = task(variants, "set", 16, MIN_CARRIERS, args, country=False)
    countries, facts_c = task(genbank, "chunk", 4, 2, args, country=True)
    command = f"python -m benchmarks.seq_spike{' --quick' if args.quick else ''} --seed {args.seed}"
    describe = lambda f: (
        f"{f['sets']} sets, {f['proteins']} proteins, {f['sites']} polymorphic sites, training {f['train_s']:.0f} s"
    )
    markdown = "\n\n".join(
        [
            f"### {TITLE}",
            f"Command: `{command}`. Machine: {_common.machine()}, {args.threads} torch thread(s). "
            f"Mean and s.e.m. over {N_SPLITS} random 50/50 splits of the sets.",
            f"Monthly GISAID variants (EVEscape counts): {describe(facts_m)}.",
            _common.markdown_table(monthly),
            f"GenBank spike proteins (Nextstrain example), 4-protein sets within month x country: {describe(facts_c)}.",
            _common.markdown_table(countries),
        ]
    )
    metrics = {
        "GDE_month_mae": monthly.iloc[0, 0],
        "onehot_month_mae": monthly.iloc[2, 0],
        "mean_month_mae": monthly.iloc[4, 0],
        "GDE_country_acc": countries.iloc[0, 4],
        "majority_country_acc": countries.iloc[4, 4],
    }
    return {"markdown": markdown, "metrics": metrics, "monthly": monthly, "countries": countries}


def main(argv: list[str] | None = None) -> dict:
    return _common.run_cli(
        __doc__,
        run,
        argv,
        "5 months of variants and a few steps, for the test suite",
        lambda p: p.add_argument("--data", default=str(DATA), help="the shared data folder (both datasets' folders)"),
    )


if __name__ == "__main__":
    main()
