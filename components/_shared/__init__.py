"""Pieces every stage shares: errors, table I/O, image names, registry access."""
