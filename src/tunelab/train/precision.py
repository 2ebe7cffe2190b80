"""``--precision auto|fp32|bf16|fp16``: the arithmetic of the training loop (forward, loss, evaluation).

- ``auto``: bf16 autocast + TF32 matmuls on a CUDA device that supports bf16; fp32 elsewhere (CPU:
  exactly the fp32 path, no autocast context at all, so CPU runs are bit-identical to before).
- ``fp32``: no autocast; on CUDA TF32 stays off (true fp32 matmuls).
- ``bf16``: bf16 autocast (CUDA with bf16 support, or CPU); TF32 for what stays fp32 on CUDA.
- ``fp16``: fp16 autocast with a gradient scaler (CUDA only); TF32 on.

Weights and optimizer state stay fp32 in every mode (autocast, not a cast of the model).
run.json ``precision`` records what was asked and what ran. The CUDA paths are untested on a GPU
in this repository's CI (no GPU there); the CPU path is tested.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    requested: str
    name: str  # what runs: fp32 | bf16 | fp16
    device_type: str
    tf32: bool

    def autocast(self):
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.name])

    def grad_scaler(self):
        """A gradient scaler for fp16, else None."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None

    def apply(self) -> None:
        """Set the TF32 switches for this run (CUDA only)."""
        if self.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32

    def record(self) -> dict:
        return {"requested": self.requested, "used": self.name, "device": self.device_type, "tf32": self.tf32,
                "weights": "fp32 (autocast for forward/loss)" if self.name != "fp32" else "fp32"}


def _bf16_ok(device_type: str) -> bool:
    return device_type == "cpu" or (device_type == "cuda" and torch.cuda.is_bf16_supported())


def resolve_precision(requested: str, device) -> Precision:
    """``requested`` (auto | fp32 | bf16 | fp16) on ``device`` (torch.device or 'cpu' / 'cuda' / 'auto')."""
    dev = str(device.type if isinstance(device, torch.device) else device)
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = dev == "cuda"
    if requested == "auto":
        name = "bf16" if cuda and _bf16_ok(dev) else "fp32"
    else:
        name = requested
    if name == "fp16" and not cuda:
        raise UserError(f"--precision fp16: needs a CUDA device (the run uses {dev}); use bf16 or fp32")
    if name == "bf16" and not _bf16_ok(dev):
        raise UserError(f"--precision bf16: this {dev} device does not support bf16; use fp16 or fp32")
    return Precision(requested=requested, name=name, device_type=dev, tf32=cuda and requested != "fp32")
