"""Authors'-checkpoint loading (svf.models.checkpoints): key conventions of the SVF repo, PFENet and BAM saves."""
import pytest
import torch

from svf.backbones.weights import load_backbone_weights
from svf.data.datasets import base_classes
from svf.models import build_base_learner, build_model
from svf.models.checkpoints import inspect_checkpoint, load_authors_checkpoint, load_bam_base_learner
from svf.models.bam import BASE_STAGES
from svf.models.common import STAGES


def tiny(method, shot=1, seed=0, backbone="resnet50", **kw):
    torch.manual_seed(seed)
    depths = (1, 1, 1, 1) if backbone == "resnet50" else None
    return build_model(method, backbone=backbone, shot=shot, width=1 / 32, depths=depths, reduce_dim=4,
                       base_classes=base_classes("pascal", 0), **kw)


def as_saved(model, extra=None):
    """What their train scripts write: {'epoch', 'state_dict' (DDP 'module.' prefix), 'optimizer'}."""
    state = {"module." + k: v.clone() for k, v in model.state_dict().items()}
    state.update({"module." + k: v for k, v in (extra or {}).items()})
    return {"epoch": 3, "state_dict": state, "optimizer": {}}


def outputs(model, shot=1):
    g = torch.Generator().manual_seed(5)
    q, s = torch.randn(1, 3, 33, 33, generator=g), torch.randn(1, shot, 3, 33, 33, generator=g)
    l = (torch.rand(1, shot, 33, 33, generator=g) > 0.5).long()
    with torch.no_grad():
        return model.eval()(q, s, l)["logits"]


@pytest.mark.parametrize("method", ["baseline", "pfenet", "bam"])
def test_round_trip_through_a_file(tmp_path, method):
    src = tiny(method, seed=1)
    path = tmp_path / "final.pth"
    torch.save(as_saved(src), path)
    dst = tiny(method, seed=2)
    assert not torch.allclose(outputs(src), outputs(dst))
    load_authors_checkpoint(dst, path)
    assert torch.allclose(outputs(src), outputs(dst))


def test_baseline_kshot_rw_is_dropped():
    src = tiny("baseline", shot=2, seed=1)
    extra = {"kshot_rw.0.weight": torch.zeros(2, 2, 1, 1), "kshot_rw.0.bias": torch.zeros(2)}
    report = load_authors_checkpoint(tiny("baseline", shot=2), as_saved(src, extra))
    assert report.ignored == ["kshot_rw.0.bias", "kshot_rw.0.weight"]


def test_original_bam_checkpoint_fills_base_backbone():
    src = tiny("bam", seed=1)
    state = {k: v for k, v in src.state_dict().items() if k.split(".")[0] not in BASE_STAGES}  # original BAM
    dst = tiny("bam", seed=2)
    report = load_authors_checkpoint(dst, state)
    assert any(k.startswith("layer4p.") for k in report.filled) and not report.ignored
    assert torch.equal(dst.layer0p[0].weight, src.layer0[0].weight)
    assert torch.equal(dst.layer3p[0].conv1.weight, src.layer3[0].conv1.weight)


def test_bam_base_learner_checkpoint_with_encoder_alias():
    psp = build_base_learner(backbone="resnet50", width=1 / 32, depths=(1, 1, 1, 1), cls_dim=8,
                             base_classes=base_classes("pascal", 0))
    saved = {k: v for k, v in psp.state_dict().items()}
    saved.update({f"encoder.{i}.{k.split('.', 1)[1]}": v for i, s in enumerate(STAGES)
                  for k, v in psp.state_dict().items() if k.startswith(s + ".")})
    wrapped = {"state_dict": {"module." + k: v for k, v in saved.items()}}
    bam = tiny("bam", base_cls_dim=8)
    load_bam_base_learner(bam, wrapped)
    assert torch.equal(bam.layer2p[0].conv1.weight, psp.layer2[0].conv1.weight)
    assert torch.equal(bam.learner_base[1][4].weight, psp.cls[4].weight)
    fresh = build_base_learner(backbone="resnet50", width=1 / 32, depths=(1, 1, 1, 1), cls_dim=8, num_base_classes=15)
    load_bam_base_learner(fresh, wrapped)
    assert torch.equal(fresh.ppm.features[3][1].weight, psp.ppm.features[3][1].weight)
    assert inspect_checkpoint(wrapped) | {"num_tensors": 0} == {
        "num_tensors": 0, "method": "pspnet", "backbone": "resnet50", "width": 1 / 32, "depths": [1, 1, 1, 1],
        "svf_stages": [], "num_base_classes": 15}


def test_mismatches_are_listed_with_a_hint():
    src = tiny("pfenet", seed=1).state_dict()
    del src["res2.0.weight"]
    src["layer2.0.conv1.vector_S"] = torch.ones(1, 4, 1, 1)
    with pytest.raises(RuntimeError) as err:
        load_authors_checkpoint(tiny("pfenet"), src)
    text = str(err.value)
    assert "res2.0.weight" in text and "layer2.0.conv1.vector_S" in text and "decompose" in text
    wider = build_model("pfenet", backbone="resnet50", width=1 / 32, depths=(1, 1, 1, 1), reduce_dim=6)
    with pytest.raises(RuntimeError, match="shape mismatches"):
        load_authors_checkpoint(tiny("pfenet"), wider.state_dict())


def test_inspect_checkpoint():
    info = inspect_checkpoint(as_saved(tiny("bam", shot=5, backbone="vgg16")))
    assert info["method"] == "bam" and info["backbone"] == "vgg16" and info["shot"] == 5
    assert info["num_base_classes"] == 15
    info = inspect_checkpoint(tiny("pfenet", bins=(8, 4)).state_dict())
    assert info["method"] == "pfenet" and info["num_bins"] == 2 and info["backbone"] == "resnet50"


def test_engine_style_backbone_weights_and_base_classes():
    src, dst = tiny("baseline", seed=1), tiny("baseline", seed=2)
    backbone_state = {k: v for k, v in src.state_dict().items() if k.split(".")[0] in STAGES}
    report = load_backbone_weights(dst, backbone_state, source="demo.pth")
    assert len(report.loaded) == len(backbone_state)
    assert torch.equal(dst.layer4[0].conv2.weight, src.layer4[0].conv2.weight)
    with pytest.raises(RuntimeError, match="demo.pth"):
        load_backbone_weights(dst, {**backbone_state, "fc.weight": torch.zeros(1)}, source="demo.pth")
    assert tiny("bam").base_classes == tuple(range(6, 21))
    assert build_model("bam", backbone="vgg16", width=1 / 32, reduce_dim=4, num_base_classes=60).num_base_classes == 60


def test_check_checkpoint_svf_decomposed_via_cli(tmp_path, capsys):
    from svf.cli import main
    from svf.policy import apply_policy

    src = tiny("baseline", shot=2, seed=1, backbone="vgg16")
    apply_policy(src, "svf", rank="official")  # the authors' resolver: every conv of layer0..4, stem rank 27 -> 24
    path = tmp_path / "svf_baseline.pth"
    unused = {"kshot_rw.0.weight": torch.zeros(2, 2, 1, 1), "kshot_rw.0.bias": torch.zeros(2),
              "kshot_rw.2.weight": torch.zeros(2, 2, 1, 1), "kshot_rw.2.bias": torch.zeros(2)}
    torch.save(as_saved(src, unused), path)  # aspp.py saves its unused kshot_rw: that tells the shot
    assert main(["check-checkpoint", str(path), "--method", "baseline", "--size", "33"]) == 0
    text = capsys.readouterr().out
    assert '"layer4"' in text and '"shot": 2' in text and '"width": 0.03125' in text
    with pytest.raises(RuntimeError, match="decompose"):
        from svf.models.checkpoints import check_checkpoint
        check_checkpoint(path, method="baseline", backbone="vgg16")
