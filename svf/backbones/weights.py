"""Load ImageNet weights into our backbones (or into any model whose backbone stages are ``layer0..layer4``).

Four source layouts:
  * ``svf``: our own keys ``layer0..layer4.*`` (a saved backbone or model, e.g. the demo's stand-in pretraining);
    keys outside layer0..4 are an error.
  * ``resnet_v2``: PSPNet/semseg ``resnet50_v2.pth`` (what PFENet, BAM and the SVF repo load): deep stem
    ``conv1, bn1, conv2, bn2, conv3, bn3`` + ``layer1..4``; ``fc.*`` is ignored. Target: ``stem='deep'``.
    The stem maps to ``layer0.{0,1,3,4,6,7}`` (ReLUs sit at 2, 5, 8 and the max-pool at 9).
  * ``torchvision_resnet``: torchvision ``resnet50`` (7x7 ``conv1`` + ``bn1`` + ``layer1..4``; ``fc.*`` ignored).
    Target: ``stem='standard'`` (``layer0.0`` = conv1, ``layer0.1`` = bn1). The deep stem has different shapes
    (3x3 convs, 128 output channels), so torchvision weights cannot initialise the authors' deep-stem ResNet.
  * ``torchvision_vgg``: torchvision ``vgg16_bn``: ``features.N.*`` goes to the stage holding index N
    (layer0 = 0-6, layer1 = 7-13, layer2 = 14-23, layer3 = 24-33, layer4 = 34-42); ``classifier.*`` is ignored.

Loading is strict: every missing or unexpected key and every shape mismatch raises an error that lists them. The
only tolerated gap is ``num_batches_tracked`` buffers absent from old checkpoints (listed in the report).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .base import STAGES
from .vgg import STAGE_BOUNDS

LAYOUTS = ("svf", "resnet_v2", "torchvision_resnet", "torchvision_vgg")
_V2_STEM = {"conv1": 0, "bn1": 1, "conv2": 3, "bn2": 4, "conv3": 6, "bn3": 7}
_TV_STEM = {"conv1": 0, "bn1": 1}
_IGNORED = {"svf": (), "resnet_v2": ("fc.",), "torchvision_resnet": ("fc.",), "torchvision_vgg": ("classifier.",)}


@dataclass
class LoadReport:
    """What a strict load did: keys loaded, source keys ignored on purpose, target keys filled from other source
    keys (e.g. BAM's layer*p from layer*), target buffers left as they were."""

    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    untouched_buffers: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors; ignored {len(self.ignored)} source keys "
                f"{self.ignored[:6]}{'...' if len(self.ignored) > 6 else ''}; filled {len(self.filled)} "
                f"keys{' (' + self.filled[0] + ', ...)' if self.filled else ''}; "
                f"{len(self.untouched_buffers)} num_batches_tracked buffers not in the source")


def read_state_dict(source, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A state dict from a path or a mapping: unwraps ``{'state_dict': ...}`` / ``{'model': ...}`` and strips a
    ``module.`` prefix that every key carries (DataParallel/DDP saves). Loads with ``weights_only=True``."""
    if isinstance(source, (str, Path)):
        from ..files import torch_load

        source = torch_load(source, what, "check where it came from and fetch it again")
    if not isinstance(source, Mapping):
        raise TypeError(f"{what}: expected a state dict (mapping), got {type(source).__name__}")
    for wrapper in ("state_dict", "model", "state"):
        if wrapper in source and isinstance(source[wrapper], Mapping):
            source = source[wrapper]
            break
    state = {str(k): v for k, v in source.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{what} holds no tensors (keys: {list(source)[:10]})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                hint: str = "") -> LoadReport:
    """Load ``state`` into ``module``; raise listing missing / unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state)
    untouched = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in state if k not in own)
    bad_shape = [f"{k}: source {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatches: {_listing(bad_shape)}")
    if problems:
        raise RuntimeError(f"{what} does not fit {type(module).__name__}:\n  " + "\n  ".join(problems)
                           + (f"\n  hint: {hint}" if hint else ""))
    module.load_state_dict(dict(state), strict=False)
    return LoadReport(loaded=sorted(state), untouched_buffers=untouched)


def _listing(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("layer0.") for k in state):
        return "svf"
    if any(k.startswith("features.") for k in state):
        return "torchvision_vgg"
    if "conv2.weight" in state and "conv3.weight" in state:
        return "resnet_v2"
    if "conv1.weight" in state:
        return "torchvision_resnet"
    raise ValueError(f"cannot tell the weight layout from keys {list(state)[:8]}; pass layout= one of {LAYOUTS}")


def map_imagenet_keys(state: Mapping[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename ImageNet-checkpoint keys to ``layerK.*``; returns (mapped, ignored source keys)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    mapped, ignored = {}, []
    stem = _V2_STEM if layout == "resnet_v2" else _TV_STEM
    for key, value in state.items():
        if key.startswith(_IGNORED[layout]):
            ignored.append(key)
            continue
        head, _, rest = key.partition(".")
        if layout == "svf":
            mapped[key] = value
        elif layout == "torchvision_vgg":
            m = re.match(r"features\.(\d+)\.(.+)$", key)
            if m is None:
                mapped[key] = value  # reported as unexpected by strict_load
                continue
            idx = int(m.group(1))
            stage = next((s for s, (lo, hi) in enumerate(STAGE_BOUNDS) if lo <= idx < hi), None)
            if stage is None:
                mapped[key] = value
                continue
            mapped[f"{STAGES[stage]}.{idx - STAGE_BOUNDS[stage][0]}.{m.group(2)}"] = value
        elif head in stem:
            mapped[f"layer0.{stem[head]}.{rest}"] = value
        else:
            mapped[key] = value  # layer1..4 keep their names
    return mapped, ignored


def load_imagenet_weights(target: nn.Module, source, layout: str = "auto", what: str = "ImageNet weights"
                          ) -> LoadReport:
    """Load ImageNet weights (path or state dict) into ``target``'s ``layer0..layer4``.

    ``target`` is a backbone or any model with those attributes; only keys under layer0..4 are compared, the rest
    of the model is left alone. Raises on any missing/unexpected key or shape mismatch, listing them.
    """
    state = read_state_dict(source, what)
    layout = detect_layout(state) if layout == "auto" else layout
    mapped, ignored = map_imagenet_keys(state, layout)
    stages = nn.Module()
    for name in STAGES:
        if not hasattr(target, name):
            raise AttributeError(f"{type(target).__name__} has no {name}; cannot load backbone weights")
        stages.add_module(name, getattr(target, name))
    hint = {"svf": "the weights come from a backbone with other settings",
            "resnet_v2": "resnet_v2 weights need stem='deep'",
            "torchvision_resnet": "torchvision ResNet weights need stem='standard' (7x7 stem)",
            "torchvision_vgg": "vgg16_bn weights need backbone 'vgg16' at width 1.0"}[layout]
    report = strict_load(stages, mapped, f"{what} ({layout} layout)", hint=hint + " (and width 1.0)")
    report.ignored = sorted(ignored)
    return report


def load_backbone_weights(target: nn.Module, state, source: str | None = None, layout: str = "auto") -> LoadReport:
    """:func:`load_imagenet_weights` with ``state`` a path or state dict and ``source`` naming it in errors."""
    name = source or (str(state) if isinstance(state, (str, Path)) else None)
    return load_imagenet_weights(target, state, layout=layout, what=f"weights {name}" if name else "weights")


__all__ = ["LAYOUTS", "LoadReport", "read_state_dict", "strict_load", "detect_layout", "map_imagenet_keys",
           "load_imagenet_weights", "load_backbone_weights"]
