"""Image work: decode pages, straighten them, read barcodes and text, build PDF/A, extract fields.

Every function here is pure with respect to storage: images and bytes in, results out.
"""


def one_thread_per_page() -> None:
    """OpenCV computes on the calling thread only. sohoa reads pages in parallel over the cores
    itself (a runner's threads, Celery's processes); OpenCV's own pool on top of that only
    fights them (BENCHMARKS.md: a batch 3 % faster, connected components in a third of the CPU)."""
    import cv2

    cv2.setNumThreads(1)
