"""No host sync in a training step: every method's step (forward, loss groups, micro-batches, backward, optimizer)
runs without a call that makes the host wait for the device. On the CPU nothing waits, so the test counts the calls
that would: Tensor.item / __float__ / __int__ / __bool__ / .cpu() / .tolist() / .numpy() from Python, and the
dispatcher's scalar reads, nonzero and boolean-mask indexing (which read a device tensor's values to size a result)."""
from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from svf.engine.loop.batching import Grouping
from svf.engine.tasks.build import build_cell_model, random_base_learner
from svf.engine.loop.fit import train_step
from svf.engine.loop.precision import Precision
from svf.engine.tasks.train import cell_step
from svf.policy import set_bn_mode

from cells import tiny_spec

PYTHON_SYNCS = ("item", "__float__", "__int__", "__bool__", "__index__", "cpu", "tolist", "numpy")
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_assert_async"}  # _assert_async.msg is fine
SIZE = 33


class _SyncOps(TorchDispatchMode):
    def __init__(self, calls: list[str]):
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ())
        if (name in SYNC_OPS and str(func) != "aten._assert_async.msg") or bool_index:
            self.calls.append(f"aten {func}\n" + "".join(traceback.format_stack(limit=12)[:-1]))
        return func(*args, **kwargs)


@pytest.fixture
def host_syncs(monkeypatch):
    """A list that collects every host-syncing call (with where it came from) while the fixture is active."""
    calls: list[str] = []
    for name in PYTHON_SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls.append(f"Tensor.{_name}\n" + "".join(traceback.format_stack(limit=12)[:-1]))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


def _batch(n: int, shot: int) -> dict:
    g = torch.Generator().manual_seed(0)
    label = (torch.rand(n, SIZE, SIZE, generator=g) > 0.6).long()
    label[:, :2] = 255
    full = label.clone()
    full[label == 1] = 1  # the episode's class
    full[:, -3:] = 2      # another (base) class in the full label
    return {"query": torch.randn(n, 3, SIZE, SIZE, generator=g),
            "supports": torch.randn(n, shot, 3, SIZE, SIZE, generator=g),
            "support_labels": (torch.rand(n, shot, SIZE, SIZE, generator=g) > 0.5).long(),
            "query_label": label, "query_label_full": full, "class_id": torch.ones(n, dtype=torch.long)}


@pytest.mark.parametrize("method, policy, shot", [
    ("baseline", "svf", 1), ("pfenet", "svf", 1), ("pfenet", "frozen-bntrain", 1), ("bam", "svf", 2),
    ("bam", "frozen", 1)])
def test_a_training_step_never_waits_for_the_device(tmp_path, host_syncs, method, policy, shot):
    overlay = {"recipe_overrides": {"batch_size": 4, "loss_groups": 2, "micro_batch": 2, "crop": SIZE}}
    spec = tiny_spec(method=method, policy=policy, shot=shot, **overlay)
    base = random_base_learner(spec, tmp_path) if method == "bam" else None
    model, parsed = build_cell_model(spec, None, base)
    device, precision, grouping = torch.device("cpu"), Precision.of(spec.recipe), Grouping.of(spec.recipe)
    model = precision.place(model, device)
    if method == "bam":
        model.share_frozen_backbone()
    model.train()
    set_bn_mode(model, parsed)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    step, scaler, batch = cell_step(model, grouping), precision.scaler(device), _batch(4, shot)
    train_step(optimizer, batch, step, grouping.micro, precision, scaler, device)  # warm-up: lazy state, buffers
    host_syncs.clear()
    with _SyncOps(host_syncs):
        losses = [train_step(optimizer, batch, step, grouping.micro, precision, scaler, device) for _ in range(2)]
    assert not host_syncs, f"{len(host_syncs)} host syncs in two steps; the first:\n{host_syncs[0]}"
    assert all(torch.is_tensor(loss) and loss.dim() == 0 for loss in losses)
    assert torch.isfinite(torch.stack(losses)).all()


def test_the_counter_sees_a_sync(host_syncs):
    """The counters are live: the calls the step must not make are caught."""
    x = torch.ones(3)
    with _SyncOps(host_syncs):
        float(x.sum())
        x[x > 0] = 2.0
    assert any(c.startswith("Tensor.__float__") for c in host_syncs)
    assert any("aten" in c and "index_put" in c for c in host_syncs)


def test_loss_parts_stay_tensors():
    spec = tiny_spec(method="pfenet", policy="frozen", recipe_overrides={"crop": SIZE})
    model, _ = build_cell_model(spec, None)
    batch = _batch(2, 1)
    total, parts = model.loss(model(batch["query"], batch["supports"], batch["support_labels"]), batch)
    assert set(parts) == {"main", "aux"}
    assert all(torch.is_tensor(v) and not v.requires_grad for v in parts.values())
