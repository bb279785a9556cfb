"""Training and evaluation of cells on tiny synthetic data: every method x backbone x shot runs, a killed run
resumes to exactly the uninterrupted result, runs are deterministic, a NaN loss stops the run loudly."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

import svf.engine.loop.hooks as hooks_module
import svf.engine.loop.runner as runner_module
import svf.engine.tasks.train as train_module
from svf.engine.tasks.base_learner import train_base_learner
from svf.engine.tasks.evaluate import evaluate_cell
from svf.pipeline.specs import build_base_learner_spec
from svf.engine.tasks.train import NonFiniteLossError, train_cell

from cells import TINY, merged_config, tiny_spec


def _train(spec, data, tmp, name, base=None):
    out, ckpt = tmp / name, tmp / f"{name}_ckpt"
    train_cell(spec, data["root"], data["splits"], None, str(out), str(ckpt), base_learner=base, threads=1)
    return out


def _evaluate(spec, data, cell_dir, base=None):
    return evaluate_cell(spec, data["root"], data["splits"], None, str(cell_dir / "model.pt"),
                         str(cell_dir / "metrics.json"), base_learner=base, threads=1)


def _log_without_times(path):
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(handle)]


def _model_state(cell_dir):
    return torch.load(cell_dir / "model.pt", weights_only=False)["state"]


@pytest.fixture(scope="module")
def base_learners(pascal_data, tmp_path_factory):
    """A (barely) trained BAM base learner per backbone for fold 0."""
    config = merged_config(TINY)
    tmp = tmp_path_factory.mktemp("base")
    files = {}
    for backbone in ("resnet50", "vgg16"):
        spec = build_base_learner_spec(config, "pascal", backbone, 0)
        spec = replace(spec, recipe=replace(spec.recipe, epochs=1, max_episodes_per_epoch=4, batch_size=2))
        out = tmp / backbone / "model.pt"
        train_base_learner(spec, pascal_data["root"], None, str(out), str(tmp / backbone / "ckpt"), threads=1)
        files[backbone] = str(out)
    return files


@pytest.mark.parametrize("shot", [1, 5])
@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
@pytest.mark.parametrize("method", ["baseline", "pfenet", "bam"])
def test_every_method_backbone_and_shot_trains_and_evaluates(method, backbone, shot, pascal_data, base_learners,
                                                             tmp_path):
    spec = tiny_spec(backbone=backbone, method=method, shot=shot, recipe_overrides={"epochs": 1})
    base = base_learners[backbone] if method == "bam" else None
    cell_dir = _train(spec, pascal_data, tmp_path, "cell", base)
    metrics = _evaluate(spec, pascal_data, cell_dir, base)
    assert 0.0 <= metrics["miou"] <= 100.0 and 0.0 <= metrics["fb_iou"] <= 100.0
    assert metrics["episodes"] == 6 and metrics["cell_id"] == spec.cell_id
    assert set(metrics["class_iou"]) == {"1", "2", "3", "4", "5"}
    import numpy
    import torchvision

    versions = metrics["versions"]  # what the result was produced with (CPU: no CUDA, cuDNN, GPU)
    assert (versions["torch"], versions["torchvision"], versions["numpy"]) == (
        torch.__version__, torchvision.__version__, numpy.__version__)
    assert versions["cuda"] is None and versions["gpu"] is None and versions["python"].startswith("3.")
    assert json.loads((cell_dir / "train_summary.json").read_text())["versions"] == versions
    sv = json.loads((cell_dir / "singular_values.json").read_text())
    assert sv["before"].keys() == sv["after"].keys() and len(sv["after"]) > 0
    # SVF trains only S in layers 2-4: frozen layer0/1 values are unchanged, some trained ones moved
    assert all(sv["before"][k] == sv["after"][k] for k in sv["before"] if k.startswith(("layer0", "layer1")))
    assert any(sv["before"][k] != sv["after"][k] for k in sv["before"] if k.startswith(("layer2", "layer3", "layer4")))


def test_resume_after_a_crash_equals_an_uninterrupted_run(pascal_data, tmp_path, monkeypatch):
    spec = tiny_spec(recipe_overrides={"epochs": 3})
    uninterrupted = _train(spec, pascal_data, tmp_path, "a")

    real_save, saves = hooks_module.save_checkpoint, []

    def crash_after_second_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt("simulated kill after epoch 2")

    monkeypatch.setattr(hooks_module, "save_checkpoint", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(spec, pascal_data, tmp_path, "b")
    assert not (tmp_path / "b" / "model.pt").exists()
    monkeypatch.setattr(hooks_module, "save_checkpoint", real_save)
    resumed = _train(spec, pascal_data, tmp_path, "b")

    a, b = _model_state(uninterrupted), _model_state(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _log_without_times(uninterrupted / "train_log.csv") == _log_without_times(resumed / "train_log.csv")
    keys = ("miou", "fb_iou", "class_iou")
    ma, mb = _evaluate(spec, pascal_data, uninterrupted), _evaluate(spec, pascal_data, resumed)
    assert {k: ma[k] for k in keys} == {k: mb[k] for k in keys}


def test_same_seed_gives_identical_results(pascal_data, tmp_path):
    spec = tiny_spec(policy="svf-US")
    first, second = _train(spec, pascal_data, tmp_path, "x"), _train(spec, pascal_data, tmp_path, "y")
    a, b = _model_state(first), _model_state(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = _evaluate(spec, pascal_data, first), _evaluate(spec, pascal_data, second)
    volatile = {"eval_wall_time_s", "train_wall_time_s"}
    assert {k: v for k, v in ma.items() if k not in volatile} == {k: v for k, v in mb.items() if k not in volatile}


def test_nan_loss_stops_with_cell_epoch_and_step(pascal_data, tmp_path, monkeypatch):
    spec = tiny_spec()
    original = train_module.forward

    def poisoned(model, batch):
        outputs = original(model, batch)
        outputs["logits"] = outputs["logits"] * float("nan")
        return outputs

    monkeypatch.setattr(train_module, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"baseline/dagger/svf/svf-code/1shot/fold0/seed321.*epoch 1, step 1/"):
        _train(spec, pascal_data, tmp_path, "nan")
    assert not any((tmp_path / "nan").glob("*"))


def test_bn_train_mode_policy_keeps_its_drifting_statistics(pascal_data, tmp_path):
    # Table 2's original-PFENet row: frozen backbone with BatchNorm in train mode (running statistics move)
    spec = tiny_spec(method="pfenet", setting="original", policy="frozen-bntrain", recipe="pfenet-original")
    cell_dir = _train(spec, pascal_data, tmp_path, "bntrain")
    state = _model_state(cell_dir)
    stats = [k for k in state if k.startswith("layer") and k.endswith("running_mean")]
    assert stats and not any(k.startswith("layer") and k.endswith(".weight") for k in state)
    assert 0.0 <= _evaluate(spec, pascal_data, cell_dir)["miou"] <= 100.0


def test_frozen_random_head_parameters_are_saved_and_rebuilt_identically(pascal_data, tmp_path):
    # the authors' baseline never trains down_query: it keeps its random init, which evaluation must reuse
    from svf.engine.tasks.build import build_cell_model, load_cell_model

    spec = tiny_spec()
    cell_dir = _train(spec, pascal_data, tmp_path, "dq")
    saved = _model_state(cell_dir)
    assert "down_query.0.weight" in saved
    torch.manual_seed(12345)  # whatever the caller's RNG state, the rebuilt model is the trained one
    model, _, _ = load_cell_model(spec, cell_dir / "model.pt", None)
    assert torch.equal(model.down_query[0].weight, saved["down_query.0.weight"])
    torch.manual_seed(999)
    again, _ = build_cell_model(spec, None)
    assert torch.equal(again.down_query[0].weight, saved["down_query.0.weight"])


class _Steps:
    """A loader of ``n`` one-number batches with the dataset interface fit() needs."""

    def __init__(self, n):
        self.n, self.dataset = n, self

    def set_epoch(self, epoch):
        pass

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter([{"x": torch.ones(1)}] * self.n)


def _fit_recording(tmp_path, scores, epochs=2, steps=5, mid=True, resets=False, early_stop=None, val_every=1):
    """fit() on a dummy problem; returns (validation points as (epoch, steps done), final state)."""
    from svf.engine.loop.fit import Run, fit
    from svf.engine.loop.hooks import Checkpoint, EarlyStop, KeepBest
    from svf.engine.loop.schedule import LRSchedule

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    done, points, values = [0], [], iter(scores)

    def step(batch):
        done[0] += 1
        return (weight * batch["x"]).sum()

    def validate(epoch):
        points.append((epoch, done[0]))
        return next(values)

    class Dummy:
        def state(self):
            return {"w": weight.detach().clone()}

        def load(self, tensors):
            pass

        def train_mode(self):
            pass

    trainee = Dummy()
    trainee.step, trainee.validate = step, validate
    run = Run(name="dummy", trainee=trainee, optimizer=optimizer, schedule=LRSchedule(optimizer, "flat", 10),
              loader=_Steps(steps), epochs=epochs, seed=0, mid_epoch_val=mid, val_every=val_every)
    hooks = [KeepBest(), EarlyStop(early_stop, mid_val_resets=resets), Checkpoint(tmp_path / "last.pt", {})]
    return points, fit(run, hooks)


def test_mid_epoch_validation_is_where_the_authors_scripts_put_it(tmp_path):
    # their sub-epoch validation: not in the first epoch, after the step with index round(len / 2) (0-based)
    points, _ = _fit_recording(tmp_path, [1.0, 2.0, 3.0])
    assert points == [(0, 5), (1, 8), (1, 10)]
    points, _ = _fit_recording(tmp_path / "b", [1.0, 2.0, 3.0, 4.0, 5.0], epochs=3, steps=4)
    assert points == [(0, 4), (1, 7), (1, 8), (2, 11), (2, 12)]  # round(2.0) = 2: after the third step


def test_validation_every_kth_epoch_and_the_last(tmp_path):
    points, state = _fit_recording(tmp_path, [1.0, 3.0, 2.0], epochs=7, steps=2, mid=False, val_every=3)
    assert [epoch for epoch, _ in points] == [2, 5, 6]  # after epochs 3 and 6 and the last (0-based 2, 5, 6)
    assert state.best_epoch == 5 and state.best_miou == 3.0
    logged = [row["val_miou"] for row in state.log_rows]
    assert [v == v for v in logged] == [False, False, True, False, False, True, True]  # NaN where not validated


@pytest.mark.parametrize("resets, stopped_after", [(False, 3), (True, 4)])
def test_a_mid_epoch_best_resets_the_early_stop_count_only_for_bam(tmp_path, resets, stopped_after):
    # epoch 1 end: best 5; epoch 2: mid 6 (a new best), end 4; later epochs 3; early_stop = 2 epochs
    points, state = _fit_recording(tmp_path, [5.0, 6.0, 4.0] + [3.0] * 6, epochs=5, steps=4,
                                   resets=resets, early_stop=2)
    assert state.epoch == stopped_after and state.best_miou == 6.0


def test_each_method_follows_its_script():
    from svf.engine.tasks.train import MID_VAL_RESETS_EARLY_STOP

    assert MID_VAL_RESETS_EARLY_STOP == {"baseline": False, "pfenet": False, "bam": True}


def test_out_of_memory_names_the_cell_and_the_setting_to_lower(pascal_data, tmp_path, monkeypatch):
    from svf.engine.tasks.train import DeviceMemoryError

    spec = tiny_spec()

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(runner_module, "fit", no_memory)
    with pytest.raises(DeviceMemoryError, match=r"baseline/dagger/svf/svf-code/1shot/fold0/seed321: out of memory "
                                                r"on cpu .*lower the recipe's micro_batch \(now 2 images"):
        _train(spec, pascal_data, tmp_path, "oom")
