"""Image work: decode pages, straighten them, read barcodes and text, build PDF/A, extract fields.

Every function here is pure with respect to storage: images and bytes in, results out.
"""


def one_thread_per_page() -> None:
    """OpenCV computes on the calling thread only. sohoa reads pages in parallel over the cores
    itself (a runner's threads, Celery's processes); OpenCV's own pool on top of that only
    fights them (BENCHMARKS.md: a batch 3 % faster, connected components in a third of the CPU)."""
    import cv2

    cv2.setNumThreads(1)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's malloc.h)


def keep_freed_buffers(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> None:
    """A page's buffers (8 MB grey, 25 MB colour at 300 dpi) go back to the allocator when freed,
    not to the kernel. By default glibc maps each on its own and unmaps it when freed, and the next
    page faults every one of its pages in again: half the page faults of a batch, a third of the
    reading process's time in the kernel (BENCHMARKS.md, "Page faults, BLAS threads"). Past
    `mmap_threshold` a buffer is still mapped on its own; at most `trim_threshold` of freed memory
    stays with each of the allocator's arenas. Without glibc, nothing changes."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc's allocator
        return
    mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    mallopt(M_TRIM_THRESHOLD, trim_threshold)

