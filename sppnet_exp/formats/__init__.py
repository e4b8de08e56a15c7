"""File formats that one package writes and another reads (below both: detection writes, reporting reads)."""
