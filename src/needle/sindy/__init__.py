"""Sparse identification of nonlinear dynamics with certified mixed-integer sparse regression (thesis Chapter 5).

- :func:`fit_miosr` — MIOSR's regression on arrays (library and derivatives),
  with a certificate per solve; needs only numpy;
- :class:`MIOSR` — the PySINDy optimiser (``ps.SINDy(optimizer=MIOSR(...))``),
  a drop-in for ``pysindy.MIOSR`` without Gurobi; needs the ``sindy`` extra
  (``pip install 'needle[sindy]'``).
"""

from needle.sindy._solve import GUROBI_MIP_GAP, MIOSRFit, fit_miosr

__all__ = ["GUROBI_MIP_GAP", "MIOSR", "MIOSRFit", "fit_miosr"]


def __getattr__(name):
    # PySINDy is optional: import the optimiser only when asked for, and say how to get it.
    if name == "MIOSR":
        try:
            from needle.sindy.miosr import MIOSR
        except ImportError as exc:
            if "pysindy" not in str(exc):
                raise
            raise ImportError(
                "needle.sindy.MIOSR needs PySINDy: pip install 'needle[sindy]'. "
                "(needle.sindy.fit_miosr works on arrays without it.)"
            ) from exc
        return MIOSR
    raise AttributeError(f"module 'needle.sindy' has no attribute {name!r}")
