"""DynaST matching for style transfer: the sparse path against a plain dense-then-gather reference,
top-k propagation against brute force, sizes, mixing, alpha, and the ``dynast`` registration."""

from __future__ import annotations

import pytest
import torch

from dynast_cli.ops import finish_image
from dynast_cli.models.decoder import decode_features
from dynast_cli.models.dynast_style import LEVELS, DynastStyle, DynastStyleModel, matching_features
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import calc_mean_std, mean_variance_norm
from dynast_cli.ops import mix_levels, mix_weights
from dynast_cli.pipelines import style as style_pipeline
from dynast_cli.styles import METHODS, build_method
from stand_ins import TinyEncoder, as_method


def make_model(**options) -> DynastStyleModel:
    torch.manual_seed(0)
    return DynastStyleModel(TinyEncoder(), VGGDecoder(skip=True), **options).eval()


def full_scores(model: DynastStyleModel, feat: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Dense scores of one content level against one style level: (C, H, W), (C, hk, wk) -> (H, W, hk*wk)."""
    q = matching_features(feat[None])[0]
    return torch.einsum("chw,cn->hwn", q, keys.flatten(1)) / model.smooth


def children(p: int, wk: int) -> list[int]:
    """The 2x2 children at the finer level (width wk) of coarse key p (width wk // 2)."""
    y, x = divmod(p, wk // 2)
    return [(2 * y + dy) * wk + 2 * x + dx for dy in (0, 1) for dx in (0, 1)]


def shifted(p: int, dy: int, dx: int, hk: int, wk: int) -> int:
    """Key p moved by (dy, dx), clipped to the (hk, wk) grid."""
    y, x = divmod(p, wk)
    return min(max(y + dy, 0), hk - 1) * wk + min(max(x + dx, 0), wk - 1)


def naive_match(model: DynastStyleModel, feats, style: DynastStyle) -> dict[int, tuple[torch.Tensor, list]]:
    """Full dense attention at every level, restricted per query to its DynaST candidate set.

    -> {level: (attended moments (2C, H, W), top-k per position [[...]] or None)}; batch item 0 only.
    """
    out = {}
    top = None  # top[y][x]: list of key indices at the previous step's level
    for j, level in reversed(list(enumerate(LEVELS))):
        feat, keys, values = feats[level][0], style.keys[j][0], style.moments[j][0].flatten(1)
        h, w = feat.shape[-2:]
        hk, wk = keys.shape[-2:]
        scores = full_scores(model, feat, keys)  # (H, W, Nk)

        def attend(candidates):
            moments = torch.zeros(values.shape[0], h, w, dtype=values.dtype)
            new_top = [[None] * w for _ in range(h)]
            for y in range(h):
                for x in range(w):
                    cand = candidates(y, x)
                    attn = torch.softmax(scores[y, x, cand], dim=0)
                    moments[:, y, x] = values[:, cand] @ attn
                    new_top[y][x] = [cand[i] for i in torch.topk(attn, len(top[0][0])).indices.tolist()] if top else None
            return moments, new_top

        if level >= model.coarse:
            n_k = hk * wk
            moments, _ = attend(lambda y, x: list(range(n_k)))
            k = min(model.top_k, n_k)
            top = [[torch.topk(scores[y, x], k).indices.tolist() for x in range(w)] for y in range(h)] if level == model.coarse else None
        else:
            parent = top
            moments, top = attend(lambda y, x: [c for p in parent[y // 2][x // 2] for c in children(p, wk)])
            for _ in range(model.inner_steps):
                own = top

                def inner(y, x):
                    up, down = own[max(y - 1, 0)][x], own[min(y + 1, h - 1)][x]
                    left, right = own[y][max(x - 1, 0)], own[y][min(x + 1, w - 1)]
                    return (own[y][x] + [shifted(p, 1, 0, hk, wk) for p in up] + [shifted(p, -1, 0, hk, wk) for p in down]
                            + [shifted(p, 0, 1, hk, wk) for p in left] + [shifted(p, 0, -1, hk, wk) for p in right])

                moments, top = attend(inner)
        out[level] = (moments, top)
    return out


@pytest.mark.parametrize("coarse, inner_steps, top_k", [("relu5_1", 1, 3), ("relu4_1", 2, 4)])
def test_attention_path_equals_dense_then_gather(coarse, inner_steps, top_k):
    # float64: the top-k lists are compared exactly, and a float32 near-tie could fall either way on another CPU
    model = make_model(coarse=coarse, inner_steps=inner_steps, top_k=top_k, smooth=0.1, chunk=7).double()
    style = model.prepare_style(torch.rand(1, 3, 32, 48, dtype=torch.float64))
    feats = model.encoder(torch.rand(1, 3, 32, 32, dtype=torch.float64))
    fast = model.match(feats, style)
    slow = naive_match(model, feats, style)
    for level in LEVELS:
        moments, top = slow[level]
        assert torch.allclose(fast[level].output[0], moments, atol=1e-5), level
        assert torch.allclose(fast[level].conf, torch.ones_like(fast[level].conf))  # nothing pruned
        if top is None:
            assert fast[level].top_k is None
        else:
            assert fast[level].top_k[0].tolist() == [k for row in top for k in row], level


@pytest.mark.parametrize("coarse", ["relu5_1", "relu4_1"])
def test_top_k_covering_all_candidates_equals_brute_force(coarse):
    style_image, content = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 32, 48)
    probe = make_model(coarse=coarse)
    n_coarse = probe.prepare_style(style_image).keys[LEVELS.index(probe.coarse)][0, 0].numel()
    model = make_model(coarse=coarse, top_k=n_coarse, inner_steps=0)  # the children cover the whole next level
    style = model.prepare_style(style_image)
    feats = model.encoder(content)
    fine = model.coarse - 1
    got = model.match(feats, style)[fine].top_k[0]  # (H*W, K)
    scores = full_scores(model, feats[fine][0], style.keys[LEVELS.index(fine)][0]).flatten(0, 1)
    assert torch.equal(got, torch.topk(scores, n_coarse, dim=-1).indices)


@pytest.mark.parametrize("coarse", ["relu5_1", "relu4_1"])
def test_self_matching_finds_every_position_at_every_level(coarse):
    model = make_model(top_k=2, coarse=coarse)
    image = torch.rand(1, 3, 64, 64)
    matches = model.match(model.encoder(image), model.prepare_style(image))
    assert (matches[4].top_k is None) == (coarse == "relu4_1")  # no top-k above the coarse level
    for level in LEVELS[: LEVELS.index(model.coarse) + 1]:
        best = matches[level].top_k[0, :, 0]
        assert torch.equal(best, torch.arange(best.numel())), level


@pytest.mark.parametrize("size", [(37, 51), (17, 33), (70, 23)])
def test_any_content_size_gives_that_size(size):
    model = make_model()
    style = model.prepare_style(torch.rand(1, 3, 23, 41))  # odd style size too
    with torch.no_grad():
        out = as_method(model).stylize(torch.rand(2, 3, *size), [style], [1.0])
    assert out.shape == (2, 3, *size)
    assert out.min() >= 0 and out.max() <= 1


def test_mix_blends_per_style_features():
    model = make_model()
    a, b = model.prepare_style(torch.rand(1, 3, 32, 48)), model.prepare_style(torch.rand(1, 3, 48, 32))
    feats = model.encoder(torch.rand(1, 3, 32, 32))
    ta, tb = model.transform(feats, a), model.transform(feats, b)
    assert not torch.allclose(ta[0], tb[0])

    def mixed(mix):  # the one path's blend (dynast_cli.styles.base.StyleMethod.stylize)
        return mix_levels([model.transform(feats, s) for s in (a, b)], [feats[i] for i in LEVELS], mix_weights(mix, 2))

    for t, t_a in zip(mixed([1.0, 0.0]), ta):
        assert torch.allclose(t, t_a, atol=1e-6)
    for t, t_a, t_b in zip(mixed([3.0, 1.0]), ta, tb):
        assert torch.allclose(t, 0.75 * t_a + 0.25 * t_b, atol=1e-5)


def test_alpha_interpolates_and_zero_reconstructs_the_content():
    model = make_model()
    style = model.prepare_style(torch.rand(1, 3, 32, 32))
    content = torch.rand(1, 3, 40, 24)
    feats = model.encoder(torch.nn.functional.pad(content, (0, 8, 0, 8), mode="reflect"))
    full = model.transform(feats, style)
    half = mix_levels([full], [feats[i] for i in LEVELS], [1.0], alpha=0.5)
    for t, h, level in zip(full, half, LEVELS):
        assert torch.allclose(h, 0.5 * t + 0.5 * feats[level], atol=1e-6)
    method = as_method(model)
    with torch.no_grad():
        out = method.stylize(content, [style], [1.0], alpha=0.0)
        other = method.stylize(content, [model.prepare_style(torch.rand(1, 3, 48, 48))], [1.0], alpha=0.0)
        expected = finish_image(decode_features(model.decoder, *(feats[i] for i in LEVELS)), (40, 24))
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(out, other)


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="coarse"):
        make_model(coarse="relu3_1")
    with pytest.raises(ValueError, match="top_k"):
        make_model(top_k=0)


def test_registered_as_dynast_and_runs_through_the_pipeline(monkeypatch):
    from dynast_cli.styles import base

    monkeypatch.setattr(base, "vgg16", lambda device, path=None: TinyEncoder())
    monkeypatch.setattr(base, "universal_decoder", lambda device, path=None: VGGDecoder(skip=True))
    method = build_method("dynast", top_k=2, coarse="relu5_1")
    assert isinstance(method.model, DynastStyleModel) and method.model.top_k == 2 and method.model.coarse == LEVELS[2]
    assert "dynast" in METHODS
    state = method.prepare_style(torch.rand(1, 3, 32, 32))
    out = style_pipeline.stylize(method, torch.rand(3, 21, 35), [state])
    assert out.shape == (3, 21, 35)


# ---- the learned prune mask -----------------------------------------------------------------------

def learned_pair(**options) -> tuple[DynastStyleModel, DynastStyleModel]:
    """A parameter-free model and an untrained learned one sharing encoder and decoder."""
    free = make_model(**options)
    learned = DynastStyleModel(free.encoder, free.decoder, prune_dim=6, seed=4, **options).eval()
    return free, learned


@pytest.mark.parametrize("grad", [False, True])  # the no-grad low-memory path and the autograd path
def test_untrained_learned_mask_equals_the_parameter_free_model_exactly(grad):
    free, learned = learned_pair(chunk=7)
    styles = [torch.rand(1, 3, 32, 48), torch.rand(1, 3, 41, 29)]
    content = torch.rand(2, 3, 37, 45)
    with torch.set_grad_enabled(grad):
        for mix in ([1.0], [0.3, 0.7]):
            expected = as_method(free).stylize(content, [free.prepare_style(s) for s in styles[: len(mix)]], mix)
            state = [learned.prepare_style(s) for s in styles[: len(mix)]]
            assert torch.equal(as_method(learned).stylize(content, state, mix), expected)
        matches = learned.match(learned.encoder(content[..., :32, :32]), state[0])
    assert all(torch.all(m.conf > 1 - 1e-5) for m in matches.values())  # every match kept


def test_initial_gate_keeps_everything_for_any_unit_inputs():
    _, learned = learned_pair()
    for j, embeddings in enumerate(learned.prune):
        x = torch.nn.functional.normalize(torch.randn(500, embeddings.query.in_channels), dim=1)
        x[0] = 0  # a zero feature (constant region) too
        q = x @ embeddings.query.weight[:, :, 0, 0].T + embeddings.query.bias
        k = x.flip(0) @ embeddings.key.weight[:, :, 0, 0].T + embeddings.key.bias
        assert (q @ k.T).min() > 0.7, j
        assert not torch.allclose(embeddings.query.weight, embeddings.key.weight)  # random, not symmetric


def test_fully_pruned_levels_fall_back_to_the_styles_global_statistics():
    _, learned = learned_pair()
    with torch.no_grad():
        for embeddings in learned.prune:
            embeddings.query.weight.zero_()
            embeddings.key.weight.zero_()
            embeddings.key.bias.copy_(-embeddings.query.bias)  # every product < 0: nothing kept
    style_image = torch.rand(1, 3, 32, 48)
    state = learned.prepare_style(style_image)
    feats = learned.encoder(torch.rand(1, 3, 32, 32))
    matches = learned.match(feats, state)
    assert all(torch.equal(m.conf, torch.zeros_like(m.conf)) for m in matches.values())
    style_feats = learned.encoder(style_image)  # a multiple of 16: no padding
    for t, level in zip(learned.transform(feats, state), LEVELS):
        f = style_feats[level].flatten(2)
        mean, std = f.mean(-1), torch.sqrt(torch.relu((f * f).mean(-1) - f.mean(-1) ** 2))
        expected = std[..., None, None] * mean_variance_norm(feats[level]) + mean[..., None, None]
        assert torch.allclose(t, expected, rtol=1e-4, atol=1e-4), level  # AdaIN with the style's moments
    # prune=False ignores the mask
    free = make_model()
    for a, b in zip(learned.transform(feats, state, prune=False),
                    free.transform(feats, free.prepare_style(style_image))):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["inter", "inner"])
def test_sparse_autograd_path_with_frozen_values_matches_the_naive_twin(kind):
    """Only the prune embeddings need gradients (frozen VGG values): the chunked autograd path must
    not overwrite gathered value rows that the backward pass still needs (it did)."""
    from dynast_cli.attention import reference, sparse

    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 8, 6, 8, generator=gen), torch.randn(1, 8, 6, 8, generator=gen)
    v = torch.randn(1, 5, 6, 8, generator=gen)
    qp0, kp0 = torch.randn(1, 3, 6, 8, generator=gen), torch.randn(1, 3, 6, 8, generator=gen)
    if kind == "inter":
        prev = torch.randint(0, 12, (1, 12, 2), generator=gen)
        fast, naive = sparse.inter_scale_sparse_attention, reference.inter_scale_sparse_attention_naive
    else:
        prev = torch.randint(0, 48, (1, 48, 2), generator=gen)
        fast, naive = sparse.inner_scale_sparse_attention, reference.inner_scale_sparse_attention_naive
    grads = []
    for fn, options in ((fast, {"chunk": 5}), (naive, {})):
        qp, kp = qp0.clone().requires_grad_(True), kp0.clone().requires_grad_(True)
        res = fn(q, k, qp, kp, v, prev, 0.5, **options)
        (res.output.square().sum() + res.conf.sum()).backward()
        grads.append((res.output.detach(), qp.grad, kp.grad))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)
    assert grads[0][1].abs().sum() > 0


def test_learned_mask_round_trips_through_an_fp16_file_and_the_method_factory(tmp_path, monkeypatch):
    import json

    from dynast_cli.models.dynast_style import ARCHITECTURE
    from dynast_cli.styles import base
    from dynast_cli.weights.build import build_model
    from dynast_cli.weights.io import save_weights, sha256_file

    _, learned = learned_pair()
    path = tmp_path / "prune.safetensors"
    state = {f"prune.{k}": v for k, v in learned.prune.state_dict().items()}
    save_weights(state, path, {"architecture": ARCHITECTURE, "config": {**learned.config(), "encoder": "vgg16"}},
                 dtype=torch.float16)
    loaded = build_model(path, ARCHITECTURE, encoder=learned.encoder, decoder=learned.decoder)
    assert loaded.prune_dim == 6 and loaded.top_k == learned.top_k
    for key, value in learned.prune.state_dict().items():
        assert torch.equal(loaded.prune.state_dict()[key], value.half().float()), key

    monkeypatch.setattr(base, "vgg16", lambda device, path=None: TinyEncoder())
    monkeypatch.setattr(base, "universal_decoder", lambda device, path=None: VGGDecoder(skip=True))
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path))  # no manifest: the parameter-free model
    assert build_method("dynast").model.prune is None
    assert build_method("dynast", weights=str(path)).model.prune_dim == 6
    entry = {"name": "dynast_style_vgg16", "file": path.name, "architecture": ARCHITECTURE, "config": {},
             "sha256": sha256_file(path)}
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    assert build_method("dynast").model.prune_dim == 6  # the registry default
    assert build_method("dynast", weights="none").model.prune is None
    assert build_method("dynast", weights="None").model.prune is None


@pytest.mark.parametrize("warp", [0.0, 0.75, 1.0])
def test_feature_warping_equals_a_plain_reference(warp):
    """``warp`` w: each level's output is w x the attention-weighted style features (the style's own
    features warped to the content's layout) + (1 - w) x the AdaAttN transform of the same matches,
    computed here plainly from the dense-then-gather reference matching (float64, exact)."""
    model = make_model(coarse="relu4_1", top_k=4, smooth=0.02, chunk=5, warp=warp).double()
    style = model.prepare_style(torch.rand(1, 3, 32, 40, dtype=torch.float64))
    feats = model.encoder(torch.rand(1, 3, 48, 32, dtype=torch.float64))
    ours = model.transform(feats, style)
    slow = naive_match(model, feats, style)
    for j, level in enumerate(LEVELS):
        mean, second = slow[level][0].chunk(2, dim=0)  # attended E[v], E[v^2]: (C, H, W)
        std = torch.sqrt(torch.relu(second - mean * mean))
        adaattn = std * mean_variance_norm(feats[level])[0] + mean
        expected = warp * mean + (1 - warp) * adaattn
        # 1e-7: std = sqrt(E[v^2] - E[v]^2) takes the square root of a float64 rounding difference
        # (~1e-16 x 6) where the attention is almost one-hot (variance ~0), which gives ~1e-8
        torch.testing.assert_close(ours[j][0], expected, atol=1e-7, rtol=0, msg=f"level {level}")
    assert model.config()["warp"] == warp


def plain_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, H, W) -> per-channel mean and sqrt(unbiased variance + 1e-5), (C, 1, 1) each, written out."""
    flat = x.flatten(1)
    n = flat.shape[1]
    mean = flat.sum(1) / n
    std = torch.sqrt(((flat - mean[:, None]) ** 2).sum(1) / (n - 1) + 1e-5)
    return mean[:, None, None], std[:, None, None]


@pytest.mark.parametrize("renorm, locality, style_hw", [
    ((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (30, 40)),   # the default's; a style that padding changes
    ((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (32, 48)),   # a multiple of 16: the padded features are reused
    ((0.5, 0.25, 1.0), (0.5, 1.0, 0.0), (30, 40)),  # with locality: renorm comes after its AdaIN blend
])
def test_renormalisation_equals_a_plain_reference(renorm, locality, style_hw):
    """``renorm`` r at a level: the output ``o`` (warping 0.5, then ``locality`` b's blend with
    ``adain(content, style)``) becomes ``(1 - r) o + r ((o - mean(o)) / std(o) * std(S) + mean(S))`` per
    channel, with the statistics of the *unpadded* style's features S written out by hand here (float64)."""
    model = make_model(coarse="relu4_1", top_k=4, smooth=0.02, chunk=5, warp=0.5, renorm=renorm,
                       locality=locality).double()
    raw = torch.rand(1, 3, *style_hw, dtype=torch.float64)
    style = model.prepare_style(raw)
    feats = model.encoder(torch.rand(1, 3, 48, 32, dtype=torch.float64))
    ours = model.transform(feats, style)
    slow = naive_match(model, feats, style)
    style_feats = model.encoder(raw)
    for j, level in enumerate(LEVELS):
        mean, second = slow[level][0].chunk(2, dim=0)
        std = torch.sqrt(torch.relu(second - mean * mean))
        content_mean, content_std = plain_mean_std(feats[level][0])
        normalised = (feats[level][0] - content_mean) / content_std
        s_mean, s_std = plain_mean_std(style_feats[level][0])
        out = 0.5 * mean + 0.5 * (std * normalised + mean)
        out = locality[j] * out + (1 - locality[j]) * (normalised * s_std + s_mean)
        o_mean, o_std = plain_mean_std(out)
        expected = (1 - renorm[j]) * out + renorm[j] * ((out - o_mean) / o_std * s_std + s_mean)
        torch.testing.assert_close(ours[j][0], expected, atol=1e-7, rtol=0, msg=f"level {level}")
    assert model.config()["renorm"] == list(renorm)


def test_full_renormalisation_gives_the_styles_channel_statistics_and_only_where_asked():
    """With renorm 1 at relu3_1 the output's relu3_1 channel statistics are the whole style's: the mean
    exactly, the std as ``sqrt(std_S^2 v / (v + eps) + eps)`` (v: the variance before, eps 1e-5 of
    calc_mean_std). The coarser levels are the un-renormalised model's exactly, and no statistics are
    computed for them."""
    plain = make_model(warp=0.5).double()
    model = make_model(warp=0.5, renorm=(1.0, 0.0, 0.0)).double()
    style_image, content = torch.rand(1, 3, 36, 28, dtype=torch.float64), torch.rand(1, 3, 32, 48, dtype=torch.float64)
    state = model.prepare_style(style_image)
    assert state.global_stats[1] is None and state.global_stats[2] is None
    feats = model.encoder(content)
    ours, before = model.transform(feats, state), plain.transform(feats, plain.prepare_style(style_image))
    out_mean, out_std = calc_mean_std(ours[0])
    s_mean, s_std = calc_mean_std(model.encoder(style_image)[LEVELS[0]])
    variance = before[0].flatten(2).var(dim=2).view_as(out_std)
    torch.testing.assert_close(out_mean, s_mean, atol=1e-9, rtol=0)
    torch.testing.assert_close(out_std, torch.sqrt(s_std ** 2 * variance / (variance + 1e-5) + 1e-5), atol=1e-9, rtol=0)
    assert not torch.allclose(before[0], ours[0])
    assert torch.equal(before[1], ours[1]) and torch.equal(before[2], ours[2])
    with pytest.raises(ValueError, match="renorm"):
        make_model(renorm=(1.5, 0.0, 0.0))
    with pytest.raises(ValueError, match="renorm"):
        make_model(renorm=(1.0, 0.0))


def test_renormalisation_uses_each_items_own_statistics_in_a_batch():
    """Two contents with one style, and two content/style pairs (training batches), give each item what it
    gets alone: the statistics are per item, of its own output and its own style."""
    model = make_model(warp=0.5, renorm=(1.0, 0.5, 0.0)).double()
    contents = torch.rand(2, 3, 32, 48, dtype=torch.float64)
    styles = torch.rand(2, 3, 36, 28, dtype=torch.float64)
    feats = model.encoder(contents)
    one_style = model.transform(feats, model.prepare_style(styles[:1]))
    pairs = model.transform(feats, model.prepare_style(styles))
    for b in range(2):
        alone = model.encoder(contents[b:b + 1])
        for j in range(len(LEVELS)):
            torch.testing.assert_close(one_style[j][b:b + 1], model.transform(alone, model.prepare_style(styles[:1]))[j],
                                       atol=1e-10, rtol=0)
            torch.testing.assert_close(pairs[j][b:b + 1], model.transform(alone, model.prepare_style(styles[b:b + 1]))[j],
                                       atol=1e-10, rtol=0)


def test_the_default_dynast_file_is_the_feature_warping_configuration():
    """The shipped default: every match kept, sharper attention, warping 0.5, a texture seed of 0.1, and no
    refinement."""
    from dynast_cli.styles import get_spec
    import json

    from dynast_cli.weights.io import read_metadata
    from dynast_cli.weights.registry import installed

    config = json.loads(read_metadata(installed(get_spec("dynast").default_weights))["config"])
    assert config["warp"] == 0.5 and config["smooth"] == 0.02 and config["locality"] == [1.0, 1.0, 1.0]
    assert config["noise"] == 0.1 and config["renorm"] == [1.0, 0.0, 0.0]
    assert config["prune_dim"] is None and get_spec("dynast").refine == 0 and get_spec("dynast").work_size == 512


def plain_seed(content: torch.Tensor, sigma: float) -> torch.Tensor:
    """The texture seed written out by hand: a seeded N(0, 1) grid of ceil(H/2) x ceil(W/2) cells stretched
    over the image, each output pixel the bilinear (half-pixel centred) blend of its four nearest cells,
    on all three channels."""
    h, w = content.shape[-2:]
    grid = torch.randn(-(-h // 2), -(-w // 2), generator=torch.Generator().manual_seed(0), dtype=torch.float32).double()
    field = torch.empty(h, w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            sy = max((y + 0.5) * grid.shape[0] / h - 0.5, 0.0)
            sx = max((x + 0.5) * grid.shape[1] / w - 0.5, 0.0)
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, grid.shape[0] - 1), min(x0 + 1, grid.shape[1] - 1)
            fy, fx = sy - y0, sx - x0
            field[y, x] = ((1 - fy) * ((1 - fx) * grid[y0, x0] + fx * grid[y0, x1])
                           + fy * ((1 - fx) * grid[y1, x0] + fx * grid[y1, x1]))
    return (content.double() + sigma * field).clamp(0, 1)


@pytest.mark.parametrize("hw", [(9, 14), (16, 16)])
def test_texture_seed_equals_a_hand_written_field_and_depends_on_the_size_only(hw):
    from dynast_cli.models.dynast_style import texture_seed

    a, b = torch.rand(2, 3, *hw)
    seeded = texture_seed(torch.stack([a, b]), 0.1)
    torch.testing.assert_close(seeded[0].double(), plain_seed(a, 0.1), atol=1e-6, rtol=0)
    # the same field for every image of that size (a batch, a shard, another call), grey, and nothing at sigma 0
    torch.testing.assert_close(seeded[1], texture_seed(b[None], 0.1)[0], atol=0, rtol=0)
    mid = torch.full((1, 3, *hw), 0.5)
    field = texture_seed(mid, 0.1) - mid
    assert torch.equal(field[:, 0], field[:, 1]) and torch.equal(field[:, 0], field[:, 2])
    assert 0.02 < field.std() < 0.1
    assert torch.equal(texture_seed(a[None], 0.0), a[None])


def test_the_dynast_method_stylizes_the_seeded_content_scaled_by_alpha():
    """``noise`` sigma: the encoder sees ``texture_seed(padded content, sigma * alpha)``, and the decoder gets
    what the unseeded model gives for that image; alpha 0 encodes the unseeded content."""
    from dynast_cli.models.dynast_style import texture_seed
    from dynast_cli.ops import pad_to_multiple

    seeded, plain = as_method(make_model(warp=0.5, noise=0.2)), as_method(make_model(warp=0.5))
    seen, decoded = [], {"seeded": [], "plain": []}
    seeded.model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    for name, method in (("seeded", seeded), ("plain", plain)):  # the raw decoder output (the image clamps to 0 here)
        method.model.decoder.register_forward_hook(lambda module, args, out, name=name: decoded[name].append(out))
    content, style = torch.rand(1, 3, 30, 47), torch.rand(1, 3, 40, 32)
    padded = pad_to_multiple(content)[0]
    states = [plain.prepare_style(style)]
    with torch.no_grad():
        for alpha in (1.0, 0.5, 0.0):
            seeded.stylize(content, states, [1.0], alpha)
            assert torch.equal(seen[-1], texture_seed(padded, 0.2 * alpha)), alpha
            plain.stylize(texture_seed(padded, 0.2 * alpha), states, [1.0], alpha)  # already a multiple of 16
            assert torch.equal(decoded["seeded"][-1], decoded["plain"][-1]), alpha
    assert not torch.equal(seen[0], padded) and torch.equal(seen[-1], padded)
    assert not torch.equal(decoded["seeded"][0], decoded["seeded"][-1])
    assert make_model(noise=0.2).config()["noise"] == 0.2
    with pytest.raises(ValueError, match="noise"):
        make_model(noise=-0.1)


def test_refinement_starts_from_the_seeded_default_output():
    """``--refine`` pads the content before the base method: the seed is drawn after padding, so the
    refinement's start (0 steps) is the seeded method's own output, pixel for pixel."""
    from dynast_cli.styles.refine import RefinedMethod

    method = as_method(make_model(warp=0.5, noise=0.2))
    method.model.decoder.register_forward_hook(lambda module, args, out: out + 0.5)  # an image away from 0
    refined = RefinedMethod(method, TinyEncoder(), steps=0)
    content, style = torch.rand(1, 3, 30, 47), torch.rand(1, 3, 40, 32)
    with torch.no_grad():
        out = method.stylize(content, [method.prepare_style(style)], [1.0])
        start = refined.stylize(content, [refined.prepare_style(style)], [1.0])
    assert 0.0 < out.mean() < 1.0 and torch.equal(start, out)
