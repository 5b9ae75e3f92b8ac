"""Baselines to measure against, never recommended: the classic code and raw ``.npy``."""
