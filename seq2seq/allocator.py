"""Keep freed memory for reuse: the glibc malloc settings of `runtime.allocator: reuse` (`seq2seq.runtime.apply`).

glibc serves every block above its mmap threshold (32 MB at most) with a fresh mmap and returns it with munmap when
freed. A training step allocates several such tensors (the logits of a batch and their gradient are 45 MB each for
a language model's 2,240 x 10,000 bf16 logits), so the kernel zero-fills their pages again at every step; on a
2-core machine that was a third of the time of a 2x200 language-model step. Serving large blocks from the heap and
not trimming it keeps those pages mapped: the 2x200 step went from 12,736 to 19,606 tokens/s and the translation
recipe's from 6,504 to 8,082 target tokens/s; peak RSS rose from 2.6 to 4.0 GiB (docs/speed.md, `scripts/bench.py`).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h


def reuse_freed_memory() -> bool:
    """Large blocks from the heap (no mmap) and no trimming of it; returns whether the settings took effect (on
    glibc only). Process-wide and not undone: call it once, at start (`seq2seq.runtime.apply` does)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
