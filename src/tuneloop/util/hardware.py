"""Which device trains and generates, in which precision, and how much memory there is.

CUDA first (bf16 where the GPU supports it, else fp16 with loss scaling), then Apple's MPS, then the CPU
(fp32). ``--device`` / ``device`` in the config override the choice; asking for a device this machine does
not have is an error that says what it has.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tuneloop.errors import ConfigError

DEVICES = ("auto", "cuda", "mps", "cpu")
Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cuda", "mps" or "cpu"
    precision: Precision
    gpus: int  # CUDA devices visible to this process (0 elsewhere)
    name: str  # what to show a person: "NVIDIA H100 80GB HBM3 ×2", "Apple MPS", "CPU (2 cores)"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]

    @property
    def bytes_per_parameter(self) -> int:
        return 4 if self.precision == "fp32" else 2

    def describe(self) -> str:
        return f"{self.name}, {self.precision}"


def cuda_count() -> int:
    """CUDA GPUs torch can use. A Linux machine without NVIDIA's driver has none: answered without importing torch."""
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    if sys.platform != "darwin":
        return False
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def thread_limit() -> int | None:
    """The threads OMP_NUM_THREADS asks this process to use (a positive whole number: a process told to share the
    cores, as `make test`'s workers are), else None."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose(requested: str | None = None) -> DevicePlan:
    """The device to use: ``requested`` (cuda, mps, cpu) or, for None/"auto", the best this machine has."""
    wanted = (requested or "auto").lower()
    if wanted not in DEVICES:
        raise ConfigError(f"device {requested!r}: use one of {', '.join(DEVICES)}")
    gpus = cuda_count() if wanted in ("auto", "cuda") else 0
    if wanted == "cuda" and gpus == 0:
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU on this machine "
                          f"(torch {_torch_version()}); train on the CPU, or install a CUDA build of torch").with_hint(
            "--device cpu")
    if gpus:
        import torch

        names = {torch.cuda.get_device_name(i) for i in range(gpus)}
        bf16 = torch.cuda.is_bf16_supported()
        label = ", ".join(sorted(names)) + (f" ×{gpus}" if gpus > 1 else "")
        return DevicePlan("cuda", "bf16" if bf16 else "fp16", gpus, label)
    if wanted == "mps" and not mps_available():
        raise ConfigError("device mps was asked for, but this machine has no Apple GPU that torch can use; "
                          "use the CPU").with_hint("--device cpu")
    if wanted in ("auto", "mps") and mps_available():
        return DevicePlan("mps", "fp32", 0, "Apple MPS")
    return DevicePlan("cpu", "fp32", 0, f"CPU ({os.cpu_count() or 1} cores)")


def available_memory(plan: DevicePlan) -> int:
    """Bytes free where the weights will live: the smallest free GPU (each holds a full copy), else RAM."""
    if plan.device == "cuda":
        import torch

        return min(torch.cuda.mem_get_info(i)[0] for i in range(plan.gpus))
    import psutil

    return int(psutil.virtual_memory().available)


def peak_memory_bytes(plan: DevicePlan | None = None) -> int:
    """The most memory this process has used so far: GPU memory on CUDA, resident memory otherwise."""
    if plan is not None and plan.device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _torch_version() -> str:
    import torch

    return str(torch.__version__)
