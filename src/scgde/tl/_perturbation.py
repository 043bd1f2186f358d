"""Simple perturbation-response baselines, to be reported beside every model prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

_ALL = "all"


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def perturbation_baselines(
    adata: AnnData,
    targets: Sequence[tuple[str, str]] | Sequence[str],
    perturbation_key: str,
    control: str,
    context_key: str | None = None,
    features: pd.DataFrame | None = None,
    combo_sep: str = "+",
    n_pcs: int = 20,
    exclude: Sequence[tuple[str, str]] | None = None,
) -> dict[str, AnnData]:
    """Predicted cells of trivial and linear baselines for (context, perturbation) targets.

    Every baseline predicts a distribution by shifting the control cells of the target context by
    a predicted mean change ``delta`` (so "no change" is the control distribution itself):

    - ``"no change"``: ``delta = 0``;
    - ``"training mean"``: the average mean change over all training (context, perturbation) pairs;
    - ``"perturbation mean"``: the perturbation's average mean change in the *other* contexts
      (cell-level latent arithmetic in gene space, as scGen does in its latent space; only for
      perturbations measured elsewhere);
    - ``"ridge"``: ridge regression of the mean change on the same design as
      :class:`~scgde.model.PerturbationPredictor` (perturbation features, or one-hot identity,
      plus the context's control mean projected on ``n_pcs`` principal components when there are
      several contexts), strength by leave-one-out cross-validation;
    - ``"additive"``: for combinations ``"A+B"``, the sum of the measured single changes in the
      same context.

    Parameters
    ----------
    adata
        Cells (log-normalised or other continuous values) with all measured groups.
    targets
        ``(context, perturbation)`` pairs to predict (or perturbation names without contexts).
    perturbation_key, control, context_key
        As in :class:`~scgde.model.PerturbationPredictor`.
    features
        Optional perturbation features (DataFrame indexed by perturbation).
    combo_sep
        Separator of combinatorial perturbations.
    n_pcs
        Components summarising the control mean of each context.
    exclude
        Pairs to leave out of training (default: the targets themselves).

    Returns
    -------
    ``{baseline name: AnnData of predicted cells}`` with ``obs[perturbation_key]`` (and
    ``obs[context_key]``); a baseline that does not apply to a target omits it.
    """
    obs = adata.obs
    for name, key in (("perturbation_key", perturbation_key), ("context_key", context_key)):
        if key is not None and key not in obs:
            raise KeyError(f"{name}={key!r} is not a column of adata.obs; available columns: {list(obs.columns)}.")
    pert = obs[perturbation_key].astype(str).to_numpy()
    ctx = np.full(adata.n_obs, _ALL) if context_key is None else obs[context_key].astype(str).to_numpy()
    targets = [(_ALL, t) if isinstance(t, str) else tuple(t) for t in targets]
    excluded = set(targets if exclude is None else [(_ALL, e) if isinstance(e, str) else tuple(e) for e in exclude])
    x = _dense(adata.X)
    groups = pd.DataFrame({"c": ctx, "p": pert}).groupby(["c", "p"]).indices
    means = {g: x[idx].mean(0) for g, idx in groups.items()}
    contexts = sorted({c for c, _ in groups})
    ctrl_mean = {}
    for c in contexts:
        if (c, control) not in groups:
            raise ValueError(f"Context {c!r} has no control cells ({perturbation_key}={control!r}).")
        ctrl_mean[c] = means[(c, control)]
    train = [(c, p) for (c, p) in groups if p != control and (c, p) not in excluded]
    if not train:
        raise ValueError("No training pairs left after excluding the targets.")
    deltas = {g: means[g] - ctrl_mean[g[0]] for g in train}
    seen = sorted({q for _, p in train for q in p.split(combo_sep)})

    def feature_row(p: str) -> np.ndarray | None:
        parts = p.split(combo_sep)
        if features is None:
            if any(q not in seen for q in parts):
                return None
            return sum(np.eye(len(seen))[seen.index(q)] for q in parts)
        if any(q not in features.index for q in parts):
            return None
        return features.loc[parts].to_numpy(dtype=float).sum(0)

    ctx_pcs = None
    if len(contexts) > 1:
        stacked = np.stack([ctrl_mean[c] for c in contexts])
        pcs = PCA(n_components=min(n_pcs, len(contexts))).fit(stacked)
        ctx_pcs = dict(zip(contexts, pcs.transform(stacked), strict=True))

    def design(c: str, p: str) -> np.ndarray | None:
        f = feature_row(p)
        if f is None:
            return None
        return f if ctx_pcs is None else np.concatenate([f, ctx_pcs[c]])

    train_design = [design(c, p) for c, p in train]
    usable = [i for i, d in enumerate(train_design) if d is not None]
    ridge = scaler = None
    if len(usable) >= 3:
        xd = np.stack([train_design[i] for i in usable])
        scaler = StandardScaler().fit(xd)
        ridge = RidgeCV(alphas=np.logspace(-3, 5, 17)).fit(
            scaler.transform(xd), np.stack([deltas[train[i]] for i in usable])
        )
    training_mean = np.mean(list(deltas.values()), axis=0)

    predictions: dict[str, list[tuple[str, str, np.ndarray]]] = {
        k: [] for k in ("no change", "training mean", "perturbation mean", "ridge", "additive")
    }
    for c, p in targets:
        if c not in ctrl_mean:
            raise ValueError(f"Context {c!r} has no control cells to start from.")
        predictions["no change"].append((c, p, np.zeros(x.shape[1])))
        predictions["training mean"].append((c, p, training_mean))
        elsewhere = [deltas[(c2, p2)] for c2, p2 in train if p2 == p and c2 != c]
        if elsewhere:
            predictions["perturbation mean"].append((c, p, np.mean(elsewhere, axis=0)))
        d = design(c, p)
        if ridge is not None and d is not None:
            predictions["ridge"].append((c, p, ridge.predict(scaler.transform(d[None]))[0]))
        parts = p.split(combo_sep)
        if len(parts) > 1 and all((c, q) in deltas for q in parts):
            predictions["additive"].append((c, p, sum(deltas[(c, q)] for q in parts)))

    out = {}
    for name, rows in predictions.items():
        if not rows:
            continue
        blocks, obs_rows = [], []
        for c, p, delta in rows:
            base = x[groups[(c, control)]]
            blocks.append(base + delta)
            obs_rows += [(c, p)] * len(base)
        frame = pd.DataFrame(obs_rows, columns=["context", perturbation_key])
        new_obs = pd.DataFrame({perturbation_key: pd.Categorical(frame[perturbation_key])})
        if context_key is not None:
            new_obs[context_key] = pd.Categorical(frame["context"])
        new_obs.index = [f"{name}_{i}" for i in range(len(new_obs))]
        out[name] = AnnData(
            np.concatenate(blocks).astype(np.float32), obs=new_obs, var=pd.DataFrame(index=adata.var_names)
        )
    return out
