"""Metric modules with evaluate's interface (evaluate.Metric) that compute offline."""
