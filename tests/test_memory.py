"""The CLI's allocator setting (imnkit.memory)."""

import ctypes
import platform
import sys

import pytest

from imnkit.memory import reuse_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv("IMNKIT_KEEP_MALLOC", "1")
    assert reuse_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt and mallinfo2 are glibc's")
def test_large_blocks_stay_in_the_heap(monkeypatch):
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    monkeypatch.delenv("IMNKIT_KEEP_MALLOC", raising=False)
    assert reuse_freed_memory() is True
    # A 64 MB block (glibc's default would mmap it and unmap it on free) now comes from the heap and,
    # once freed, stays there for the next layer's output.
    mapped_before = libc.mallinfo2().hblkhd
    block = libc.malloc(64 << 20)
    mapped_during = libc.mallinfo2().hblkhd
    libc.free(block)
    assert mapped_during - mapped_before < (64 << 20)
    assert libc.mallinfo2().fordblks >= (64 << 20)
