"""Meta-distributions: how training sets are drawn from the cells.

A sampler turns a random generator into a :class:`SetBatch`, a ``(B, m)`` array of row indices
(plus optional weights and bookkeeping). Any rule that picks rows (by a label, by a kernel on
space or time, by a window of quantiles) fits this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ._sets import SetIndex


@dataclass
class SetBatch:
    """A batch of sets given as row indices.

    Attributes
    ----------
    cells
        ``(B, m)`` row indices into the AnnData.
    weights
        ``(B, m)`` masses of the elements, or ``None`` for uniform.
    sets
        ``(B,)`` code of the source set, or ``-1`` for a mixture.
    sources
        ``(B, k)`` codes of the mixed sets (mixtures only).
    mixture_weights
        ``(B, k)`` true mixture weights of ``sources`` (mixtures only).
    """

    cells: np.ndarray
    weights: np.ndarray | None = None
    sets: np.ndarray | None = None
    sources: np.ndarray | None = None
    mixture_weights: np.ndarray | None = None


class SetSampler(Protocol):
    """Draws a batch of sets from a pool of candidate sets."""

    def sample(self, n_sets: int, rng: np.random.Generator) -> SetBatch:
        """Draw ``n_sets`` random sets."""

    def sample_sets(self, codes: np.ndarray, rng: np.random.Generator) -> SetBatch:
        """Draw one set for each entry of ``codes`` (deterministic set choice, e.g. validation)."""


def _draw_members(members: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    # without replacement when the set is big enough, otherwise with replacement
    return rng.choice(members, size=m, replace=len(members) < m)


class GroupSampler:
    """Sets are groups of cells sharing a label; each draw takes ``cells_per_set`` cells of one group.

    Parameters
    ----------
    index
        The grouping.
    cells_per_set
        Cells per drawn set ``m``; drawn without replacement, or with replacement from smaller sets.
    sets
        Codes of the sets to draw from (default: all).
    """

    def __init__(self, index: SetIndex, cells_per_set: int, sets: np.ndarray | None = None):
        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        self.index = index
        self.cells_per_set = int(cells_per_set)
        self.sets = np.arange(index.n_sets) if sets is None else np.asarray(sets)
        if len(self.sets) == 0:
            raise ValueError("No sets to sample from.")

    def sample(self, n_sets: int, rng: np.random.Generator) -> SetBatch:
        return self.sample_sets(rng.choice(self.sets, size=n_sets, replace=n_sets > len(self.sets)), rng)

    def sample_sets(self, codes: np.ndarray, rng: np.random.Generator) -> SetBatch:
        cells = np.stack([_draw_members(self.index.members(c), self.cells_per_set, rng) for c in codes])
        return SetBatch(cells=cells, sets=np.asarray(codes))


class DirichletMixer:
    """k-sparse Dirichlet mixtures of sets (the paper's "mixer").

    Each drawn set picks ``k`` distinct source sets and weights ``w ~ Dirichlet(alpha 1_k)``; each
    of its ``m`` cells comes from source ``j`` with probability ``w_j`` and is then drawn uniformly
    from that source's cells. The true weights and sources are returned with the batch (always
    aligned, also when a source happens to receive no cell).

    Parameters
    ----------
    index
        The grouping that defines the source sets.
    cells_per_set
        Cells per mixture ``m``.
    k
        Number of sources per mixture.
    alpha
        Dirichlet concentration.
    sets
        Codes of the candidate sources (default: all).
    """

    def __init__(
        self, index: SetIndex, cells_per_set: int, k: int = 3, alpha: float = 1.0, sets: np.ndarray | None = None
    ):
        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}.")
        self.index = index
        self.cells_per_set = int(cells_per_set)
        self.alpha = float(alpha)
        self.sets = np.arange(index.n_sets) if sets is None else np.asarray(sets)
        if not 1 <= k <= len(self.sets):
            raise ValueError(f"k={k} must be between 1 and the number of candidate sets ({len(self.sets)}).")
        self.k = int(k)

    def sample(self, n_sets: int, rng: np.random.Generator) -> SetBatch:
        sources = np.stack([rng.choice(self.sets, size=self.k, replace=False) for _ in range(n_sets)])
        return self._mix(sources, rng)

    def sample_sets(self, codes: np.ndarray, rng: np.random.Generator) -> SetBatch:
        """Mixtures whose first source is ``codes[i]`` and whose other sources are random."""
        out = []
        for c in codes:
            others = rng.choice(self.sets[self.sets != c], size=self.k - 1, replace=False)
            out.append(np.concatenate([[c], others]))
        return self._mix(np.stack(out), rng)

    def _mix(self, sources: np.ndarray, rng: np.random.Generator) -> SetBatch:
        weights = rng.dirichlet(np.full(self.k, self.alpha), size=len(sources))
        return prescribed_mixture(self.index, sources, weights, self.cells_per_set, rng)


class KernelSampler:
    """Sets as kernel-weighted neighbourhoods: ``w_j = exp(-|y_j - y_c|^2 / (2 bandwidth^2))``.

    (or ``w_j = exp(-|y_j - y_c| / bandwidth)`` with ``kernel="exponential"``, the paper's spatial kernel).

    Each draw picks a centre cell ``c`` from the candidate sets and samples ``cells_per_set``
    cells with probability proportional to ``w_j`` among the ``n_neighbors`` nearest cells in the
    coordinates ``y`` (space, time, a PCA embedding, ...). This is the "continuous label" prior of
    the paper: it yields a continuum of local distributions instead of a few fixed groups.

    Parameters
    ----------
    index
        The grouping; centres are drawn from the cells of ``sets``.
    coords
        ``(n_obs, d)`` coordinates of every cell.
    cells_per_set
        Cells per drawn set.
    bandwidth
        Kernel width ``sigma`` in the units of ``coords``; default: the median distance to the
        ``n_neighbors``-th neighbour.
    n_neighbors
        Candidate cells per centre (the kernel is truncated there).
    within_set
        Only sample cells from the centre's own set (e.g. keep conditions apart).
    sets
        Codes of the sets whose cells may be centres and neighbours (default: all).
    kernel
        ``"gaussian"`` (default) or ``"exponential"`` (heavier tails: more distant cells keep some weight).
    """

    def __init__(
        self,
        index: SetIndex,
        coords: np.ndarray,
        cells_per_set: int,
        bandwidth: float | None = None,
        n_neighbors: int = 200,
        within_set: bool = True,
        sets: np.ndarray | None = None,
        kernel: Literal["gaussian", "exponential"] = "gaussian",
    ):
        from sklearn.neighbors import NearestNeighbors

        if kernel not in ("gaussian", "exponential"):
            raise ValueError(f"kernel must be 'gaussian' or 'exponential', got {kernel!r}.")
        self.kernel = kernel

        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim != 2 or len(coords) != len(index.codes):
            raise ValueError(f"coords must have shape (n_obs, d) = ({len(index.codes)}, d); got {coords.shape}.")
        self.index = index
        self.cells_per_set = int(cells_per_set)
        self.sets = np.arange(index.n_sets) if sets is None else np.asarray(sets)
        allowed = np.isin(index.codes, self.sets)
        self.pools = {}
        for code in self.sets if within_set else [None]:
            cells = index.members(code) if within_set else np.flatnonzero(allowed)
            k = min(n_neighbors, len(cells))
            dist, nbr = NearestNeighbors(n_neighbors=k).fit(coords[cells]).kneighbors(coords[cells])
            self.pools[code] = (cells, cells[nbr], dist)
        all_dist = np.concatenate([d[:, -1] for *_, d in self.pools.values()])
        self.bandwidth = float(np.median(all_dist)) if bandwidth is None else float(bandwidth)
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth}.")
        self.within_set = within_set

    def _draw(self, code, rng: np.random.Generator) -> np.ndarray:
        cells, nbrs, dist = self.pools[code if self.within_set else None]
        i = rng.integers(len(cells))
        scaled = dist[i] / self.bandwidth
        w = np.exp(-scaled) if self.kernel == "exponential" else np.exp(-0.5 * scaled**2)
        return rng.choice(nbrs[i], size=self.cells_per_set, p=w / w.sum())

    def sample(self, n_sets: int, rng: np.random.Generator) -> SetBatch:
        return self.sample_sets(rng.choice(self.sets, size=n_sets, replace=n_sets > len(self.sets)), rng)

    def sample_sets(self, codes: np.ndarray, rng: np.random.Generator) -> SetBatch:
        """One neighbourhood centred on a random cell of each set in ``codes``."""
        return SetBatch(cells=np.stack([self._draw(c, rng) for c in codes]), sets=np.asarray(codes))


class WindowSampler:
    """Sets as windows of neighbouring ordered sets: the quantile-window prior of the paper's promoter task.

    The sets are bins along an ordered axis (expression quantiles, time points, doses), in their
    registered order. Each draw picks a centre bin and samples ``cells_per_set`` elements uniformly
    from the bins within ``width`` positions of it, so neighbouring windows overlap and the model
    sees a continuum of distributions along the axis.

    Parameters
    ----------
    index
        The grouping; bins are its sets, ordered by code.
    cells_per_set
        Elements per drawn window.
    width
        Bins on each side of the centre (``0``: the centre bin alone).
    sets
        Codes of the bins that may be centres and members (default: all).
    """

    def __init__(self, index: SetIndex, cells_per_set: int, width: int = 1, sets: np.ndarray | None = None):
        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        if width < 0:
            raise ValueError(f"window width must be >= 0, got {width}.")
        self.index, self.cells_per_set, self.width = index, int(cells_per_set), int(width)
        self.sets = np.sort(np.arange(index.n_sets) if sets is None else np.asarray(sets))
        if len(self.sets) == 0:
            raise ValueError("No sets to sample from.")

    def members(self, code: int) -> np.ndarray:
        """Elements of the window centred on bin ``code`` (its neighbours among the allowed bins)."""
        pos = np.searchsorted(self.sets, code)
        lo, hi = max(0, pos - self.width), min(len(self.sets), pos + self.width + 1)
        return np.concatenate([self.index.members(c) for c in self.sets[lo:hi]])

    def sample(self, n_sets: int, rng: np.random.Generator) -> SetBatch:
        return self.sample_sets(rng.choice(self.sets, size=n_sets, replace=n_sets > len(self.sets)), rng)

    def sample_sets(self, codes: np.ndarray, rng: np.random.Generator) -> SetBatch:
        """One window centred on each bin of ``codes``."""
        cells = np.stack([_draw_members(self.members(c), self.cells_per_set, rng) for c in codes])
        return SetBatch(cells=cells, sets=np.asarray(codes))


def prescribed_mixture(
    index: SetIndex, sources: np.ndarray, weights: np.ndarray, cells_per_set: int, rng: np.random.Generator
) -> SetBatch:
    """Mixtures with given sources ``(B, k)`` and weights ``(B, k)`` (e.g. a simplex grid)."""
    sources = np.asarray(sources)
    weights = np.asarray(weights, dtype=float)
    weights = weights / weights.sum(axis=1, keepdims=True)
    cells = np.empty((len(sources), cells_per_set), dtype=np.int64)
    for i, (src, w) in enumerate(zip(sources, weights, strict=True)):
        which = rng.choice(len(src), size=cells_per_set, p=w)
        for j, code in enumerate(src):
            slots = which == j
            members = index.members(code)
            cells[i, slots] = members[rng.integers(0, len(members), size=int(slots.sum()))]
    return SetBatch(cells=cells, sets=np.full(len(sources), -1), sources=sources, mixture_weights=weights)


SamplerFactory = Callable[..., SetSampler]
"""``factory(index, sets, cells_per_set, *, mixer, kernel, obsm, window) -> SetSampler`` of one set kind."""

_SET_KINDS: dict[type, SamplerFactory] = {}


def register_set_kind(kind: type, factory: SamplerFactory | None = None):
    """Register how training sets of one set kind are drawn.

    Each kind of sets (named sets :class:`~scgde.data.SetIndex`, niches :class:`~scgde.data.NicheSets`, ...)
    registers its own factory here, next to its definition, so :func:`make_sampler` dispatches on the type of the
    grouping without knowing (or importing) the kinds. Subclasses of a registered kind inherit its factory.

    Parameters
    ----------
    kind
        The class of the grouping.
    factory
        ``factory(index, sets, cells_per_set, *, mixer, kernel, obsm, window)`` returning a :class:`SetSampler`;
        without it, ``register_set_kind`` returns a decorator.
    """
    if factory is None:
        return lambda f: register_set_kind(kind, f)
    _SET_KINDS[kind] = factory
    return factory


def _set_kind_factory(index) -> SamplerFactory:
    for kind in type(index).__mro__:
        if kind in _SET_KINDS:
            return _SET_KINDS[kind]
    known = ", ".join(k.__name__ for k in _SET_KINDS)
    raise TypeError(f"No sampler for sets of type {type(index).__name__}; registered set kinds: {known}.")


def make_sampler(
    index: SetIndex,
    sets: np.ndarray,
    cells_per_set: int,
    mixer: str | dict | None = None,
    kernel: dict | None = None,
    obsm: dict | None = None,
    window: int | None = None,
) -> SetSampler:
    """The training-set sampler for the ``mixer=`` / ``kernel=`` options of ``GDE.train``.

    The sampler is chosen by the set kind of ``index`` (see :func:`register_set_kind`): named sets give a
    :class:`GroupSampler`, :class:`DirichletMixer`, :class:`KernelSampler` or :class:`WindowSampler`; niches a
    :class:`~scgde.data.NicheSampler`.

    Parameters
    ----------
    index, sets, cells_per_set
        The grouping (a :class:`~scgde.data.SetIndex`, or :class:`~scgde.data.NicheSets`: then
        a :class:`~scgde.data.NicheSampler`), the codes of the sets to draw from, and ``m``.
    mixer
        ``None`` (each set is one group), ``"dirichlet"`` or options of :class:`DirichletMixer`
        such as ``{"k": 3, "alpha": 1.0}``.
    kernel
        Options of :class:`KernelSampler` plus the coordinates: ``"obsm"``, a key of ``obsm``, or
        ``"coords"``, an ``(n_obs, d)`` array.
    obsm
        The AnnData's ``obsm`` mapping (for ``kernel``).
    window
        Width of :class:`WindowSampler` windows over the ordered sets (``None``: no windows).
    """
    if sum(option is not None for option in (mixer, kernel, window)) > 1:
        raise ValueError("Pass at most one of mixer=, kernel= and window=.")
    factory = _set_kind_factory(index)
    return factory(index, sets, cells_per_set, mixer=mixer, kernel=kernel, obsm=obsm, window=window)


@register_set_kind(SetIndex)
def _named_set_sampler(
    index: SetIndex,
    sets: np.ndarray,
    cells_per_set: int,
    *,
    mixer: str | dict | None = None,
    kernel: dict | None = None,
    obsm: dict | None = None,
    window: int | None = None,
) -> SetSampler:
    """Samplers of named sets: single groups, Dirichlet mixtures, kernel neighbourhoods or windows."""
    if window is not None:
        return WindowSampler(index, cells_per_set, window, sets)
    if kernel is not None:
        options = dict(kernel)
        key = options.pop("obsm", None)
        coords = options.pop("coords", None)
        if coords is None:
            obsm = {} if obsm is None else obsm
            if key not in obsm:
                raise KeyError(f"kernel={{'obsm': {key!r}}} must name a key of adata.obsm; available: {list(obsm)}.")
            coords = obsm[key]
        return KernelSampler(index, np.asarray(coords), cells_per_set, sets=sets, **options)
    if mixer is None:
        return GroupSampler(index, cells_per_set, sets)
    if not (mixer == "dirichlet" or isinstance(mixer, dict)):
        raise ValueError(f"mixer must be None, 'dirichlet' or a dict like {{'k': 3, 'alpha': 1.0}}; got {mixer!r}.")
    options = {} if mixer == "dirichlet" else dict(mixer)
    options["k"] = min(options.get("k", 3), len(sets))
    return DirichletMixer(index, cells_per_set, sets=sets, **options)
