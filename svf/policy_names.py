"""Fine-tune policy names: their grammar, parsing and checking, without torch (the Snakefile checks
config/tables.yaml with it while it builds the DAG); :mod:`svf.policy` applies a policy to a model.

The grammar is described in :mod:`svf.policy`; every error is a ConfigError that names the spec, the valid forms
and the nearest valid name.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from itertools import combinations
from typing import Mapping

from .errors import ConfigError

KINDS = ("frozen", "svf", "bn", "part")
DEFAULT_LAYERS = (2, 3, 4)
_L = r"l(?=[0-4])0?1?2?3?4?"
_GRAMMAR = re.compile(
    rf"^(?:(?P<frozen>frozen)|(?P<full>full)|(?P<bn>bn)(?:-(?P<bn_layers>{_L}))?"
    rf"|(?P<svf>svf)(?:-(?P<svf_layers>{_L}))?(?:-(?P<sub>(?=[USV])U?S?V?))?(?P<svf_bn>-bn)?"
    rf"|(?P<part>part)(?:-(?P<part_layers>{_L}))?(?:-(?P<kernel>3x3|1x1))?)(?P<bntrain>-bntrain)?$")
#: every spec ``parse_policy`` accepts as a string (canonical or not); use it in config schemas and wildcard
#: constraints. The grammar above without its group names, so the two cannot drift apart.
POLICY_PATTERN = re.sub(r"\(\?P<\w+>", "(?:", _GRAMMAR.pattern)
VALID_FORMS = ("frozen", "svf[-l<digits 0-4>][-<U?S?V?>][-bn]", "bn[-l<digits>]", "full",
               "part[-l<digits>][-3x3|-1x1]", "any of these + '-bntrain'")
#: canonical names of every row of Tables 1, 2 and 4-8 (plus original PFENet's frozen backbone with BN in train mode)
PAPER_POLICIES = ("frozen", "frozen-bntrain", "svf", "bn", "svf-bn", "full", "part-l234", "part-l34", "part-l4",
                  "part-l234-3x3", "part-l234-1x1", "svf-U", "svf-V", "svf-US", "svf-SV", "svf-UV", "svf-USV",
                  "svf-l4", "svf-l34", "svf-l1234")
_KERNEL_NAMES = {"3x3": "kxk", "1x1": "1x1"}


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``layers``: stages whose selected tensors train; ``subspaces``: subset of U, S, V (svf);
    ``bn_affine``: BatchNorm gamma/beta of ``layers`` train; ``kernels``: conv kinds of a conventional fine-tune
    (``1x1`` / ``kxk``); ``bn_train``: BatchNorm of layer0..4 in train mode."""

    kind: str
    layers: tuple[int, ...] = ()
    subspaces: tuple[str, ...] = ()
    bn_affine: bool = False
    kernels: tuple[str, ...] = ()
    bn_train: bool = False
    include: tuple[str, ...] = ()  # module-name globs; empty: the stages ``layers`` of layer0..4

    @property
    def uses_svd(self) -> bool:
        return self.kind == "svf"

    @property
    def name(self) -> str:
        if self.include:  # not a table policy: kind, subspaces/kernels, then the globs
            detail = {"svf": "-" + "".join(self.subspaces) + ("-bn" if self.bn_affine else ""), "bn": "",
                      "frozen": "", "part": "" if len(self.kernels) == 2 else
                      "-" + ("3x3" if self.kernels == ("kxk",) else "1x1")}[self.kind]
            return f"{self.kind}{detail}@{','.join(self.include)}" + ("-bntrain" if self.bn_train else "")
        layers = "l" + "".join(map(str, self.layers))
        if self.kind == "frozen":
            base = "frozen"
        elif self.kind == "bn":
            base = "bn" if self.layers == DEFAULT_LAYERS else f"bn-{layers}"
        elif self.kind == "svf":
            base = "svf" + ("" if self.layers == DEFAULT_LAYERS else f"-{layers}")
            sub = "".join(self.subspaces)
            base += ("" if sub == "S" else f"-{sub}") + ("-bn" if self.bn_affine else "")
        elif self.layers == (1, 2, 3, 4) and len(self.kernels) == 2:
            base = "full"
        else:
            base = f"part-{layers}" + ("" if len(self.kernels) == 2 else
                                       "-" + ("3x3" if self.kernels == ("kxk",) else "1x1"))
        return base + ("-bntrain" if self.bn_train else "")

    @property
    def description(self) -> str:
        """What trains, in words (tables and figures): e.g. "S of layers 2-4", "3×3 convs of layers 2-4"."""
        if self.include:
            where = ", ".join(self.include)
        elif len(self.layers) > 1 and self.layers == tuple(range(self.layers[0], self.layers[-1] + 1)):
            where = f"layers {self.layers[0]}-{self.layers[-1]}"
        else:
            where = ("layer " if len(self.layers) == 1 else "layers ") + ", ".join(map(str, self.layers))
        if self.kind == "frozen":
            text = "frozen backbone"
        elif self.kind == "bn":
            text = f"BN of {where}"
        elif self.kind == "svf":
            text = " + ".join(self.subspaces) + (" + BN" if self.bn_affine else "") + f" of {where}"
        elif self.name.removesuffix("-bntrain") == "full":
            text = "full fine-tuning"
        else:
            convs = {("kxk",): "3×3 convs", ("1x1",): "1×1 convs"}.get(tuple(self.kernels), "all convs")
            text = f"{convs} of {where}"
        return text + (", BN in train mode" if self.bn_train else "")

    @property
    def extra_state(self) -> tuple[str, ...]:
        """State-dict patterns a checkpoint needs besides the trainable tensors (BN statistics drift in train mode);
        pass them as ``extra`` to :func:`svf.decompose.trainable_state_dict`."""
        if not self.bn_train:
            return ()
        from .backbones.base import STAGES  # torch: only where a policy meets a model

        scopes = tuple(f"{g}*" for g in self.include) or tuple(f"{s}.*" for s in STAGES)
        return tuple(f"{s}{b}" for s in scopes for b in ("running_mean", "running_var", "num_batches_tracked"))

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"Policy: kind must be one of {KINDS}, got {self.kind!r}")
        if self.include and self.layers:
            raise ConfigError("Policy: 'include' globs replace 'layers'; give one of them")
        if any(k not in range(5) for k in self.layers) or set(self.subspaces) - set("USV") \
                or set(self.kernels) - {"1x1", "kxk"}:
            raise ConfigError(f"Policy: invalid fields {self!r}; build policies with parse_policy")

    def __str__(self) -> str:
        return self.name


def _layers(digits: str | None) -> tuple[int, ...]:
    return DEFAULT_LAYERS if digits is None else tuple(int(c) for c in digits[1:])


def _all_names() -> list[str]:
    """Every canonical policy name without -bntrain (a few hundred): the candidates for "did you mean"."""
    layer_sets = [c for k in range(1, 6) for c in combinations(range(5), k)]
    names = {"frozen"}
    for layers in layer_sets:
        names.add(Policy("bn", layers, bn_affine=True).name)
        for kernels in (("1x1", "kxk"), ("kxk",), ("1x1",)):
            names.add(Policy("part", layers, kernels=kernels).name)
        for k in range(1, 4):
            for sub in combinations("USV", k):
                for bn in (False, True):
                    names.add(Policy("svf", layers, sub, bn).name)
    return sorted(names)


def nearest_policy(spec: str) -> str | None:
    """The valid policy name closest to ``spec`` (a table row's name first), or None when nothing is close."""
    text = spec.strip()
    suffix = "-bntrain" if text.endswith("-bntrain") else ""
    text = text.removesuffix("-bntrain")
    for candidates in (PAPER_POLICIES, _all_names()):
        close = difflib.get_close_matches(text, candidates, n=1, cutoff=0.75)
        if close:
            return close[0] + suffix
    return None


def _layers_hint(spec: str) -> str:
    digits = re.search(r"-l(\d+)", spec)
    if digits and (set(digits[1]) - set("01234") or list(digits[1]) != sorted(set(digits[1]))):
        return " (layers are distinct digits 0-4 in increasing order, e.g. l34)"
    return ""


def _error(spec) -> ConfigError:
    near = nearest_policy(spec) if isinstance(spec, str) else None
    hint = f"did you mean {near!r}? " if near else ""
    layers = _layers_hint(spec) if isinstance(spec, str) else ""
    return ConfigError(f"unknown policy {spec!r}{layers}; {hint}valid forms: {', '.join(VALID_FORMS)}")


def _from_string(spec: str) -> Policy:
    m = _GRAMMAR.match(spec.strip())
    if not m:
        raise _error(spec)
    g = m.groupdict()
    bn_train = g["bntrain"] is not None
    if g["frozen"]:
        return Policy("frozen", bn_train=bn_train)
    if g["full"]:
        return Policy("part", (1, 2, 3, 4), kernels=("1x1", "kxk"), bn_train=bn_train)
    if g["bn"]:
        return Policy("bn", _layers(g["bn_layers"]), bn_affine=True, bn_train=bn_train)
    if g["svf"]:
        sub = tuple(g["sub"] or "S")
        return Policy("svf", _layers(g["svf_layers"]), sub, bool(g["svf_bn"]), bn_train=bn_train)
    kernels = ("1x1", "kxk") if g["kernel"] is None else (_KERNEL_NAMES[g["kernel"]],)
    return Policy("part", _layers(g["part_layers"]), kernels=kernels, bn_train=bn_train)


_KIND_KEYS = {"frozen": {"bn_train", "include"}, "svf": {"layers", "subspaces", "bn", "bn_train", "include"},
              "bn": {"layers", "bn", "bn_train", "include"}, "part": {"layers", "kernels", "bn_train", "include"}}


def _from_dict(spec: Mapping) -> Policy:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"policy dict: 'kind' must be one of {KINDS}, got {kind!r}")
    unknown = sorted(set(spec) - {"kind"} - _KIND_KEYS[kind])
    if unknown:
        raise ConfigError(f"policy dict: keys {unknown} do not apply to kind {kind!r}; allowed "
                         f"{sorted(_KIND_KEYS[kind])}")
    bn_train = bool(spec.get("bn_train", False))
    include = spec.get("include")
    if include is not None:
        include = (include,) if isinstance(include, str) else tuple(include)
        if not include or not all(isinstance(g, str) and g for g in include) or "layers" in spec:
            raise ConfigError(f"policy dict: 'include' must be a non-empty list of module-name globs and replaces "
                             f"'layers', got {spec.get('include')!r}")
        return _with_include(_from_dict({k: v for k, v in spec.items() if k != "include"}), include)
    if kind == "frozen":
        return Policy("frozen", bn_train=bn_train)
    raw_layers = spec.get("layers", DEFAULT_LAYERS)
    ok = not isinstance(raw_layers, (str, bytes)) and all(type(k) is int for k in raw_layers)
    layers = tuple(sorted(set(raw_layers))) if ok else ()
    if not layers or any(k not in range(5) for k in layers):
        raise ConfigError(f"policy dict: 'layers' must be a non-empty subset of 0..4, got {raw_layers!r}")
    if kind == "bn":
        if not spec.get("bn", True):
            raise ConfigError("policy dict: kind 'bn' trains BatchNorm affine parameters; 'bn' cannot be false")
        return Policy("bn", layers, bn_affine=True, bn_train=bn_train)
    if kind == "svf":
        letters = set("".join(spec.get("subspaces", "S")))
        if not letters or letters - set("USV"):
            raise ConfigError(f"policy dict: 'subspaces' must be a non-empty subset of U, S, V, got "
                             f"{spec.get('subspaces')!r}")
        sub = tuple(c for c in "USV" if c in letters)
        return Policy("svf", layers, sub, bool(spec.get("bn", False)), bn_train=bn_train)
    raw = spec.get("kernels", ("1x1", "kxk"))
    kernels = tuple(sorted({_KERNEL_NAMES.get(k, k) for k in ((raw,) if isinstance(raw, str) else raw)}))
    if not kernels or set(kernels) - {"1x1", "kxk"}:
        raise ConfigError(f"policy dict: 'kernels' must be a non-empty subset of 1x1, 3x3 (or kxk), got {raw!r}")
    return Policy("part", layers, kernels=kernels, bn_train=bn_train)


def _with_include(policy: Policy, include: tuple[str, ...]) -> Policy:
    return Policy(policy.kind, (), policy.subspaces, policy.bn_affine, policy.kernels, policy.bn_train, include)


def parse_policy(spec: str | Mapping | Policy) -> Policy:
    """Parse a short string (see the module docstring) or an equivalent dict, e.g.
    ``{"kind": "svf", "layers": [3, 4], "subspaces": "US", "bn": True, "bn_train": False}``."""
    if isinstance(spec, Policy):
        return spec
    if isinstance(spec, str):
        return _from_string(spec)
    if isinstance(spec, Mapping):
        return _from_dict(spec)
    raise _error(spec)


def canonical_name(spec: str | Mapping | Policy) -> str:
    return parse_policy(spec).name


def is_canonical(name: str) -> bool:
    try:
        return parse_policy(name).name == name
    except ValueError:
        return False


__all__ = ["DEFAULT_LAYERS", "KINDS", "PAPER_POLICIES", "POLICY_PATTERN", "VALID_FORMS", "Policy", "canonical_name",
           "is_canonical", "nearest_policy", "parse_policy"]
