"""Kernel object kinds.  Nothing in here imports the bus library."""
