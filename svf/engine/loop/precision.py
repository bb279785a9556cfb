"""Numeric precision of a run, one recipe option (``precision``) plus ``channels_last``.

* ``fp32``: float32 everywhere, TF32 off (matmuls and convolutions): what the authors had on a V100 or with any
  torch on a pre-Ampere GPU.
* ``tf32`` (default): float32 tensors, TF32 tensor-core matmuls and convolutions on Ampere and newer GPUs; what
  torch 1.7-1.11 did by default on such GPUs, so as faithful as ``fp32`` to code whose GPUs are not stated.
* ``bf16``: autocast to bfloat16 (no loss scaling needed: bf16 has float32's exponent range), TF32 for what stays in
  float32; the PFENet prior and BAM's Gram matrices always run in float32 (svf/models/common.py ``_float32``).
  Not what the authors ran: a speed option.
* ``fp16``: autocast to float16 with a gradient scaler (older GPUs without bf16).

On the CPU TF32 does not exist: ``fp32`` and ``tf32`` are the same there, and ``bf16`` autocast runs (slowly, for tests).
``channels_last`` stores 4-D activations NHWC, which cuDNN's tensor-core kernels prefer.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str = "tf32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.name!r}")

    @classmethod
    def of(cls, recipe) -> "Precision":
        """A recipe's (``precision``, ``channels_last``; svf.pipeline.recipe.Recipe)."""
        return cls(recipe.precision, recipe.channels_last)

    def configure(self) -> None:
        """Process-wide TF32 switches (matmuls and cuDNN convolutions)."""
        tf32 = self.name != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    def autocast(self, device: torch.device):
        dtype = _DTYPES.get(self.name)
        if dtype is None or (device.type != "cuda" and self.name == "fp16"):
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.name == "fp16" and device.type == "cuda")

    def place(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Set the process-wide switches and move ``model`` to ``device`` in its memory format."""
        self.configure()
        return self.prepare_model(model.to(device))

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_batch(self, batch: dict) -> dict:
        if not self.channels_last:
            return batch
        return {k: (v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4
                    and v.is_floating_point() else v) for k, v in batch.items()}


__all__ = ["PRECISIONS", "Precision"]
