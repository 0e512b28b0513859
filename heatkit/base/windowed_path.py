"""The perturbation engine's windowed path, one of its ways to evaluate a perturbation (with the
fast path and full passes): on a convolutional PyTorch network, a change that fits in a small
window goes through the model's WindowedNet (heatkit/model/windows.py), which recomputes each
layer only where the window reaches; the path is taken where the window saves enough
multiply-adds, counted once per network and size."""
from __future__ import annotations

from functools import cached_property
from typing import Callable

import numpy as np


class WindowedPath:
    """An Engine's windowed path: its evaluator caches the engine's input."""

    def __init__(self, engine):
        self.engine = engine

    @cached_property
    def evaluator(self):
        """The model's evaluator of windowed changes, caching this input, where the model has one
        and no affine first layer."""
        engine = self.engine
        if not engine.options.fast or engine.fast:
            return None
        evaluator = engine.model.windowed_evaluator(engine.options.max_fast_fraction, engine.options.approximate)
        if evaluator is not None:
            evaluator.remember(engine.image[None])
        return evaluator

    @property
    def takes_pixels(self) -> bool:
        """Whether the path takes changes of one input element (pixel levels, walks)."""
        return self.size_for(np.zeros((1, 1), np.int64)) is not None

    def size_for(self, pixels: np.ndarray) -> tuple[int, int] | None:
        """The (height, width) of a window that holds each row's pixels, where the windowed path
        takes them: a small enough window, on a model that has the path, that saves enough
        multiply-adds over a full pass (chosen by counting, not timing, so that a command gives the
        same maps on a busy machine)."""
        engine = self.engine
        if self.evaluator is None:
            return None
        height, width, channels = engine.image.shape
        rows, cols = pixels // (width * channels), pixels // channels % width
        size = (int((rows.max(1) - rows.min(1)).max()) + 1, int((cols.max(1) - cols.min(1)).max()) + 1)
        small = size[0] * size[1] <= engine.options.max_fast_fraction * height * width
        # The default ratio, 1.1: occlusion on ResNet-18 took the windowed path 1.12, 1.25, 1.68 and
        # 1.98 times faster than full passes at 32, 64, 96 and 128 pixels a side (ratios 1.11 to
        # 1.66), and 1.14 to 1.49 times at 224 (ratios 1.76 to 2.02); MobileNetV2, EfficientNet-B0
        # and DenseNet-121 at 64, 1.37 to 2.0 times. A ViT's ratio is 1.0
        ratio = engine.options.min_flop_ratio
        saves = ratio <= 0 or self.evaluator.flop_ratio(size) >= ratio
        return size if small and saves else None

    def edits(self, count: int, span: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
              size: tuple[int, int], desc: str) -> np.ndarray:
        """Target probabilities of `count` edits, span(start, stop) giving rows' (pixels, values),
        each within a window of `size`, in batches that fit the memory bound."""
        engine = self.engine
        height, width, channels = engine.image.shape
        batch = max(1, min(count, (engine.options.memory_mb << 20) // self.evaluator.bytes_per_row(size)))
        corners = np.lib.stride_tricks.sliding_window_view(engine.image, size, axis=(0, 1))  # (.., .., C, h, w)
        out = np.empty(count)
        engine.state.evaluations["windowed"] += count
        for start, stop in engine.chunks(count, batch, desc):
            pixels, values = span(start, stop)
            rows, cols, channel = pixels // (width * channels), pixels // channels % width, pixels % channels
            top, left = np.minimum(rows.min(1), height - size[0]), np.minimum(cols.min(1), width - size[1])
            patches = corners[top, left].transpose(0, 2, 3, 1).copy()
            patches[np.arange(len(pixels))[:, None], rows - top[:, None], cols - left[:, None], channel] = values
            out[start:stop] = self.evaluator.probabilities(top, left, patches, logits=engine.logits)[:, engine.target]
        return out

    def walks(self, start: np.ndarray, orders: np.ndarray, desc: str, pixels: bool) -> np.ndarray:
        """Engine.walks() on the windowed path: a batch of walks, each with its own cache, takes one
        step (one input switched, or one pixel's channels where `pixels`) per evaluation."""
        engine = self.engine
        height, width, channels = engine.image.shape
        count, steps = orders.shape
        # an evaluator with caches of its own: the engine's stay on its input
        walker = engine.model.windowed_evaluator(engine.options.max_fast_fraction, engine.options.approximate)
        per_walk = 2 * engine.model.activation_bytes + self.evaluator.bytes_per_row((1, 1))  # a cache, and a step
        batch = max(1, min(count, (engine.options.memory_mb << 20) // per_walk))
        first_state = start.reshape(engine.image.shape)
        out = np.empty((count, steps + 1))
        out[:, 0] = engine.evaluate_full(first_state[None])[0, engine.target]
        engine.state.evaluations["full"] += 1
        engine.state.evaluations["windowed"] += count * steps
        with engine.state.metered(engine.options, count * steps, desc) as meter:
            for first in range(0, count, batch):
                rows = orders[first:first + batch]
                walks = np.arange(len(rows))
                inputs = np.repeat(first_state[None], len(rows), axis=0)
                walker.remember(inputs)
                for step in range(steps):
                    element = rows[:, step]
                    if pixels:
                        y, x = element // width, element % width
                        inputs[walks, y, x] = engine.image[y, x]
                    else:
                        y, x = element // (width * channels), element // channels % width
                        inputs[walks, y, x, element % channels] = engine.flat[element]
                    out[first:first + len(rows), step + 1] = walker.probabilities(
                        y, x, inputs[walks, y, x][:, None, None, :], walk=True, logits=engine.logits)[:, engine.target]
                    meter.update(len(rows))
        return out
