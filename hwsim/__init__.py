"""Cycle-level simulation of sparse models on N:M training accelerators and mobile CPUs."""
__version__ = "0.1.0"
