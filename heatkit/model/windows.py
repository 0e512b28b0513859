"""Exact incremental evaluation of a PyTorch network for inputs that differ from a cached one in a
window (Krypton: Nakandala et al., SIGMOD 2019, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations").

The unperturbed input runs once and every node of the network's torch.fx graph keeps its
output. A batch of perturbations, each a window of new values at its own position (all of one
size), then goes through the graph as windows: each node recomputes only the part of its output
that its input's window can change, on a slab of its cached input with the window pasted in,
and passes that window on. A convolution or pooling grows the window by its kernel and dilation
and shrinks it by its stride; elementwise layers (activations, BatchNorm at inference) keep it;
additions, multiplications and concatenations of two windowed maps take the union of the
windows. Every other node, and every node whose window would cover more than `max_fraction` of
its map, gets its inputs whole (the cached map with the window pasted in) and runs as it is:
from there on, the network runs in full, batched, as in an ordinary forward pass. The arithmetic
is the network's own on the same numbers, so the result equals a full forward pass up to the
order of float sums inside a convolution (tests hold it to 1e-5 in float32, 1e-12 in float64).

In `walk` mode each row of the batch has its own cache, and every evaluation writes its windows
into it: the next perturbation of that row is a change from the last one (Shapley walks switch
one input after another).

Krypton's approximate mode is opt-in (`approximate`, a fraction of a map's side): each
convolution and pooling recomputes at most that fraction of its output's rows and columns,
around the middle of the span the change reaches, and leaves the rest as cached. The change at
a window's edges fades as it spreads, so little is lost; walks stay exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from heatkit.base import frameworks
from heatkit.model.graph_patterns import kind_of


@dataclass
class Window:
    """Rows top..top+h and columns left..left+w of a (B, C, H, W) map, for each row of a batch;
    outside it, the map is its cached value."""

    top: object  # (B,) long tensor
    left: object  # (B,) long tensor
    values: object  # (B, C, h, w) tensor


@dataclass
class Flat:
    """A windowed map flattened to (B, C * H * W), as a Linear head reads it."""

    window: Window
    source: object  # the fx node of the map


class WindowedNet:
    """A traced PyTorch module (see traced()), evaluated on windowed changes of cached inputs."""

    def __init__(self, graph, max_fraction: float = 0.5, approximate: float = 0.0):
        torch = frameworks.torch()
        self.torch, self.F = torch, torch.nn.functional
        self.graph, self.max_fraction, self.approximate = graph, max_fraction, approximate
        self._cropping = False  # the approximate mode's crop applies in this pass (never in a walk)
        self.modules = dict(graph.named_modules())
        self.nodes = list(graph.graph.nodes)
        # the image; other placeholders are keyword arguments of forward() (timm's is_causal), at their defaults
        self.input = next(node for node in self.nodes if node.op == "placeholder")
        self.cache: dict = {}  # node -> its output on the cached input(s)
        self.padded: dict = {}  # (node, padding, fill) -> its cached output, padded

    # ---- the cached input ----
    def remember(self, inputs) -> None:
        """Runs `inputs` (1 or B rows, NCHW) and keeps every node's output."""
        self.cache, self.padded, live = {}, {}, {}
        with self.torch.no_grad():
            for node in self.nodes:
                if node.op == "output":
                    break
                live[node] = inputs if node is self.input else self._run(node, self._arguments(node, live))
                # a copy: an in-place operation later in the graph (ReLU(inplace=True)) changes the live one
                self.cache[node] = _copy(live[node])

    # ---- windows ----
    def evaluate(self, top, left, patch, walk: bool = False):
        """The network's output for each row: the cached input with `patch` (B, C, h, w) at
        (top, left). With `walk`, the cache has one row per batch row and keeps the change."""
        values = {}
        self._cropping = bool(self.approximate) and not walk  # a walk's caches would keep a crop's error
        with self.torch.no_grad():
            for node in self.nodes:
                if node is self.input:
                    values[node] = Window(top, left, patch)
                elif node.op == "output":
                    result = self._whole(self._arguments(node, values)[0][0], node.args[0], len(top))
                    break
                elif node.op != "get_attr" and any(arg in values for arg in node.all_input_nodes):
                    values[node] = self._windowed(node, values, len(top))
                # else the node does not depend on the input: its cached value holds
            if walk:  # after the pass: the heads compute their change from the cache as it was
                for node, value in values.items():
                    self._keep(node, value)
                self.padded = {}
        return result

    def _windowed(self, node, values, batch: int):
        """The node's output: a Window where its rule allows one, else whole."""
        args, kwargs = self._arguments(node, values)
        kind = kind_of(node, self.modules)
        if kind == "elementwise" and isinstance(args[0], Window) and not _windows_in((args[1:], kwargs)):
            window = args[0]
            return Window(window.top, window.left, self._run(node, ((window.values, *args[1:]), kwargs)))
        if kind == "flatten" and isinstance(args[0], Window):
            return Flat(args[0], node.args[0])
        if kind == "linear" and isinstance(args[0], Flat) and not _windows_in((args[1:], kwargs)):
            return self._linear(node, args[0], self._linear_weight(node, args, kwargs))
        if kind == "mean" and isinstance(args[0], Window):
            return self._mean(node, args[0])
        if kind == "spatial" and len(args) == 1 and isinstance(args[0], Window) and not kwargs:
            result = self._spatial(node, args[0])
            if result is not None:
                return result
        if kind == "binary" and len(args) == 2 and not kwargs and all(
                _scalar(arg) or self._is_map(arg, source, node) for arg, source in zip(args, node.args)):
            result = self._union(node, list(args), list(node.args), lambda parts: self._run(node, (tuple(parts), {})))
            if result is not None:
                return result
        if kind == "cat" and self._cat_dim(node) == 1 and all(self._is_map(arg, source, node)
                                                              for arg, source in zip(args[0], node.args[0])):
            result = self._union(node, list(args[0]), list(node.args[0]), lambda parts: self.torch.cat(parts, 1))
            if result is not None:
                return result
        # A cached value is never handed to a node whole but as a copy: the node may change it in place.
        whole = tuple(self._whole(arg, source, batch) for arg, source in zip(args, node.args))
        return self._run(node, (whole, {key: self._whole(value, node.kwargs[key], batch)
                                        for key, value in kwargs.items()}))

    def _cat_dim(self, node) -> int:
        return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)

    # ---- convolutions and pooling ----
    def _spatial(self, node, window: Window) -> Window | None:
        """The output window of a Conv2d, MaxPool2d or AvgPool2d, computed on a slab of its input."""
        module = self.modules[node.target]
        name = type(module).__name__
        pair = lambda value: tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # noqa: E731
        if name == "Conv2d":
            if module.padding_mode != "zeros":
                return None
            kernel, stride, dilation = pair(module.kernel_size), pair(module.stride), pair(module.dilation)
            padding = _conv_padding(module.padding, kernel, dilation)
            fill = 0.0

            def run(slab):
                return self.F.conv2d(slab, module.weight, module.bias, stride, 0, dilation, module.groups)
        else:
            if getattr(module, "ceil_mode", False) or (name == "AvgPool2d" and not module.count_include_pad and
                                                       pair(module.padding) != (0, 0)):
                return None
            kernel, padding = pair(module.kernel_size), [(side, side) for side in pair(module.padding)]
            stride = pair(module.stride if module.stride is not None else module.kernel_size)
            dilation = pair(getattr(module, "dilation", 1))
            fill = -float("inf") if name == "MaxPool2d" else 0.0

            def run(slab):
                if name == "MaxPool2d":
                    return self.F.max_pool2d(slab, kernel, stride, 0, dilation)
                return self.F.avg_pool2d(slab, kernel, stride, 0, divisor_override=module.divisor_override)
        output_size = self.cache[node].shape[2:]
        height, width = window.values.shape[2:]
        rows = self._output_span(window.top, height, kernel[0], stride[0], padding[0][0], dilation[0], output_size[0])
        cols = self._output_span(window.left, width, kernel[1], stride[1], padding[1][0], dilation[1], output_size[1])
        if self._cropping:
            rows, cols = self._cropped(rows, output_size[0]), self._cropped(cols, output_size[1])
        if rows[1] * cols[1] > self.max_fraction * output_size[0] * output_size[1]:
            return None
        slab_size = ((rows[1] - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1,
                     (cols[1] - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1)
        padded = self._padded(node.args[0], (*padding[1], *padding[0]), fill)
        # in padded coordinates, the slab starts at output row * stride; the window at top + padding
        slab = self._slab(padded, rows[0] * stride[0], cols[0] * stride[1], slab_size,
                          Window(window.top + padding[0][0], window.left + padding[1][0], window.values))
        return Window(rows[0], cols[0], run(slab))

    def _cropped(self, span, outputs: int):
        """Krypton's projective-field threshold: a span of more than `approximate` of the output's
        side cut to that, around its middle; the change beyond it is dropped."""
        first, count = span
        side = max(1, math.ceil(self.approximate * outputs))
        if count <= side:
            return span
        return self.torch.clamp(first + (count - side) // 2, max=outputs - side), side

    def _padded(self, source, padding: tuple, fill: float):
        """The cached map of `source` with a border, made once per cached input."""
        key = (source, padding, fill)
        if key not in self.padded:
            self.padded[key] = self.F.pad(self.cache[source], padding, value=fill)
        return self.padded[key]

    def _output_span(self, start, size: int, kernel: int, stride: int, padding: int, dilation: int, outputs: int):
        """(first output index (B,), count) of the outputs that inputs start..start+size can change."""
        torch = self.torch
        first = torch.clamp(torch.div(start + padding - dilation * (kernel - 1) + stride - 1, stride,
                                      rounding_mode="floor"), min=0)
        last = torch.clamp(torch.div(start + size - 1 + padding, stride, rounding_mode="floor"), max=outputs - 1)
        count = max(1, int((last - first).max()) + 1)  # a stride may skip a window: it changes nothing
        return torch.clamp(first, max=outputs - count), count

    # ---- heads: a change of the window changes an affine map's output by the change's image ----
    def _change(self, window: Window, source):
        """The window's values minus the cached map's there."""
        return window.values - self._slab(self.cache[source], window.top, window.left, window.values.shape[2:], None)

    def _linear_weight(self, node, args, kwargs):
        """The weight of a Linear module, or of a call of F.linear (a bias is in the cached output)."""
        if node.op == "call_module":
            return self.modules[node.target].weight
        return args[1] if len(args) > 1 else kwargs["weight"]

    def _linear(self, node, flat: Flat, weight):
        """A linear layer on a flattened windowed map: its cached output plus the weights of the
        window's inputs times their change."""
        torch = self.torch
        window = flat.window
        channels, height, width = self.cache[flat.source].shape[1:]
        change = self._change(window, flat.source)
        if len(weight) * change[0, 0].numel() > height * width:  # the window's weights gathered outweigh the map
            whole = change.new_zeros((len(change), channels, height, width))
            self._paste(whole, window.top, window.left, change)
            return self.cache[node] + self.F.linear(whole.flatten(1), weight)
        weight = weight.view(-1, channels, height, width)
        rows = window.top[:, None] + torch.arange(window.values.shape[2], device=window.top.device)
        cols = window.left[:, None] + torch.arange(window.values.shape[3], device=window.top.device)
        columns = weight[:, :, rows[:, :, None], cols[:, None, :]]  # (outputs, C, B, h, w)
        return self.cache[node] + torch.einsum("ocbhw,bchw->bo", columns, change)

    def _mean(self, node, window: Window):
        """The spatial mean of a windowed map: its cached mean plus the window's change over the area."""
        source = self.cache[node.args[0]]
        change = self._change(window, node.args[0]).sum((2, 3)) / (source.shape[2] * source.shape[3])
        cached = self.cache[node]
        return cached + change.view(len(change), *cached.shape[1:])

    # ---- two maps ----
    def _is_map(self, arg, source, node) -> bool:
        """A windowed map, or one the perturbation leaves alone (its cached value), of the node's size."""
        shape = self.cache[node].shape
        if isinstance(arg, Window):
            return len(shape) == 4
        unchanged = isinstance(source, self.torch.fx.Node) and arg is self.cache.get(source)
        return unchanged and arg.dim() == 4 and len(shape) == 4 and arg.shape[2:] == shape[2:]

    def _union(self, node, args: list, sources: list, combine) -> Window | None:
        """combine() of the arguments on the union of their windows (a whole argument taken there)."""
        torch = self.torch
        windows = [arg for arg in args if isinstance(arg, Window)]
        if not windows:  # unchanged maps: computed whole
            return None
        top = torch.stack([w.top for w in windows]).min(0).values
        left = torch.stack([w.left for w in windows]).min(0).values
        bottom = torch.stack([w.top + w.values.shape[2] for w in windows]).max(0).values
        right = torch.stack([w.left + w.values.shape[3] for w in windows]).max(0).values
        height, width = self.cache[node].shape[2:]
        size = (int((bottom - top).max()), int((right - left).max()))
        if size[0] * size[1] > self.max_fraction * height * width:
            return None
        top, left = torch.clamp(top, max=height - size[0]), torch.clamp(left, max=width - size[1])
        parts = []
        for arg, source in zip(args, sources):
            if _scalar(arg):
                parts.append(arg)
            else:
                cached = self.cache[source] if isinstance(arg, Window) else arg
                parts.append(self._slab(cached, top, left, size, arg if isinstance(arg, Window) else None))
        return Window(top, left, combine(parts))

    # ---- slabs, wholes and the cache ----
    def _slab(self, cached, top, left, size: tuple[int, int], window: Window | None):
        """Rows top..top+size[0], columns left..left+size[1] of the cached map (1 or B rows), with
        the window's values pasted in where they fall inside (a window may overhang a slab where a
        stride skips its edge: those values change nothing there)."""
        torch = self.torch
        batch = len(top)
        rows = top[:, None] + torch.arange(size[0], device=top.device)
        cols = left[:, None] + torch.arange(size[1], device=left.device)
        # one spare row and column, where a window's overhanging values are written and dropped
        slab = cached.new_empty((batch, cached.shape[1], size[0] + 1, size[1] + 1))
        if cached.shape[0] == 1:
            slab[:, :, :size[0], :size[1]] = cached[0][:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)
        else:
            slab[:, :, :size[0], :size[1]] = cached[torch.arange(batch)[:, None, None], :, rows[:, :, None],
                                                    cols[:, None, :]].permute(0, 3, 1, 2)
        if window is not None:
            inner_rows = window.top[:, None] - top[:, None] + torch.arange(window.values.shape[2], device=top.device)
            inner_cols = window.left[:, None] - left[:, None] + torch.arange(window.values.shape[3], device=top.device)
            inner_rows = torch.where((inner_rows >= 0) & (inner_rows < size[0]), inner_rows, size[0])
            inner_cols = torch.where((inner_cols >= 0) & (inner_cols < size[1]), inner_cols, size[1])
            slab[torch.arange(batch)[:, None, None], :, inner_rows[:, :, None], inner_cols[:, None, :]] = \
                window.values.permute(0, 2, 3, 1)
        return slab[:, :, :size[0], :size[1]]

    def _paste(self, target, top, left, values) -> None:
        """Writes values (B, C, h, w) into target (B, C, H, W) at (top, left) per row, inside it."""
        torch = self.torch
        rows = top[:, None] + torch.arange(values.shape[2], device=top.device)
        cols = left[:, None] + torch.arange(values.shape[3], device=left.device)
        batch = torch.arange(len(top), device=top.device)[:, None, None]
        target[batch, :, rows[:, :, None], cols[:, None, :]] = values.permute(0, 2, 3, 1)

    def _whole(self, value, source, batch: int):
        """An argument as the node's own code takes it: a Window as its whole map."""
        if isinstance(value, Flat):
            return self._whole(value.window, value.source, batch).flatten(1)
        if isinstance(value, Window):
            cached = self.cache[source]
            whole = cached.expand(batch, *cached.shape[1:]).clone()
            self._paste(whole, value.top, value.left, value.values)
            return whole
        if isinstance(value, (list, tuple)) and isinstance(source, (list, tuple)):
            return type(value)(self._whole(item, inner, batch) for item, inner in zip(value, source))
        if isinstance(source, self.torch.fx.Node) and isinstance(value, self.torch.Tensor) and \
                value is self.cache.get(source):
            return value.expand(batch, *value.shape[1:]).clone() if value.dim() and value.shape[0] == 1 else \
                _copy(value)
        return value

    def _keep(self, node, value) -> None:
        """Writes a walk's new value of the node into its cache (one row per walk)."""
        if isinstance(value, Flat):
            return  # the map it flattens keeps its change
        if isinstance(value, Window):
            self._paste(self.cache[node], value.top, value.left, value.values)
        elif isinstance(value, self.torch.Tensor):
            self.cache[node] = value.clone()

    def _arguments(self, node, values):
        """The node's (args, kwargs), each input node replaced by its value in `values`, else its cached one."""
        def look_up(item):
            if isinstance(item, self.torch.fx.Node):
                return values[item] if item in values else self.cache[item]
            if isinstance(item, (list, tuple)):
                return type(item)(look_up(inner) for inner in item)
            return item
        return tuple(look_up(arg) for arg in node.args), {key: look_up(value) for key, value in node.kwargs.items()}

    def _run(self, node, arguments):
        args, kwargs = arguments
        if node.op == "placeholder":
            return node.args[0]  # its default
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            value = self.graph
            for part in node.target.split("."):
                value = getattr(value, part)
            return value
        raise ValueError(f"unexpected node {node.op}")


def _conv_padding(padding, kernel: tuple, dilation: tuple) -> list[tuple[int, int]]:
    """A Conv2d's (before, after) zero padding of rows and columns; "same" pads the odd one after,
    as PyTorch does."""
    if padding == "valid":
        return [(0, 0), (0, 0)]
    if padding == "same":
        totals = [step * (size - 1) for size, step in zip(kernel, dilation)]
        return [(total // 2, total - total // 2) for total in totals]
    return [(side, side) for side in (padding if isinstance(padding, (tuple, list)) else (padding, padding))]


def _copy(value):
    return value.clone() if hasattr(value, "clone") else value


def _scalar(value) -> bool:
    return isinstance(value, (int, float))


def _windows_in(value) -> bool:
    """Whether a Window is anywhere in nested arguments."""
    if isinstance(value, Window):
        return True
    if isinstance(value, (list, tuple)):
        return any(_windows_in(item) for item in value)
    if isinstance(value, dict):
        return any(_windows_in(item) for item in value.values())
    return False
