"""Task-level routines that bundle configs call (synthesis, evaluation), one module per bundle."""
