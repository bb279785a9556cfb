"""Device choice at run time, the per-GPU slot locks, and the determinism switch."""
from __future__ import annotations

import pytest
import torch

from svf.engine.loop import device as device_module
from svf.engine.loop.device import configure_determinism, select_device


def test_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"


def test_each_local_job_claims_a_different_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("SVF_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    monkeypatch.setattr(device_module, "_LOCKS", [])
    assert device_module._claim_gpu(2) == 0   # physical GPU 2
    assert device_module._claim_gpu(2) == 1   # GPU 2 is held (lock file), so GPU 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu2.lock", "gpu5.lock"]
    for handle in device_module._LOCKS:
        handle.close()


def test_a_job_beyond_the_gpu_count_waits_for_a_free_gpu_and_never_shares(tmp_path, monkeypatch, capsys):
    import threading

    monkeypatch.setenv("SVF_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(device_module, "_LOCKS", [])
    assert device_module._claim_gpu(2) == 0 and device_module._claim_gpu(2) == 1
    held = list(device_module._LOCKS)
    with pytest.raises(RuntimeError, match=r"no free GPU after 0 s: all 2 visible GPUs \(0, 1\) .*--resources gpu=2"):
        device_module._claim_gpu(2, wait_s=0.2, poll_s=0.05)
    assert "waiting up to 0 s" in capsys.readouterr().err
    threading.Timer(0.3, held[1].close).start()  # the job on GPU 1 finishes
    assert device_module._claim_gpu(2, wait_s=30, poll_s=0.05) == 1
    for handle in device_module._LOCKS:
        handle.close()


def test_determinism_switch():
    try:
        configure_determinism(True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        configure_determinism(False)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
