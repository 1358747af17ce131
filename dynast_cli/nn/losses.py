"""The training and evaluation objectives, all on frozen VGG features.

``feats`` arguments are the encoder's list ``[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]``
(or a prefix of it). Conventions follow the papers' official code:

* style loss (AdaIN / AdaAttN / StyA2K): MSE of channel means + MSE of channel stds, summed over
  relu1_1..relu5_1;
* content loss (AdaAttN / StyA2K "global content"): MSE between mean-variance-normalised output and
  content features at relu4_1 and relu5_1;
* AdaAttN local feature loss: MSE between the output's features and the parameter-free AdaAttN
  transform of (content, style) at relu3_1..relu5_1;
* reconstruction (our universal decoder): pixel L1 + scale-normalised perceptual MSE at
  relu1_1..relu4_1;
* AdaAttN cross-image similarity (video): two frames and their stylisations keep the same
  normalised cosine-distance structure between each other at relu3_1, relu4_1;
* Gram loss (Gatys et al.): MSE of the channel co-activation (Gram) matrices at relu1_1..relu4_1, and a
  low-pass image loss (MSE of 8x8 average-pooled images), the texture and colour-anchor terms of the
  default's decoder fine-tune (``dynast train style --method dynast --train-decoder``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dynast_cli.nn.norm import calc_mean_std, mean_variance_norm

#: Perceptual-loss weights of relu1_1..relu4_1 for the reconstruction objective.
PERCEPTUAL_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def style_loss(out_feats: Sequence[torch.Tensor], style_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of MSE(mean_out, mean_style) + MSE(std_out, std_style).

    Batches must match (or ``style_feats`` have batch 1, broadcast); spatial sizes may differ.
    """
    return statistics_loss(out_feats, [calc_mean_std(s) for s in style_feats])


def statistics_loss(
    out_feats: Sequence[torch.Tensor], stats: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """:func:`style_loss` against given target statistics: ``stats`` holds one (mean, std) per layer,
    each (B or 1, C, 1, 1) (e.g. several styles' statistics blended)."""
    total = out_feats[0].new_zeros(())
    for o, (s_mean, s_std) in zip(out_feats, stats, strict=True):
        o_mean, o_std = calc_mean_std(o)
        total = total + F.mse_loss(o_mean, s_mean.expand_as(o_mean)) + F.mse_loss(o_std, s_std.expand_as(o_std))
    return total


def content_loss(
    out_feats: Sequence[torch.Tensor], content_feats: Sequence[torch.Tensor], layers: Sequence[int] = (3, 4)
) -> torch.Tensor:
    """Sum over ``layers`` (default relu4_1, relu5_1) of MSE(mvn(out), mvn(content))."""
    total = out_feats[0].new_zeros(())
    for i in layers:
        total = total + F.mse_loss(mean_variance_norm(out_feats[i]), mean_variance_norm(content_feats[i]))
    return total


def local_feature_loss(
    out_feats: Sequence[torch.Tensor],
    content_feats: Sequence[torch.Tensor],
    style_feats: Sequence[torch.Tensor],
    transform: Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], int], torch.Tensor],
    layers: Sequence[int] = (2, 3, 4),
) -> torch.Tensor:
    """AdaAttN's local feature loss: sum over ``layers`` of MSE(out_l, transform(content, style, l)).

    ``transform(content_feats, style_feats, l)`` is the parameter-free AdaAttN target at layer ``l``
    (attention-weighted style mean/std applied to the normalised content feature); it is computed
    without gradients.
    """
    total = out_feats[0].new_zeros(())
    for i in layers:
        with torch.no_grad():
            target = transform(content_feats, style_feats, i)
        total = total + F.mse_loss(out_feats[i], target)
    return total


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): ``F F^T / (H W)`` per item (channel co-activations: the texture), in fp32
    under autocast too (a sum over every position)."""
    with torch.autocast(feat.device.type, enabled=False):
        f = feat.float().flatten(2)
        return f @ f.transpose(1, 2) / f.shape[-1]


def gram_loss(
    out_feats: Sequence[torch.Tensor], style_feats: Sequence[torch.Tensor], layers: Sequence[int] = (0, 1, 2, 3)
) -> torch.Tensor:
    """Sum over ``layers`` (default relu1_1..relu4_1) of MSE(Gram(out), Gram(style)) (Gatys et al.), the
    texture term of ``dynast --train-decoder``; batches must match (or the style's be 1)."""
    total = out_feats[0].new_zeros(())
    for i in layers:
        g_out, g_style = gram_matrix(out_feats[i]), gram_matrix(style_feats[i])
        total = total + F.mse_loss(g_out, g_style.expand_as(g_out))
    return total


def low_pass_loss(out: torch.Tensor, target: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """MSE between ``cell`` x ``cell`` average-pooled images (B, 3, H, W): ties the colours and layout of
    ``out`` at that scale to ``target`` and leaves the finer detail free."""
    return F.mse_loss(F.avg_pool2d(out, cell), F.avg_pool2d(target, cell))


def batch_mean(stat: torch.Tensor) -> torch.Tensor:
    """A (detached) per-rank batch mean made the global batch's: averaged over the ranks under
    torchrun (equal shares, see :mod:`dynast_cli.train.ddp`), itself in one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        stat = stat.clone()
        dist.all_reduce(stat)
        stat /= dist.get_world_size()
    return stat


def perceptual_loss(
    out_feats: Sequence[torch.Tensor],
    target_feats: Sequence[torch.Tensor],
    weights: Sequence[float] = PERCEPTUAL_WEIGHTS,
) -> torch.Tensor:
    """Weighted sum over layers of MSE(out, target) / mean(target^2).

    Dividing by the target's energy makes layers of very different magnitudes (VGG16 in the caffe
    convention reaches hundreds at relu1_1) comparable, so the weights mean what they say.
    """
    total = out_feats[0].new_zeros(())
    for w, o, t in zip(weights, out_feats, target_feats):
        total = total + w * F.mse_loss(o, t) / batch_mean(t.detach().pow(2).mean()).clamp_min(1e-8)
    return total


def reconstruction_loss(
    out: torch.Tensor,
    target: torch.Tensor,
    out_feats: Sequence[torch.Tensor],
    target_feats: Sequence[torch.Tensor],
    pixel_weight: float = 1.0,
    perceptual_weights: Sequence[float] = PERCEPTUAL_WEIGHTS,
) -> dict[str, torch.Tensor]:
    """Pixel L1 + perceptual loss -> {"pixel", "perceptual", "total"}."""
    pixel = F.l1_loss(out, target)
    perceptual = perceptual_loss(out_feats, target_feats, perceptual_weights)
    return {"pixel": pixel, "perceptual": perceptual, "total": pixel_weight * pixel + perceptual}


def cross_image_similarity_loss(
    content_1: Sequence[torch.Tensor],
    content_2: Sequence[torch.Tensor],
    stylised_1: Sequence[torch.Tensor],
    stylised_2: Sequence[torch.Tensor],
    layers: Sequence[int] = (2, 3),
    eps: float = 1e-8,
) -> torch.Tensor:
    """AdaAttN's cross-image similarity loss for video (Liu et al. 2021, video extension).

    Two content frames c1, c2 and their stylisations cs1, cs2 should relate the same way: if
    position i of c1 looks like position j of c2, then position i of cs1 should look like position
    j of cs2. Per layer (default relu3_1, relu4_1), with features flattened to positions::

        D_ij   = 1 - cos(F(x1)_i, F(x2)_j)          cosine distance, in [0, 2]
        D~_ij  = D_ij / sum_i D_ij                   each column normalised over frame 1's positions
        L      = mean_ij |D~c_ij - D~cs_ij|          (the paper's 1/(N1 N2) sum)

    summed over ``layers``. Arguments are encoder feature lists ``[relu1_1, ...]``; sizes of the two
    frames may differ, the two pairs must have the same per-frame sizes. Zero exactly when both
    pairs have the same (normalised) distance structure, e.g. when the stylisation scales each
    feature vector by a positive factor.
    """
    total = content_1[0].new_zeros(())
    for i in layers:
        d_content = _normalised_cosine_distance(content_1[i], content_2[i], eps)  # (B, N1, N2)
        d_stylised = _normalised_cosine_distance(stylised_1[i], stylised_2[i], eps)  # (B, N1, N2)
        total = total + (d_content - d_stylised).abs().mean()
    return total


def _normalised_cosine_distance(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """a (B, C, H1, W1), b (B, C, H2, W2) -> (B, N1, N2): cosine distances, columns summing to 1."""
    a = a.flatten(2)  # (B, C, N1)
    b = b.flatten(2)  # (B, C, N2)
    a = a / (a.norm(dim=1, keepdim=True) + eps)  # unit vectors per position
    b = b / (b.norm(dim=1, keepdim=True) + eps)
    distance = 1.0 - torch.bmm(a.transpose(1, 2), b)  # (B, N1, N2)
    return distance / (distance.sum(dim=1, keepdim=True) + eps)  # / sum_i D_ij
