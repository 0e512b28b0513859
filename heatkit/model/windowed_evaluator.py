"""The windowed path as the perturbation engine sees it (heatkit/model/windows.py does the
arithmetic): numpy batches of patches in, probabilities out, and the cost of a window of a size,
which decides whether the path pays."""
from __future__ import annotations

import numpy as np

from heatkit.base import frameworks
from heatkit.model.windows import WindowedNet


class WindowedEvaluator:
    """The perturbation engine's view of a WindowedNet: NHWC numpy batches in, probabilities out,
    and what a window of a size costs (counted once per network, size and settings: facts of the
    model, not of a call)."""

    def __init__(self, net, graph, max_fraction: float, approximate: float = 0.0):
        self.net, self.windowed = net, WindowedNet(graph, max_fraction, approximate)
        self.settings = (max_fraction, approximate)  # with a size, what a cost counted once depends on

    def remember(self, images: np.ndarray) -> None:
        """Caches the network on `images`: one (shared by every row) or one per walk."""
        self.windowed.remember(self.net.tensor(images))

    def probabilities(self, top: np.ndarray, left: np.ndarray, patches: np.ndarray, walk: bool = False,
                      logits: bool = False) -> np.ndarray:
        """(B, classes) probabilities (or `logits`) for the cached input(s) with patches (B, h, w, C)
        at rows top, columns left."""
        torch = self.net.torch
        as_index = lambda values: torch.as_tensor(np.asarray(values, dtype=np.int64), device=self.net.device)  # noqa
        output = self.windowed.evaluate(as_index(top), as_index(left), self.net.tensor(patches), walk)
        return self.net.array(output if logits else self.net.probabilities_of(output))

    def flop_ratio(self, size: tuple[int, int]) -> float:
        """How many times fewer multiply-adds (convolutions and matrix products, torch's count) a
        change of a window of `size` at the input's center costs than a full forward pass: the
        windowed path's limit, for a window that grows the most."""
        return self.net.once(("flop ratio", size, self.settings), lambda: self._flop_ratio(size))

    def bytes_per_row(self, size: tuple[int, int]) -> int:
        """Bytes one perturbation of a window of `size` makes on its way through the network,
        measured as the growth from two rows to four (the cached input must be one image)."""
        return self.net.once(("bytes per row", size, self.settings), lambda: self._bytes_per_row(size))

    def _flop_ratio(self, size: tuple[int, int]) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        height, width, channels = self.net.input_shape

        def flops(run) -> int:
            with FlopCounterMode(display=False) as counter:
                run()
            return counter.get_total_flops()
        full = flops(lambda: self.net.probabilities(np.zeros((1, height, width, channels))))
        top, left = np.array([(height - size[0]) // 2]), np.array([(width - size[1]) // 2])
        windowed = flops(lambda: self.probabilities(top, left, np.zeros((1, *size, channels))))
        return full / max(1, windowed)

    def _bytes_per_row(self, size: tuple[int, int]) -> int:
        height, width, channels = self.net.input_shape

        def rows(count):
            top, left = np.arange(count) % (height - size[0] + 1), np.arange(count) % (width - size[1] + 1)
            patches = np.zeros((count, *size, channels))
            return frameworks.allocated_bytes(lambda: self.probabilities(top, left, patches))
        rows(1)  # the padded maps, made once
        return max(1, (rows(4) - rows(2)) // 2)
