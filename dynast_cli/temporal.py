"""Temporal consistency of a stylised video: the warping error used by the video style-transfer papers.

For consecutive frames ``t`` and ``t+1``, the optical flow of the SOURCE frames (OpenCV DIS or
Farneback) warps the stylisation of ``t+1`` back onto ``t``; the error is the mean squared
difference (RGB in ``[0, 1]``) over the pixels the flow can be trusted on, i.e. those that pass the
forward-backward consistency check (Ruder et al., "Artistic style transfer for videos", 2016),
averaged over all pairs (Lai et al., "Learning blind video temporal consistency", 2018)::

    E_warp = 1/(T-1) * sum_t  sum_x M_t(x) * ||O_t(x) - O_{t+1}(x + F_t(x))||^2 / (3 * sum_x M_t(x))

A still video scores ~0; flicker raises it. Frames are RGB ``uint8`` arrays ``(H, W, 3)``.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

FLOW_METHODS = ("dis", "farneback")


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow ``(H, W, 2)`` (x, y) from frame ``a`` to frame ``b``: ``a(p) ~ b(p + flow(p))``."""
    ga, gb = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (a, b))
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(ga, gb, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown flow method '{method}' (choose from {', '.join(FLOW_METHODS)})")


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(p) = image(p + flow(p))`` (bilinear, border replicated)."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def consistent_flow_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: True where the forward flow is confirmed by the backward flow (not occluded).

    Ruder et al.'s test: occluded where ``|f + b(p+f)|^2 > 0.01 (|f|^2 + |b(p+f)|^2) + 0.5``.
    """
    back = warp(backward, forward)
    mismatch = np.sum((forward + back) ** 2, axis=2)
    scale = np.sum(forward**2, axis=2) + np.sum(back**2, axis=2)
    return mismatch <= 0.01 * scale + 0.5


def pair_warping_error(
    out_t: np.ndarray, out_next: np.ndarray, forward: np.ndarray, mask: np.ndarray
) -> float:
    """Masked mean squared error between ``out_t`` and ``out_next`` warped back by ``forward``."""
    warped = warp(out_next.astype(np.float32) / 255.0, forward)
    diff = (out_t.astype(np.float32) / 255.0 - warped) ** 2
    valid = mask.sum()
    return float((diff.sum(axis=2) * mask).sum() / (3.0 * valid)) if valid else 0.0


class WarpingError:
    """Streaming mean warping error: feed ``(source, output)`` frames in order with :meth:`update`."""

    def __init__(self, flow: str = "dis"):
        if flow not in FLOW_METHODS:
            raise ValueError(f"unknown flow method '{flow}' (choose from {', '.join(FLOW_METHODS)})")
        self.flow = flow
        self.total = 0.0
        self.pairs = 0
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, source: np.ndarray, output: np.ndarray) -> None:
        """Add the next frame: its source and its stylisation, same ``(H, W)``."""
        if source.shape[:2] != output.shape[:2]:
            raise ValueError(f"source {source.shape[:2]} and output {output.shape[:2]} differ in size")
        if self._previous is not None:
            src_t, out_t = self._previous
            forward = optical_flow(src_t, source, self.flow)
            backward = optical_flow(source, src_t, self.flow)
            self.total += pair_warping_error(out_t, output, forward, consistent_flow_mask(forward, backward))
            self.pairs += 1
        self._previous = (source, output)

    @property
    def value(self) -> float:
        """Mean over the frame pairs seen so far (0 before two frames)."""
        return self.total / self.pairs if self.pairs else 0.0


def warping_error(sources: Iterable[np.ndarray], outputs: Iterable[np.ndarray], flow: str = "dis") -> float:
    """Mean warping error of ``outputs`` (the stylised frames) under the flow of ``sources``."""
    metric = WarpingError(flow)
    for source, output in zip(sources, outputs, strict=True):
        metric.update(source, output)
    return metric.value
