"""Read-only collectors: the kernel's view, turned into model records."""
