"""Generation of cells from sets or set embeddings, and along latent lines."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from torch import Tensor

from scgde._docs import inject_docs
from scgde.data import pca_coordinates, registered_niches, registered_sets
from scgde.module import N_CURVE
from scgde.module._gde import MIN_PROJECTION_CELLS

SetsOrEmbeddings = str | Sequence[str] | pd.DataFrame | np.ndarray


#: training sets read to learn the zero curves of generated sets (a random subset of larger collections)
MAX_CURVE_SETS = 2000


def available_memory() -> int | None:
    """Bytes of memory available to this process now (``None`` when unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _n_sets(sets: SetsOrEmbeddings) -> int:
    """How many sets (or embeddings) ``sets`` holds, without embedding them."""
    if isinstance(sets, str):
        return 1
    if isinstance(sets, pd.DataFrame):
        return len(sets)
    if isinstance(sets, np.ndarray | torch.Tensor) and np.asarray(sets).dtype.kind == "f":
        return len(np.atleast_2d(np.asarray(sets)))
    return len(list(sets))


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.3g} {unit}" if unit != "bytes" else f"{int(n_bytes)} bytes"
        n_bytes /= 1000
    return ""


def check_output_memory(
    n_sets: int, n_cells: int, n_vars: int, what: str = "generate", size_name: str = "n_samples"
) -> None:
    """Refuse an output of ``n_sets x n_cells x n_vars`` float32 values that does not fit in available memory.

    ``size_name`` is the name under which the caller passed ``n_cells`` (the message repeats it).
    """
    need = 4.0 * n_sets * n_cells * n_vars
    free = available_memory()
    if free is not None and need > free:
        fits = max(0, int(free // (4 * n_sets * n_vars)))
        raise ValueError(
            f"{what}({size_name}={n_cells:,}) would return {n_sets:,} set{'s' if n_sets != 1 else ''} x {n_cells:,} "
            f"cells x {n_vars:,} genes = {_size(need)} of float32 values, more than the {_size(free)} of memory "
            f"available. Lower {size_name} (at most about {fits:,} per set here), or generate fewer sets per call."
        )


def resolve_alias(name: str, value, alias: str, alias_value, default) -> tuple:
    """``(value, the name it was passed as)`` of an option that also has an older name (an alias).

    Raises a :class:`TypeError` when both names are given; neither gives ``default`` under ``name``.
    """
    if alias_value is None:
        return (default if value is None else value), name
    if value is not None:
        raise TypeError(
            f"Pass {name}= or its alias {alias}=, not both (got {name}={value!r}, {alias}={alias_value!r})."
        )
    return alias_value, alias


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

    def _generation_latents(self, sets: SetsOrEmbeddings, n_samples: int) -> tuple[pd.DataFrame, Tensor]:
        """Check ``n_samples``; the embeddings of ``sets`` and a float32 copy of them, with the module in eval mode."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        emb = self._as_embeddings(sets)
        self.module.eval()
        return emb, torch.tensor(emb.to_numpy(), dtype=torch.float32)  # a copy: pandas 3 arrays are read-only

    @staticmethod
    def _source_sets(emb: pd.DataFrame, n_samples: int) -> pd.Categorical:
        """The ``obs["set"]`` column of generated elements: each embedding's name, ``n_samples`` times in a row."""
        return pd.Categorical(np.repeat(np.asarray(emb.index, dtype=str), n_samples))

    def _batch_code(self, batch: str | None) -> int | None:
        if not self._batch_key:
            return None
        mapping = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
        if batch not in mapping:
            raise ValueError(f"Pass batch= one of {mapping} (the model is conditioned on {self._batch_key!r}).")
        return mapping.index(batch)

    @torch.inference_mode()
    @inject_docs
    def generate(
        self,
        sets: SetsOrEmbeddings,
        n_samples: int | None = None,
        batch: str | None = None,
        batch_size: int | None = None,
        *,
        n_cells: int | None = None,
        max_cells_per_call: int | None = None,
        **sample_kwargs,
    ) -> AnnData:
        """Generate new cells from sets or set embeddings.

        Parameters
        ----------
        %(generate_sets)s
        n_samples
            Cells to generate per set (default 100), the name :class:`~scgde.seq.SeqGDE` and
            :class:`~scgde.img.ImageGDE` use too. An output that does not fit in the memory available now
            (``n_sets x n_samples x n_genes`` float32 values) is refused before anything is generated.
        batch
            Batch category to generate in (required if the model was set up with a ``batch_key``).
        batch_size
            Bound on cells generated per network call (memory; default 65,536); a set of more cells is
            generated in pieces (and, on non-negative data, put on the data's support as a whole).
        %(n_cells_alias)s
        max_cells_per_call
            Alias of ``batch_size`` (its former name); pass one of the two.
        **sample_kwargs
            Generator options, e.g. ``guidance`` (ddpm, flow), ``n_steps`` (flow), ``noise=False``
            (cvae: likelihood means), ``project=False`` (non-negative data: the generator's raw
            values, without putting each set on the data's support; they may be negative).

        Returns
        -------
        AnnData ``(n_sets * n_samples, n_vars)`` with the model's genes; ``obs["set"]`` names the source.
        """
        n_samples, size_name = resolve_alias("n_samples", n_samples, "n_cells", n_cells, 100)
        batch_size, bound_name = resolve_alias(
            "batch_size", batch_size, "max_cells_per_call", max_cells_per_call, 65536
        )
        if n_samples < 1:
            raise ValueError(f"{size_name} must be >= 1, got {n_samples}.")
        if batch_size < 1:
            raise ValueError(f"{bound_name} must be >= 1, got {batch_size}.")
        n_samples = int(n_samples)
        n_vars = len(self.var_names)
        check_output_memory(_n_sets(sets), n_samples, n_vars, size_name=size_name)  # before anything is embedded
        emb = self._as_embeddings(sets)
        batch_code = self._batch_code(batch)
        self.module.eval()
        z_all = torch.tensor(emb.to_numpy(), dtype=torch.float32)  # a copy: pandas 3 arrays are read-only
        x = np.empty((len(z_all) * n_samples, n_vars), dtype=np.float32)  # filled block by block: one copy
        if n_samples > batch_size:  # a set does not fit in one call: each set in pieces
            for i in range(len(z_all)):
                rows = x[i * n_samples : (i + 1) * n_samples]
                self._generate_set_in_pieces(z_all[i : i + 1], rows, batch_code, batch_size, **sample_kwargs)
        else:
            per_call = batch_size // n_samples
            for start in range(0, len(z_all), per_call):
                z = z_all[start : start + per_call]
                b = None if batch_code is None else torch.full((len(z), n_samples), batch_code)
                block = self.module.sample(z, n_samples, b, **sample_kwargs).reshape(-1, n_vars)
                x[start * n_samples : start * n_samples + len(block)] = block.cpu().numpy()
        if self.module.likelihood == "nb":
            self._check_depths(x)
        obs = pd.DataFrame({"set": self._source_sets(emb, n_samples)})
        if self._batch_key:
            obs[self._batch_key] = batch
        obs.index = obs.index.astype(str)
        return self._wrap_generated(x, obs)

    def _generate_set_in_pieces(
        self, z: Tensor, out: np.ndarray, batch_code: int | None, piece: int, project: bool = True, **sample_kwargs
    ) -> None:
        """Fill ``out`` ``(n, n_vars)`` with cells of one set vector ``z`` ``(1, L)``, at most ``piece`` per call.

        The generator draws the set in pieces; a set put on the data's support (``project``) is then projected
        as a whole, as :meth:`~scgde.module.GDEModule.sample` does, from at least ``MIN_PROJECTION_CELLS`` cells.
        """
        n = len(out)
        project = project and self.module.projects_support
        n_draw = max(n, MIN_PROJECTION_CELLS) if project else n
        # without projection the pieces go straight into the output; with it, into one set-sized buffer first
        target = torch.empty((n_draw, out.shape[1]), dtype=torch.float32) if project else torch.from_numpy(out)
        for start in range(0, n_draw, piece):
            size = min(piece, n_draw - start)
            b = None if batch_code is None else torch.full((1, size), batch_code)
            target[start : start + size] = self.module.sample(z, size, b, project=False, **sample_kwargs)[0].cpu()
        if project:
            projected = self.module.bound_values(self.module.project_support(target[None].to(self.device)))
            out[:] = projected[0, :n].cpu().numpy()

    def _principal_components(self, fetcher) -> np.ndarray:
        """:func:`~scgde.data.pca_coordinates` of ``fetcher``: those ``train()`` computed for ``kernel="auto"``, if any."""
        seed = self._seed()
        kept = self.__dict__.get("_train_pca")
        if kept is not None and kept[:3] == (fetcher.name, fetcher.shape, seed):
            return kept[3]
        return pca_coordinates(fetcher, seed=seed)

    @torch.inference_mode()
    def _calibrate_support(self, n_neighbourhoods: int = 400, n_neighbors: int = 100) -> None:
        """After training on non-negative data: learn how often each gene is 0 in a set of a given mean.

        Real local distributions, ``n_neighbourhoods`` neighbourhoods of ``n_neighbors`` cells in the
        principal components of the training data plus the training sets themselves, give each
        gene's zero fraction against its mean; a decreasing isotonic fit per gene (through "mean 0,
        all zeros") is stored in the module (:meth:`~scgde.module.GDEModule.set_zero_curves`) and
        used by :meth:`generate` to give generated sets the data's zeros (see
        :meth:`~scgde.module.GDEModule.project_support`).
        """
        if not self.module.projects_support:
            return
        from sklearn.isotonic import IsotonicRegression
        from sklearn.neighbors import NearestNeighbors

        fetcher = self._fetcher(self.adata)
        niches = registered_niches(self.adata_manager)
        index = registered_sets(self.adata_manager) if niches is None else niches
        rng = np.random.default_rng(self._seed())
        rows = np.arange(self.adata.n_obs) if niches is not None else np.flatnonzero(index.codes >= 0)
        coords = self._principal_components(fetcher)[rows]
        centres = rng.choice(len(rows), size=min(n_neighbourhoods, len(rows)), replace=False)
        knn = NearestNeighbors(n_neighbors=min(n_neighbors, len(rows))).fit(coords)
        groups = [rows[nbrs] for nbrs in knn.kneighbors(coords[centres], return_distance=False)]
        # the training sets themselves (at most MAX_CURVE_SETS of them; for niches: as many random niches)
        if niches is not None:
            own = rng.choice(index.n_sets, len(centres), replace=False)
        elif index.n_sets > MAX_CURVE_SETS:
            own = np.sort(rng.choice(index.n_sets, MAX_CURVE_SETS, replace=False))
        else:
            own = range(index.n_sets)
        groups += [rng.choice(m, size=min(len(m), 2000), replace=False) for m in map(index.members, own)]
        means, zeros = [], []
        for g in groups:  # one block in memory at a time (a backed atlas has thousands of big sets)
            if len(g):
                x = fetcher.rows(np.sort(g))
                means.append(x.mean(0))
                zeros.append((x == 0).mean(0))
        means, zeros = np.stack(means), np.stack(zeros)
        grid = np.linspace(0.0, 2.0 * float(means.max()) + 1e-6, N_CURVE)
        curves = np.empty((means.shape[1], N_CURVE))
        fit = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip")
        for g in range(means.shape[1]):
            curves[g] = fit.fit(np.r_[0.0, means[:, g]], np.r_[1.0, zeros[:, g]]).predict(grid)
        self.module.set_zero_curves(torch.as_tensor(grid), torch.as_tensor(curves))

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

    @inject_docs
    def interpolate(
        self,
        set_a: str | np.ndarray,
        set_b: str | np.ndarray,
        n_steps: int = 11,
        n_samples: int | None = None,
        *,
        n_cells: int | None = None,
        **generate_kwargs,
    ) -> AnnData:
        """Generate cells along the straight latent line between two sets.

        Latent lines approximately follow optimal-transport (McCann) paths between the two
        distributions.

        Parameters
        ----------
        %(line_ends)s
        %(line_steps)s
        %(n_samples_per_point)s
            Default 100.
        %(n_cells_alias)s
        **generate_kwargs
            Passed to :meth:`generate` (e.g. ``batch_size``).

        Returns
        -------
        AnnData of generated cells with ``obs["t"]`` (position on the line) and ``obs["set"]``.
        """
        n_cells, size_name = resolve_alias("n_samples", n_samples, "n_cells", n_cells, 100)
        line = self._latent_line(set_a, set_b, n_steps)
        out = self.generate(line, **{size_name: n_cells}, **generate_kwargs)
        return self._mark_line(out, line, set_a, set_b, n_cells)

    def _latent_line(self, set_a, set_b, n_steps: int) -> pd.DataFrame:
        """``n_steps`` embeddings on the segment between two sets or embeddings, index ``"t=..."``."""
        if n_steps < 2:
            raise ValueError(f"n_steps must be >= 2, got {n_steps}.")
        ends = [self._as_embeddings(s if not isinstance(s, str) else [s]).to_numpy()[0] for s in (set_a, set_b)]
        ts = np.linspace(0.0, 1.0, n_steps)
        z = np.stack([(1 - t) * ends[0] + t * ends[1] for t in ts]).astype(np.float32)
        line = pd.DataFrame(z, index=[f"t={t:.3g}" for t in ts])
        line.attrs["t"] = ts
        return line

    @staticmethod
    def _mark_line(out: AnnData, line: pd.DataFrame, set_a, set_b, n_per_point: int) -> AnnData:
        """Record each generated element's position on the line and the line's ends."""
        out.obs["t"] = np.repeat(line.attrs["t"], n_per_point)
        out.uns["interpolation"] = {
            "from": str(set_a) if isinstance(set_a, str) else "embedding",
            "to": str(set_b) if isinstance(set_b, str) else "embedding",
        }
        return out
