"""The perturbation engine: every perturbation and sampling method evaluates the model through it.

It evaluates the explained class's probability on perturbed copies of one input, in
memory-bounded chunks, with a progress bar. Five kinds of perturbation cover the methods:

    images(count, make)       arbitrary images, built chunk by chunk
    masks(count, make, fill)  soft masks blending the input with a fill (RISE)
    edits(pixels, values)     each perturbation sets a few pixels (occlusion)
    pixel_levels(levels)      every pixel set to every level in turn (PDA)
    walks(start, orders)      inputs switched from `start` to the input one at a time (Shapley)
    segments(labels, masks)   segments switched to a fill image (KernelSHAP, LIME)

Fast exact path: when the model's first layer is affine, z = x.W + b, a perturbation that
changes the inputs S changes z by the sum over S of dx_i * W[i]. The engine adds that to the
input's z and runs only the rest of the network (the "head"), instead of a full forward pass.
It is the same arithmetic up to float64 rounding (tests hold both paths to 1e-9 on
probabilities). Models without such a layer, and edits that change most inputs, take batched
full forward passes; `fast=False` forces them. Fast-path chunks run on a few threads (numpy
and the frameworks release the GIL); each writes its own slice of the output, so results do
not depend on the scheduling.

Inputs are indexed in the flattened (H, W, C) order of the image.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import numpy as np
from tqdm import tqdm

CACHE_BYTES = 2 << 20  # fast-path working set per chunk: PDA measured fastest at 2 MB (L2 is 512 KB a core)


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm:
    """The toolkit's progress bar: on stderr, gone when done, off with -q."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, disable=not enabled, leave=False)


@dataclass(frozen=True)
class AffineSplit:
    """A model seen as z = x.weight + bias followed by `head(z) -> probabilities`."""

    weight: np.ndarray  # (inputs, units), rows in flattened (H, W, C) order
    bias: np.ndarray  # (units,)
    head: Callable[[np.ndarray], np.ndarray]  # (m, units) -> (m, classes)
    # Keeps the head's framework to one thread while the engine's workers call it: with both
    # threading, PDA took 18 s on 2 cores; with the engine's alone, 14 s.
    one_thread: Callable[[], ContextManager] = nullcontext
    # Runs once in each worker thread before it calls the head (see TorchNet.affine_split).
    prepare_worker: Callable[[], None] | None = None


@dataclass(frozen=True)
class EngineOptions:
    fast: bool = True  # use the affine split where the model has one
    memory_mb: int = 1024  # bound on the arrays one chunk allocates
    max_fast_fraction: float = 0.5  # edits changing more of the input take full passes
    workers: int = 0  # threads for fast-path chunks; 0: one per CPU core
    progress: bool = True  # tqdm bars on stderr


class Engine:
    def __init__(self, model, image: np.ndarray, target: int, options: EngineOptions = EngineOptions()):
        self.model, self.image, self.target, self.options = model, image, target, options
        self.flat = image.reshape(-1)
        self.split = model.affine_split() if options.fast else None
        if self.split is not None:
            self.z = self.flat @ self.split.weight + self.split.bias

    @property
    def fast(self) -> bool:
        return self.split is not None

    def probability(self) -> float:
        """The target probability of the unperturbed input, on the same path as the perturbations."""
        if self.fast:
            return float(self._head(self.z[None])[0])
        return float(self.model.probabilities(self.image[None])[0, self.target])

    # ---- arbitrary images: full forward passes ----
    def images(self, count: int, make: Callable[[int, int], np.ndarray], desc: str,
               all_classes: bool = False, max_batch: int | None = None) -> np.ndarray:
        """Probabilities of `make(start, stop)`'s images, (count,) for the target or (count, K)."""
        outputs = []
        self.model.evaluations["full"] += count
        for start, stop in self._chunks(count, self._full_pass_size(count, max_batch), desc):
            probabilities = self.model.probabilities(make(start, stop))
            outputs.append(probabilities if all_classes else probabilities[:, self.target])
        return np.concatenate(outputs) if outputs else np.empty((0,))

    # ---- soft masks ----
    def masks(self, count: int, make: Callable[[int, int], np.ndarray], fill: float, desc: str,
              max_batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Target probabilities of x * m + fill * (1 - m) for the (H, W) masks `make(start, stop)`,
        and the probability-weighted sum of the masks."""
        probabilities, weighted = np.empty(count), np.zeros(self.image.shape[:2])
        self.model.evaluations["full"] += count
        for start, stop in self._chunks(count, self._full_pass_size(count, max_batch), desc):
            masks = make(start, stop)
            batch = masks[..., None] * (self.image - fill)
            batch += fill
            batch_probabilities = self.model.probabilities(batch)[:, self.target]
            probabilities[start:stop] = batch_probabilities
            weighted += np.tensordot(batch_probabilities, masks, axes=1)
        return probabilities, weighted

    # ---- sparse edits ----
    def edits(self, pixels: np.ndarray, values: np.ndarray, desc: str) -> np.ndarray:
        """Target probability when inputs `pixels[j]` are set to `values[j]`, for each row j."""
        pixels = np.asarray(pixels, dtype=np.int64)
        values = np.broadcast_to(values, pixels.shape)
        if not self.fast or pixels.shape[1] > self.options.max_fast_fraction * self.flat.size:
            return self.images(len(pixels), lambda a, b: self._edited(pixels[a:b], values[a:b]), desc)
        units = self.split.weight.shape[1]
        out = np.empty(len(pixels))
        self.model.evaluations["fast"] += len(pixels)

        def work(start, stop):
            index, value = pixels[start:stop], values[start:stop]
            delta = np.einsum("mk,mku->mu", value - self.flat[index], self.split.weight[index])
            out[start:stop] = self._head(self.z + delta)
        self._parallel(len(pixels), max(1, CACHE_BYTES // (8 * units * (pixels.shape[1] + 3))), desc, work)
        return out

    def _edited(self, pixels: np.ndarray, values: np.ndarray) -> np.ndarray:
        batch = np.repeat(self.flat[None], len(pixels), axis=0)
        np.put_along_axis(batch, pixels, values, axis=1)
        return batch.reshape((len(pixels), *self.image.shape))

    # ---- every pixel at every level ----
    def pixel_levels(self, levels: np.ndarray, desc: str) -> np.ndarray:
        """(inputs, levels) target probabilities, input i set to each level in turn. `levels` is
        (L,), or (channels, L) for levels that differ by channel (per-channel normalization)."""
        levels = np.atleast_2d(np.asarray(levels, dtype=np.float64))
        count, channels, per_input = self.flat.size, len(levels), levels.shape[1]
        if not self.fast:
            pixels = np.repeat(np.arange(count), per_input)[:, None]
            values = levels[pixels[:, 0] % channels, np.tile(np.arange(per_input), count)][:, None]
            return self.images(pixels.shape[0], lambda a, b: self._edited(pixels[a:b], values[a:b]),
                               desc).reshape(count, per_input)
        weight = self.split.weight
        out = np.empty((count, per_input))
        self.model.evaluations["fast"] += count * per_input

        def work(start, stop):
            chosen = levels[np.arange(start, stop) % channels]
            hidden = (chosen - self.flat[start:stop, None])[:, :, None] * weight[start:stop, None, :]
            hidden += self.z
            out[start:stop] = self._head(hidden.reshape(-1, weight.shape[1])).reshape(stop - start, -1)
        self._parallel(count, max(1, CACHE_BYTES // (8 * per_input * weight.shape[1])), desc, work,
                       unit_scale=per_input)
        return out

    # ---- walks from one image to the input ----
    def walks(self, start: np.ndarray, orders: np.ndarray, desc: str) -> np.ndarray:
        """(walks, inputs + 1) target probabilities: from `start`, switching inputs to the input's
        values one at a time in each row's order."""
        start, orders = start.reshape(-1), np.asarray(orders, dtype=np.int64)
        count, steps = orders.shape
        if not self.fast:
            def states(order, a, b):
                """States a..b-1 of the walk along `order`: state k has order[:k] switched."""
                batch = np.repeat(start[None], b - a, axis=0)
                batch[:, order[:a]] = self.flat[order[:a]]
                for row in range(1, b - a):
                    batch[row:, order[a + row - 1]] = self.flat[order[a + row - 1]]
                return batch.reshape((b - a, *self.image.shape))
            return np.stack([self.images(steps + 1, lambda a, b, order=order: states(order, a, b), desc)
                             for order in orders])
        weight = self.split.weight
        size = max(1, CACHE_BYTES // (8 * weight.shape[1] * 3))
        out = np.empty((count, steps + 1))
        self.model.evaluations["fast"] += count * (steps + 1)

        def walk(row, _):
            order, z = orders[row], start @ weight + self.split.bias
            out[row, 0] = self._head(z[None])[0]
            for first in range(0, steps, size):
                taken = order[first:first + size]
                hidden = z + np.cumsum((self.flat[taken] - start[taken])[:, None] * weight[taken], axis=0)
                out[row, first + 1:first + 1 + taken.size] = self._head(hidden)
                z = hidden[-1]
        self._parallel(count, 1, desc, walk, unit_scale=steps)
        return out

    # ---- segments switched to a fill ----
    def segments(self, labels: np.ndarray, masks: np.ndarray, fill: np.ndarray, desc: str,
                 all_classes: bool = False) -> np.ndarray:
        """Probabilities with segment s kept where masks[j, s] is 1 and replaced by `fill` where 0.

        `labels` (H, W) numbers the segments 0..S-1; `fill` is an image like the input.
        """
        masks = np.asarray(masks, dtype=np.float64)
        per_pixel = np.repeat(labels.reshape(-1), self.image.shape[-1])  # segment of each input
        fill = np.broadcast_to(fill, self.image.shape).reshape(-1)
        if not self.fast:
            def composed(a, b):
                keep = masks[a:b][:, per_pixel]
                return (keep * self.flat + (1 - keep) * fill).reshape((b - a, *self.image.shape))
            return self.images(len(masks), composed, desc, all_classes=all_classes)
        # Each segment's switch to the fill, as one row: the sum over its inputs of dx_i * W[i].
        change = fill - self.flat
        deltas = np.stack([change[per_pixel == s] @ self.split.weight[per_pixel == s] for s in range(masks.shape[1])])
        out = np.empty((len(masks), self.model.num_classes) if all_classes else len(masks))
        self.model.evaluations["fast"] += len(masks)

        def work(start, stop):
            probabilities = self.split.head(self.z + (1 - masks[start:stop]) @ deltas)
            out[start:stop] = probabilities if all_classes else probabilities[:, self.target]
        self._parallel(len(masks), max(1, CACHE_BYTES // (8 * (masks.shape[1] + 3 * deltas.shape[1]))), desc, work)
        return out

    # ---- shared ----
    def _head(self, hidden: np.ndarray) -> np.ndarray:
        return self.split.head(hidden)[:, self.target]

    def _full_pass_size(self, count: int, max_batch: int | None) -> int:
        per_image = self.flat.nbytes * 4  # the batch, its mask or source, the framework's copy, activations
        return max(1, min((self.options.memory_mb << 20) // per_image, max_batch or count))

    def _bar(self, total: int, desc: str) -> tqdm:
        return progress_bar(total, desc, "eval", self.options.progress)

    def _chunks(self, count: int, size: int, desc: str):
        """(start, stop) spans of at most `size`, in order, advancing the progress bar."""
        with self._bar(count, desc) as bar:
            for start in range(0, count, size):
                stop = min(count, start + size)
                yield start, stop
                bar.update(stop - start)

    def _parallel(self, count: int, size: int, desc: str, work: Callable[[int, int], None], unit_scale: int = 1):
        """Runs work(start, stop) over spans of at most `size` on the worker threads."""
        spans = [(start, min(count, start + size)) for start in range(0, count, size)]
        workers = self.options.workers or os.cpu_count() or 1
        with self._bar(count * unit_scale, desc) as bar, self.split.one_thread(), ThreadPoolExecutor(workers, initializer=self.split.prepare_worker) as pool:
            futures = {pool.submit(work, start, stop): stop - start for start, stop in spans}
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future] * unit_scale)

