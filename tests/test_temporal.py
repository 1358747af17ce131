"""The warping error of dynast_cli.temporal on tiny generated clips (flow, warp, occlusion mask)."""

from __future__ import annotations

import numpy as np
import pytest

from dynast_cli.temporal import WarpingError, consistent_flow_mask, optical_flow, warp, warping_error


def moving_square(n: int = 12, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """A red square moving right by 2 px a frame over a textured background (RGB uint8)."""
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        frame[10:26, 5 + 2 * i:21 + 2 * i] = (255, 40, 40)
        frames.append(frame)
    return frames


def flicker(frames: list[np.ndarray], amount: int = 40) -> list[np.ndarray]:
    """Each frame brightened or darkened by a random amount, as an unsteady stylisation would."""
    rng = np.random.default_rng(0)
    return [np.clip(f.astype(int) + rng.integers(-amount, amount), 0, 255).astype(np.uint8) for f in frames]


def test_warp_zero_flow_is_identity_and_constant_flow_shifts():
    image = moving_square(1)[0].astype(np.float32)
    zero = np.zeros(image.shape[:2] + (2,), np.float32)
    assert np.array_equal(warp(image, zero), image)
    shift = zero.copy()
    shift[..., 0] = 2.0  # out(x) = image(x + 2)
    assert np.array_equal(warp(image, shift)[:, :-2], image[:, 2:])


def test_flow_follows_the_square():
    frames = moving_square(2)
    for method in ("dis", "farneback"):
        flow = optical_flow(frames[0], frames[1], method)
        assert abs(float(np.median(flow[14:22, 10:16, 0])) - 2.0) < 0.5, method
    with pytest.raises(ValueError, match="unknown flow"):
        optical_flow(frames[0], frames[1], "magic")


def test_consistency_mask_flags_disagreeing_flows():
    forward = np.zeros((8, 8, 2), np.float32)
    forward[..., 0] = 2.0
    assert consistent_flow_mask(forward, -forward).all()
    assert not consistent_flow_mask(forward, forward).any()


def test_static_video_has_zero_error_and_flicker_raises_it():
    still = [moving_square(1)[0]] * 6
    assert warping_error(still, still) == 0.0
    moving = moving_square()
    steady = warping_error(moving, moving)
    unsteady = warping_error(moving, flicker(moving))
    assert steady < 1e-3
    assert unsteady > 5 * steady and unsteady > 2e-3
    assert warping_error(moving, flicker(moving), flow="farneback") > 5 * warping_error(moving, moving, flow="farneback")


def test_streaming_metric_counts_pairs_and_checks_sizes():
    metric = WarpingError()
    assert metric.value == 0.0
    frames = moving_square(3)
    for f in frames:
        metric.update(f, f)
    assert metric.pairs == 2
    with pytest.raises(ValueError, match="differ in size"):
        metric.update(frames[0], frames[0][:-2])
    with pytest.raises(ValueError, match="unknown flow"):
        WarpingError("magic")
