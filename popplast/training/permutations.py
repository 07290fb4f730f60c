"""Which weights a network's hidden-unit permutations act on, found by tracing it (ALGORITHMS.md §12).

Permuting the output units of a conv or linear layer (its weight's rows and its bias), the normalisation
layer that follows (its parameters and running statistics) and the next layer's input columns leaves the
network's function unchanged. Layers joined by a residual addition share one permutation; a concatenation
composes its inputs' permutations. `permutation_spec` walks the torch.fx graph of a model and records, for
every state-dict entry, which permutation group each of its axes belongs to.

Soundness first: an operation the walk does not know (attention, a reshape other than flattening, a grouped
convolution, GroupNorm, a parameter used outside a known layer) pins every permutation that reaches it, so the
permutations that remain are those known to leave the function unchanged; the model's outputs are pinned too.
tests/test_permutations.py checks that random permutations leave outputs unchanged on every architecture
popplast ships and on models with residual additions and concatenations.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import fx, nn


class NotTraceable(RuntimeError):
    """The model's permutation structure cannot be read (torch.fx cannot trace it)."""


@dataclass(frozen=True)
class Segment:
    """`size` units of one permutation group along an axis, each unit `repeat` consecutive indices long (a
    conv's channel flattened with its H×W positions before a linear layer); group None: not permuted."""

    group: int | None
    size: int
    repeat: int = 1

    @property
    def length(self) -> int:
        return self.size * self.repeat


@dataclass
class PermutationSpec:
    """`groups`: each free permutation group's number of units; `axes`: per state-dict key, per axis, the
    segments the axis is made of (None: the axis is not permuted)."""

    groups: dict[int, int] = field(default_factory=dict)
    axes: dict[str, tuple[tuple[Segment, ...] | None, ...]] = field(default_factory=dict)

    def touching(self, group: int) -> Iterator[tuple[str, int, int, Segment]]:
        """(key, axis, offset, segment) for every place `group` acts."""
        for key, axes in self.axes.items():
            for axis, segments in enumerate(axes):
                offset = 0
                for seg in segments or ():
                    if seg.group == group:
                        yield key, axis, offset, seg
                    offset += seg.length


# a tensor's permuted axis: (dim, segments); None when no permutation acts on it
Layout = tuple[int, tuple[Segment, ...]]

_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
# pooling acts on the spatial dimensions of a (batch, channel, ...) tensor: equivariant only there
_POOL_MODULES = {
    1: (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d),
    2: (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
    3: (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d),
}
_F = nn.functional
_PASS_FUNCTIONS = {
    torch.relu,
    torch.tanh,
    torch.sigmoid,
    _F.relu,
    _F.relu6,
    _F.gelu,
    _F.silu,
    _F.tanh,
    _F.sigmoid,
    _F.leaky_relu,
    _F.elu,
    _F.hardswish,
    _F.hardsigmoid,
    _F.dropout,
}
_POOL_FUNCTIONS = {_F.max_pool2d: 2, _F.avg_pool2d: 2, _F.adaptive_avg_pool2d: 2, _F.adaptive_max_pool2d: 2}
_PASS_METHODS = {"relu", "relu_", "tanh", "sigmoid", "contiguous", "clone", "detach", "float"}
_BINARY = {operator.add, operator.iadd, operator.sub, operator.mul, operator.imul, torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub"}
_SHAPE_ONLY = {"size", "dim", "numel"}  # read a tensor's shape, not its values
_SHAPE_ATTRIBUTES = {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad"}


def permutation_spec(model: nn.Module, example: torch.Tensor) -> PermutationSpec:
    """The permutation groups of `model` (traced on a copy, in eval mode, with `example` as its input)."""
    from torch.fx.passes.shape_prop import ShapeProp

    traced_model = copy.deepcopy(model).eval()
    try:
        graph = fx.symbolic_trace(traced_model)
        with torch.no_grad():
            ShapeProp(graph).propagate(example)
        return _Walk(graph, _aliases(model)).spec()
    except Exception as e:  # torch.fx raises many types for code it cannot follow
        raise NotTraceable(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _aliases(model: nn.Module) -> list[list[str]]:
    """State-dict keys that name one tensor (tied weights): they must be permuted alike, or not at all."""
    named: dict[int, list[str]] = {}
    for key, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        named.setdefault(id(tensor), []).append(key)
    return [keys for keys in named.values() if len(keys) > 1]


class _Walk:
    def __init__(self, graph: fx.GraphModule, aliases: list[list[str]]) -> None:
        self.graph = graph
        self.aliases = aliases
        self.read: set[str] = set()  # tensors the graph reads directly (get_attr), outside any known layer
        self.parent: dict[int, int] = {}  # union-find over group ids
        self.size: dict[int, int] = {}
        self.pinned: set[int] = set()
        self.axes: dict[str, list[tuple[Segment, ...] | None]] = {}
        self.layout: dict[fx.Node, Layout | None] = {}

    # groups
    def new(self, size: int) -> int:
        g = len(self.parent)
        self.parent[g], self.size[g] = g, size
        return g

    def root(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        if self.size[ra] != self.size[rb] or rb in self.pinned:
            self.pinned.add(ra)

    def pin(self, layout: Layout | None) -> None:
        for seg in layout[1] if layout else ():
            if seg.group is not None:
                self.pinned.add(self.root(seg.group))

    def merge(self, a: tuple[Segment, ...], b: tuple[Segment, ...]) -> bool:
        """Tie two axes segment by segment; False when their structures differ."""
        if [(s.size, s.repeat) for s in a] != [(s.size, s.repeat) for s in b]:
            return False
        for x, y in zip(a, b):
            if x.group is None or y.group is None:
                for g in (x.group, y.group):
                    if g is not None:
                        self.pinned.add(self.root(g))
            else:
                self.union(x.group, y.group)
        return True

    def assign(self, key: str, axes: list[tuple[Segment, ...] | None]) -> None:
        """Record which groups act on `key`'s axes; a tensor used twice ties its uses' groups."""
        if key not in self.axes:
            self.axes[key] = axes
            return
        for i, (old, new) in enumerate(zip(self.axes[key], axes)):
            if old is None or new is None:
                for segs in (old, new):
                    self.pin((0, segs) if segs else None)
                self.axes[key][i] = None
            elif not self.merge(old, new):
                self.pin((0, old))
                self.pin((0, new))
                self.axes[key][i] = None

    # the walk
    def spec(self) -> PermutationSpec:
        for node in self.graph.graph.nodes:
            if node.op == "output":
                for arg in _nodes(node.args):
                    self.pin(self.layout.get(arg))
                continue
            self.layout[node] = self.visit(node)
        self._tie_aliases()
        for key in self.read:  # used outside a known layer: its values must stay where they are
            for segments in self.axes.get(key, ()):
                self.pin((0, segments) if segments else None)
        groups, axes = {}, {}
        for key, per_axis in self.axes.items():
            resolved: list[tuple[Segment, ...] | None] = []
            for segments in per_axis:
                if segments is not None:
                    segments = tuple(Segment(self._free(s.group), s.size, s.repeat) for s in segments)
                    for s in segments:
                        if s.group is not None:
                            groups[s.group] = s.size
                    if all(s.group is None for s in segments):
                        segments = None
                resolved.append(segments)
            if any(s is not None for s in resolved):
                axes[key] = tuple(resolved)
        return PermutationSpec(groups, axes)

    def _tie_aliases(self) -> None:
        for keys in self.aliases:
            assigned = [k for k in keys if k in self.axes]
            if not assigned:
                continue
            if len(assigned) < len(keys) or any(k in self.read for k in keys):
                self.read.update(keys)  # one of its names is used where the walk cannot follow it
            for key in assigned[1:]:
                self.assign(assigned[0], self.axes[key])
            for key in keys:
                self.axes[key] = self.axes[assigned[0]]

    def _free(self, g: int | None) -> int | None:
        if g is None:
            return None
        r = self.root(g)
        return None if r in self.pinned else r

    def visit(self, node: fx.Node) -> Layout | None:
        if node.op == "placeholder":
            return None
        if node.op == "get_attr":
            self.read.add(str(node.target))
            return None
        # every rule below reads its tensors from the positional arguments: a tensor passed by keyword, or
        # a second tensor a rule does not expect, makes the operation unknown
        if _nodes(node.kwargs):
            return self.unknown(node)
        if node.op == "call_module":
            return self.module(node, self.graph.get_submodule(str(node.target)))
        if node.op in ("call_function", "call_method"):
            return self.function(node)
        return self.unknown(node)

    def unknown(self, node: fx.Node) -> None:
        for arg in _nodes((node.args, node.kwargs)):
            self.pin(self.layout.get(arg))
        return None

    def module(self, node: fx.Node, m: nn.Module) -> Layout | None:
        name = str(node.target)
        if len(node.args) != 1 or not isinstance(node.args[0], fx.Node):
            return self.unknown(node)
        x = self.layout.get(node.args[0])
        ndim = _ndim(node.args[0])
        if isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd):
            if ndim != m.weight.dim():  # unbatched input: its channels are dimension 0
                return self.unknown(node)
            if x is not None and x[0] != 1:
                self.pin(x)
                x = None
            return self.conv(name, m, x)
        if isinstance(m, nn.Linear):
            if x is not None and (ndim is None or x[0] != ndim - 1):
                self.pin(x)
                x = None
            return self.linear(name, m, x, ndim)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if x is None or x[0] != 1:
                self.pin(x)
                return None
            keys = ("weight", "bias", "running_mean", "running_var")
            for k in keys:
                if getattr(m, k, None) is not None:
                    self.assign(f"{name}.{k}", [x[1]])
            return x
        if isinstance(m, nn.LayerNorm):
            if x is None or len(m.normalized_shape) != 1 or ndim is None or x[0] != ndim - 1:
                self.pin(x)
                return None
            for k in ("weight", "bias"):
                if getattr(m, k, None) is not None:
                    self.assign(f"{name}.{k}", [x[1]])
            return x
        if isinstance(m, _PASS_MODULES):
            return x
        for spatial, pools in _POOL_MODULES.items():
            if isinstance(m, pools):
                return self.pooled(node, x, ndim, spatial)
        if isinstance(m, nn.Flatten):
            return self.flatten(node.args[0], x, m.start_dim, m.end_dim)
        return self.unknown(node)

    def conv(self, name: str, m: Any, x: Layout | None) -> Layout | None:
        depthwise = m.groups == m.in_channels == m.out_channels
        if m.groups != 1 and not depthwise:
            self.pin(x)
            return None
        if depthwise:  # channel i in, channel i out: the input's permutation carries through
            if x is None:
                return None
            self.assign(f"{name}.weight", [x[1]] + [None] * (m.weight.dim() - 1))
            if m.bias is not None:
                self.assign(f"{name}.bias", [x[1]])
            return x
        out = (Segment(self.new(m.out_channels), m.out_channels),)
        incoming = x[1] if x is not None and _length(x[1]) == m.in_channels else None
        if x is not None and incoming is None:
            self.pin(x)
        self.assign(f"{name}.weight", [out, incoming] + [None] * (m.weight.dim() - 2))
        if m.bias is not None:
            self.assign(f"{name}.bias", [out])
        return (1, out)

    def linear(self, name: str, m: nn.Linear, x: Layout | None, ndim: int | None) -> Layout | None:
        out = (Segment(self.new(m.out_features), m.out_features),)
        incoming = x[1] if x is not None and _length(x[1]) == m.in_features else None
        if x is not None and incoming is None:
            self.pin(x)
        self.assign(f"{name}.weight", [out, incoming])
        if m.bias is not None:
            self.assign(f"{name}.bias", [out])
        return (ndim - 1, out) if ndim else None

    def flatten(self, arg: Any, x: Layout | None, start: int, end: int) -> Layout | None:
        shape = _shape(arg)
        if x is None or shape is None:
            return None
        start, end = start % len(shape), end % len(shape)
        if x[0] < start:
            return x
        if x[0] != start:
            self.pin(x)
            return None
        span = 1
        for d in shape[start + 1 : end + 1]:
            span *= d
        return (start, tuple(Segment(s.group, s.size, s.repeat * span) for s in x[1]))

    def pooled(self, node: fx.Node, x: Layout | None, ndim: int | None, spatial: int) -> Layout | None:
        if x is None:
            return None
        if x[0] != 1 or ndim != spatial + 2:  # pooling over the permuted dimension
            return self.unknown(node)
        return x

    def function(self, node: fx.Node) -> Layout | None:
        target = node.target
        args = node.args
        first = self.layout.get(args[0]) if args and isinstance(args[0], fx.Node) else None
        method = node.op == "call_method"
        if target is getattr:
            return None if len(args) > 1 and args[1] in _SHAPE_ATTRIBUTES else self.unknown(node)
        if method and target in _SHAPE_ONLY:
            return None
        if target in _PASS_FUNCTIONS or (method and target in _PASS_METHODS) or target in _POOL_FUNCTIONS:
            if not args or not isinstance(args[0], fx.Node) or _nodes(args[1:]):
                return self.unknown(node)
            if target in _POOL_FUNCTIONS:
                return self.pooled(node, first, _ndim(args[0]), _POOL_FUNCTIONS[target])  # type: ignore[index]
            return first
        if target in _BINARY or (node.op == "call_method" and target in _BINARY_METHODS):
            return self.binary(node)
        if target is torch.flatten or (method and target == "flatten"):
            if not args or not isinstance(args[0], fx.Node):
                return self.unknown(node)
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(args[0], first, int(start), int(end))
        if target is torch.cat and args:
            return self.cat(node)
        return self.unknown(node)

    def binary(self, node: fx.Node) -> Layout | None:
        """An elementwise operation of two operands: permuted alike (tied), or one a scalar or broadcast
        along the permuted axis."""
        if len(node.args) != 2 or _nodes(node.args[2:]):
            return self.unknown(node)
        operands = [a for a in node.args[:2] if isinstance(a, fx.Node)]
        layouts = [self.layout.get(a) for a in operands]
        shape = _shape(node)
        if shape is None:
            return self.unknown(node)
        known = [(a, x) for a, x in zip(operands, layouts) if x is not None]
        if not known:
            return None
        out = known[0][1]
        dim = out[0] - len(shape)  # from the right, as broadcasting aligns shapes
        for a, x in zip(operands, layouts):
            if x is None:
                s = _shape(a)
                if s is not None and len(s) >= -dim and s[dim] != 1:  # unpermuted values along the axis
                    return self.unknown(node)
            elif x[0] - len(_shape(a) or ()) != dim or not self.merge(out[1], x[1]):
                return self.unknown(node)
        return out

    def cat(self, node: fx.Node) -> Layout | None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = _shape(node)
        if not isinstance(tensors, (list, tuple)) or shape is None:
            return self.unknown(node)
        dim = int(dim) % len(shape)
        segments: list[Segment] = []
        for t in tensors:
            x = self.layout.get(t) if isinstance(t, fx.Node) else None
            s = _shape(t)
            if s is None:
                return self.unknown(node)
            if x is None:
                segments.append(Segment(None, s[dim]))
            elif x[0] != dim:
                return self.unknown(node)
            else:
                segments.extend(x[1])
        return (dim, tuple(segments))


def _nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _ndim(node: Any) -> int | None:
    shape = _shape(node)
    return None if shape is None else len(shape)


def _length(segments: tuple[Segment, ...]) -> int:
    return sum(s.length for s in segments)
