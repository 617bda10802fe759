"""The pipeline: a batch (one scanned file) -> pages -> dossiers. See ingest/pipeline.py."""
