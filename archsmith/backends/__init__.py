"""Backends: turn elaborated models into PyTorch source, Graphviz diagrams and summaries."""
