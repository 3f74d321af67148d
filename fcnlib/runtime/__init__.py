"""Where and how a job computes: devices, precision, determinism, allocator, fast forward, process pool."""
