"""Device selection and a human-readable device name for search-cost reporting."""
from __future__ import annotations

import os
import platform

import torch


def get_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} asked for, but CUDA is not available (fix: --device cpu)")
    return dev


def describe_device(device: torch.device) -> str:
    """e.g. 'NVIDIA H100 80GB HBM3' or 'CPU (2 threads, AMD EPYC ...)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores, {model})"
