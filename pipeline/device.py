"""The device a number was measured on, named the same way in every benchmark and model card."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def device_name() -> str:
    """The GPU when the Keras backend has one, else the CPU's model name and core count."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    if keras.backend.backend() == "jax":
        import jax

        if jax.devices()[0].platform != "cpu":
            return str(jax.devices()[0])
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    return f"{name}, {os.cpu_count()} cores"
