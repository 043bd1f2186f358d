"""Bisulfite read sets (the paper's methylation task, App. B.1/B.7): tumour vs normal from sets of real reads.

Data: the 2,041 real bisulfite reads of MethylBERT's test files (``../shared/data/methylation_reads_methylbert``; two
samples, tumour T and normal N, 10 differentially methylated regions). Sets: disjoint random chunks of 8 reads within
each region x sample, built separately from ``train_seq.csv`` and from the held-out ``test_seq.csv``. ``SeqGDE`` is
trained on the training read sets (reads as sequenced, no methylation calls) with ``train()`` and no arguments; a
logistic regression on the set embeddings of the training sets predicts the held-out sets' sample. Baselines, with
the same classifier: each set's mean CpG methylation fraction (from the aligner's per-CpG calls, information the
model never sees), its mean 3-mer spectrum, the untrained encoder, and the region alone (chance: both samples cover
every region). Held-out balanced accuracy and ROC-AUC.

The tumour and normal reads come from two runs, so anything that differs between the runs (not only methylation)
can separate them; the methylation fraction alone separates them almost perfectly (0.83 against 0.10 on average).

Usage: python -m benchmarks.seq_methylation [--quick] [--seed 0] [--threads 1] [--data FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import scgde
from benchmarks import _common, _seq
from benchmarks._seq import set_spectra

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "methylation_reads_methylbert"
TITLE = "Bisulfite read sets (methylation): tumour vs normal from 8-read sets, held-out reads"
SET_SIZE = 8


def read_sets(path: Path, seed: int, quick: bool):
    """Reads of one file as an AnnData with disjoint 8-read sets within each region x sample."""
    table = pd.read_csv(path, sep="\t", dtype={"methyl_seq": str})
    if quick:
        table = table.groupby(["dmr_label", "ctype"]).head(16)
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    chunk = table.groupby(["dmr_label", "ctype"]).cumcount() // SET_SIZE
    table["set"] = table["dmr_label"].astype(str) + "|" + table["ctype"] + "|" + chunk.astype(str)
    calls = table["methyl_seq"].fillna("")
    table["methylated"] = calls.str.count("1")
    table["cpgs"] = calls.str.count("1") + calls.str.count("0")
    adata = scgde.seq.sequences_to_adata(
        table["seq"].tolist(), obs=table[["set", "dmr_label", "ctype", "methylated", "cpgs"]]
    )
    adata.obs["set"] = adata.obs["set"].astype("category")
    return adata


def set_table(adata) -> pd.DataFrame:
    """Per set: sample, region and mean CpG methylation fraction."""
    g = adata.obs.groupby("set", observed=True)
    out = pd.DataFrame({"ctype": g["ctype"].first(), "region": g["dmr_label"].first()})
    out["methylation"] = g["methylated"].sum() / g["cpgs"].sum().clip(lower=1)
    return out


def scores(x_train, y_train, x_test, y_test) -> dict:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x_train, y_train)
    prob = clf.predict_proba(x_test)[:, 1]
    return {
        "balanced accuracy": balanced_accuracy_score(y_test, prob > 0.5),
        "ROC-AUC": roc_auc_score(y_test, prob) if len(set(y_test)) > 1 else np.nan,
    }


def run(args: argparse.Namespace) -> dict:
    scvi.settings.seed = args.seed
    train = read_sets(Path(args.data) / "train_seq.csv", args.seed, args.quick)
    test = read_sets(Path(args.data) / "test_seq.csv", args.seed + 1, args.quick)
    fitted = _seq.fit_default(train, {"set_key": "set", "unknown": "mask"}, args.quick)
    model, untrained, train_s = fitted.model, fitted.untrained, fitted.train_s
    info_train, info_test = set_table(train), set_table(test)
    y_train = (info_train["ctype"] == "T").to_numpy()
    y_test = (info_test["ctype"] == "T").to_numpy()

    def embed(m, a, info):
        return m.get_set_representation(a, set_key="set", progress_bar=False).loc[info.index].to_numpy()

    def spectra(a, info):
        codes = pd.Categorical(a.obs["set"], categories=info.index).codes
        return set_spectra(a.obs["sequence"], codes, 3)

    region = OneHotEncoder(sparse_output=False, handle_unknown="ignore").fit(info_train[["region"]])
    features = {
        "GDE (default SeqGDE)": (embed(model, train, info_train), embed(model, test, info_test)),
        "untrained encoder": (embed(untrained, train, info_train), embed(untrained, test, info_test)),
        "mean 3-mer spectrum": (spectra(train, info_train), spectra(test, info_test)),
        "mean CpG methylation (aligner's calls)": (
            info_train[["methylation"]].to_numpy(),
            info_test[["methylation"]].to_numpy(),
        ),
        "region only (chance)": (region.transform(info_train[["region"]]), region.transform(info_test[["region"]])),
    }
    table = pd.DataFrame({name: scores(a, y_train, b, y_test) for name, (a, b) in features.items()}).T
    table.index.name = "set representation"
    command = f"python -m benchmarks.seq_methylation{' --quick' if args.quick else ''} --seed {args.seed}"
    markdown = "\n\n".join(
        [
            f"### {TITLE}",
            f"Command: `{command}`. Machine: {_common.machine()}, {args.threads} torch thread(s). "
            f"{len(info_train)} training sets ({train.n_obs} reads), {len(info_test)} held-out sets ({test.n_obs} reads); "
            f"training {train_s:.0f} s.",
            _common.markdown_table(table),
        ]
    )
    metrics = {"GDE_auc": table.iloc[0, 1], "untrained_auc": table.iloc[1, 1], "train_s": train_s}
    return {"markdown": markdown, "metrics": metrics, "table": table}


def main(argv: list[str] | None = None) -> dict:
    return _common.run_cli(
        __doc__,
        run,
        argv,
        "16 reads per region x sample and a few steps",
        lambda p: p.add_argument(
            "--data", default=str(DATA), help="folder with MethylBERT's train_seq.csv, test_seq.csv"
        ),
    )


if __name__ == "__main__":
    main()
