"""Command-line entry points: the I/O edge (nothing imports this package)."""
