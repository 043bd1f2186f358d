"""Generation of cells from sets or set embeddings, and along latent lines."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from scgde.data import registered_sets

SetsOrEmbeddings = str | Sequence[str] | pd.DataFrame | np.ndarray


class GenerationMixin:
    """``generate`` and ``interpolate``."""

    def _as_embeddings(self, sets: SetsOrEmbeddings) -> pd.DataFrame:
        if isinstance(sets, pd.DataFrame):
            emb = sets
        elif isinstance(sets, np.ndarray | torch.Tensor) and np.asarray(sets).dtype.kind == "f":
            arr = np.atleast_2d(np.asarray(sets, dtype=np.float32))
            emb = pd.DataFrame(arr, index=[f"z{i}" for i in range(len(arr))])
        else:
            names = [sets] if isinstance(sets, str) else list(sets)
            emb = self.get_set_representation(sets=names, progress_bar=False)
        if emb.shape[1] != self.module.n_latent:
            raise ValueError(f"Embeddings have {emb.shape[1]} columns; the model's n_latent is {self.module.n_latent}.")
        return emb

    def _batch_code(self, batch: str | None) -> int | None:
        if not self._batch_key:
            return None
        mapping = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
        if batch not in mapping:
            raise ValueError(f"Pass batch= one of {mapping} (the model is conditioned on {self._batch_key!r}).")
        return mapping.index(batch)

    @torch.inference_mode()
    def generate(
        self,
        sets: SetsOrEmbeddings,
        n_cells: int = 100,
        batch: str | None = None,
        max_cells_per_call: int = 65536,
        **sample_kwargs,
    ) -> AnnData:
        """Generate new cells from sets or set embeddings.

        Parameters
        ----------
        sets
            Set names of the training AnnData, a DataFrame of embeddings (as returned by
            :meth:`get_set_representation`), or an array ``(n, n_latent)``.
        n_cells
            Cells to generate per set.
        batch
            Batch category to generate in (required if the model was set up with a ``batch_key``).
        max_cells_per_call
            Bound on cells generated per network call (memory).
        **sample_kwargs
            Generator options, e.g. ``guidance`` (ddpm, flow), ``n_steps`` (flow), ``noise=False``
            (cvae: likelihood means).

        Returns
        -------
        AnnData ``(n_sets * n_cells, n_vars)`` with the model's genes; ``obs["set"]`` names the source.
        """
        if n_cells < 1:
            raise ValueError(f"n_cells must be >= 1, got {n_cells}.")
        emb = self._as_embeddings(sets)
        batch_code = self._batch_code(batch)
        self.module.eval()
        z_all = torch.as_tensor(emb.to_numpy(), dtype=torch.float32)
        per_call = max(1, max_cells_per_call // n_cells)
        blocks = []
        for start in range(0, len(z_all), per_call):
            z = z_all[start : start + per_call]
            b = None if batch_code is None else torch.full((len(z), n_cells), batch_code)
            blocks.append(
                self.module.sample(z, n_cells, b, **sample_kwargs).reshape(-1, len(self.var_names)).cpu().numpy()
            )
        x = np.concatenate(blocks)
        if self.module.likelihood == "nb":
            self._check_depths(x)
        obs = pd.DataFrame({"set": pd.Categorical(np.repeat(np.asarray(emb.index, dtype=str), n_cells))})
        if self._batch_key:
            obs[self._batch_key] = batch
        obs.index = obs.index.astype(str)
        return AnnData(x, obs=obs, var=pd.DataFrame(index=self.var_names))

    @torch.inference_mode()
    def _calibrate_marginals(self, max_cells: int = 10000, max_sets: int = 200) -> None:
        """After training on non-negative data: match generated per-gene marginals to the data's.

        Generated cells of up to ``max_sets`` training sets (``max_cells`` in all) are compared with
        real cells of the same sets, and a monotone per-gene quantile map is stored in the module
        (:meth:`~scgde.module.GDEModule.calibrate_marginals`): zeros and the spread of expressed
        values then follow the data.
        """
        if self.module.likelihood == "nb" or not torch.isfinite(self.module.zero_floor).any():
            return
        index = registered_sets(self.adata_manager)
        rng = np.random.default_rng(self._seed())
        codes = np.flatnonzero(index.sizes > 0)
        codes = np.sort(rng.choice(codes, size=min(max_sets, len(codes)), replace=False))
        n = max(1, max_cells // len(codes))
        rows = np.concatenate([rng.choice(index.members(c), size=min(n, index.sizes[c]), replace=False) for c in codes])
        real = self._reader(self.adata).rows(np.sort(rows))
        z = self._as_embeddings(list(index.names[codes])).to_numpy()
        batch = None
        if self._batch_key:  # each set generated in its most common batch
            cell_batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
            modes = [np.bincount(cell_batch[index.members(c)]).argmax() for c in codes]
            batch = torch.as_tensor(np.repeat(np.asarray(modes)[:, None], n, axis=1))
        self.module.eval()
        raw = self.module.sample(torch.as_tensor(z, dtype=torch.float32), n, batch, project=False)
        self.module.calibrate_marginals(raw.reshape(-1, raw.shape[-1]).cpu(), torch.as_tensor(real))

    def _check_depths(self, x: np.ndarray) -> None:
        """Warn when generated library sizes leave the training range (e.g. after a very short training)."""
        low, high = (float(v) for v in self.module.log_library_range)
        log_depth = np.log(np.maximum(x.sum(1), 1.0))
        outside = np.mean((log_depth < low - np.log(2)) | (log_depth > high + np.log(2)))
        if outside > 0.01:
            warnings.warn(
                f"{outside:.0%} of generated cells have library sizes outside twice the training range "
                f"({np.exp(low):.0f}-{np.exp(high):.0f} counts); the model may need more training.",
                UserWarning,
                stacklevel=3,
            )

    def interpolate(
        self, set_a: str | np.ndarray, set_b: str | np.ndarray, n_steps: int = 11, n_cells: int = 100, **generate_kwargs
    ) -> AnnData:
        """Generate cells along the straight latent line between two sets.

        Latent lines approximately follow optimal-transport (McCann) paths between the two
        distributions.

        Parameters
        ----------
        set_a, set_b
            Set names or embeddings ``(n_latent,)``.
        n_steps
            Number of points ``t = 0, ..., 1`` on the line.
        n_cells
            Cells per point.
        **generate_kwargs
            Passed to :meth:`generate`.

        Returns
        -------
        AnnData of generated cells with ``obs["t"]`` (position on the line) and ``obs["set"]``.
        """
        if n_steps < 2:
            raise ValueError(f"n_steps must be >= 2, got {n_steps}.")
        ends = [self._as_embeddings(s if not isinstance(s, str) else [s]).to_numpy()[0] for s in (set_a, set_b)]
        ts = np.linspace(0.0, 1.0, n_steps)
        z = np.stack([(1 - t) * ends[0] + t * ends[1] for t in ts]).astype(np.float32)
        names = [f"t={t:.3g}" for t in ts]
        out = self.generate(pd.DataFrame(z, index=names), n_cells=n_cells, **generate_kwargs)
        out.obs["t"] = np.repeat(ts, n_cells)
        out.uns["interpolation"] = {
            "from": str(set_a) if isinstance(set_a, str) else "embedding",
            "to": str(set_b) if isinstance(set_b, str) else "embedding",
        }
        return out
