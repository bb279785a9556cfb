"""Singular-value decomposition of conv / linear layers (SVF, NeurIPS 2022), and the way back.

A conv with weight W (Cout, Cin/g, kh, kw) is viewed per group as the matrix W_g (Cout/g, Cin/g*kh*kw) = U S V^T and
replaced by three steps (the slides' Algorithm 1, the authors' ``SVD_Conv2d``):

    conv_V   Cin -> r, the original kernel size / stride / padding / dilation / groups / padding_mode, no bias
    * vector_S, shape (1, r, 1, 1)
    conv_U   1x1, r -> Cout, the original groups and bias

State-dict keys (``conv_V.weight``, ``vector_S``, ``conv_U.weight``, ``conv_U.bias``; linear: ``fc_V.weight``,
``vector_S`` (1, r), ``fc_U.weight``, ``fc_U.bias``) are those of the authors' ``model/svf.py``, so their checkpoints
load into these modules. Differences from their code, on purpose:
  * Linear layers receive the decomposed weights (theirs are left at random init, a latent bug);
  * the SVD runs in float64 and singular vectors get a deterministic sign;
  * grouped convs are decomposed per group (theirs treat the grouped weight as one matrix, which is wrong);
    depthwise convs are skipped, as theirs are;
  * rank ``full`` (exact) is the default; ``official`` reproduces their floor-to-a-multiple-of-4 rule.
"""
from __future__ import annotations

import fnmatch
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

RANK_RULES = ("full", "official")
KERNEL_KINDS = ("1x1", "kxk")
OFFICIAL_RANK_BASE = 4


def choose_rank(n: int, rule: str = "full") -> int:
    """Kept rank for a matrix of full rank ``n``: ``full`` keeps n; ``official`` is the authors' ``round_to_nearest``
    (ratio 1.0, base 4, rank 1 allowed): floor(n / 4) * 4 clipped to [1, n], e.g. 27 -> 24, 3 -> 1."""
    if rule == "full":
        return n
    if rule == "official":
        return min(max((n // OFFICIAL_RANK_BASE) * OFFICIAL_RANK_BASE, 1), n)
    raise ValueError(f"unknown rank rule {rule!r}; choose one of {RANK_RULES}")


def _svd(matrices: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched truncated SVD in float64 of (g, m, n) matrices -> U (g, m, r), S (g, r), Vh (g, r, n).

    Signs are made deterministic (largest-magnitude entry of each right singular vector positive), so singular
    vectors do not flip between LAPACK builds or devices."""
    device = matrices.device
    work = matrices.detach().to("cpu" if device.type == "mps" else device, torch.float64)  # MPS has no float64
    if work.shape[-2] < work.shape[-1]:  # LAPACK is several times faster on tall matrices: W^T = V S U^T
        vt, s, ut = torch.linalg.svd(work.transpose(-1, -2), full_matrices=False)
        u, vh = ut.transpose(-1, -2), vt.transpose(-1, -2)
    else:
        u, s, vh = torch.linalg.svd(work, full_matrices=False)
    u, s, vh = u[..., :rank], s[..., :rank], vh[..., :rank, :]
    pivot = vh.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(torch.gather(vh, -1, pivot))
    sign[sign == 0] = 1.0
    return u * sign.transpose(-1, -2), s, vh * sign


def _prefer_merged(pixels: float, cout: int, ck: int, r_total: int, r_group: int) -> bool:
    """True when one conv with the merged weight (plus the cost of merging it) is cheaper than the three steps.

    Multiply-adds: merged = P*Cout*Ck + Cout*r_g*Ck; three-step = P*(r*Ck + Cout*r_g), Ck = Cin/g*kh*kw."""
    return pixels * cout * ck + cout * r_group * ck < pixels * (r_total * ck + cout * r_group)


def _scaled(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """h * S in h's dtype: under bf16/fp16 autocast the product of a low-precision activation and the float32
    master S would be promoted to a float32 activation (autocast leaves ``mul`` alone); the cast keeps it in the
    autocast dtype and S's gradient still accumulates in float32."""
    return h * s.to(h.dtype)


def _factors_frozen(*tensors: torch.Tensor) -> bool:
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


class _SVDLayer(nn.Module):
    """What both SVD layers share: the trainable singular values ``vector_S`` of shape (1, rank, ...)."""

    merge_frozen = True

    @property
    def rank(self) -> int:
        return self.vector_S.shape[1]

    def extra_repr(self) -> str:
        return f"rank={self.rank}"

    def _as_plain(self, plain: nn.Module, u: nn.Module, v: nn.Module) -> nn.Module:
        """Fill a plain conv/linear with the merged weight (float64, cast back) and U's bias; it trains where any
        factor did."""
        with torch.no_grad():
            plain.weight.copy_(self.merged_weight(torch.float64))
            if u.bias is not None:
                plain.bias.copy_(u.bias)
        plain.weight.requires_grad_(any(t.requires_grad for t in (u.weight, v.weight, self.vector_S)))
        if u.bias is not None:
            plain.bias.requires_grad_(u.bias.requires_grad)
        return plain


class SVDConv2d(_SVDLayer):
    """Conv2d as conv_V -> * vector_S -> conv_U (see the module docstring).

    When no factor needs a gradient (frozen stage, or evaluation under ``no_grad``), ``forward`` runs one conv with
    the merged weight U diag(S) V^T instead, if that costs fewer multiply-adds (the merge is recomputed each call,
    so it is always in sync with the factors). Set the class attribute ``merge_frozen = False`` to disable this.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        if rank % groups:
            raise ValueError(f"SVDConv2d: rank {rank} must be a multiple of groups {groups}")
        factory = {"device": device, "dtype": dtype}
        self.conv_V = nn.Conv2d(in_channels, rank, kernel_size, stride, padding, dilation, groups, False, padding_mode,
                                **factory)
        self.vector_S = nn.Parameter(torch.ones(1, rank, 1, 1, **factory))
        self.conv_U = nn.Conv2d(rank, out_channels, 1, 1, 0, 1, groups, bias, **factory)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: str = "full") -> "SVDConv2d":
        """Decompose ``conv`` (weights copied, nothing shared); ``rank`` is a rule of :func:`choose_rank`."""
        g = conv.groups
        cout, cin_g, kh, kw = conv.weight.shape
        matrices = conv.weight.reshape(g, cout // g, cin_g * kh * kw)
        r_g = choose_rank(min(cout // g, cin_g * kh * kw), rank)
        u, s, vh = _svd(matrices, r_g)
        w = conv.weight
        new = cls(conv.in_channels, cout, conv.kernel_size, r_g * g, conv.stride, conv.padding, conv.dilation, g,
                  conv.bias is not None, conv.padding_mode, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            # group j owns output channels j*Cout/g.. and rank channels j*r_g..; conv_U/conv_V are grouped alike
            new.conv_U.weight.copy_(u.reshape(cout, r_g, 1, 1))
            new.conv_V.weight.copy_(vh.reshape(g * r_g, cin_g, kh, kw))
            new.vector_S.copy_(s.reshape(1, g * r_g, 1, 1))
            if conv.bias is not None:
                new.conv_U.bias.copy_(conv.bias)
        return new

    def merged_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """U diag(S) V^T as a conv weight (Cout, Cin/g, kh, kw), computed in ``dtype`` (default: the weights')."""
        g = self.conv_V.groups
        u, v, s = self.conv_U.weight, self.conv_V.weight, self.vector_S
        dtype = dtype or v.dtype
        cout, r_g = u.shape[0], u.shape[1]
        u = u.to(dtype).reshape(g, cout // g, r_g)
        vh = v.to(dtype).reshape(g, r_g, -1)
        w = torch.bmm(u * s.to(dtype).reshape(g, 1, r_g), vh)
        return w.reshape(cout, *v.shape[1:])

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same function (merged in float64, cast back)."""
        v, u = self.conv_V, self.conv_U
        conv = nn.Conv2d(v.in_channels, u.out_channels, v.kernel_size, v.stride, v.padding, v.dilation, v.groups,
                         u.bias is not None, v.padding_mode, device=v.weight.device, dtype=v.weight.dtype)
        return self._as_plain(conv, u, v)

    def _use_merged(self, x: torch.Tensor) -> bool:
        if not (self.merge_frozen and _factors_frozen(self.conv_U.weight, self.vector_S, self.conv_V.weight)):
            return False
        v = self.conv_V
        ck = v.weight[0].numel()
        pixels = x.numel() / x.shape[-3] / (v.stride[0] * v.stride[1])
        return _prefer_merged(pixels, self.conv_U.out_channels, ck, self.rank, self.conv_U.weight.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_merged(x):
            return self.conv_V._conv_forward(x, self.merged_weight(), self.conv_U.bias)
        return self.conv_U(_scaled(self.conv_V(x), self.vector_S))


class SVDLinear(_SVDLayer):
    """Linear as fc_V -> * vector_S -> fc_U (the authors' ``SVD_Linear`` layout, but with real weights)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.fc_V = nn.Linear(in_features, rank, False, **factory)
        self.vector_S = nn.Parameter(torch.ones(1, rank, **factory))
        self.fc_U = nn.Linear(rank, out_features, bias, **factory)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: str = "full") -> "SVDLinear":
        w = linear.weight
        r = choose_rank(min(w.shape), rank)
        u, s, vh = _svd(w.unsqueeze(0), r)
        new = cls(linear.in_features, linear.out_features, r, linear.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.fc_U.weight.copy_(u[0])
            new.fc_V.weight.copy_(vh[0])
            new.vector_S.copy_(s)
            if linear.bias is not None:
                new.fc_U.bias.copy_(linear.bias)
        return new

    def merged_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.fc_V.weight.dtype
        return (self.fc_U.weight.to(dtype) * self.vector_S.to(dtype)) @ self.fc_V.weight.to(dtype)

    def to_linear(self) -> nn.Linear:
        u, v = self.fc_U, self.fc_V
        lin = nn.Linear(v.in_features, u.out_features, u.bias is not None, device=v.weight.device,
                        dtype=v.weight.dtype)
        return self._as_plain(lin, u, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merge_frozen and _factors_frozen(self.fc_U.weight, self.vector_S, self.fc_V.weight):
            pixels = x.numel() / x.shape[-1]
            if _prefer_merged(pixels, self.fc_U.out_features, self.fc_V.in_features, self.rank, self.rank):
                return F.linear(x, self.merged_weight(), self.fc_U.bias)
        return self.fc_U(_scaled(self.fc_V(x), self.vector_S))


SVD_TYPES = (SVDConv2d, SVDLinear)


def kernel_kind(module: nn.Module) -> str:
    """``1x1`` for 1x1 convs and linear layers (as in the authors' ``skip_1x1``), ``kxk`` for any larger kernel."""
    if isinstance(module, SVDConv2d):
        module = module.conv_V
    if isinstance(module, (nn.Linear, SVDLinear)):
        return "1x1"
    if isinstance(module, nn.Conv2d):
        return "1x1" if tuple(module.kernel_size) == (1, 1) else "kxk"
    raise TypeError(f"kernel_kind: {type(module).__name__} is not a conv or linear layer")


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.in_channels == conv.groups


def _as_patterns(patterns: str | Iterable[str] | None, arg: str) -> tuple[str, ...] | None:
    if patterns is None:
        return None
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"decompose: {arg} must be glob strings, got {patterns!r}")
    return patterns


def _selected(name: str, include, exclude) -> bool:
    if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return exclude is None or not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def _replacement(child: nn.Module, rank: str) -> nn.Module | None:
    # exact types only: subclasses may override forward (e.g. weight standardisation) and would silently change
    if type(child) is nn.Conv2d and not _is_depthwise(child):
        return SVDConv2d.from_conv(child, rank)
    if type(child) is nn.Linear:
        return SVDLinear.from_linear(child, rank)
    return None


def decompose(module: nn.Module, rank: str = "full", kernels: Sequence[str] = KERNEL_KINDS,
              include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> nn.Module:
    """Replace every ``nn.Conv2d`` / ``nn.Linear`` inside ``module`` by its SVD form, in place; return the module.

    ``rank``: ``full`` (exact) or ``official`` (the authors' floor to a multiple of 4). ``kernels``: which kernel
    kinds to decompose (``1x1`` includes linear layers). ``include`` / ``exclude``: fnmatch globs on the qualified
    module name relative to ``module`` (e.g. ``"layer3.*"``); a layer is decomposed when it matches some include
    pattern (or include is None) and no exclude pattern. Depthwise convs and layers already decomposed are left
    alone. If ``module`` itself is a conv/linear, the new module is returned (it cannot be replaced in place).
    :func:`decomposed_layers` lists the result.
    """
    choose_rank(1, rank)  # validates the rule name before any work
    bad = [k for k in kernels if k not in KERNEL_KINDS]
    if bad or isinstance(kernels, str):
        raise ValueError(f"decompose: kernels must be a subset of {KERNEL_KINDS}, got {kernels!r}")
    include, exclude = _as_patterns(include, "include"), _as_patterns(exclude, "exclude")

    def wanted(name: str, m: nn.Module) -> bool:
        return kernel_kind(m) in kernels and _selected(name, include, exclude)

    if type(module) in (nn.Conv2d, nn.Linear):
        new = _replacement(module, rank) if wanted("", module) else None
        return module if new is None else new

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent._modules.items()):
            if child is None or isinstance(child, SVD_TYPES):
                continue
            name = f"{prefix}{child_name}"
            if type(child) in (nn.Conv2d, nn.Linear):
                new = _replacement(child, rank) if wanted(name, child) else None
                if new is not None:
                    setattr(parent, child_name, new)
            else:
                visit(child, name + ".")

    visit(module, "")
    return module


def decomposed_layers(module: nn.Module) -> list[str]:
    """Qualified names of the SVD layers inside ``module`` (in module order)."""
    return [name for name, m in module.named_modules() if isinstance(m, SVD_TYPES)]


def merge(module: nn.Module) -> nn.Module:
    """Fold every SVD layer back into a plain ``nn.Conv2d`` / ``nn.Linear`` (in place; returns the module, or the
    new layer when ``module`` itself is an SVD layer). Use it for fast evaluation or export."""
    if isinstance(module, SVDConv2d):
        return module.to_conv()
    if isinstance(module, SVDLinear):
        return module.to_linear()
    for name, child in list(module.named_children()):
        if isinstance(child, SVD_TYPES):
            setattr(module, name, merge(child))
        else:
            merge(child)
    return module


def singular_values(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{qualified layer name: 1-D float32 cpu copy of its S}`` for every SVD layer (for before/after snapshots)."""
    return {name: m.vector_S.detach().flatten().float().cpu().clone()
            for name, m in module.named_modules() if isinstance(m, SVD_TYPES)}


def trainable_state_dict(model: nn.Module, extra: str | Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` a fine-tune changes: every parameter with ``requires_grad``, the buffers
    of the modules owning such a parameter (e.g. a trainable BatchNorm's running stats), and every key matching an
    fnmatch pattern of ``extra`` (e.g. ``"layer*.running_*"`` when frozen BatchNorms run in train mode).
    Tensors are detached copies, so saving them does not pull in the full storage."""
    extra = (extra,) if isinstance(extra, str) else tuple(extra)
    keys: set[str] = set()
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        own = [n for n, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if own:
            keys.update(prefix + n for n in own)
            keys.update(prefix + n for n, b in mod.named_buffers(recurse=False) if b is not None)
    state = model.state_dict()
    keys.update(k for k in state if any(fnmatch.fnmatchcase(k, p) for p in extra))
    return {k: state[k].detach().clone() for k in state if k in keys}


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> list[str]:
    """Load a (partial) state from :func:`trainable_state_dict` into ``model``; return the loaded keys.

    Shapes must match (e.g. an ``official``-rank S does not fit a ``full``-rank model). With ``strict`` every key must
    exist in the model, otherwise unknown keys are ignored. Keys absent from ``state`` keep their current values."""
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    if unexpected and strict:
        raise KeyError(f"load_trainable_state_dict: {len(unexpected)} keys not in the model, e.g. {unexpected[:5]} "
                       f"(was the model decomposed with the same layers?)")
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError("load_trainable_state_dict: shape mismatch (same rank rule?): " + "; ".join(wrong[:5]))
    keys = [k for k in state if k in own]
    model.load_state_dict({k: state[k] for k in keys}, strict=False)
    return keys


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["RANK_RULES", "KERNEL_KINDS", "SVDConv2d", "SVDLinear", "SVD_TYPES", "choose_rank", "decompose",
           "decomposed_layers", "merge", "singular_values", "trainable_state_dict", "load_trainable_state_dict",
           "kernel_kind", "count_parameters"]
