"""SeqGDE end to end: invariances, streaming, save/load, generation validity, bad input, learning."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

import scgde
from scgde.seq import N_SPECIAL, PAD

LETTERS = np.array(list("ACGT"))


def random_sets(n_sets=6, per_set=30, length=(8, 14), seed=0, gc=None):
    """Random DNA; set ``i`` has GC probability ``gc[i]`` (default: all 0.5)."""
    rng = np.random.default_rng(seed)
    gc = np.full(n_sets, 0.5) if gc is None else np.asarray(gc)
    seqs, sets = [], []
    for i in range(n_sets):
        p = np.array([(1 - gc[i]) / 2, gc[i] / 2, gc[i] / 2, (1 - gc[i]) / 2])  # A C G T
        for _ in range(per_set):
            seqs.append("".join(rng.choice(LETTERS, rng.integers(*length), p=p)))
            sets.append(f"s{i}")
    return scgde.seq.sequences_to_adata(seqs, obs=pd.DataFrame({"window": sets}))


@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    adata = random_sets()
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    model = scgde.seq.SeqGDE(adata, n_latent=4, encoder_kwargs={"n_channels": 8, "n_hidden": 16})
    model.train(max_epochs=2, batches_per_epoch=2, enable_progress_bar=False)
    return model


def test_setup_writes_only_the_set_codes():
    adata = random_sets()
    before = adata.obs.copy()
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    assert set(adata.obs.columns) - set(before.columns) == {"_scgde_set"}
    pd.testing.assert_frame_equal(adata.obs[before.columns], before)
    assert adata.n_vars == 0


def test_embedding_is_invariant_to_order_and_duplication(trained):
    adata = trained.adata
    emb = trained.get_set_representation(progress_bar=False)
    perm = adata[np.random.default_rng(1).permutation(adata.n_obs)].copy()
    doubled = scgde.seq.sequences_to_adata(
        list(adata.obs["sequence"]) * 2, obs=pd.DataFrame({"window": list(adata.obs["window"]) * 2})
    )
    for other in (perm, doubled):
        got = trained.get_set_representation(other, set_key="window", progress_bar=False).loc[emb.index]
        np.testing.assert_allclose(got.to_numpy(), emb.to_numpy(), atol=1e-5)


def test_zero_weight_padding_changes_nothing(trained):
    reader = trained._reader(trained.adata)
    x = torch.from_numpy(reader.rows(np.arange(20)))[None]
    extra = torch.from_numpy(reader.rows(np.arange(100, 110)))[None]
    weights = torch.cat([torch.ones(1, 20), torch.zeros(1, 10)], dim=1)
    module = trained.module.eval()
    with torch.no_grad():
        padded, plain = module.embed(torch.cat([x, extra], dim=1), weights), module.embed(x)
    np.testing.assert_allclose(padded.numpy(), plain.numpy(), atol=1e-5)


def test_streaming_in_small_chunks_equals_whole(trained):
    whole = trained.get_set_representation(progress_bar=False)
    chunked = trained.get_set_representation(chunk_size=7, progress_bar=False)
    np.testing.assert_allclose(chunked.to_numpy(), whole.to_numpy(), atol=1e-5)


def test_generated_sequences_are_valid(trained):
    gen = trained.generate(["s0", "s3"], n_samples=25, top_p=0.9, temperature=0.8)
    assert gen.n_obs == 50 and list(gen.obs["set"].unique()) == ["s0", "s3"]
    assert all(set(s) <= set("ACGTN") for s in gen.obs["sequence"])
    assert max(len(s) for s in gen.obs["sequence"]) <= trained.max_length
    again = trained.generate(["s0", "s3"], n_samples=25, top_p=0.9, temperature=0.8)
    assert list(again.obs["sequence"]) == list(gen.obs["sequence"])  # seeded by scvi.settings.seed


def test_sampled_tokens_end_properly():
    gen = scgde.seq.AutoregressiveGenerator(n_tokens=8, max_length=6, n_cond=3)
    tokens = gen.sample(torch.randn(4, 3), 50)
    assert tokens.shape == (4, 50, 6)
    letters = tokens >= N_SPECIAL
    # letters form a prefix of each row: no letter after padding
    assert not (letters[..., 1:] & ~letters[..., :-1]).any()
    assert ((tokens == PAD) | letters).all()


def test_interpolation_and_log_likelihood(trained):
    path = trained.interpolate("s0", "s5", n_steps=3, n_samples=4)
    assert path.obs["t"].tolist() == [0.0] * 4 + [0.5] * 4 + [1.0] * 4
    seqs = list(trained.adata.obs["sequence"][:5])
    one = trained.log_likelihood(seqs, "s0")
    per = trained.log_likelihood(seqs, ["s0"] * 5)
    np.testing.assert_allclose(one, per, rtol=1e-5)
    assert (one < 0).all()
    with pytest.raises(ValueError, match="one per sequence"):
        trained.log_likelihood(seqs, ["s0", "s1"])


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "m", save_anndata=False)
    loaded = scgde.seq.SeqGDE.load(tmp_path / "m", trained.adata)
    np.testing.assert_allclose(
        loaded.get_set_representation(progress_bar=False).to_numpy(),
        trained.get_set_representation(progress_bar=False).to_numpy(),
        atol=1e-6,
    )
    assert list(loaded.generate("s1", n_samples=5).obs["sequence"]) == list(
        trained.generate("s1", n_samples=5).obs["sequence"]
    )


def test_bad_input_is_named():
    adata = scgde.seq.sequences_to_adata(["ACGT", "ACZT", "AC"], obs=pd.DataFrame({"w": ["a", "b", "b"]}))
    with pytest.raises(ValueError, match="'Z'.*unknown='mask'"):
        scgde.seq.SeqGDE.setup_anndata(adata, set_key="w")
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="w", unknown="mask")  # Z reads as N
    with pytest.raises(ValueError, match="max_length"):
        scgde.seq.SeqGDE.setup_anndata(adata, set_key="w", unknown="mask", max_length=3)
    with pytest.raises(KeyError, match="sequence_key='seq'"):
        scgde.seq.SeqGDE.setup_anndata(adata, set_key="w", sequence_key="seq")
    with pytest.raises(ValueError, match="alphabet"):
        scgde.seq.SeqGDE.setup_anndata(adata, set_key="w", alphabet="rna")


def test_query_longer_than_the_model_is_refused(trained):
    query = scgde.seq.sequences_to_adata(["A" * (trained.max_length + 5)], obs=pd.DataFrame({"window": ["q"]}))
    with pytest.raises(ValueError, match="max_length"):
        trained.get_set_representation(query, progress_bar=False)


def test_embeddings_and_generation_follow_gc_content():
    """Sets differ only in GC content: the latent orders them, and generated GC follows the set."""
    scvi.settings.seed = 0
    gc = np.linspace(0.1, 0.9, 9)
    adata = random_sets(n_sets=9, per_set=60, length=(10, 11), seed=3, gc=gc)
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    model = scgde.seq.SeqGDE(
        adata,
        n_latent=4,
        encoder_kwargs={"n_channels": 8, "n_hidden": 16, "n_blocks": 1},
        generator_kwargs={"d_model": 32, "n_layers": 1, "max_loss_elements": 8},
    )
    model.train(
        max_epochs=6, batches_per_epoch=20, sets_per_batch=9, cells_per_set=32, lr=3e-3, enable_progress_bar=False
    )
    emb = model.get_set_representation(progress_bar=False).loc[[f"s{i}" for i in range(9)]]
    pc1 = np.linalg.svd(emb.to_numpy() - emb.to_numpy().mean(0))[2][0] @ (emb.to_numpy() - emb.to_numpy().mean(0)).T
    assert abs(pd.Series(pc1).corr(pd.Series(gc), method="spearman")) > 0.9
    gen = model.generate(["s0", "s8"], n_samples=200)
    frac = gen.obs.groupby("set", observed=True)["sequence"].apply(lambda s: np.mean([c in "GC" for c in "".join(s)]))
    assert frac["s0"] < 0.3 and frac["s8"] > 0.7


def test_cached_decoding_equals_recomputing_the_whole_sequence():
    torch.manual_seed(0)
    gen = scgde.seq.AutoregressiveGenerator(n_tokens=8, max_length=12, n_cond=3).eval()
    cond, x = torch.randn(4, 3), torch.randint(N_SPECIAL, 8, (4, 12))
    inputs = torch.cat([torch.full((4, 1), scgde.seq.BOS), x], dim=1)
    full = gen._next_token_logits(cond, inputs)
    caches = [{} for _ in gen.blocks]
    steps = [gen._next_token_logits(cond, inputs[:, i : i + 1], caches)[:, -1] for i in range(inputs.shape[1])]
    np.testing.assert_allclose(torch.stack(steps, 1).detach().numpy(), full.detach().numpy(), atol=1e-5)


def test_log_likelihood_prefers_the_conditioning_set():
    """Sequences of the high-GC set score higher under its own vector than under the low-GC set's."""
    scvi.settings.seed = 0
    adata = random_sets(n_sets=2, per_set=80, length=(10, 11), seed=5, gc=[0.1, 0.9])
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    model = scgde.seq.SeqGDE(
        adata,
        n_latent=4,
        encoder_kwargs={"n_channels": 8, "n_hidden": 16, "n_blocks": 1},
        generator_kwargs={"d_model": 32, "n_layers": 1},
    )
    model.train(
        max_epochs=5,
        batches_per_epoch=20,
        sets_per_batch=2,
        cells_per_set=32,
        lr=3e-3,
        train_size=1.0,
        enable_progress_bar=False,
    )
    high = list(adata.obs["sequence"][adata.obs["window"] == "s1"][:20])
    assert (model.log_likelihood(high, "s1") > model.log_likelihood(high, "s0")).mean() > 0.9


class TokenBag(torch.nn.Module):
    """A stand-in for a pretrained per-sequence model: mean letter embedding of the tokens."""

    def __init__(self, n_tokens=8, width=6, n_features=None):
        super().__init__()
        self.embedding = torch.nn.Embedding(n_tokens, width)
        if n_features is not None:
            self.n_features = n_features

    def forward(self, tokens):
        letters = (tokens >= N_SPECIAL).float()[..., None]
        return (self.embedding(tokens) * letters).sum(1) / letters.sum(1).clamp_min(1)


@pytest.fixture(scope="module")
def hooked():
    scvi.settings.seed = 0
    adata = random_sets(n_sets=4, per_set=20)
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    hook = TokenBag()
    start = hook.embedding.weight.detach().clone()
    model = scgde.seq.SeqGDE(adata, n_latent=4, element_encoder=hook, encoder_kwargs={"n_hidden": 16})
    model.train(max_epochs=2, batches_per_epoch=2, enable_progress_bar=False)
    return model, start


def test_element_encoder_hook_trains_and_keeps_the_invariances(hooked):
    model, start = hooked
    hook = model.module.encoder.element_encoder
    assert isinstance(model.module.encoder, scgde.seq.ElementFeatureEncoder)
    assert not torch.allclose(hook.embedding.weight, start)  # the hook's weights are trained with the model
    emb = model.get_set_representation(progress_bar=False)
    np.testing.assert_allclose(model.get_set_representation(chunk_size=7, progress_bar=False), emb, atol=1e-5)
    adata = model.adata
    doubled = scgde.seq.sequences_to_adata(
        list(adata.obs["sequence"])[::-1] * 2, obs=pd.DataFrame({"window": list(adata.obs["window"])[::-1] * 2})
    )
    got = model.get_set_representation(doubled, set_key="window", progress_bar=False).loc[emb.index]
    np.testing.assert_allclose(got.to_numpy(), emb.to_numpy(), atol=1e-5)


def test_element_encoder_hook_save_load_needs_the_network(hooked, tmp_path):
    model, _ = hooked
    model.save(tmp_path / "m", save_anndata=True)
    with pytest.raises(ValueError, match=r"custom element encoder \(.*TokenBag\).*element_encoder="):
        scgde.seq.SeqGDE.load(tmp_path / "m")
    loaded = scgde.seq.SeqGDE.load(tmp_path / "m", None, "cpu", element_encoder=TokenBag())  # scvi's positionals
    np.testing.assert_allclose(
        loaded.get_set_representation(progress_bar=False), model.get_set_representation(progress_bar=False)
    )
    assert scgde.seq.SeqGDE._loading_element_encoder is None  # the handover does not leak into later models

    class OtherBag(TokenBag):
        pass

    with pytest.warns(UserWarning, match="saved with an element encoder of class .*TokenBag"):
        scgde.seq.SeqGDE.load(tmp_path / "m", element_encoder=OtherBag())


def test_a_network_is_refused_for_a_model_saved_without_one(trained, tmp_path):
    trained.save(tmp_path / "plain", save_anndata=True)
    with pytest.raises(ValueError, match="saved without an element encoder"):
        scgde.seq.SeqGDE.load(tmp_path / "plain", element_encoder=TokenBag())
    assert scgde.seq.SeqGDE._loading_element_encoder is None


def test_frozen_element_encoder_stays_fixed_and_bad_hooks_are_named():
    adata = random_sets(n_sets=3, per_set=10)
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    hook = TokenBag(n_features=6).requires_grad_(False)
    start = hook.embedding.weight.clone()
    model = scgde.seq.SeqGDE(adata, n_latent=3, element_encoder=hook)
    model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    assert torch.equal(hook.embedding.weight, start)
    with pytest.raises(ValueError, match=r"tokens \(N, max_length\) to features"):
        scgde.seq.SeqGDE(adata, element_encoder=torch.nn.Embedding(8, 4))  # (1, L, 4): not one vector per row
    with pytest.raises(TypeError, match="element_encoder must be a torch.nn.Module"):
        scgde.seq.SeqGDE(adata, element_encoder=lambda t: t)


def randomise(module):
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.5)


def test_guidance_combines_conditional_and_unconditional_logits(monkeypatch):
    torch.manual_seed(0)
    gen = scgde.seq.AutoregressiveGenerator(n_tokens=8, max_length=6, n_cond=3, d_model=16, p_uncond=0.5).eval()
    randomise(gen.prefix)  # its last layer starts at zero: the condition would change nothing yet
    torch.nn.init.normal_(gen.null_cond)
    z = torch.randn(2, 3)
    seen = []
    real_sample = scgde.seq._nn._nucleus_sample
    monkeypatch.setattr(
        scgde.seq._nn, "_nucleus_sample", lambda logits, p: seen.append(logits) or real_sample(logits, p)
    )
    gen.sample(z, 5, guidance=2.0, temperature=0.5)
    # first letter: 3 x conditional - 2 x unconditional logits, then the temperature
    bos = torch.full((10, 1), scgde.seq.BOS)
    cond = gen._next_token_logits(z.repeat_interleave(5, 0), bos)[:, -1]
    uncond = gen._next_token_logits(gen.null_cond.expand(10, 3), bos)[:, -1]
    expected = (3 * cond - 2 * uncond) / 0.5
    letters = slice(scgde.seq.EOS, None)
    torch.testing.assert_close(seen[0][:, letters], expected[:, letters])
    assert torch.isinf(seen[0][:, [PAD, scgde.seq.BOS]]).all()
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        gen.sample(z, 2, guidance=-1.0)
    plain = scgde.seq.AutoregressiveGenerator(n_tokens=8, max_length=6, n_cond=3, d_model=16)
    with pytest.raises(ValueError, match="p_uncond > 0"):
        plain.sample(z, 2, guidance=1.0)


def test_condition_dropout_uses_the_null_condition_in_training():
    torch.manual_seed(0)
    gen = scgde.seq.AutoregressiveGenerator(n_tokens=8, max_length=5, n_cond=3, d_model=16, p_uncond=0.999, dropout=0)
    randomise(gen.prefix)
    x = torch.randint(N_SPECIAL, 8, (2, 4, 5))
    z = torch.randn(2, 3)
    gen.train()
    torch.manual_seed(0)
    dropped = gen.loss(x, z)
    torch.manual_seed(0)
    null = gen.loss(x, torch.zeros_like(z) + gen.null_cond)  # every sequence sees the null condition either way
    torch.testing.assert_close(dropped, null)
    gen.eval()
    assert not torch.allclose(gen.loss(x, z), null)  # evaluation never drops the condition
