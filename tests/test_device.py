"""The device names and `train.precision: auto`: mixed precision only where the hardware computes it natively."""

from __future__ import annotations

import platform

from pipeline.device import cpu_flags, cpu_name, native_precision

# The flags lines of two real 2-core AMD EPYC machines of this project (/proc/cpuinfo), shortened
ZEN3_AVX2 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
    "flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 sha_ni vaes vpclmulqdq rdpid fsrm\n"
    "bugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nflags\t\t: fpu\n"
)
ZEN4_AVX512_BF16 = (
    "processor\t: 0\nmodel name\t: AMD EPYC\n"
    "flags\t\t: fpu sse sse2 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni\n"
)
INTEL_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_fp16 amx_bf16 amx_tile amx_int8\n"


def test_cpu_flags_are_the_first_cpus_flags_line():
    assert cpu_flags(ZEN3_AVX2) >= {"avx2", "fma", "sse4_2"}
    assert "avx512f" not in cpu_flags(ZEN3_AVX2)
    assert "fpu" in cpu_flags(ZEN3_AVX2) and "sysret_ss_attrs" not in cpu_flags(ZEN3_AVX2)  # not the bugs line
    assert cpu_flags("") == set()


def test_auto_precision_is_bfloat16_only_on_cpus_that_compute_it_natively():
    assert native_precision(None, cpu_flags(ZEN3_AVX2)) == "float32"
    assert native_precision(None, cpu_flags(ZEN4_AVX512_BF16)) == "mixed_bfloat16"
    assert native_precision(None, cpu_flags(INTEL_AMX)) == "mixed_bfloat16"
    assert native_precision("NVIDIA H200", cpu_flags(ZEN3_AVX2)) == "mixed_float16"


def test_cpu_name_is_the_first_cpus_model_name_family_and_model():
    """A cloud's "AMD EPYC" names no generation; its family and model do (25: Zen 3 or 4, 26: Zen 5)."""
    assert cpu_name(ZEN3_AVX2, 2) == "AMD EPYC (family 25, model 1), 2 cores"
    assert cpu_name(ZEN4_AVX512_BF16, 2) == "AMD EPYC, 2 cores"  # no family line: the name alone
    assert cpu_name("", 4) == f"{platform.processor()}, 4 cores"
