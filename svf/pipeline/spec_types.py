"""Typed specifications of a run: a cell (:class:`CellSpec`), BAM's base learner (:class:`BaseLearnerSpec`), the
demo's pretraining (:class:`PretrainSpec`), and their parts: :class:`DataSpec` (how the data is read),
:class:`BackboneSpec`, :class:`ModelSpec` and :class:`BaseLearnerModelSpec` (the networks), :class:`EvalSpec` (the
test protocol) and :class:`svf.pipeline.recipe.Recipe` (the schedule).

A spec travels as JSON: it is a Snakemake rule parameter (a change re-runs exactly the runs it affects) and a run can
be repeated by hand from it. :mod:`svf.pipeline.specs` builds it from the config, a run reads it once with
``from_json``, ``to_json`` gives it back (what a checkpoint and train_summary.json record). Each default of a spec lives
here and nowhere else; a cell's seed is its cell's. Light (no torch): the Snakefile builds specs while it makes the DAG.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ..data.datasets import DEFAULT_COCO_SPLIT, DEFAULT_EXIF_ORIENTATION, FoldClasses, fold_classes
from ..errors import ConfigError
from .cells import Cell
from .recipe import Recipe, checked_fields, plain


@dataclass(frozen=True)
class DataSpec:
    """How a run reads its dataset (config ``data``)."""

    coco_split: str = DEFAULT_COCO_SPLIT   # COCO's classes into folds: interleaved (BAM's, the authors') | contiguous
    exif_orientation: str = DEFAULT_EXIF_ORIENTATION   # apply | ignore: whether a JPEG is turned by its EXIF orientation

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "DataSpec":
        return cls(**checked_fields(cls, values, "data spec"))

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> "DataSpec":
        """From the config's ``data`` section (its other keys are the preparation's)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def fold_classes(self, dataset: str, fold: int) -> FoldClasses:
        """The novel and base classes of a fold under this COCO split."""
        return fold_classes(dataset, int(fold), self.coco_split)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's architecture: ``svf.backbones.build_backbone``'s arguments."""

    name: str                               # resnet50 | vgg16
    width: float = 1.0                      # channel multiplier
    depths: tuple[int, ...] | None = None   # ResNet blocks per stage (None: ResNet-50's)
    stem: str = "deep"                      # ResNet: deep (the authors' resnet50_v2) | standard (torchvision's)
    vgg_stride: int = 16                    # VGG's output stride

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", float(self.width))
        if self.depths is not None:
            object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))

    def kwargs(self) -> dict:
        """Keyword arguments of the models' constructors (``backbone``, ``width``, ...); VGG's stride for VGG only."""
        return {"backbone": self.name, "width": self.width, "depths": self.depths, "stem": self.stem,
                **({"vgg_stride": int(self.vgg_stride)} if self.name == "vgg16" else {})}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "BackboneSpec":
        return cls(**checked_fields(cls, values, "backbone spec"))

    def to_json(self) -> dict:
        return plain(asdict(self))


@dataclass(frozen=True)
class BaseLearnerModelSpec:
    """BAM's PSPNet base learner: ``svf.models.build_base_learner(**spec.kwargs())``."""

    backbone: BackboneSpec
    dilation: str
    base_classes: tuple[int, ...]           # the fold's base classes, resolved with the data's COCO split
    cls_dim: int | None = None              # its classifier's channels (None: PSPNet's own)

    def kwargs(self) -> dict:
        return {**self.backbone.kwargs(), "dilation": self.dilation, "base_classes": list(self.base_classes),
                **({"cls_dim": int(self.cls_dim)} if self.cls_dim is not None else {})}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "BaseLearnerModelSpec":
        values = checked_fields(cls, values, "base learner model spec")
        return cls(**{**values, "backbone": BackboneSpec.from_json(values["backbone"]),
                      "base_classes": tuple(values["base_classes"])})

    def to_json(self) -> dict:
        return {"backbone": self.backbone.to_json(), "dilation": self.dilation,
                "base_classes": list(self.base_classes), "cls_dim": self.cls_dim}


@dataclass(frozen=True)
class ModelSpec:
    """A cell's few-shot segmenter: ``svf.models.build_model(spec.method, **spec.kwargs())``."""

    method: str                             # baseline | pfenet | bam
    backbone: BackboneSpec
    shot: int
    dilation: str                           # the output-stride-8 pattern (config model.dilation)
    reduce_dim: int                         # channels of the few-shot head
    options: dict = field(default_factory=dict)   # the method's own settings (config model.<method>)
    base_classes: tuple[int, ...] | None = None   # BAM: the fold's base classes

    def kwargs(self) -> dict:
        return {**self.backbone.kwargs(), "shot": int(self.shot), "dilation": self.dilation,
                "reduce_dim": int(self.reduce_dim),
                **({"base_classes": list(self.base_classes)} if self.base_classes is not None else {}),
                **self.options}

    def base_learner(self) -> BaseLearnerModelSpec:
        """The base learner a BAM model of this spec reads (the shapes its stage 1 trains)."""
        if self.base_classes is None:
            raise ValueError(f"a {self.method} model has no base learner")
        return BaseLearnerModelSpec(self.backbone, self.dilation, self.base_classes,
                                    self.options.get("base_cls_dim"))

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "ModelSpec":
        values = checked_fields(cls, values, "model spec")
        base = values.get("base_classes")
        return cls(**{**values, "backbone": BackboneSpec.from_json(values["backbone"]),
                      "base_classes": None if base is None else tuple(base)})

    def to_json(self) -> dict:
        return {"method": self.method, "backbone": self.backbone.to_json(), "shot": self.shot,
                "dilation": self.dilation, "reduce_dim": self.reduce_dim, "options": plain(self.options),
                "base_classes": plain(self.base_classes)}


@dataclass(frozen=True)
class EvalSpec:
    """A cell's final evaluation (config ``evaluation``; the protocol defaults to the recipe's)."""

    protocol: str                           # svf-code | bam | pfenet (svf/engine/tasks/protocols.py)
    episodes: int | None = None             # instead of the protocol's episode count
    batch_size: int = 8
    absent_class: str = "zero"              # zero | skip: a fold class without an episode

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "EvalSpec":
        return cls(**checked_fields(cls, values, "evaluation spec"))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell's training, evaluation, probe or figure needs besides file paths."""

    cell: Cell                              # its seed trains: initialisation, data order, augmentation
    model: ModelSpec
    rank: str                               # the SVD's rank: full | official
    recipe: Recipe
    evaluation: EvalSpec
    data: DataSpec
    val_seed: int                           # the in-training validation episodes: the same for every seed
    deterministic: bool = False

    @property
    def cell_id(self) -> str:
        return self.cell.id

    @property
    def seed(self) -> int:
        return self.cell.seed

    @property
    def classes(self) -> FoldClasses:
        """The fold's novel and base classes."""
        return self.data.fold_classes(self.cell.dataset, self.cell.fold)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "CellSpec":
        values = dict(values)
        given = values.pop("cell_id", None)
        values = checked_fields(cls, values, f"cell spec {given or ''}".strip())
        spec = cls(cell=Cell.from_mapping(values["cell"]), model=ModelSpec.from_json(values["model"]),
                   rank=values["rank"], recipe=Recipe.from_json(values["recipe"]),
                   evaluation=EvalSpec.from_json(values["evaluation"]), data=DataSpec.from_json(values["data"]),
                   val_seed=int(values["val_seed"]), deterministic=bool(values.get("deterministic", False)))
        if given is not None and given != spec.cell_id:
            raise ConfigError(f"cell spec: cell_id {given!r} is not its cell's id {spec.cell_id!r}")
        return spec

    def to_json(self) -> dict:
        return {"cell": self.cell.as_dict(), "cell_id": self.cell_id, "model": self.model.to_json(),
                "rank": self.rank, "recipe": self.recipe.to_json(), "evaluation": self.evaluation.to_json(),
                "data": self.data.to_json(), "val_seed": self.val_seed, "deterministic": self.deterministic}


@dataclass(frozen=True)
class BaseLearnerSpec:
    """BAM's stage 1 for one (dataset, backbone, fold)."""

    dataset: str
    fold: int
    model: BaseLearnerModelSpec
    recipe: Recipe
    data: DataSpec
    seed: int
    deterministic: bool = False

    @property
    def backbone(self) -> str:
        return self.model.backbone.name

    @property
    def name(self) -> str:
        return f"base learner {self.dataset}/{self.backbone}/fold{self.fold}"

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "BaseLearnerSpec":
        values = checked_fields(cls, values, "base learner spec")
        return cls(**{**values, "fold": int(values["fold"]), "model": BaseLearnerModelSpec.from_json(values["model"]),
                      "recipe": Recipe.from_json(values["recipe"]), "data": DataSpec.from_json(values["data"])})

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "fold": self.fold, "model": self.model.to_json(),
                "recipe": self.recipe.to_json(), "data": self.data.to_json(), "seed": self.seed,
                "deterministic": self.deterministic}


@dataclass(frozen=True)
class PretrainSpec:
    """The demo's stand-in for ImageNet pretraining of one backbone (config ``weights.pretrain``)."""

    backbone: BackboneSpec
    steps: int
    size: int                               # side of the synthetic object images
    batch_size: int
    lr: float
    classes: int                            # class looks to tell apart
    seed: int
    deterministic: bool = False
    looks: str = "shared"                   # the world's look scheme (config data.synthetic.looks)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "PretrainSpec":
        values = checked_fields(cls, values, "pretraining spec")
        return cls(**{**values, "backbone": BackboneSpec.from_json(values["backbone"])})

    def to_json(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "backbone": self.backbone.to_json()}


__all__ = ["BackboneSpec", "BaseLearnerModelSpec", "BaseLearnerSpec", "CellSpec", "DataSpec", "EvalSpec",
           "ModelSpec", "PretrainSpec", "Recipe"]
