"""The DynaST training objectives (official ``Pix2PixModel.compute_generator_loss`` /
``compute_discriminator_loss``), with the official loss weights.

Generator: ``warp * L_warp + gan * L_hinge_G + gan_feat * L_gan_feat + vgg * L_fm + perceptual * L_perc``
where

* ``L_warp``: for every attention block (1/8 ... full scale), L1 between the exemplar warped by that
  block's attention and the target average-pooled to the same size, summed over blocks;
* ``L_fm``: VGG feature matching, L1 between output and target features at five depths weighted
  1/32, 1/16, 1/8, 1/4, 1 (officially VGG19 relu1_2..relu5_2; here VGG16 relu1_1..relu5_1);
* ``L_perc``: MSE of the features at the fourth depth (officially relu4_2, ``which_perceptual 4_2``);
* hinge GAN on a multiscale discriminator, and GAN feature matching (L1 between the discriminator's
  intermediate activations on the output and on the target, averaged over scales).

Discriminator: ``gan * (hinge_real + hinge_fake)``. Every multiscale term is averaged over the scales.

Our VGG16 takes the Keras "caffe" input (0..255 scale), whose features are about 255 * 0.226 times
those of the torchvision-normalised VGG19 the weights were tuned for; :data:`VGG_FEATURE_SCALE`
brings them back so that the official weights keep their balance.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

#: Official loss weights (options/train_options.py, models/pix2pix_model.py, train_deepfashion.sh).
GENERATOR_LOSS_WEIGHTS = {"warp": 1000.0, "gan": 10.0, "gan_feat": 10.0, "vgg": 10.0, "perceptual": 0.001}
#: Weights of the five VGG depths in the feature-matching loss.
FM_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
#: Index of the perceptual-loss depth (relu4_1).
PERCEPTUAL_LAYER = 3
#: Multiplier from caffe-convention VGG16 features to the torchvision-normalised scale.
VGG_FEATURE_SCALE = 1.0 / (255.0 * 0.226)

MultiscaleOutput = Sequence[Sequence[torch.Tensor]]


def warp_loss(warped: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Sum over blocks of L1(warped_b, avg_pool(target) to warped_b's size); ``target`` (B, 3, H, W)."""
    total = target.new_zeros(())
    for warp in warped:
        factor = target.shape[-1] // warp.shape[-1]
        gt = F.avg_pool2d(target, factor, stride=factor) if factor > 1 else target
        total = total + F.l1_loss(warp, gt)
    return total


def feature_matching_loss(
    out_feats: Sequence[torch.Tensor], target_feats: Sequence[torch.Tensor],
    weights: Sequence[float] = FM_LAYER_WEIGHTS,
) -> torch.Tensor:
    """Weighted sum of L1(out_l, target_l) (targets detached)."""
    total = out_feats[0].new_zeros(())
    for w, o, t in zip(weights, out_feats, target_feats, strict=True):
        total = total + w * F.l1_loss(o, t.detach())
    return total


def hinge_generator_loss(pred_fake: MultiscaleOutput) -> torch.Tensor:
    """-mean(D(fake)) on each scale's logits, averaged over scales."""
    return torch.stack([-scale[-1].mean() for scale in pred_fake]).mean()


def hinge_discriminator_loss(
    pred_fake: MultiscaleOutput, pred_real: MultiscaleOutput
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean relu(1 + D(fake)), mean relu(1 - D(real))), each averaged over scales."""
    fake = torch.stack([F.relu(1 + scale[-1]).mean() for scale in pred_fake]).mean()
    real = torch.stack([F.relu(1 - scale[-1]).mean() for scale in pred_real]).mean()
    return fake, real


def gan_feature_matching_loss(pred_fake: MultiscaleOutput, pred_real: MultiscaleOutput) -> torch.Tensor:
    """Sum over intermediate activations (not the logits) of L1(fake, real.detach()), averaged over scales."""
    total = pred_fake[0][0].new_zeros(())
    for fake_scale, real_scale in zip(pred_fake, pred_real, strict=True):
        for fake, real in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            total = total + F.l1_loss(fake, real.detach())
    return total / len(pred_fake)
