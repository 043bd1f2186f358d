"""Differentiable distances between (weighted) empirical distributions, batched over sets.

Each function takes ``x (B, n, D)`` and ``y (B, m, D)`` (or unbatched ``(n, D)``, ``(m, D)``) with
optional non-negative weights ``(B, n)``, ``(B, m)`` and returns one value per set. They serve
both as training losses of the direct generator and as evaluation metrics (:mod:`scgde.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _batched(fn: Callable) -> Callable:
    """Let ``fn`` accept unbatched ``(n, D)`` inputs and default to uniform weights."""

    def wrapper(x: Tensor, y: Tensor, x_weights: Tensor | None = None, y_weights: Tensor | None = None, **kw):
        single = x.dim() == 2
        if single:
            x, y = x[None], y[None]
            x_weights = None if x_weights is None else x_weights[None]
            y_weights = None if y_weights is None else y_weights[None]
        if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
            raise ValueError(f"Expected x (B, n, D) and y (B, m, D); got {tuple(x.shape)} and {tuple(y.shape)}.")
        a = _normalise(x_weights, x)
        b = _normalise(y_weights, y)
        out = fn(x, y, a, b, **kw)
        return out[0] if single else out

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def _normalise(weights: Tensor | None, x: Tensor) -> Tensor:
    if weights is None:
        return x.new_full(x.shape[:2], 1.0 / x.shape[1])
    weights = weights.to(x.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


def _sq_dists(x: Tensor, y: Tensor) -> Tensor:
    return (x.pow(2).sum(-1)[:, :, None] + y.pow(2).sum(-1)[:, None, :] - 2 * x @ y.transpose(1, 2)).clamp_min(0)


def _quantile_w2_sq(u: Tensor, a: Tensor, v: Tensor, b: Tensor) -> Tensor:
    """Squared W2 between 1-D weighted samples ``u``, ``v`` of shape ``(..., n)``, ``(..., m)``."""
    if u.shape[-1] == v.shape[-1] and torch.equal(a, b) and bool((a == a[..., :1]).all()):
        # uniform weights, equal sizes: match sorted values
        return (torch.sort(u, dim=-1).values - torch.sort(v, dim=-1).values).pow(2).mean(-1)
    u_sorted, iu = torch.sort(u, dim=-1)
    v_sorted, iv = torch.sort(v, dim=-1)
    cu = torch.cumsum(torch.gather(a, -1, iu), dim=-1)
    cv = torch.cumsum(torch.gather(b, -1, iv), dim=-1)
    # quantile functions are piecewise constant between the merged cumulative masses
    t = torch.sort(torch.cat([cu, cv], dim=-1), dim=-1).values.clamp(max=1.0).contiguous()
    dt = torch.diff(t, dim=-1, prepend=torch.zeros_like(t[..., :1]))
    ku = torch.searchsorted(cu.detach().contiguous(), t.detach()).clamp(max=u.shape[-1] - 1)
    kv = torch.searchsorted(cv.detach().contiguous(), t.detach()).clamp(max=v.shape[-1] - 1)
    diff = torch.gather(u_sorted, -1, ku) - torch.gather(v_sorted, -1, kv)
    return (dt.detach() * diff.pow(2)).sum(-1)


@_batched
def sliced_wasserstein(x, y, a, b, n_projections: int = 128, squared: bool = False, generator=None) -> Tensor:
    """Sliced 2-Wasserstein distance with fresh random directions for each set.

    ``SW_2 = (E_theta W_2^2(theta#P, theta#Q))^(1/2)``, Monte Carlo over ``n_projections``
    uniform directions. Weighted and unequal-size samples are compared through their quantile
    functions. Returns ``SW_2^2`` if ``squared``.
    """
    n_sets, _, d = x.shape
    theta = torch.randn(n_sets, d, n_projections, device=x.device, dtype=x.dtype, generator=generator)
    theta = theta / theta.norm(dim=1, keepdim=True)
    u = (x @ theta).transpose(1, 2)  # (B, P, n)
    v = (y @ theta).transpose(1, 2)
    sq = _quantile_w2_sq(u, a[:, None, :].expand_as(u), v, b[:, None, :].expand_as(v)).mean(-1)
    return sq if squared else torch.sqrt(sq + 1e-12)


def _median_bandwidth(x: Tensor, y: Tensor) -> Tensor:
    z = torch.cat([x, y], dim=1).detach()
    d2 = _sq_dists(z, z)
    n = z.shape[1]
    off = d2[:, ~torch.eye(n, dtype=torch.bool, device=z.device)].reshape(z.shape[0], -1)
    return off.sqrt().median(dim=1).values.clamp_min(1e-8)


@_batched
def mmd(x, y, a, b, bandwidth: float | str = "median", squared: bool = True) -> Tensor:
    """Maximum mean discrepancy with a Gaussian kernel ``exp(-|x - y|^2 / (2 sigma^2))``.

    ``bandwidth="median"`` uses the median pairwise distance of the pooled sample of each set.
    Returns the (biased, V-statistic) squared MMD unless ``squared=False``.
    """
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}.")
        sigma = _median_bandwidth(x, y)[:, None, None]
    else:
        sigma = torch.as_tensor(bandwidth, dtype=x.dtype, device=x.device)

    def k(p, q):
        return torch.exp(-_sq_dists(p, q) / (2 * sigma**2))

    val = (
        torch.einsum("bi,bij,bj->b", a, k(x, x), a)
        + torch.einsum("bi,bij,bj->b", b, k(y, y), b)
        - 2 * torch.einsum("bi,bij,bj->b", a, k(x, y), b)
    ).clamp_min(0)
    return val if squared else val.sqrt()


@_batched
def energy_distance(x, y, a, b) -> Tensor:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely), weighted V-statistic.

    This is the squared form used by scPerturb and pertpy's ``edistance``.
    """

    def d(p, q):
        return torch.sqrt(_sq_dists(p, q) + 1e-12)

    return (
        2 * torch.einsum("bi,bij,bj->b", a, d(x, y), b)
        - torch.einsum("bi,bij,bj->b", a, d(x, x), a)
        - torch.einsum("bi,bij,bj->b", b, d(y, y), b)
    )


@_batched
def sinkhorn_divergence(x, y, a, b, blur: float = 0.05, scaling: float = 0.9) -> Tensor:
    """Debiased Sinkhorn divergence with cost ``|x - y|^2 / 2`` (GeomLoss, tensorised backend).

    ``blur`` is the entropic length scale (``epsilon = blur^2``); as ``blur -> 0`` the value tends
    to ``W_2^2 / 2``.
    """
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, debias=True, backend="tensorized")
    return loss(a, x.contiguous(), b, y.contiguous())


DISTANCES: dict[str, Callable] = {
    "sliced_wasserstein": sliced_wasserstein,
    "mmd": mmd,
    "energy": energy_distance,
    "sinkhorn": sinkhorn_divergence,
}


def gaussian_w2_pairs(x: Tensor, y: Tensor, x_weights: Tensor | None = None, y_weights: Tensor | None = None) -> Tensor:
    """W2 between the Gaussians of the (weighted) sample moments of paired sets ``x (B, n, D)``, ``y (B, m, D)``.

    ``W2^2 = |mu_x - mu_y|^2 + tr S_x + tr S_y - 2 tr (S_x^1/2 S_y S_x^1/2)^1/2`` (the Frechet distance), one value per
    pair; a small ridge keeps the square roots differentiable when a set has fewer elements than dimensions.
    """
    moments = []
    for s, w in ((x, x_weights), (y, y_weights)):
        w = _normalise(w, s)
        mean = (w[..., None] * s).sum(1)
        centred = s - mean[:, None]
        cov = (w[..., None] * centred).transpose(1, 2) @ centred
        moments.append((mean, cov + 1e-4 * torch.eye(s.shape[-1], device=s.device, dtype=s.dtype)))
    (mx, cx), (my, cy) = moments
    values, vectors = torch.linalg.eigh(cx)
    root_x = vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(1, 2)
    cross = torch.linalg.eigvalsh(root_x @ cy @ root_x).clamp_min(0).sqrt().sum(-1)
    trace = torch.diagonal(cx, dim1=1, dim2=2).sum(-1) + torch.diagonal(cy, dim1=1, dim2=2).sum(-1)
    sq = (mx - my).pow(2).sum(-1) + (trace - 2 * cross).clamp_min(0)
    return torch.sqrt(sq + 1e-12)
