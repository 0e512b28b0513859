"""The perturbation engine: every perturbation and sampling method evaluates the model through it.

It evaluates the explained class's probability on perturbed copies of one input, in
memory-bounded chunks, with a progress bar. Six kinds of perturbation cover the methods:

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
probabilities).

Windowed path: on a convolutional PyTorch network (or a Keras model's PyTorch twin), edits,
pixel levels and walks whose changes fit in a small window go through the model's WindowedNet
(heatkit/model/windows.py), which recomputes each layer only where the window reaches. Other
models, and edits that change most inputs, take batched full forward passes; `fast=False`
forces them. Fast-path chunks run on a few threads (numpy and the frameworks release the GIL);
each writes its own slice of the output, so results do not depend on the scheduling.

The options, the meter and the count of evaluations are the run's (heatkit/base/run_state.py):
one progress bar per method, and one warning line before a method whose evaluations, timed as
they start, would run long.

Inputs are indexed in the flattened (H, W, C) order of the image.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from functools import cached_property
from typing import Callable

import numpy as np

from heatkit.base.evaluated import Evaluated
from heatkit.base.run_state import EngineOptions, current
from heatkit.base.windowed_path import WindowedPath

CACHE_BYTES = 2 << 20  # fast-path working set per chunk: PDA measured fastest at 2 MB (L2 is 512 KB a core)
PROBE = 8  # evaluations in the first chunk of full passes: a slow model is timed on few
# The activations of one batch of full passes, at most, unless that is fewer than FULL_PASS_IMAGES images:
# larger batches ran slower per image (captum's Occlusion of a 64 x 64 CNN took twice as long at 256 images
# a batch as at 64, whose activations are 58 MB), and smaller ones too (ResNet-18 at 224, channels-last:
# 26 ms an image at 2, 21 ms at 4 to 32)
FULL_PASS_BYTES = 64 << 20
FULL_PASS_IMAGES = 8
# The windowed path takes one step of every walk per evaluation: with fewer walks than this, each
# evaluation pays the graph's Python overhead for a handful of rows (one Shapley walk over a
# 32 x 32 RGB ResNet-18 input took 32 s, and 2 s as batched full passes)
WINDOWED_WALKS = 8
# A batch of gradient passes (the gradient family's noisy copies and path points, and images given
# together): at most GRADIENT_IMAGES images, and fewer where their forward passes' activations pass
# GRADIENT_BYTES. Smaller and larger batches ran slower (ResNet-50 at 224 on 2 cores, 64 images: 34 to
# 39 s at once, 26 to 28 s in batches of 16 or 32, 33 to 36 s in batches of 11, 30 to 34 s of 8).
GRADIENT_IMAGES = 16
GRADIENT_BYTES = 2 << 30


def gradient_batch(model) -> int:
    """Images a batch of gradient passes of the model takes."""
    return max(1, min(GRADIENT_IMAGES, GRADIENT_BYTES // max(1, model.activation_bytes)))


def in_gradient_batches(model, batch: np.ndarray, targets, compute) -> np.ndarray:
    """compute(images, their targets) -> an NCHW array, over each of the model's batches of gradient
    passes of an NHWC batch (`targets` one class, or one per image), joined as NHWC."""
    size = gradient_batch(model)
    targets = np.broadcast_to(np.asarray(targets), (len(batch),))
    return np.concatenate([compute(batch[start:start + size], targets[start:start + size])
                           for start in range(0, len(batch), size)]).transpose(0, 2, 3, 1)


class Engine:
    """Evaluations of one input's perturbations, for class `target`: its probability, or its logit
    where options.output says so (every path then gives logits: full passes, the windowed path,
    and the fast path where the model's affine split has a logits head)."""

    def __init__(self, model: "Evaluated", image: np.ndarray, target: int, options: EngineOptions | None = None):
        self.state = current()  # the run's: its meter, and its count of evaluations
        options = options or self.state.options
        self.model, self.image, self.target, self.options = model, image, target, options
        self.flat = image.reshape(-1)
        self.logits = options.output == "logit"
        self.split = model.affine_split() if options.fast else None
        if self.split is not None and self.logits:
            self.split = None if self.split.logits is None else replace(self.split, rest=self.split.logits)
        if self.split is not None:
            self.z = self.flat @ self.split.weight + self.split.bias

    @cached_property
    def windowed(self) -> WindowedPath:
        """The windowed path of this input (heatkit/base/windowed_path.py)."""
        return WindowedPath(self)

    @property
    def fast(self) -> bool:
        return self.split is not None

    def probability(self) -> float:
        """The target probability of the unperturbed input, on the same path as the perturbations."""
        if self.fast:
            return float(self._rest(self.z[None])[0])
        return float(self.evaluate_full(self.image[None])[0, self.target])

    # ---- arbitrary images: full forward passes ----
    def images(self, count: int, make: Callable[[int, int], np.ndarray], desc: str,
               all_classes: bool = False, max_batch: int | None = None) -> np.ndarray:
        """Probabilities of `make(start, stop)`'s images, (count,) for the target or (count, K)."""
        def run(start, stop):
            probabilities = self.evaluate_full(make(start, stop))
            return probabilities if all_classes else probabilities[:, self.target]
        return self.passes(count, run, desc, max_batch)

    def passes(self, count: int, run: Callable[[int, int], np.ndarray], desc: str,
               max_batch: int | None = None) -> np.ndarray:
        """`run(start, stop)`'s outputs, concatenated: each call is one forward pass of its
        stop - start inputs (input images, or a layer's altered activations), in spans that fit the
        memory bound."""
        outputs = []
        self.state.evaluations["full"] += count
        for start, stop in self.chunks(count, self._full_pass_size(count, max_batch), desc):
            outputs.append(run(start, stop))
        return np.concatenate(outputs) if outputs else np.empty((0,))

    # ---- soft masks ----
    def masks(self, count: int, make: Callable[[int, int], np.ndarray], fill: float, desc: str,
              max_batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Target probabilities of x * m + fill * (1 - m) for the (H, W) masks `make(start, stop)`,
        and the probability-weighted sum of the masks."""
        probabilities, weighted = np.empty(count), np.zeros(self.image.shape[:2])
        self.state.evaluations["full"] += count
        for start, stop in self.chunks(count, self._full_pass_size(count, max_batch), desc):
            masks = make(start, stop)
            batch = masks[..., None] * (self.image - fill)
            batch += fill
            batch_probabilities = self.evaluate_full(batch)[:, self.target]
            probabilities[start:stop] = batch_probabilities
            weighted += np.tensordot(batch_probabilities, masks, axes=1)
        return probabilities, weighted

    # ---- sparse edits ----
    def edits(self, pixels: np.ndarray, values: np.ndarray, desc: str) -> np.ndarray:
        """Target probability when inputs `pixels[j]` are set to `values[j]`, for each row j."""
        pixels = np.asarray(pixels, dtype=np.int64)
        values = np.broadcast_to(values, pixels.shape)
        if not self.fast or pixels.shape[1] > self.options.max_fast_fraction * self.flat.size:
            size = self.windowed.size_for(pixels)
            if size is not None:
                return self.windowed.edits(len(pixels), lambda a, b: (pixels[a:b], values[a:b]), size, desc)
            return self.images(len(pixels), lambda a, b: self._edited(pixels[a:b], values[a:b]), desc)
        units = self.split.weight.shape[1]
        out = np.empty(len(pixels))
        self.state.evaluations["fast"] += len(pixels)

        def work(start, stop):
            index, value = pixels[start:stop], values[start:stop]
            delta = np.einsum("mk,mku->mu", value - self.flat[index], self.split.weight[index])
            out[start:stop] = self._rest(self.z + delta)
        self._parallel(len(pixels), max(1, CACHE_BYTES // (8 * units * (pixels.shape[1] + 3))), desc, work)
        return out

    def regions(self, labels: np.ndarray, fill: np.ndarray, desc: str) -> np.ndarray:
        """Target probability with each region of `labels` ((H, W), numbered 0..R-1) set to `fill`
        (one value, or one a channel), one region at a time: as edits, regions of the same size
        together, so that the fast and windowed paths take them."""
        fill = np.broadcast_to(np.asarray(fill, dtype=np.float64).reshape(-1), self.image.shape[-1:])
        members = np.repeat(labels.reshape(-1), self.image.shape[-1])  # the region of each input
        inputs = np.argsort(members, kind="stable")
        sizes = np.bincount(members)
        by_region = np.split(inputs, np.cumsum(sizes)[:-1])
        out = np.empty(sizes.size)
        for size in np.unique(sizes):
            same = np.flatnonzero(sizes == size)
            pixels = np.stack([by_region[region] for region in same])
            out[same] = self.edits(pixels, fill[pixels % fill.size], desc)
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
        if not self.fast and self.windowed.takes_pixels:
            def span(start, stop):
                """Rows start..stop of the (input, level) pairs, input-major."""
                row = np.arange(start, stop)
                return row[:, None] // per_input, levels[row // per_input % channels, row % per_input][:, None]
            return self.windowed.edits(count * per_input, span, (1, 1), desc).reshape(count, per_input)
        if not self.fast:
            pixels = np.repeat(np.arange(count), per_input)[:, None]
            values = levels[pixels[:, 0] % channels, np.tile(np.arange(per_input), count)][:, None]
            return self.images(pixels.shape[0], lambda a, b: self._edited(pixels[a:b], values[a:b]),
                               desc).reshape(count, per_input)
        weight = self.split.weight
        out = np.empty((count, per_input))
        self.state.evaluations["fast"] += count * per_input

        def work(start, stop):
            chosen = levels[np.arange(start, stop) % channels]
            hidden = (chosen - self.flat[start:stop, None])[:, :, None] * weight[start:stop, None, :]
            hidden += self.z
            out[start:stop] = self._rest(hidden.reshape(-1, weight.shape[1])).reshape(stop - start, -1)
        self._parallel(count, max(1, CACHE_BYTES // (8 * per_input * weight.shape[1])), desc, work,
                       unit_scale=per_input)
        return out

    # ---- walks from one image to the input ----
    def walks(self, start: np.ndarray, orders: np.ndarray, desc: str, points: np.ndarray | None = None,
              groups: np.ndarray | None = None) -> np.ndarray:
        """(walks, points + 1) target probabilities: from `start`, switching inputs to the input's
        values one at a time in each row's order, at the start and after each of `points` switches
        (increasing; default: after every switch). With `groups`, the group number (0..G-1) of each
        input, a step switches a group's inputs together, and the orders order groups."""
        start, orders = start.reshape(-1), np.asarray(orders, dtype=np.int64)
        count, steps = orders.shape
        every = points is None
        points = np.arange(1, steps + 1) if every else np.asarray(points, dtype=np.int64)
        height, width, channels = self.image.shape
        pixels = groups is not None and np.array_equal(groups, np.repeat(np.arange(height * width), channels))
        if every and (groups is None or pixels) and not self.fast and self.windowed.takes_pixels and \
                count >= WINDOWED_WALKS:
            return self.windowed.walks(start, orders, desc, pixels)
        if not self.fast:
            features = start.size if groups is None else groups.max() + 1
            switched_at = np.full((count, features), steps + 1)  # the step that switches each input (or group)
            np.put_along_axis(switched_at, orders, np.arange(1, steps + 1)[None], axis=1)
            if groups is not None:
                switched_at = switched_at[:, groups]
            after = np.concatenate([[0], points])

            def states(a, b):
                """States a..b-1 of all walks in a row: state k of a walk has its first after[k] inputs switched."""
                rows = np.arange(a, b)
                switched = switched_at[rows // after.size] <= after[rows % after.size][:, None]
                return np.where(switched, self.flat, start).reshape((b - a, *self.image.shape))
            return self.images(count * after.size, states, desc).reshape(count, after.size)
        weight = self.split.weight
        if groups is None:
            def step_changes(taken):
                return (self.flat[taken] - start[taken])[:, None] * weight[taken]
        else:
            group_changes = self._changes_by_group(self.flat - start, groups)

            def step_changes(taken):
                return group_changes[taken]
        size = max(1, CACHE_BYTES // (8 * weight.shape[1] * 3))
        out = np.empty((count, points.size + 1))
        self.state.evaluations["fast"] += count * (points.size + 1)

        def walk(row, _):
            order, z = orders[row], start @ weight + self.split.bias
            out[row, 0] = self._rest(z[None])[0]
            for first in range(0, steps, size):
                taken = order[first:first + size]
                hidden = z + np.cumsum(step_changes(taken), axis=0)
                wanted = np.flatnonzero((points > first) & (points <= first + taken.size))
                if wanted.size:
                    out[row, 1 + wanted] = self._rest(hidden[points[wanted] - first - 1])
                z = hidden[-1]
        self._parallel(count, 1, desc, walk, unit_scale=points.size)
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
            kept = masks != 0

            def composed(a, b):  # one pass over the batch (the masks' arithmetic took four)
                return np.where(kept[a:b][:, per_pixel], self.flat, fill).reshape((b - a, *self.image.shape))
            return self.images(len(masks), composed, desc, all_classes=all_classes)
        deltas = self._changes_by_group(fill - self.flat, per_pixel, masks.shape[1])  # each segment set to the fill
        out = np.empty((len(masks), self.model.num_classes) if all_classes else len(masks))
        self.state.evaluations["fast"] += len(masks)

        def work(start, stop):
            probabilities = self.split.rest(self.z + (1 - masks[start:stop]) @ deltas)
            out[start:stop] = probabilities if all_classes else probabilities[:, self.target]
        self._parallel(len(masks), max(1, CACHE_BYTES // (8 * (masks.shape[1] + 3 * deltas.shape[1]))), desc, work)
        return out

    # ---- shared ----
    def _changes_by_group(self, change: np.ndarray, groups: np.ndarray, count: int | None = None) -> np.ndarray:
        """(groups, units): the change of the first layer's output when each group's inputs change by
        `change`, the sum over its inputs of dx_i * W[i], as one sparse product."""
        from scipy.sparse import csr_matrix

        count = groups.max() + 1 if count is None else count
        by_group = csr_matrix((change, (groups, np.arange(change.size))), (count, change.size))
        return np.asarray(by_group @ self.split.weight)

    def evaluate_full(self, batch: np.ndarray) -> np.ndarray:
        """A full pass's (batch, classes) probabilities, or logits (see EngineOptions.output)."""
        return self.model.logits(batch) if self.logits else self.model.probabilities(batch)

    def _rest(self, hidden: np.ndarray) -> np.ndarray:
        return self.split.rest(hidden)[:, self.target]

    def _full_pass_size(self, count: int, max_batch: int | None) -> int:
        # The batch, its mask or source, the framework's copy, and every operator's output (twice: a
        # convolution's workspace comes on top)
        per_image = self.flat.nbytes * 3 + 2 * self.model.activation_bytes
        fitting = min((self.options.memory_mb << 20) // per_image,
                      max(FULL_PASS_IMAGES, FULL_PASS_BYTES // max(1, self.model.activation_bytes)))
        return max(1, min(fitting, max_batch or count))

    def chunks(self, count: int, size: int, desc: str, first: int = PROBE):
        """(start, stop) spans of at most `size` in order, the first of at most `first` (it times
        the rest), advancing the meter."""
        with self.state.metered(self.options, count, desc) as meter:
            start = 0
            while start < count:
                stop = min(count, start + (min(size, first) if start == 0 else size))
                yield start, stop
                meter.update(stop - start)
                start = stop

    def _parallel(self, count: int, size: int, desc: str, work: Callable[[int, int], None], unit_scale: int = 1):
        """Runs work(start, stop) over spans of at most `size` on the worker threads."""
        spans = [(start, min(count, start + size)) for start in range(0, count, size)]
        workers = self.options.workers or os.cpu_count() or 1
        with self.state.metered(self.options, count * unit_scale, desc) as meter, self.split.one_thread(), \
                ThreadPoolExecutor(workers, initializer=self.split.prepare_worker) as pool:
            futures = {pool.submit(work, start, stop): stop - start for start, stop in spans}
            for future in as_completed(futures):
                future.result()
                meter.update(futures[future] * unit_scale)

