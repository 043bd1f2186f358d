"""Distributional invariance and streaming exactness of every set encoder."""

from __future__ import annotations

import pytest
import torch

from scgde.nn import ENCODERS, SetEncoder, build_encoder, encode_stream

ATOL = 1e-5


class SumEncoder(SetEncoder):
    """Sum pooling (DeepSets with sum): permutation invariant but NOT distributionally invariant."""

    def __init__(self, n_input, n_latent):
        super().__init__(n_input, n_latent)
        self.phi = torch.nn.Linear(n_input, 8)
        self.rho = torch.nn.Linear(8, n_latent)

    def forward(self, x, weights=None):
        h = torch.tanh(self.phi(x))
        if weights is not None:
            h = h * weights[..., None]
        return self.rho(h.sum(dim=-2))


def assert_distributionally_invariant(encoder, x: torch.Tensor) -> None:
    """The checks every GDE encoder must pass (order, duplication, integer weights, padding)."""
    z = encoder(x)
    perm = torch.randperm(x.shape[1])
    torch.testing.assert_close(encoder(x[:, perm]), z, atol=ATOL, rtol=0)
    # every element repeated K times
    torch.testing.assert_close(encoder(x.repeat_interleave(3, dim=1)), z, atol=ATOL, rtol=0)
    # scaling all masses changes nothing
    torch.testing.assert_close(encoder(x, 2.5 * torch.ones(x.shape[:2])), z, atol=ATOL, rtol=0)
    # zero-weight padding changes nothing
    pad = torch.cat([x, 100 * torch.randn(x.shape[0], 7, x.shape[2])], dim=1)
    pw = torch.cat([torch.ones(x.shape[:2]), torch.zeros(x.shape[0], 7)], dim=1)
    torch.testing.assert_close(encoder(pad, pw), z, atol=ATOL, rtol=0)


@pytest.fixture(params=[*sorted(ENCODERS), "resnet-quadratic"])
def encoder(request):
    torch.manual_seed(0)
    if request.param == "resnet-quadratic":
        return build_encoder("resnet", 4, 6, quadratic=True).eval()
    return build_encoder(request.param, 4, 6).eval()


def test_invariance(encoder):
    torch.manual_seed(1)
    assert_distributionally_invariant(encoder, torch.randn(3, 20, 4))


def test_invariance_in_train_mode(encoder):
    """No BatchNorm: a set's vector does not depend on the other sets in the batch."""
    encoder.train()
    x = torch.randn(5, 20, 4)
    torch.testing.assert_close(encoder(x)[:2], encoder(x[:2]), atol=ATOL, rtol=0)
    assert_distributionally_invariant(encoder, x)


def test_integer_weights_equal_duplication(encoder):
    x = torch.randn(1, 10, 4)
    w = torch.tensor([[1, 2, 3, 1, 1, 4, 1, 2, 1, 1.0]])
    dup = x[0].repeat_interleave(w[0].long(), dim=0)[None]
    torch.testing.assert_close(encoder(x, w), encoder(dup), atol=ATOL, rtol=0)


def test_ragged_sets_batch_with_padding(encoder):
    sets = [torch.randn(n, 4) for n in (5, 17, 9)]
    x = torch.zeros(3, 17, 4)
    w = torch.zeros(3, 17)
    for i, s in enumerate(sets):
        x[i, : len(s)] = s
        w[i, : len(s)] = 1
    z = encoder(x, w)
    for i, s in enumerate(sets):
        torch.testing.assert_close(z[i], encoder(s), atol=ATOL, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_streaming_equals_whole(encoder, chunk):
    torch.manual_seed(2)
    sizes = [300, 3, 57]
    xs = torch.cat([torch.randn(n, 4) + i for i, n in enumerate(sizes)])
    seg = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    order = torch.randperm(len(xs))  # cells of a set need not be contiguous
    xs, seg = xs[order], seg[order]
    whole = torch.stack([encoder(xs[seg == i]) for i in range(3)])

    def chunks():
        return [(xs[s : s + chunk], seg[s : s + chunk], None) for s in range(0, len(xs), chunk)]

    torch.testing.assert_close(encode_stream(encoder, chunks, 3), whole, atol=ATOL, rtol=0)


def test_sum_pooling_fails_duplication_test():
    """The invariance check can fail: sum pooling depends on the set size."""
    torch.manual_seed(0)
    encoder, x = SumEncoder(4, 6), torch.randn(3, 20, 4)
    torch.testing.assert_close(encoder(x[:, torch.randperm(20)]), encoder(x), atol=ATOL, rtol=0)  # order is fine
    with pytest.raises(AssertionError):
        assert_distributionally_invariant(encoder, x)


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match="resnet"):
        build_encoder("transformer", 4, 6)


@pytest.mark.parametrize("name", ["resnet", "attention"])
@pytest.mark.parametrize("cache_chunks", [0, 2, 100])
def test_stream_cache_is_exact_and_skips_rereading(name, cache_chunks):
    """Cached element states give the same vectors; when every chunk fits, later stages read nothing."""
    torch.manual_seed(0)
    encoder = build_encoder(name, 4, 3).eval()
    x = torch.randn(90, 4)
    seg = torch.arange(3).repeat_interleave(30)
    reads = []

    def chunks():
        reads.append(1)
        return [(x[i : i + 20], seg[i : i + 20], None) for i in range(0, 90, 20)]

    with torch.no_grad():
        whole = encoder.encode_segments(x, seg, 3)
        state = encoder.step(0, x[:20], None, None, seg[:20])[0]
        per_chunk = sum(t.numel() * t.element_size() for t in (state if isinstance(state, tuple) else (state,)))
        budget = per_chunk * cache_chunks + 20 * 12 * cache_chunks  # states plus seg and weights
        streamed = encode_stream(encoder, chunks, 3, cache_bytes=budget)
    torch.testing.assert_close(streamed, whole, atol=ATOL, rtol=0)
    assert len(reads) == (1 if cache_chunks == 100 else encoder.n_stages)


def test_stream_cache_is_all_or_nothing_when_the_size_is_known():
    torch.manual_seed(0)
    encoder = build_encoder("resnet", 4, 3).eval()
    x, seg = torch.randn(90, 4), torch.arange(3).repeat_interleave(30)

    class Chunks:
        n_elements, reads = 90, 0

        def __call__(self):
            self.reads += 1
            return [(x[i : i + 20], seg[i : i + 20], None) for i in range(0, 90, 20)]

    with torch.no_grad():
        whole = encoder.encode_segments(x, seg, 3)
        for budget, reads in ((50_000, encoder.n_stages), (10**6, 1)):  # 50 kB holds one chunk, not all five
            chunks = Chunks()
            torch.testing.assert_close(encode_stream(encoder, chunks, 3, cache_bytes=budget), whole, atol=ATOL, rtol=0)
            assert chunks.reads == reads


def test_stream_cache_stays_empty_when_the_stream_does_not_fit(monkeypatch):
    """Known not to fit at the first chunk: no stage caches anything (no partial cache at later stages)."""
    import scgde.nn._encoders as encoders

    torch.manual_seed(0)
    encoder = build_encoder("resnet", 4, 3).eval()
    x, seg = torch.randn(90, 4), torch.arange(3).repeat_interleave(30)
    compacted = []
    monkeypatch.setattr(encoders, "_compact", lambda obj: compacted.append(1) or obj)

    class Chunks:
        n_elements = 90

        def __call__(self):
            return [(x[i : i + 20], seg[i : i + 20], None) for i in range(0, 90, 20)]

    with torch.no_grad():
        encode_stream(encoder, Chunks(), 3, cache_bytes=50_000)
    assert not compacted
