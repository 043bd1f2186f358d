"""Simple perturbation-response baselines, to be reported beside every model prediction."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from scgde.data import PerturbationDesign, RowFetcher, layer_matrix

#: names of the baselines, in the order they are returned
BASELINES = (
    "no change",
    "training mean",
    "non-control mean",
    "perturbation mean",
    "matching mean",
    "ridge",
    "additive",
)
#: matrix entries per block when summing a backed matrix
_CHUNK_ENTRIES = 2**24


def perturbation_baselines(
    adata: AnnData,
    targets: Sequence[tuple[str, str]] | Sequence[str],
    perturbation_key: str | PerturbationDesign | None = None,
    control: str | None = None,
    context_key: str | None = None,
    features: pd.DataFrame | None = None,
    combo_sep: str | None = None,
    n_pcs: int = 20,
    exclude: Sequence[tuple[str, str]] | None = None,
    *,
    design: PerturbationDesign | None = None,
    layer: str | None = None,
    max_cells: int | None = 1000,
    seed: int = 0,
) -> dict[str, AnnData]:
    """Predicted cells of trivial and linear baselines for (context, perturbation) targets.

    Every baseline predicts a distribution by shifting control cells of the target context by a
    predicted mean change ``delta`` (so "no change" is the control distribution itself):

    - ``"no change"``: ``delta = 0``;
    - ``"training mean"``: the average mean change over all training (context, perturbation) pairs,
      each pair weighing alike (Ahlmann-Eltze et al., Nat. Methods 2025);
    - ``"non-control mean"``: the mean of all perturbed training cells of the target's context,
      each cell weighing alike (Systema, Viñas Torné et al., Nat. Biotechnol. 2025); only for
      contexts with perturbed training cells;
    - ``"perturbation mean"``: the perturbation's average mean change in the *other* contexts
      (cell-level latent arithmetic in gene space, as scGen does in its latent space; only for
      perturbations measured elsewhere);
    - ``"matching mean"``: for each part of the target (``"A+B"`` has two, a single perturbation
      one), the average mean of the training groups of the same context whose perturbation
      contains that part; the prediction averages the parts (Systema's matching mean: for
      ``"A+B"``, the average of the means of ``"A"`` and ``"B"``); only when every part matches;
    - ``"ridge"``: ridge regression of the mean change on the same design as
      :class:`~scgde.model.PerturbationPredictor` (perturbation features, or one-hot identity,
      plus the context's control mean projected on ``n_pcs`` principal components when there are
      several contexts), standardised features, strength by leave-one-out cross-validation;
    - ``"additive"``: for combinations ``"A+B"``, the sum of the measured single changes in the
      same context.

    Group means come from :func:`scanpy.get.aggregate` (a sparse indicator product; backed
    matrices are summed block by block), so the matrix is never densified; the returned cells are
    at most ``max_cells`` control cells per target, read with :class:`~scgde.data.RowFetcher`.
    A subsample is moved to the context's full control mean before the shift, so every predicted
    group has exactly its predicted mean whatever ``max_cells``.

    Parameters
    ----------
    adata
        Cells (log-normalised or other continuous values) with all measured groups; dense, sparse
        or backed.
    targets
        ``(context, perturbation)`` pairs to predict, ``"context|perturbation"`` labels, or
        perturbation names when there is no context.
    perturbation_key, control, context_key
        As in :class:`~scgde.data.PerturbationDesign`; or pass ``design=`` (a design in place of
        ``perturbation_key`` counts as ``design=``).
    features
        Optional perturbation features (DataFrame indexed by perturbation).
    combo_sep
        Separator of combinatorial perturbations (default ``"+"``; the design's ``combination_sep``).
    n_pcs
        Components summarising the control mean of each context.
    exclude
        Pairs to leave out of training (default: the targets themselves).
    design
        The :class:`~scgde.data.PerturbationDesign` (instead of the four keywords above).
    layer
        Layer to read instead of ``X``.
    max_cells
        Control cells per predicted group (``None``: all control cells of the context). Output
        memory is about ``n_targets * n_baselines * max_cells * n_genes * 4`` bytes.
    seed
        Seed of the control-cell subsample (the same cells serve every baseline of a context).

    Returns
    -------
    ``{baseline name: AnnData of predicted cells}`` with ``obs[perturbation_key]`` (and
    ``obs[context_key]``); a baseline that does not apply to a target omits it, one that applies
    to none is left out.
    """
    design = PerturbationDesign.resolve(design, perturbation_key, control, context_key, combo_sep)
    design.check(adata.obs)
    if max_cells is not None and int(max_cells) < 1:
        raise ValueError(f"max_cells must be a positive integer or None, got {max_cells!r}.")
    matrix, where = layer_matrix(adata, layer)
    targets = design.targets(targets)
    excluded = set(targets if exclude is None else design.targets(exclude))

    codes, groups = design.groups(adata.obs)
    means, counts = _group_means(matrix, where, codes, len(groups), adata.var_names)
    pos = {g: i for i, g in enumerate(groups)}
    contexts = sorted({c for c, _ in groups})
    no_ctrl = [c for c in contexts if (c, design.control) not in pos]
    if no_ctrl:
        raise ValueError(f"Context(s) {no_ctrl} have no control cells ({design.perturbation_key}={design.control!r}).")
    ctrl_mean = {c: means[pos[(c, design.control)]] for c in contexts}
    train = [g for g in groups if not design.is_control(g[1]) and g not in excluded]
    if not train:
        raise ValueError("No training pairs left after excluding the targets; measure more groups or pass exclude=.")
    deltas = {g: means[pos[g]] - ctrl_mean[g[0]] for g in train}
    model = _RidgeBaseline(design, train, deltas, ctrl_mean, features, n_pcs)
    training_mean = np.mean(list(deltas.values()), axis=0)

    predictions: dict[str, list[tuple[str, str, np.ndarray]]] = {k: [] for k in BASELINES}
    for c, p in targets:
        if c not in ctrl_mean:
            raise ValueError(f"Context {c!r} has no control cells to start from; known contexts: {contexts}.")
        add = {"no change": np.zeros(len(training_mean)), "training mean": training_mean}
        same = [g for g in train if g[0] == c]
        if same:
            n = np.array([counts[pos[g]] for g in same], dtype=float)
            pooled = (n[:, None] * np.stack([means[pos[g]] for g in same])).sum(0) / n.sum()
            add["non-control mean"] = pooled - ctrl_mean[c]
        elsewhere = [deltas[g] for g in train if g[1] == p and g[0] != c]
        if elsewhere:
            add["perturbation mean"] = np.mean(elsewhere, axis=0)
        matching = _matching_mean(design, p, same, deltas)
        if matching is not None:
            add["matching mean"] = matching
        ridge = model.predict(c, p)
        if ridge is not None:
            add["ridge"] = ridge
        parts = design.parts(p)
        if len(parts) > 1 and all((c, q) in deltas for q in parts):
            add["additive"] = sum(deltas[(c, q)] for q in parts)
        for name, delta in add.items():
            predictions[name].append((c, p, delta))

    fetcher = RowFetcher(matrix, where)
    base: dict[str, np.ndarray] = {}
    for c in sorted({c for c, _ in targets}):
        rows = _subsample(np.flatnonzero(codes == pos[(c, design.control)]), max_cells, seed, c)
        block = fetcher.rows(rows)
        base[c] = block - block.mean(0) + ctrl_mean[c].astype(np.float32)  # exactly the control mean
    return {name: _cells(rows, base, design, adata.var_names, name) for name, rows in predictions.items() if rows}


# ---------------------------------------------------------------------------------------------
# helpers


class _RidgeBaseline:
    """Ridge of the mean change on perturbation features (+ the context's control-mean PCs)."""

    def __init__(self, design, train, deltas, ctrl_mean, features, n_pcs):
        self.design, self.features = design, features
        self.seen = sorted({q for _, p in train for q in design.parts(p)})
        contexts = sorted(ctrl_mean)
        self.ctx_pcs = None
        if len(contexts) > 1:
            stacked = np.stack([ctrl_mean[c] for c in contexts])
            pcs = PCA(n_components=min(n_pcs, len(contexts))).fit(stacked)
            self.ctx_pcs = dict(zip(contexts, pcs.transform(stacked), strict=True))
        rows = [(self._design_row(c, p), deltas[(c, p)]) for c, p in train]
        rows = [(x, y) for x, y in rows if x is not None]
        self.pipeline = None
        if len(rows) >= 3:  # leave-one-out needs a few pairs
            self.pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 5, 17)))
            self.pipeline.fit(np.stack([x for x, _ in rows]), np.stack([y for _, y in rows]))

    def _feature_row(self, p: str) -> np.ndarray | None:
        parts = self.design.parts(p)
        if self.features is None:
            if any(q not in self.seen for q in parts):
                return None
            return sum(np.eye(len(self.seen))[self.seen.index(q)] for q in parts)
        if any(q not in self.features.index for q in parts):
            return None
        return self.features.loc[parts].to_numpy(dtype=float).sum(0)

    def _design_row(self, c: str, p: str) -> np.ndarray | None:
        f = self._feature_row(p)
        if f is None or self.ctx_pcs is None:
            return f
        return np.concatenate([f, self.ctx_pcs[c]])

    def predict(self, c: str, p: str) -> np.ndarray | None:
        x = self._design_row(c, p)
        return None if self.pipeline is None or x is None else self.pipeline.predict(x[None])[0]


def _matching_mean(design, p: str, same: list[tuple[str, str]], deltas: dict) -> np.ndarray | None:
    per_part = []
    for q in design.parts(p):
        hits = [deltas[g] for g in same if q in design.parts(g[1])]
        if not hits:
            return None
        per_part.append(np.mean(hits, axis=0))
    return np.mean(per_part, axis=0)


def _group_means(matrix, where: str, codes: np.ndarray, n_groups: int, var_names) -> tuple[np.ndarray, np.ndarray]:
    """Per-group means (``n_groups x n_genes``) and cell counts, without densifying ``matrix``."""
    counts = np.bincount(codes[codes >= 0], minlength=n_groups)
    if isinstance(matrix, np.ndarray) or sp.issparse(matrix):
        # unlabelled cells form one extra group, dropped below (aggregate's mask= keeps them in the counts)
        labels = pd.Categorical.from_codes(np.where(codes >= 0, codes, n_groups), categories=np.arange(n_groups + 1))
        obs = pd.DataFrame({"group": labels}, index=np.arange(len(codes)).astype(str))
        agg = sc.get.aggregate(AnnData(matrix, obs=obs, var=pd.DataFrame(index=var_names)), "group", "mean")
        found = agg.obs["group"].astype(int).to_numpy()
        means = np.zeros((n_groups, matrix.shape[1]))
        keep = found < n_groups
        means[found[keep]] = np.asarray(agg.layers["mean"], dtype=np.float64)[keep]
        return means, counts
    fetcher = RowFetcher(matrix, where)  # backed: sum contiguous blocks
    sums = np.zeros((n_groups, matrix.shape[1]))
    step = max(1, _CHUNK_ENTRIES // max(matrix.shape[1], 1))
    for start in range(0, len(codes), step):
        block_codes = codes[start : start + step]
        ok = block_codes >= 0
        indicator = sp.csr_matrix(
            (np.ones(ok.sum()), (block_codes[ok], np.flatnonzero(ok))), shape=(n_groups, len(block_codes))
        )
        sums += indicator @ fetcher.slice(start, start + len(block_codes)).astype(np.float64)
    return sums / np.maximum(counts, 1)[:, None], counts


def _subsample(idx: np.ndarray, max_cells: int | None, seed: int, context: str) -> np.ndarray:
    if max_cells is None or len(idx) <= max_cells:
        return idx
    rng = np.random.default_rng([int(seed) % 2**32, zlib.crc32(context.encode())])
    return np.sort(rng.choice(idx, size=int(max_cells), replace=False))


def _cells(rows, base: dict[str, np.ndarray], design: PerturbationDesign, var_names, name: str) -> AnnData:
    blocks = [base[c] + delta.astype(np.float32) for c, _, delta in rows]
    sizes = [len(base[c]) for c, _, _ in rows]
    obs = pd.DataFrame({design.perturbation_key: pd.Categorical(np.repeat([p for _, p, _ in rows], sizes))})
    if design.context_key is not None:
        obs[design.context_key] = pd.Categorical(np.repeat([c for c, _, _ in rows], sizes))
    obs.index = [f"{name}_{i}" for i in range(len(obs))]
    return AnnData(np.concatenate(blocks), obs=obs, var=pd.DataFrame(index=var_names))
