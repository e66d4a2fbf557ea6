"""The commands' malloc settings (runtime.allocator: reuse): applied on glibc."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from seq2seq.allocator import reuse_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_reuse_freed_memory_applies_on_glibc():
    assert reuse_freed_memory() is GLIBC


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_large_blocks_no_longer_come_from_mmap():
    # A 64 MB block: with the settings it is served from the heap, so the
    # count of mmap'd blocks (mallinfo2().hblks) does not grow; without them, glibc maps it.
    code = """
import ctypes, sys
from seq2seq.allocator import reuse_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "on":
    reuse_freed_memory()
before = libc.mallinfo2().hblks
p = libc.malloc(64 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(p)
"""
    def mapped_blocks(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert mapped_blocks("off") == 1 and mapped_blocks("on") == 0
