"""The device a trial ran on and the GPU memory it took: the trials table's device columns.

`device` is "cpu" or "cuda" (what `trial.device` said). On a GPU torch can use, also the
GPU's name and memory, the CUDA version of the torch build, the driver's version, and
the trial's peak memory: what torch allocated (`gpu_memory_peak`, from
torch.cuda.max_memory_allocated) and what its caching allocator held
(`gpu_memory_reserved`), both since the trial began, in bytes. A process's CUDA context
(a few hundred MiB) comes on top of the reserved memory.
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

from analysis.columns import DEVICE_COLUMNS


def describe(device: str) -> dict[str, Any]:
    """Every device column; the GPU's are empty on the CPU (or a GPU torch cannot use)."""
    info: dict[str, Any] = dict.fromkeys(DEVICE_COLUMNS) | {"device": device}
    torch = _cuda_torch(device)
    if torch is None:
        return info
    gpu = torch.cuda.get_device_properties(torch.cuda.current_device())
    return info | {
        "gpu_name": gpu.name,
        "gpu_memory_total": gpu.total_memory,
        "cuda_version": torch.version.cuda,
        "gpu_driver": driver_version(),
    }


def start(device: str) -> None:
    """Reset the peak-memory counters: a reused worker keeps its process between trials,
    and each trial's peak must be its own."""
    torch = _cuda_torch(device)
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> dict[str, int]:
    """The trial's peak GPU memory since `start` (nothing on the CPU)."""
    torch = _cuda_torch(device)
    if torch is None:
        return {}
    return {
        "gpu_memory_peak": torch.cuda.max_memory_allocated(),
        "gpu_memory_reserved": torch.cuda.max_memory_reserved(),
    }


def driver_version() -> str | None:
    """The NVIDIA driver's version, from NVML (the library torch itself loads to count
    devices); None where it is not installed."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            return None
        text = ctypes.create_string_buffer(96)
        found = nvml.nvmlSystemGetDriverVersion(text, ctypes.c_uint(96)) == 0
        return text.value.decode() if found else None
    except (OSError, AttributeError):
        return None


def _cuda_torch(device: str) -> ModuleType | None:
    """torch, when the trial runs on a CUDA device that torch can use."""
    if device != "cuda":
        return None
    import torch

    return torch if torch.cuda.is_available() else None
