"""Hitmap: visitor maps and click heatmaps for websites."""

__version__ = "0.1.0"
