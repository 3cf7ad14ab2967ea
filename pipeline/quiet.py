"""Loaded by `pipeline/__init__.py`, so before Keras in every entry point: a quiet console and reproducible runs.

TensorFlow reads these variables once, when it loads; a user's own setting wins.
- TF_CPP_MIN_LOG_LEVEL=3 hides TensorFlow's C++ info and warning lines.
- TF_ENABLE_ONEDNN_OPTS=0 and ONEDNN_MAX_CPU_ISA=AVX2: oneDNN picks its kernels by the CPU's instruction set,
  so the same seed gave different weights on an AVX-512 and an AVX2 machine of one kind. The first turns off
  oneDNN's graph rewrites; the second caps the oneDNN matrix products that TensorFlow's own kernels still call
  at AVX2, which every x86-64 CPU of this kind has.
- TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS=2: a reduction split over another thread count rounds
  differently, so the count must not follow the machine's cores.
- TF_DETERMINISTIC_OPS=1: no run-to-run nondeterminism within one machine.

TF_CPP_MIN_LOG_LEVEL does not reach the lines absl logs before its initialisation (`WARNING: All log
messages before absl::InitializeLog() ...`, `E0000 ... node_def_util.cc ...` during fit and predict): they
go straight to the C-level stderr. So when a pipeline module is the program (`python -m pipeline.<x>`),
file descriptor 2 is routed through a small filter process that drops exactly those lines and passes the
rest (a crash message still shows); Python's own `sys.stderr` keeps the original stream. FER_TF_LOGS=1
keeps TensorFlow's lines.
"""

import os
import re
import signal
import subprocess
import sys

SETTINGS = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_NUM_INTRAOP_THREADS": "2",
    "TF_NUM_INTEROP_THREADS": "2",
    "TF_DETERMINISTIC_OPS": "1",
}
# FER_CPU_KERNELS picks oneDNN's kernels. `portable` (default): the same bits on every x86-64 CPU, at ~25 %
# less float32 speed. `native`: the CPU's own instruction set, needed for bfloat16 (AVX-512 BF16 / AMX),
# where portable kernels run ~50x slower; the train stage switches to it for `train.precision: mixed_bfloat16`.
KERNELS = {
    "portable": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "native": {"TF_ENABLE_ONEDNN_OPTS": "1"},
}


def kernels() -> str:
    return os.environ.get("FER_CPU_KERNELS", "portable")


def environ_for(kind: str) -> dict[str, str]:
    """This process's environment for a child on `kind` kernels: the kernel settings this process defaulted
    to are dropped, so the child's own `quiet` sets those of `kind`."""
    settings = {key for values in KERNELS.values() for key in values}
    return {k: v for k, v in os.environ.items() if k not in settings} | {"FER_CPU_KERNELS": kind}


# absl / glog lines (`E0000 00:00:1732... 123 node_def_util.cc:450] ...`), TensorFlow's older format
# (`2026-11-24 10:00:00.123456: I tensorflow/...`) and absl's pre-initialisation notice.
NOISE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w./-]+:\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)"
)


def is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


def run_as_program(argv: list[str]) -> bool:
    """True for `python -m pipeline.<module> ...`, False when pytest or a notebook imports the package."""
    args = argv[1:]
    return "-m" in args[:-1] and args[args.index("-m") + 1].startswith("pipeline.")


def filter_native_stderr() -> subprocess.Popen:
    """Point fd 2 at a filter process that forwards all but NOISE to the real stderr; sys.stderr bypasses it."""
    sys.stderr.flush()
    real = os.dup(2)
    os.set_inheritable(real, False)
    sys.stderr = open(real, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    # A separate process, not a thread: it still forwards a native crash message after this one dies.
    flt = subprocess.Popen([sys.executable, "-S", __file__], stdin=subprocess.PIPE, stdout=real, stderr=subprocess.DEVNULL)
    os.dup2(flt.stdin.fileno(), 2)
    flt.stdin.close()
    return flt


def forward(source, sink) -> None:
    """The filter process: copy lines until every writer has closed the pipe; Ctrl-C is the program's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in source:
        if not is_noise(line):
            sink.write(line)
            sink.flush()


if __name__ == "__main__":
    forward(sys.stdin.buffer, sys.stdout.buffer)
else:
    if kernels() not in KERNELS:
        sys.exit(f"error: FER_CPU_KERNELS={kernels()} is not one of: {', '.join(KERNELS)}")
    for _key, _value in (SETTINGS | KERNELS[kernels()]).items():
        os.environ.setdefault(_key, _value)
    if os.environ.get("FER_TF_LOGS") != "1" and run_as_program(sys.orig_argv):
        _FILTER = filter_native_stderr()
