"""Multimodal cells from a MuData: each modality's registered matrix, aligned to ``mdata.obs``, with masks."""

from __future__ import annotations

import numpy as np
from scvi import REGISTRY_KEYS

from ._fetch import RowFetcher, layer_fetcher

#: ``setup_mudata`` argument -> (registry key of its matrix, default modality name)
MODALITY_ARGS = {
    "rna_layer": (REGISTRY_KEYS.X_KEY, "rna"),
    "protein_layer": (REGISTRY_KEYS.PROTEIN_EXP_KEY, "prot"),
    "atac_layer": (REGISTRY_KEYS.ATAC_X_KEY, "atac"),
}


class ModalityFetcher:
    """Rows of multimodal cells: ``[x_1 | ... | x_M | mask_1 ... mask_M]`` for rows of ``mdata.obs``.

    A cell missing from a modality (``mdata.obsmap[mod] == 0``) gets zeros and mask 0 there.

    Parameters
    ----------
    fetchers
        One reader per modality (rows of that modality's AnnData).
    positions
        Per modality, ``(n_obs,)`` the row of each ``mdata`` cell in that modality (``-1``: missing).
    names
        Modality names (for errors).
    """

    def __init__(self, fetchers: list[RowFetcher], positions: list[np.ndarray], names: list[str]):
        self.fetchers, self.positions, self.names = fetchers, [np.asarray(p) for p in positions], list(names)
        self.sizes = [f.shape[1] for f in fetchers]
        n_obs = len(self.positions[0])
        self.shape = (n_obs, sum(self.sizes) + len(fetchers))

    @classmethod
    def from_mudata(cls, mdata, layers: dict[str, str | None], counts: set[str] | None = None) -> ModalityFetcher:
        """Reader of ``mdata`` with ``layers`` (modality name -> layer, ``None``: ``.X``).

        Modalities named in ``counts`` are checked for raw counts at every read.
        """
        fetchers, positions = [], []
        for mod, layer in layers.items():
            name = f"mdata.mod[{mod!r}]"
            fetchers.append(layer_fetcher(mdata.mod[mod], layer, name=name, counts=mod in (counts or ())))
            positions.append(np.asarray(mdata.obsmap[mod]).ravel().astype(np.int64) - 1)
        return cls(fetchers, positions, list(layers))

    def present(self) -> np.ndarray:
        """``(n_obs, M)`` whether each cell was measured in each modality."""
        return np.stack([p >= 0 for p in self.positions], axis=1)

    def modality_rows(self, i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of modality ``i`` for ``mdata`` rows ``idx`` (zeros where missing) and the presence mask."""
        pos = self.positions[i][np.asarray(idx)]
        present = pos >= 0
        out = np.zeros((len(pos), self.sizes[i]), dtype=np.float32)
        if present.any():
            wanted = pos[present]
            order = np.argsort(wanted, kind="stable")  # sorted reads (fast when backed)
            block = np.empty((len(wanted), self.sizes[i]), dtype=np.float32)
            block[order] = self.fetchers[i].rows(wanted[order])
            out[present] = block
        return out, present

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Flat multimodal rows for ``mdata`` rows ``idx``."""
        parts, masks = [], []
        for i in range(len(self.fetchers)):
            x, present = self.modality_rows(i, idx)
            parts.append(x)
            masks.append(present.astype(np.float32)[:, None])
        return np.hstack([*parts, *masks])

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Flat multimodal rows ``start:stop``."""
        return self.rows(np.arange(start, stop))

    def moments(self, n_rows: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each flat column over a random sample of cells (for PCA coordinates)."""
        rng = np.random.default_rng(seed)
        n = self.shape[0]
        idx = np.arange(n) if n <= n_rows else np.sort(rng.choice(n, size=n_rows, replace=False))
        rows = np.vstack([self.rows(idx[s : s + 2048]) for s in range(0, len(idx), 2048)]).astype(np.float64)
        return rows.mean(0), rows.std(0)

    def check_finite(self) -> None:
        """Every modality's matrix is finite."""
        for f in self.fetchers:
            f.check_finite()


def registered_modalities(adata_manager) -> dict[str, str | None] | None:
    """Modality name -> layer (``None``: ``.X``) of a MuData registered with ``setup_mudata`` (else ``None``)."""
    registry = adata_manager.data_registry
    found = {
        registry[key].mod_key: registry[key].attr_key
        for key, _ in MODALITY_ARGS.values()
        if key in registry and getattr(registry[key], "mod_key", None) is not None
    }
    return found or None


def registered_fetcher(adata_manager) -> RowFetcher | ModalityFetcher:
    """Reader of the registered elements: the expression matrix, or a MuData's modalities."""
    modalities = registered_modalities(adata_manager)
    if modalities is not None:
        return ModalityFetcher.from_mudata(adata_manager.adata, modalities)
    return layer_fetcher(adata_manager.adata, adata_manager.data_registry[REGISTRY_KEYS.X_KEY].attr_key)
