"""Image work: decode pages, straighten them, read barcodes and text, build PDF/A, extract fields.

Every function here is pure with respect to storage: images and bytes in, results out.
"""
