"""The device a trial runs on, and the GPU memory it took: the trials table's device columns.

`choose` gives `trial.device`: "cuda", "mps" (Apple silicon) or "cpu". When the experiment
uses torch on a CUDA GPU torch can use, the columns also hold the GPU's name and memory, the
CUDA version of the torch build, the driver's version, and the trial's peak memory: what
torch allocated (`gpu_memory_peak`, torch.cuda.max_memory_allocated) and what its caching
allocator held (`gpu_memory_reserved`), both since the trial began, in bytes. A process's
CUDA context (a few hundred MiB) comes on top of the reserved memory. An experiment that
does not import torch gets no CUDA context from here. On "mps" those columns stay empty:
torch keeps no peak for Apple's GPU (its memory counters say what is held now, at the
trial's end, not the most it held), and the other columns describe CUDA.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from types import ModuleType
from typing import Any

from analysis.tables import DEVICE_COLUMNS


def choose(gpu: bool) -> str:
    """`trial.device`: "cuda" when the trial has a GPU (Ray gave it one); else "mps" where
    the experiment's torch can use Apple silicon's GPU, which takes no request in the spec;
    else "cpu". Torch is asked only when the experiment imported it: importing it here
    would cost an experiment that does not use it seconds in every worker."""
    if gpu:
        return "cuda"
    torch = sys.modules.get("torch")
    if torch is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def describe(device: str) -> dict[str, Any]:
    """Every device column but the peaks; the GPU's are empty on the CPU, and where torch
    is not in use or cannot reach the GPU."""
    info: dict[str, Any] = dict.fromkeys(DEVICE_COLUMNS) | {"device": device}
    torch = _cuda_torch(device)
    if torch is None:
        return info
    try:
        gpu = torch.cuda.get_device_properties(torch.cuda.current_device())
    except RuntimeError:  # CUDA would not start here; the experiment will say why
        return info
    return info | {
        "gpu_name": gpu.name,
        "gpu_memory_total": gpu.total_memory,
        "cuda_version": torch.version.cuda,
        "gpu_driver": driver_version(),
    }


def start(device: str) -> None:
    """Make the peak-memory counters the coming trial's own: a reused worker keeps its
    process, and with it the memory torch cached for the trial before."""
    torch = _cuda_torch(device)
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()  # the previous trial's tensors, so that their cache can go back
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def usage(device: str) -> dict[str, Any]:
    """The device columns at the trial's end, its peak memory included."""
    torch = _cuda_torch(device)
    if torch is None or not torch.cuda.is_initialized():
        return describe(device)
    try:
        peaks = {
            "gpu_memory_peak": torch.cuda.max_memory_allocated(),
            "gpu_memory_reserved": torch.cuda.max_memory_reserved(),
        }
    except RuntimeError:  # a CUDA error ended the trial; its report matters more
        peaks = {}
    return describe(device) | peaks


def driver_version() -> str | None:
    """The NVIDIA driver's version, from its management library (NVML); None without it."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            return None
        text = ctypes.create_string_buffer(96)
        found = nvml.nvmlSystemGetDriverVersion(text, ctypes.c_uint(96)) == 0
        nvml.nvmlShutdown()
        return text.value.decode() if found else None
    except (OSError, AttributeError):
        return None


def _cuda_torch(device: str) -> ModuleType | None:
    """torch, when the trial runs on CUDA, the experiment has imported torch and torch
    can use the GPU."""
    torch = sys.modules.get("torch")
    if device != "cuda" or torch is None or not torch.cuda.is_available():
        return None
    return torch
