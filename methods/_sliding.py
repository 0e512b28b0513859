"""Square windows slid over an image, for the methods that perturb one window at a time
(occlusion, PDA): where the windows start, which inputs each covers, and a pixel's share of
the windows' values."""
from __future__ import annotations

import numpy as np


def starts(size: int, window: int, stride: int) -> np.ndarray:
    """Window positions along one side, the last flush with the edge so that every pixel is covered."""
    positions = np.arange(0, size - window + 1, stride)
    return positions if positions[-1] == size - window else np.append(positions, size - window)


def inputs(rows: np.ndarray, cols: np.ndarray, window: int, shape: tuple[int, int, int]) -> np.ndarray:
    """(windows, window * window * channels) indices of the flattened (H, W, C) input that each window
    covers, windows in row-major order of (rows, cols)."""
    _, width, channels = shape
    within = (np.arange(window)[:, None] * width + np.arange(window)[None, :]).reshape(-1)
    corners = (rows[:, None] * width + cols[None, :]).reshape(-1)
    pixels = corners[:, None] + within[None, :]
    return (pixels[:, :, None] * channels + np.arange(channels)).reshape(len(pixels), -1)


def spread(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, window: int, shape: tuple[int, int]) -> np.ndarray:
    """A pixel's mean over the values (rows x cols) of the windows that cover it; 0 where none does."""
    total, covered = np.zeros(shape), np.zeros(shape)
    for dy in range(window):
        for dx in range(window):
            total[np.ix_(rows + dy, cols + dx)] += values
            covered[np.ix_(rows + dy, cols + dx)] += 1
    return total / np.maximum(covered, 1)
