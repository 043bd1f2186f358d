"""Yeast promoters (the paper's GPRA task, Fig. 8): expression-quantile windows of real promoter sequences.

Data: the 6,370 random promoters of the DREAM 2022 demo file (``../shared/data/yeast_promoters_dream``), the ~80-nt
random region of each (the constant scaffold removed). Sets: 40 expression-quantile bins (``scgde.pp.quantile_bins``);
the top 8 bins are held out of training. ``SeqGDE`` with the quantile-window prior (``train(window=2)``: each training
set draws from a bin and its two neighbours on each side) and otherwise its defaults. Reported, each beside its
baselines from the same run:

- ordering of bins: Spearman between the bin index and (i) the first principal component of the embeddings (fitted on
  the training bins) and (ii) a ridge readout trained on the training bins, on the held-out top bins and on all bins;
- single sequences embedded as sets of one and projected onto that component: Spearman with their own expression
  (the paper's Fig. 8);
- promoters generated from each bin's vector (classifier-free guidance weights 0, 1 and 3), scored by a 4-mer ridge
  model of expression fitted on real training promoters: Spearman between the bin index and the mean predicted
  expression of the generated promoters;
- motif hits (JASPAR 2024 CORE fungi PWMs, log2-odds > 5 on the forward strand, the paper's rule) of generated
  against real promoters, bin by bin: total variation between the histograms of hits per promoter, the correlation of
  per-motif hit rates, and the correlation of each bin's departure from the average motif profile (the part of the
  motif content that the conditioning must supply). Every sample is compared with a random half of each bin's real
  promoters, with the same number of promoters per bin on both sides.

Baselines: each bin's mean 4-mer spectrum (the same readouts), the untrained encoder and generator, the trained
generator without the set vector (its null condition, learned through condition dropout), real promoters of
each bin scored by the same expression model (the ceiling for generation; for motifs, the other half of each bin's
real promoters), and, for motifs, real promoters drawn from all bins (no conditioning).

Usage: python -m benchmarks.seq_promoters [--quick] [--seed 0] [--threads 1] [--path demo_train.txt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV

import scgde
from benchmarks import _common, _seq
from benchmarks._seq import kmer_frequencies, set_spectra

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "yeast_promoters_dream" / "demo_train.txt"
TITLE = "Yeast promoters (GPRA, Fig. 8): expression-quantile windows, top bins held out"
SCAFFOLD = (17, 13)  # constant 5' and 3' flanks of every promoter
N_BINS, N_HELD_OUT, K = 40, 8, 4
GUIDANCE_WEIGHTS = (0.0, 1.0, 3.0)
JASPAR_RELEASE = "JASPAR2024"
MOTIF_THRESHOLD = 5.0  # the paper's hit rule: log2-odds score above 5 on the forward strand


def load_motifs() -> dict:
    """JASPAR 2024 CORE fungi PWMs (``pyjaspar``; the paper used YeTFaSCo, which does not ship offline)."""
    return scgde.seq.jaspar_motifs(tax_group="fungi", release=JASPAR_RELEASE)


def per_bin_sample(codes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` random rows of each bin ``0 .. N_BINS - 1`` (rows coded -1 are never drawn)."""
    return np.concatenate([rng.choice(np.flatnonzero(codes == b), n, replace=False) for b in range(N_BINS)])


def motif_agreement(hits, codes, real_hits, real_codes) -> dict:
    """How well motif hits ``(n, n_motifs)`` of one sample of promoters match real ones, bin by bin."""
    profile = pd.DataFrame(hits).groupby(codes).mean().reindex(range(N_BINS)).to_numpy()
    real_profile = pd.DataFrame(real_hits).groupby(real_codes).mean().reindex(range(N_BINS)).to_numpy()
    total, real_total = hits.sum(1).astype(int), real_hits.sum(1).astype(int)
    tv = []
    for b in range(N_BINS):
        a, r = total[codes == b], real_total[real_codes == b]
        top = int(max(a.max(initial=0), r.max(initial=0))) + 1
        tv.append(0.5 * np.abs(np.bincount(a, minlength=top) / len(a) - np.bincount(r, minlength=top) / len(r)).sum())
    mean_total = [total[codes == b].mean() for b in range(N_BINS)]
    real_mean_total = [real_total[real_codes == b].mean() for b in range(N_BINS)]
    centred, real_centred = profile - profile.mean(0), real_profile - real_profile.mean(0)
    return {
        "motif hits per promoter": float(np.mean(mean_total)),
        "TV of hit-count histograms, mean over bins": float(np.mean(tv)),
        "Pearson over motifs of hit rates": float(np.corrcoef(profile.mean(0), real_profile.mean(0))[0, 1]),
        "Pearson over bins x motifs of the bin effect": float(np.corrcoef(centred.ravel(), real_centred.ravel())[0, 1]),
        "Spearman over bins of mean hits": spearmanr(mean_total, real_mean_total).statistic,
    }


def load(path: Path, quick: bool, seed: int):
    table = pd.read_csv(path, sep="\t", header=None, names=["sequence", "expression"])
    if quick:
        table = table.sample(n=800, random_state=seed)
    seqs = table["sequence"].str.slice(SCAFFOLD[0], -SCAFFOLD[1]).tolist()
    adata = scgde.seq.sequences_to_adata(seqs, obs=table[["expression"]].reset_index(drop=True))
    bins = scgde.pp.quantile_bins(adata, "expression", n_bins=N_BINS, key_added="bin")
    adata.obs["bin_index"] = bins.cat.codes.to_numpy()
    return adata


def ordering(train_x: np.ndarray, all_x: np.ndarray, index: np.ndarray, held: np.ndarray) -> dict:
    """Spearman of PC1 and of a ridge readout with the bin index (held-out bins, all bins)."""
    pca = PCA(1).fit(train_x)
    pc1 = pca.transform(all_x)[:, 0]
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(train_x, index[~held]).predict(all_x)
    rho = lambda a, m: abs(spearmanr(a[m], index[m]).statistic)
    every = np.ones(len(index), bool)
    return {
        "PC1, held-out bins": rho(pc1, held),
        "PC1, all bins": rho(pc1, every),
        "ridge, held-out bins": spearmanr(ridge[held], index[held]).statistic,
        "ridge, all bins": spearmanr(ridge, index).statistic,
        "ridge MAE, held-out bins (bins)": float(np.abs(ridge[held] - index[held]).mean()),
        "_pca": pca,
    }


def run(args: argparse.Namespace) -> dict:
    scvi.settings.seed = args.seed
    adata = load(Path(args.path), args.quick, args.seed)
    held_bins = np.arange(N_BINS - N_HELD_OUT, N_BINS)
    is_held = adata.obs["bin_index"].isin(held_bins).to_numpy()
    train = adata[~is_held].copy()
    train.obs["bin"] = train.obs["bin"].cat.remove_unused_categories()
    index = np.arange(N_BINS)
    held = np.isin(index, held_bins)
    expr_model = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(
        kmer_frequencies(train.obs["sequence"], K), train.obs["expression"]
    )

    fitted = _seq.fit_default(train, {"set_key": "bin"}, args.quick, window=2)
    model, untrained, train_s = fitted.model, fitted.untrained, fitted.train_s  # untrained: the same architecture

    def bin_embeddings(m):
        return m.get_set_representation(adata, set_key="bin", progress_bar=False).loc[adata.obs["bin"].cat.categories]

    reps = {
        "GDE (SeqGDE, window prior)": bin_embeddings(model).to_numpy(),
        "untrained encoder": bin_embeddings(untrained).to_numpy(),
        "mean 4-mer spectrum": set_spectra(adata.obs["sequence"], adata.obs["bin_index"].to_numpy(), K),
    }
    rows, pcas = {}, {}
    for name, x in reps.items():
        out = ordering(x[~held], x, index, held)
        pcas[name] = out.pop("_pca")
        rows[name] = out
    order_table = pd.DataFrame(rows).T
    order_table.index.name = "representation"

    # single sequences as sets of one, projected onto each representation's set PC1 (Fig. 8)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(adata.n_obs, size=min(1000, adata.n_obs), replace=False)
    singles = scgde.seq.sequences_to_adata(
        adata.obs["sequence"].iloc[pick].tolist(), obs=pd.DataFrame({"one": [f"s{i}" for i in range(len(pick))]})
    )
    expr = adata.obs["expression"].to_numpy()[pick]
    single_x = {
        "GDE (SeqGDE, window prior)": model.get_set_representation(singles, set_key="one", progress_bar=False),
        "untrained encoder": untrained.get_set_representation(singles, set_key="one", progress_bar=False),
        "mean 4-mer spectrum": kmer_frequencies(singles.obs["sequence"], K),
    }
    single_rho = {
        name: abs(spearmanr(pcas[name].transform(np.asarray(x))[:, 0], expr).statistic) for name, x in single_x.items()
    }
    order_table["single sequences: |Spearman| with expression"] = pd.Series(single_rho)

    # generation: expression of generated promoters, by a k-mer model fitted on real training promoters
    n_gen = 20 if args.quick else 100
    motifs = load_motifs()
    real_codes = adata.obs["bin_index"].to_numpy()
    real_hits = scgde.seq.motif_counts(adata.obs["sequence"], motifs, threshold=MOTIF_THRESHOLD).to_numpy()
    # motif readouts compare equal numbers of promoters per bin (histogram distances grow with sampling noise):
    # each sample against a reference half of each bin's real promoters
    rng = np.random.default_rng(args.seed)
    half = rng.random(adata.n_obs) < 0.5
    n_cmp = int(min(n_gen, *(min((real_codes[h] == b).sum() for h in (half, ~half)) for b in range(N_BINS))))
    ref = per_bin_sample(np.where(half, real_codes, -1), n_cmp, rng)
    reference = (real_hits[ref], real_codes[ref])

    def motif_readouts(hits: np.ndarray, codes: np.ndarray) -> dict:
        pick = per_bin_sample(codes, n_cmp, rng)
        return motif_agreement(hits[pick], codes[pick], *reference)

    gen_rows = {}
    samplers = [(f"GDE (SeqGDE, window prior), guidance {w:g}", model, w) for w in GUIDANCE_WEIGHTS]
    # the same trained generator without the set vector: its null condition (learned through condition dropout)
    null = model.module.generator.null_cond.detach().cpu().numpy()
    unconditional = pd.DataFrame(np.repeat(null[None], N_BINS, 0), index=adata.obs["bin"].cat.categories)
    samplers.append(("GDE generator without the set vector (null condition)", model, 0.0))
    for name, m, w in [*samplers, ("untrained model", untrained, 0.0)]:
        emb = unconditional if "null condition" in name else bin_embeddings(m)
        gen = m.generate(emb, n_samples=n_gen, guidance=w)
        codes = gen.obs["set"].cat.codes.to_numpy()
        pred = expr_model.predict(kmer_frequencies(gen.obs["sequence"], K))
        per_bin = pd.Series(pred).groupby(codes).mean().to_numpy()
        hits = scgde.seq.motif_counts(gen.obs["sequence"], motifs, threshold=MOTIF_THRESHOLD).to_numpy()
        gen_rows[name] = {
            "Spearman(bin, predicted expression), all bins": spearmanr(index, per_bin).statistic,
            "same, held-out bins": spearmanr(index[held], per_bin[held]).statistic,
            "mean length": float(gen.obs["sequence"].str.len().mean()),
            **motif_readouts(hits, codes),
        }
    real_pred = pd.Series(expr_model.predict(kmer_frequencies(adata.obs["sequence"], K))).groupby(real_codes)
    real_bins = real_pred.mean().to_numpy()
    length = float(adata.obs["sequence"].str.len().mean())
    # the ceiling: the other half of each bin's real promoters
    gen_rows["real promoters of each bin (ceiling; motifs: the other half)"] = {
        "Spearman(bin, predicted expression), all bins": spearmanr(index, real_bins).statistic,
        "same, held-out bins": spearmanr(index[held], real_bins[held]).statistic,
        "mean length": length,
        **motif_readouts(real_hits[~half], real_codes[~half]),
    }
    # no conditioning: each bin gets promoters drawn from all bins
    pooled = rng.choice(np.flatnonzero(~half), size=N_BINS * n_cmp, replace=False)
    gen_rows["real promoters of all bins pooled (no conditioning)"] = {
        "Spearman(bin, predicted expression), all bins": np.nan,
        "same, held-out bins": np.nan,
        "mean length": length,
        **motif_readouts(real_hits[pooled], np.repeat(np.arange(N_BINS), n_cmp)),
    }
    gen_table = pd.DataFrame(gen_rows).T
    gen_table.index.name = "promoters"
    command = f"python -m benchmarks.seq_promoters{' --quick' if args.quick else ''} --seed {args.seed}"
    markdown = "\n\n".join(
        [
            f"### {TITLE}",
            f"Command: `{command}`. Machine: {_common.machine()}, {args.threads} torch thread(s). "
            f"{adata.n_obs} promoters in {N_BINS} bins ({N_HELD_OUT} top bins held out); training {train_s:.0f} s; "
            f"{n_gen} promoters generated per bin.",
            _common.markdown_table(order_table),
            _common.markdown_table(gen_table),
        ]
    )
    metrics = {
        "GDE_pc1_held": order_table.iloc[0, 0],
        "kmer_pc1_held": order_table.iloc[2, 0],
        "GDE_gen_rho": gen_table.iloc[0, 0],
        "train_s": train_s,
    }
    return {"markdown": markdown, "metrics": metrics, "ordering": order_table, "generation": gen_table}


def main(argv: list[str] | None = None) -> dict:
    return _common.run_cli(
        __doc__,
        run,
        argv,
        "800 promoters and a few steps, for the test suite",
        lambda p: p.add_argument("--path", default=str(DATA), help="the DREAM demo_train.txt file"),
    )


if __name__ == "__main__":
    main()
