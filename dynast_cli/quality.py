"""Style-transfer quality measures that a pixel optimiser cannot game (issue #16).

The papers' losses (:mod:`dynast_cli.nn.losses`) are measured on the VGG16 that our refinement
optimises, so they reward whatever moves VGG16's channel statistics, e.g. a tinted content photo with
high-frequency flecks. The measures here look at the picture from other sides:

* :func:`palette_distance` - colours: sliced Wasserstein-2 distance between the two images' pixel
  colour distributions in CIE Lab (D65), in Delta-E*76 units (lower: the output uses the style's palette);
* :func:`texture_distance` - texture: Gram matrices of an independent ImageNet network
  (EfficientNet-Lite0, :mod:`dynast_cli.models.efficientnet_lite`, which no method optimises) on
  antialiased copies at long side 256, so that pixel-scale flecks vanish and strokes stay (lower is better);
* :func:`patch_similarity` - patches: for each output feature vector, its best cosine to any of the
  style's feature vectors, averaged (higher: the output is made of style-like patches; 1 = every patch
  occurs in the style);
* :func:`edge_fscore` - structure kept: Canny edges of output vs content, F-score with a small pixel
  tolerance (higher is better; 1 = the same edges);
* :func:`reduced_content_loss` - the project's content loss (:func:`dynast_cli.nn.losses.content_loss`,
  normalised relu4_1 + relu5_1 of the VGG16 loss network) on antialiased copies at long side 256 (lower
  is better). It stays on VGG16 so that it is the papers' content loss, only blind to pixel-scale
  detail; any encoder with the same list-of-features interface can be passed (the tests use a stand-in).

Images are ``(3, H, W)`` (or ``(1, 3, H, W)``) float tensors in [0, 1], or ``(H, W, 3)`` uint8 numpy
arrays (see :func:`as_image`). Everything is deterministic: the random projections are seeded.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Long side of the copies the network-based measures look at.
NET_SIZE = 256
#: Largest long side of the grayscale images the edges are found on (the tolerance is in these pixels);
#: smaller images are not enlarged (enlarging blurs their edges below Canny's thresholds).
EDGE_SIZE = 512
#: Canny hysteresis thresholds (on a 0..255 grayscale after a 5x5, sigma 1 Gaussian blur).
CANNY_LOW, CANNY_HIGH = 100, 200
EDGE_TOLERANCE_PX = 2
#: Random directions of the sliced Wasserstein distance (rounded up to whole orthonormal bases of 3).
PALETTE_PROJECTIONS = 64
#: Quantile levels each projected distribution is matched at.
PALETTE_QUANTILES = 1024

#: The measures' names as columns of ``dynast eval style``.
COLUMNS = ("palette", "texture", "patch_sim", "edge_f", "content_small")

# sRGB (D65) -> CIE XYZ, and the D65 white point.
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def as_image(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any accepted image -> ``(3, H, W)`` float32 CPU tensor in [0, 1].

    Accepts tensors ``(3, H, W)`` or ``(1, 3, H, W)`` (float in [0, 1] or uint8) and numpy arrays
    ``(H, W, 3)`` (uint8 0..255, or float in [0, 1])."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) array, got shape {image.shape}")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32) / scale)
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float().div(255.0)
    return image.detach().float().cpu().clamp(0, 1)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], ``(..., 3)`` -> CIE L*a*b* (D65, 2 degree), ``(..., 3)`` float64: L in [0, 100]."""
    rgb = rgb.to(torch.float64)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _D65_WHITE
    delta = 6.0 / 29.0
    f = torch.where(xyz > delta**3, xyz.clamp_min(0) ** (1.0 / 3.0), xyz / (3 * delta**2) + 4.0 / 29.0)
    return torch.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def _projection_bases(projections: int, seed: int) -> torch.Tensor:
    """``ceil(projections / 3)`` seeded random orthonormal bases of R^3, stacked: ``(3 * K, 3)`` float64."""
    gen = torch.Generator().manual_seed(seed)
    bases = []
    for _ in range(max(1, math.ceil(projections / 3))):
        q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        bases.append((q * torch.sign(torch.diagonal(r))).T)  # rows: 3 orthonormal directions
    return torch.cat(bases)


def _projected_quantiles(lab: torch.Tensor, directions: torch.Tensor, quantiles: int) -> torch.Tensor:
    """``lab (N, 3)`` projected on ``directions (D, 3)``, sorted, read at ``quantiles`` equally spaced
    levels ``(q + 0.5) / Q`` -> ``(Q, D)``."""
    projected, _ = torch.sort(lab @ directions.T, dim=0)
    n = projected.shape[0]
    index = ((torch.arange(quantiles, dtype=torch.float64) + 0.5) * n / quantiles).long().clamp_max(n - 1)
    return projected[index]


def palette_distance(out, style, projections: int = PALETTE_PROJECTIONS, quantiles: int = PALETTE_QUANTILES,
                     seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between the pixel colours of ``out`` and ``style`` in CIE Lab.

    ``out``, ``style``: images (:func:`as_image`), any sizes. Every pixel is one sample. The colour
    clouds are projected on ``ceil(projections / 3)`` seeded random orthonormal bases; along each
    direction the two sorted projections are matched at ``quantiles`` equal levels (the 1-D optimal
    transport, whatever the pixel counts) giving W2^2. The result is
    ``sqrt(mean over bases of the sum of W2^2 over the basis' 3 directions)``: in Lab units (Delta-E*76);
    exactly the Lab distance of the two colours for two solid images, 0 for identical images, symmetric.
    """
    return palette_distances([out], style, projections, quantiles, seed)[0]


def palette_distances(outs, style, projections: int = PALETTE_PROJECTIONS, quantiles: int = PALETTE_QUANTILES,
                      seed: int = 0) -> list[float]:
    """:func:`palette_distance` of each of ``outs`` to one ``style``, the style's quantiles computed once
    (a video's frames: sorting the style's pixels again for every frame dominated ``dynast eval video``)."""
    directions = _projection_bases(projections, seed)
    qb = _projected_quantiles(srgb_to_lab(as_image(style).flatten(1).T), directions, quantiles)
    distances = []
    for out in outs:
        qa = _projected_quantiles(srgb_to_lab(as_image(out).flatten(1).T), directions, quantiles)
        w2 = (qa - qb).pow(2).mean(0)  # (3K,) squared 1-D Wasserstein-2 per direction
        distances.append(float(w2.sum().div(directions.shape[0] / 3).sqrt()))
    return distances


def _gray(image, hw: tuple[int, int]) -> np.ndarray:
    """Image -> ``(h, w)`` uint8 grayscale at ``hw`` (area-averaged when shrinking)."""
    import cv2

    rgb = (as_image(image).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if gray.shape != hw:
        shrink = hw[0] * hw[1] < gray.shape[0] * gray.shape[1]
        gray = cv2.resize(gray, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return gray


def _fit(h: int, w: int, size: int | None) -> tuple[int, int]:
    """(h, w) scaled so that the long side is ``size`` (None: unchanged)."""
    if size is None or max(h, w) == size:
        return h, w
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def canny_edges(image, hw: tuple[int, int], low: int = CANNY_LOW, high: int = CANNY_HIGH) -> np.ndarray:
    """Boolean ``(h, w)`` Canny edge map of ``image`` resized to ``hw`` (grayscale, 5x5 Gaussian blur,
    sigma 1, L2 gradient, hysteresis thresholds ``low``/``high``)."""
    import cv2

    blurred = cv2.GaussianBlur(_gray(image, hw), (5, 5), 1.0)
    return cv2.Canny(blurred, low, high, L2gradient=True) > 0


def edge_scores(out, content, tolerance_px: int = EDGE_TOLERANCE_PX, size: int | None = EDGE_SIZE,
                low: int = CANNY_LOW, high: int = CANNY_HIGH) -> tuple[float, float, float]:
    """(precision, recall, F-score) of ``out``'s Canny edges against ``content``'s.

    Both images are taken to the content's size, shrunk to long side ``size`` when larger (None: never
    shrunk); the output is resized to that size whatever its own.
    An output edge pixel is correct when a content edge lies within ``tolerance_px`` (a disc; pixels
    at the working size), and a content edge pixel is recalled when an output edge lies within it.
    No edges in either image: (1, 1, 1) (nothing to keep, nothing invented); edges in only one: 0 for
    the undefined side and F = 0.
    """
    import cv2

    c = as_image(content)
    hw = _fit(c.shape[1], c.shape[2], size if size is not None and size < max(c.shape[1:]) else None)
    e_out, e_content = canny_edges(out, hw, low, high), canny_edges(c, hw, low, high)
    n_out, n_content = int(e_out.sum()), int(e_content.sum())
    if n_out == 0 and n_content == 0:
        return 1.0, 1.0, 1.0
    if n_out == 0 or n_content == 0:
        return 0.0, 0.0, 0.0
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance_px + 1, 2 * tolerance_px + 1))
    near_content = cv2.dilate(e_content.astype(np.uint8), disc) > 0
    near_out = cv2.dilate(e_out.astype(np.uint8), disc) > 0
    precision = float((e_out & near_content).sum()) / n_out
    recall = float((e_content & near_out).sum()) / n_content
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f


def edge_fscore(out, content, tolerance_px: int = EDGE_TOLERANCE_PX, size: int | None = EDGE_SIZE) -> float:
    """F-score of ``out``'s edges against ``content``'s (see :func:`edge_scores`): 1 for identical images."""
    return edge_scores(out, content, tolerance_px, size)[2]


def downsample(image, size: int = NET_SIZE, hw: tuple[int, int] | None = None) -> torch.Tensor:
    """``(1, 3, h, w)`` antialiased bilinear copy of ``image`` at long side ``size`` (or exactly ``hw``)."""
    x = as_image(image)[None]
    hw = hw or _fit(x.shape[2], x.shape[3], size)
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _features(net: Callable[[torch.Tensor], Sequence[torch.Tensor]], image, size: int) -> list[torch.Tensor]:
    param = next(iter(getattr(net, "parameters", lambda: iter(()))()), None)
    x = downsample(image, size)
    if param is not None:
        x = x.to(param.device, param.dtype)
    with torch.inference_mode():
        return [f.float() for f in net(x)]


def gram(feat: torch.Tensor) -> torch.Tensor:
    """``(1, C, h, w)`` -> ``(C, C)`` Gram matrix ``F F^T / (h w)``."""
    f = feat[0].flatten(1)
    return f @ f.T / f.shape[1]


def texture_distance(out, style, net, size: int = NET_SIZE, stages: Sequence[int] = (0, 1, 2)) -> float:
    """Mean over ``stages`` of ``|G(out) - G(style)|_F / |G(style)|_F``, Gram matrices (:func:`gram`)
    of ``net``'s features (default: EfficientNet-Lite0 at strides 4, 8, 16) on antialiased copies at long
    side ``size``. ``net(x (1, 3, h, w) in [0, 1]) -> list of (1, C, h', w')``. 0 for identical images."""
    return _texture(_features(net, out, size), _features(net, style, size), stages)


def _texture(fo: Sequence[torch.Tensor], fs: Sequence[torch.Tensor], stages: Sequence[int] = (0, 1, 2)) -> float:
    total = 0.0
    for i in stages:
        go, gs = gram(fo[i]), gram(fs[i])
        total += float(torch.linalg.matrix_norm(go - gs) / torch.linalg.matrix_norm(gs).clamp_min(1e-12))
    return total / len(stages)


def patch_similarity(out, style, net, size: int = NET_SIZE, stage: int = 1) -> float:
    """Mean over ``out``'s feature positions of the largest cosine similarity to any of ``style``'s
    feature vectors, at ``net``'s feature ``stage`` (default 1: EfficientNet-Lite0 stride 8, 40 channels,
    each vector seeing a patch of a few dozen pixels of the copy at long side ``size``). In [-1, 1];
    1 for identical images (and for any output assembled from the style's own patches)."""
    return _patch(_features(net, out, size)[stage], _features(net, style, size)[stage])


def _patch(fo: torch.Tensor, fs: torch.Tensor) -> float:
    o = F.normalize(fo[0].flatten(1), dim=0, eps=1e-12)
    s = F.normalize(fs[0].flatten(1), dim=0, eps=1e-12)
    best = torch.cat([(o[:, i:i + 4096].T @ s).amax(1) for i in range(0, o.shape[1], 4096)])
    return float(best.clamp(-1, 1).mean())


def reduced_content_loss(out, content, encoder, size: int = NET_SIZE, layers: Sequence[int] = (3, 4)) -> float:
    """The project's content loss (:func:`dynast_cli.nn.losses.content_loss`, MSE of mean-variance
    normalised features at ``layers``; default relu4_1 + relu5_1) between ``out`` and ``content``, both
    antialiased to the content's aspect at long side ``size``.

    ``encoder``: the loss network (``dynast eval style`` passes its VGG16), ``encoder(x (1, 3, h, w) in
    [0, 1]) -> list of features``. 0 for identical images."""
    from dynast_cli.nn.losses import content_loss

    c = as_image(content)
    hw = _fit(c.shape[1], c.shape[2], size)
    return float(content_loss(_features(encoder, downsample(out, hw=hw)[0], max(hw)),
                              _features(encoder, downsample(c, hw=hw)[0], max(hw)), layers))


def quality_scores(out, content, style, net=None, encoder=None) -> dict[str, float | None]:
    """All :data:`COLUMNS` for one output, with the defaults above: network-based ones are None when
    ``net`` (EfficientNet-Lite0 features) or ``encoder`` (the VGG16 loss network, for ``content_small``)
    is None. Each image goes through ``net`` once."""
    scores: dict[str, float | None] = {"palette": palette_distance(out, style), "texture": None, "patch_sim": None}
    if net is not None:
        fo, fs = _features(net, out, NET_SIZE), _features(net, style, NET_SIZE)
        scores["texture"], scores["patch_sim"] = _texture(fo, fs), _patch(fo[1], fs[1])
    scores["edge_f"] = edge_fscore(out, content)
    scores["content_small"] = reduced_content_loss(out, content, encoder) if encoder is not None else None
    return scores


def load_quality_network(path=None, device: str | torch.device = "cpu"):
    """``(EfficientNet-Lite0 features or None, notice or None)``: the network (cached, else fetched once),
    or None and a one-line notice saying why it is unavailable (the network-based columns are then left
    empty). An explicit ``path`` that fails raises its :class:`~dynast_cli.errors.WeightsError` instead."""
    from dynast_cli.errors import DynastError
    from dynast_cli.weights.build import load_efficientnet_lite0

    try:
        return load_efficientnet_lite0(path, device=device), None
    except DynastError as exc:
        if path is not None:
            raise
        return None, (f"EfficientNet-Lite0 unavailable ({' '.join(str(exc).split())[:240]}); texture and "
                      "patch_sim left empty (`dynast fetch efficientnet` installs it)")
