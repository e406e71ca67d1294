"""The package index: PEP 503/691 pages, metadata, downloads, over one pooled HTTP client."""
