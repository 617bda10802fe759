"""The web app's message catalogs, one module per language (vi.py, en.py)."""
