"""What the paper and the datasets say, as plain data (no torch, no I/O)."""
