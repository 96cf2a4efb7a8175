"""Certified L0-constrained solvers shared by optimal sparse probing and sparse regression."""
