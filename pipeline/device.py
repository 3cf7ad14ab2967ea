"""The device a number was measured on, named the same way in every benchmark and model card, and the
training precision that device computes natively."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# CPU flags (/proc/cpuinfo) of the instruction sets that compute bfloat16 natively; without them oneDNN
# emulates it, and a mixed_bfloat16 train stage crawls (see `auto_precision`).
BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def gpu_name() -> str | None:
    """The Keras backend's GPU, or None when it computes on the CPU."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0]) if jax.devices()[0].platform != "cpu" else None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else None
    return None


def _cpuinfo() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text() if cpuinfo.exists() else ""


def first_cpu(cpuinfo: str) -> dict[str, str]:
    """The `key: value` fields of the first CPU in a /proc/cpuinfo text (empty elsewhere)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: str) -> set[str]:
    """The instruction-set flags of the first CPU in a /proc/cpuinfo text (none elsewhere)."""
    return set(first_cpu(cpuinfo).get("flags", "").split())


def cpu_name(cpuinfo: str, cores: int | None) -> str:
    """The first CPU's model name, family and model (a cloud's "AMD EPYC" names no generation: family 25 is
    Zen 3 or 4, 26 is Zen 5) and the core count, from a /proc/cpuinfo text; elsewhere the platform's name."""
    fields = first_cpu(cpuinfo)
    name = fields.get("model name") or platform.processor()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return f"{name}, {cores} cores"


def device_name() -> str:
    """The GPU when the Keras backend has one, else the CPU's."""
    gpu = gpu_name()
    return gpu if gpu is not None else cpu_name(_cpuinfo(), os.cpu_count())


def native_precision(gpu: str | None, cpu_flags: set[str]) -> str:
    """The mixed precision a device computes natively (float16 on a GPU, bfloat16 on a CPU with AVX-512 BF16
    or AMX), else float32: on an AVX2-only CPU a mixed_bfloat16 train stage ran at 4 images/s
    (benchmarks/results/cpu_speed_avx2.md)."""
    if gpu is not None:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_flags & BFLOAT16_CPU_FLAGS else "float32"


def auto_precision() -> str:
    """`train.precision: auto` on this machine."""
    return native_precision(gpu_name(), cpu_flags(_cpuinfo()))
