"""DynaST's coarse-to-fine matching applied to arbitrary style transfer (parameter-free).

Each content position is matched to the style coarse to fine, as the DynaST generator matches a
query to its exemplar (:mod:`dynast_cli.models.dynast`), but on frozen VGG16 features:

- at the coarse level (``coarse``: relu4_1 by default, or relu5_1) *dense* attention of every content
  position over every style position (:func:`dynast_cli.attention.dense.dense_attention`), which also
  gives each content position its ``top_k`` best style matches;
- at each finer level (relu3_1, and relu4_1 when ``coarse="relu5_1"``) one *inter-scale* step (attend
  to the 2x2 children of the coarser matches) and ``inner_steps`` *inner-scale* steps (own matches plus
  the 4 neighbours' shifted ones), each passing its top-k on (:mod:`dynast_cli.attention.sparse`);
  relu5_1 when ``coarse="relu4_1"`` gets plain dense attention (no top-k).

Why relu4_1 by default: with relu5_1 (only 1/16, 512 channels) the candidates carried down miss the
best relu3_1 match more often (on 3 x 3 shared-data pairs at 256 px the relu3_1 match found had 0.71
of the best cosine similarity anywhere in the style with relu5_1, 0.84 with relu4_1) and the outputs'
global VGG statistics were slightly further from the style's; pictures look alike otherwise.

Queries and keys are the content and style features, mean-variance normalised per channel and then
L2-normalised per position, so scores are cosine similarities divided by the temperature ``smooth``.
The attended values are the style features *and their squares*, so every level yields the
attention-weighted mean and standard deviation of the matched style features, computed over the
sparse matched set only; the level's output is ``std * mean_variance_norm(content) + mean`` (the
AdaAttN transform, i.e. the "local" feature target of the papers' unsupervised setting). The three
outputs (relu3_1, relu4_1, relu5_1) are decoded by the project's universal decoder.

Prune mask: without learned prune embeddings every match is kept. This is done through the attention
functions' own prune gate, with constant one-dimensional prune embeddings equal to 1 on both sides
(gate ``1 * 1 > 0``), so ``conf`` is 1 everywhere and the attention functions are used unchanged.

Learned prune mask (``prune_dim``): as the DynaST generator's ``f_prune``/``g_prune``, each level has
two 1x1 convolutions (:class:`PruneEmbeddings`) from the level's matching features to ``prune_dim``
channels, one for the content (query) side and one for the style (key) side; match (i, j) is kept
iff ``<q_prune_i, k_prune_j> > 0`` (the attention functions' gate, straight-through sigmoid gradient),
so each content position keeps a variable number of its matches. The attention mass of the pruned
matches (``1 - conf``) goes to the style's *global* moments, as the generator fills ``1 - conf`` from
its own branch: per level the moments are ``attended + (1 - conf) * global``, a mixture of the kept
local distribution and the whole style (all pruned = AdaIN). :meth:`PruneEmbeddings.init_all_kept`
starts from a provably all-kept gate (unit-norm inputs, a shared bias of norm 1, weights of spectral
norm 0.1: every product >= 1 - 0.2 - 0.01 > 0), and ``1 - conf`` below ``LOST_EPS`` (softmax
rounding, not pruning) counts as exactly 0 in the forward pass, so the untrained learned model gives
exactly the parameter-free outputs.

Texture seed (``noise`` sigma > 0, the default's 0.1): before encoding, the content gets a fixed grey
noise field (:func:`texture_seed`: one N(0, 1) value per 2x2 pixels, bilinearly interpolated, times sigma,
clamped to [0, 1]). Flat content regions (sky, walls, skin) otherwise all match the same few flat style
patches and decode flat; seeded, their features vary a little, their matches spread over the style's
brush strokes and the decoded image carries the style's texture there too (issue #16: on 8 validation
pairs the EfficientNet texture distance fell from 1.05 to 0.91, docs/bench/style_default_s8.md). The
field depends on the image size only (seeded, drawn on the CPU), so every image, device and shard of that
size gets the same one and outputs stay deterministic. The style method adds it to the content padded to
a multiple of 16, so the refinement (which pads first) starts from the same output.

Re-normalisation to the whole style (``renorm`` r > 0 at a level, the default's 1 at relu3_1): the level's
output gets the style's global channel mean and std, ``(1 - r) * out + r * adain(out, style)``. The matched
style positions are a biased sample of the painting (a photo's shadows and edges match its darker, less
colourful strokes), so the warped features carry a darker, narrower palette than the style's; this puts
the output's overall statistics back to the whole painting's while the layout of the matched features stays
(issue #16: on 8 validation pairs the palette distance to the style fell from 11.61 to 10.24 and the texture
distance from 0.912 to 0.887, docs/bench/style_default_s10.md).

Sizes: the inter-scale step needs each level to be exactly twice the next coarser one, so the
content must be a multiple of 16 (the style-method path, :class:`dynast_cli.styles.base.StyleMethod`,
reflect-pads every content to :data:`dynast_cli.ops.PAD_MULTIPLE` and crops the image back) and the
style is reflect-padded to a multiple of 16 once in :meth:`DynastStyleModel.prepare_style`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynast_cli.attention.dense import AttentionResult, dense_attention
from dynast_cli.attention.sparse import inner_scale_sparse_attention, inter_scale_sparse_attention
from dynast_cli.models.decoder import decode_features
from dynast_cli.models.vgg import FEATURE_CHANNELS
from dynast_cli.models.vgg import TRANSFORM_LEVELS as LEVELS
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import calc_mean_std, mean_variance_norm
from dynast_cli.ops import PAD_MULTIPLE, pad_to_multiple

LEVEL_NAMES = {"relu3_1": 2, "relu4_1": 3, "relu5_1": 4}


def matching_features(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): mean-variance normalised per channel, then unit L2 norm per position."""
    return F.normalize(mean_variance_norm(feat), dim=1)


def moments_to_mean_std(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attended (E[v], E[v^2]) stacked on channels (B, 2C, H, W) -> mean, std (B, C, H, W).

    ``std = sqrt(relu(E[v^2] - E[v]^2))`` as in AdaAttN.
    """
    mean, second = moments.chunk(2, dim=1)
    return mean, torch.sqrt(torch.relu(second - mean * mean))


#: Side in pixels of the cells of :func:`texture_seed`'s noise field (one value per cell, bilinear in between).
NOISE_CELL = 2
#: Seed of :func:`texture_seed`'s noise field.
NOISE_SEED = 0


def texture_seed(content: torch.Tensor, sigma: float) -> torch.Tensor:
    """content (B, 3, H, W) in [0, 1] -> ``clamp(content + sigma * field, 0, 1)``.

    ``field`` (1, 1, H, W), the same on the three channels (grey, so no colour is added) and for every
    image of the batch: N(0, 1) values on a grid of ceil(H / NOISE_CELL) x ceil(W / NOISE_CELL) cells from a
    CPU generator seeded with :data:`NOISE_SEED`, bilinearly interpolated to H x W (align_corners=False).
    ``sigma <= 0`` returns ``content`` itself.
    """
    if sigma <= 0.0:
        return content
    h, w = content.shape[-2:]
    generator = torch.Generator().manual_seed(NOISE_SEED)
    field = torch.randn(1, 1, -(-h // NOISE_CELL), -(-w // NOISE_CELL), generator=generator)
    if NOISE_CELL > 1:
        field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
    return (content + sigma * field.to(content)).clamp(0, 1)


#: Spectral norm of the prune convolutions' weights relative to their bias at initialisation.
INIT_WEIGHT_NORM = 0.1
#: Pruned attention mass below this is softmax rounding (every match kept), taken as exactly 0.
LOST_EPS = 1e-4


def warp_finer(feat: torch.Tensor, match: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """A finer level of the style carried by each position's best match (the fine-scale target of the
    decoder fine-tune, ``dynast train style --method dynast --train-decoder``).

    feat (B, C, Hs*f, Ws*f): the style's features ``factor`` f times finer than the matched level;
    match (B, Hq*Wq) int64: each query position's style position in the matched level's (Hs, Ws) grid;
    grid: (Hq, Wq) -> (B, C, Hq*f, Wq*f): the f x f block of query position (y, x) is the style's f x f
    block under its match.
    """
    blocks = F.pixel_unshuffle(feat, factor)  # (B, C f^2, Hs, Ws): each style position's f x f block
    b, channels = blocks.shape[:2]
    picked = blocks.flatten(2).gather(2, match[:, None, :].expand(b, channels, match.shape[1]))  # (B, C f^2, Hq*Wq)
    return F.pixel_shuffle(picked.view(b, channels, *grid), factor)


def lost_mass(conf: torch.Tensor) -> torch.Tensor:
    """``1 - conf``, the attention mass of the pruned matches, forward-exactly 0 where it is below
    ``LOST_EPS`` (a softmax sums to 1 only up to rounding); the gradient is that of ``1 - conf`` everywhere."""
    lost = 1 - conf
    return lost - torch.where(lost > LOST_EPS, torch.zeros_like(lost), lost).detach()


@dataclass
class DynastStyle:
    """A style encoded once. Per entry of :data:`LEVELS` (relu3_1, relu4_1, relu5_1):
    keys (B, C, hk, wk) matching features, moments (B, 2C, hk, wk) = cat(feature, feature^2);
    with a learned prune mask also key_prune (B, P, hk, wk) and global_moments (B, 2C, 1, 1)
    (the moments averaged over the whole style). B is 1, or the content batch (training pairs)."""

    keys: list[torch.Tensor]
    moments: list[torch.Tensor]
    key_prune: list[torch.Tensor] | None = None
    global_moments: list[torch.Tensor] | None = None
    #: with ``locality`` < 1 or ``renorm`` > 0 at some level: the style's (mean, std) per level, (B, C, 1, 1)
    #: each, from the unpadded style (exactly AdaIN's statistics); levels no option needs are None
    global_stats: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None


class PruneEmbeddings(nn.Module):
    """Learned prune embeddings of one level: ``query``/``key`` 1x1 convs (C -> P) on the matching features."""

    def __init__(self, channels: int, prune_dim: int):
        super().__init__()
        self.query = nn.Conv2d(channels, prune_dim, 1)
        self.key = nn.Conv2d(channels, prune_dim, 1)

    @torch.no_grad()
    def init_all_kept(self, generator: torch.Generator | None = None) -> None:
        """Random weights of spectral norm ``INIT_WEIGHT_NORM`` and one shared random unit bias on both
        sides: for inputs of norm <= 1 (matching features) every gate product is > 0 (all kept)."""
        bias = F.normalize(torch.randn(self.query.out_channels, generator=generator), dim=0)
        for conv in (self.query, self.key):
            weight = torch.randn(conv.weight.shape[:2], generator=generator)
            weight *= INIT_WEIGHT_NORM / torch.linalg.matrix_norm(weight, ord=2)
            conv.weight.copy_(weight.view_as(conv.weight))
            conv.bias.copy_(bias)


class DynastStyleModel(nn.Module):
    """Parameter-free DynaST-style matching + AdaAttN transform + universal decoder.

    ``encoder``: VGG-shaped (forward(x) -> [relu1_1 .. relu5_1], ceil-mode pooling);
    ``decoder``: a VGGDecoder(skip=True) inverting the encoder's relu3_1/4_1/5_1 (the universal decoder).
    ``top_k``: matches carried from level to level (capped by the number of coarse style positions);
    ``coarse``: ``"relu4_1"`` or ``"relu5_1"``, where the dense matching happens;
    ``smooth``: softmax temperature on cosine similarities; ``inner_steps``: inner-scale steps per
    finer level; ``chunk``: query positions per attention chunk (bounds memory, not the result);
    ``prune_dim``: None (parameter-free, every match kept) or the width of learned prune embeddings
    (``self.prune``, one :class:`PruneEmbeddings` per level, initialised all-kept from ``seed``);
    ``locality``: per level, the weight of the matched (local) transform against AdaIN's global one;
    ``warp``: the weight of the warped style features against the AdaAttN transform (see :meth:`transform`);
    ``renorm``: per level, the weight of the output re-normalised to the style's global channel statistics;
    ``noise``: sigma of the :func:`texture_seed` the style method adds to the content before encoding
    (0: none; the model's own methods take features, so they never add it).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: VGGDecoder,
        top_k: int = 4,
        coarse: str = "relu4_1",
        smooth: float = 0.05,
        inner_steps: int = 1,
        chunk: int = 1024,
        prune_dim: int | None = None,
        seed: int = 0,
        locality: Sequence[float] = (1.0, 1.0, 1.0),
        warp: float = 0.0,
        noise: float = 0.0,
        renorm: Sequence[float] = (0.0, 0.0, 0.0),
    ):
        super().__init__()
        if coarse not in ("relu4_1", "relu5_1"):
            raise ValueError(f"coarse must be 'relu4_1' or 'relu5_1', got {coarse!r}")
        if top_k < 1 or inner_steps < 0 or smooth <= 0:
            raise ValueError(f"need top_k >= 1, inner_steps >= 0, smooth > 0 (got {top_k}, {inner_steps}, {smooth})")
        self.encoder = encoder
        self.decoder = decoder
        self.top_k = top_k
        self.coarse = LEVEL_NAMES[coarse]
        self.smooth = smooth
        self.inner_steps = inner_steps
        self.chunk = chunk
        self.prune_dim = prune_dim
        if len(locality) != len(LEVELS) or not all(0.0 <= x <= 1.0 for x in locality):
            raise ValueError(f"locality needs {len(LEVELS)} values in [0, 1] (relu3_1, relu4_1, relu5_1), got {locality}")
        self.locality = tuple(float(x) for x in locality)
        if not 0.0 <= warp <= 1.0:
            raise ValueError(f"warp must be in [0, 1], got {warp}")
        self.warp = float(warp)
        if len(renorm) != len(LEVELS) or not all(0.0 <= x <= 1.0 for x in renorm):
            raise ValueError(f"renorm needs {len(LEVELS)} values in [0, 1] (relu3_1, relu4_1, relu5_1), got {renorm}")
        self.renorm = tuple(float(x) for x in renorm)
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.noise = float(noise)
        self.prune: nn.ModuleList | None = None
        if prune_dim is not None:
            if prune_dim < 1:
                raise ValueError(f"need prune_dim >= 1 (got {prune_dim})")
            generator = torch.Generator().manual_seed(seed)
            self.prune = nn.ModuleList(PruneEmbeddings(FEATURE_CHANNELS[i], prune_dim) for i in LEVELS)
            for embeddings in self.prune:
                embeddings.init_all_kept(generator)

    def config(self) -> dict:
        """The constructor options an exported learned prune mask records (``architecture`` dynast_style)."""
        return {"top_k": self.top_k, "coarse": {v: k for k, v in LEVEL_NAMES.items()}[self.coarse],
                "smooth": self.smooth, "inner_steps": self.inner_steps, "prune_dim": self.prune_dim,
                "locality": list(self.locality), "warp": self.warp, "noise": self.noise, "renorm": list(self.renorm)}

    def prepare_style(self, style: torch.Tensor) -> DynastStyle:
        """style (1, 3, h, w) in [0, 1] -> its matching keys and value moments at relu3_1..relu5_1
        (computed on the style reflect-padded to a multiple of 16)."""
        padded = pad_to_multiple(style, PAD_MULTIPLE)[0]
        wanted = [j for j in range(len(LEVELS)) if self.locality[j] < 1.0 or self.renorm[j] > 0.0]

        def stats(f: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
            return [calc_mean_std(f[level]) if j in wanted else None for j, level in enumerate(LEVELS)]

        global_stats = None
        if wanted and padded.shape != style.shape:
            # AdaIN's statistics of the unpadded style, encoded only as deep as needed and before the padded
            # style, so that only the (B, C, 1, 1) statistics are held while that one is encoded
            global_stats = stats(self.encoder(style, upto=LEVELS[wanted[-1]] + 1))
        feats = self.encoder(padded, keep=LEVELS)  # relu1_1/relu2_1 are not read: not kept
        if wanted and global_stats is None:  # padding changed nothing: the same features
            global_stats = stats(feats)
        keys = [matching_features(feats[i]) for i in LEVELS]
        moments = [torch.cat([feats[i], feats[i] * feats[i]], dim=1) for i in LEVELS]
        state = DynastStyle(keys=keys, moments=moments, global_stats=global_stats)
        if self.prune is not None:
            state.key_prune = [embeddings.key(k) for embeddings, k in zip(self.prune, keys)]
            state.global_moments = [m.mean(dim=(2, 3), keepdim=True) for m in moments]
        return state

    def match(self, feats: Sequence[torch.Tensor], style: DynastStyle, prune: bool = True) -> dict[int, AttentionResult]:
        """Coarse-to-fine matching of content features to one style.

        feats: content [relu1_1 .. relu5_1] (B, C_i, H_i, W_i), each level twice the next coarser one.
        -> {level index (4, 3, 2): AttentionResult(output = attended moments (B, 2C, H, W),
        conf (B, 1, H, W) (== 1 without a learned prune mask), top_k (B, H*W, K) indices into the
        style grid of that level, or None for a dense level coarser than ``coarse``)}.
        ``prune=False`` ignores a learned prune mask (the parameter-free matching: the training target).
        """
        learned = prune and self.prune is not None and style.key_prune is not None
        results: dict[int, AttentionResult] = {}
        top: torch.Tensor | None = None
        for j, level in reversed(list(enumerate(LEVELS))):
            q = matching_features(feats[level])
            b = q.shape[0]
            k = style.keys[j].expand(b, -1, -1, -1)
            v = style.moments[j].expand(b, -1, -1, -1)
            if learned:
                keep_q = self.prune[j].query(q)
                keep_k = style.key_prune[j].expand(b, -1, -1, -1)
            else:
                keep_q = q.new_ones(b, 1, *q.shape[-2:])  # constant prune embeddings: every match kept
                keep_k = k.new_ones(b, 1, *k.shape[-2:])
            if level >= self.coarse:
                n_keys = k.shape[-2] * k.shape[-1]
                want = min(self.top_k, n_keys) if level == self.coarse else None
                res = dense_attention(q, k, keep_q, keep_k, v, smooth=self.smooth, top_k=want, chunk=self.chunk)
            else:
                res = inter_scale_sparse_attention(q, k, keep_q, keep_k, v, top, self.smooth, chunk=self.chunk)
                for _ in range(self.inner_steps):
                    res = inner_scale_sparse_attention(q, k, keep_q, keep_k, v, res.top_k, self.smooth, chunk=self.chunk)
            top = res.top_k
            results[level] = res
        return results

    def transform(self, feats: Sequence[torch.Tensor], state: DynastStyle, prune: bool = True,
                  matches: dict[int, AttentionResult] | None = None) -> list[torch.Tensor]:
        """Content features [relu1_1 .. relu5_1] (each level twice the next coarser one) and one style ->
        transformed relu3_1, relu4_1, relu5_1 features.

        Per level ``std * mean_variance_norm(content) + mean`` from the matched moments (with a learned
        prune mask: the kept moments + ``(1 - conf)`` x the style's global moments); with ``warp`` w > 0,
        ``w * mean + (1 - w) * that``: ``mean`` is the attention-weighted average of the matched style
        features, i.e. the style's own features warped to the content's layout (as the DynaST generator
        warps its exemplar), which carries the style's texture, not only its statistics; with ``locality``
        b < 1 at a level, ``b * that + (1 - b) * adain(content, style)`` (AdaIN with the style's global statistics);
        with ``renorm`` r > 0 at a level, last, ``(1 - r) * that + r * adain(that, style)``: the output
        itself moved to the whole style's channel mean and std.
        ``prune=False``: the parameter-free transform even when a prune mask is learned. ``matches``: what
        :meth:`match` gave for these features, style and ``prune`` (computed here when None).
        """
        learned = prune and self.prune is not None and state.global_moments is not None
        if matches is None:
            matches = self.match(feats, state, prune=prune)
        out = []
        for j, level in enumerate(LEVELS):
            moments = matches[level].output
            if learned:
                moments = moments + lost_mass(matches[level].conf) * state.global_moments[j]
            mean, std = moments_to_mean_std(moments)
            normalised = mean_variance_norm(feats[level])
            local = std * normalised + mean
            if self.warp > 0.0:  # feature warping: the matched style features themselves
                local = self.warp * mean + (1.0 - self.warp) * local
            b = self.locality[j]
            if b < 1.0:
                g_mean, g_std = state.global_stats[j]
                local = b * local + (1.0 - b) * (normalised * g_std + g_mean)
            r = self.renorm[j]
            if r > 0.0:  # (B, C, H, W): the output re-normalised to the whole style's channel statistics
                g_mean, g_std = state.global_stats[j]
                local = (1.0 - r) * local + r * (mean_variance_norm(local) * g_std + g_mean)
            out.append(local)
        return out

    def decode(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Transformed [relu3_1, relu4_1, relu5_1] -> the decoded image (unclamped), by the universal decoder's
        convention (:func:`~dynast_cli.models.decoder.decode_features`)."""
        return decode_features(self.decoder, *levels)


#: ``architecture`` of an exported learned prune mask (the ``prune.*`` tensors only).
ARCHITECTURE = "dynast_style"
