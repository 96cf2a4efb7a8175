"""Streaming, mergeable first and second moments of two blocks of variables, for Pearson correlations.

The thesis (B.2.2) keeps raw sums ``Σx``, ``Σx²`` and ``Σxyᵀ`` and forms
``Σxy − n x̄ ȳ`` at the end. In float32 that difference cancels
catastrophically when a neuron's mean is large beside its spread (a GELU
neuron that sits at −0.17 with a spread of 0.01, or any pre-activation with a
large bias), so the paper accumulates in float64 on the CPU — 11 GB per model
pair for GPT-2 small.

Here every block keeps a fixed **shift** ``s`` (the first batch's mean) and
accumulates the sums of the *shifted* values, ``Σ(x−s)``, ``Σ(x−s)²`` and
``Σ(x−s)(y−t)ᵀ``. The batch products are float32 GEMMs on shifted, hence
small, values — accurate, and at the machine's GEMM rate — added into float64
sums. The centred co-moment ``Σ(x−x̄)(y−ȳ)ᵀ = Σ(x−s)(y−t)ᵀ − n (x̄−s)(ȳ−t)ᵀ``
loses nothing because ``x̄ − s`` is small. Two states merge exactly (Chan,
Golub & LeVeque's pairwise update), whatever their shifts, so shards and
workers combine into what one pass would have given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from needle.errors import InputError

__all__ = ["ColumnMoments", "CrossMoments", "shifted"]


@dataclass
class Shifted:
    """One batch of a block, shifted: what every update needs, computed once per batch.

    Attributes
    ----------
    values : Tensor of float32, shape (n, p)
        ``x − shift``.
    shift : Tensor of float32, shape (p,)
    sums : Tensor of float64, shape (p,)
        ``Σ (x − shift)`` over the batch.
    squares : Tensor of float64, shape (p,)
        ``Σ (x − shift)²`` over the batch.
    """

    values: torch.Tensor
    shift: torch.Tensor
    sums: torch.Tensor
    squares: torch.Tensor

    @property
    def n(self) -> int:
        return self.values.shape[0]

    def rotate(self, matrix: torch.Tensor) -> Shifted:
        """The batch of ``x @ matrix.T`` (a (p', p) float32 matrix), in the same shifted form."""
        values = self.values @ matrix.T
        return Shifted(values, self.shift @ matrix.T, self.sums @ matrix.T.double(),
                       values.pow(2).sum(0, dtype=torch.float64))


def shifted(values: torch.Tensor, shift: torch.Tensor | None) -> Shifted:
    """Shift a (n, p) batch by ``shift`` (None: by this batch's own float32 mean)."""
    values = values.float()
    if shift is None:
        shift = values.mean(0)
    x = values - shift
    # Squares are positive: rounding them in float32 costs nothing; the sums are float64.
    return Shifted(x, shift, x.sum(0, dtype=torch.float64), x.pow(2).sum(0, dtype=torch.float64))


class ColumnMoments:
    """Count, mean and centred second moment of each of ``p`` variables, streamed.

    Parameters
    ----------
    p : int
    device : torch.device or str, optional
    """

    def __init__(self, p: int, device: torch.device | str | None = None) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.s1 = torch.zeros(p, dtype=torch.float64, device=device)
        self.s2 = torch.zeros(p, dtype=torch.float64, device=device)

    def update(self, batch: Shifted) -> None:
        """Add a batch (shifted by :attr:`shift`; the first batch sets it)."""
        if self.shift is None:
            self.shift = batch.shift
        self.n += batch.n
        self.s1 += batch.sums
        self.s2 += batch.squares

    @property
    def mean(self) -> torch.Tensor:
        """Shape (p,), float64."""
        return self.shift.double() + self.s1 / self.n

    @property
    def m2(self) -> torch.Tensor:
        """``Σ (x − x̄)²``, shape (p,), float64 (clipped at 0)."""
        return (self.s2 - self.s1 ** 2 / self.n).clamp(min=0)

    def state(self) -> dict:
        return {"n": self.n, "shift": self.shift, "s1": self.s1, "s2": self.s2}

    @classmethod
    def from_state(cls, state: dict) -> ColumnMoments:
        new = cls(len(state["s1"]), state["s1"].device)
        new.n, new.shift, new.s1, new.s2 = int(state["n"]), state["shift"], state["s1"].clone(), state["s2"].clone()
        return new


class CrossMoments:
    """Streamed moments of two blocks ``x`` (p variables) and ``y`` (q variables) seen on the same tokens.

    Holds the column moments of both and the (p, q) float64 sum of shifted
    products; :meth:`correlation` gives their Pearson correlations and
    :meth:`merge` combines two states exactly.

    Parameters
    ----------
    p, q : int
    device : torch.device or str, optional
    """

    def __init__(self, p: int, q: int, device: torch.device | str | None = None) -> None:
        self.x = ColumnMoments(p, device)
        self.y = ColumnMoments(q, device)
        self.sxy = torch.zeros(p, q, dtype=torch.float64, device=device)

    @property
    def n(self) -> int:
        return self.x.n

    def update(self, x: Shifted | torch.Tensor, y: Shifted | torch.Tensor) -> None:
        """Add a batch: ``x`` of shape (n, p) and ``y`` of shape (n, q), raw or already :func:`shifted`.

        A raw batch is shifted by this state's shift (set by the first batch).
        A :class:`Shifted` batch must carry this state's shift.
        """
        x = x if isinstance(x, Shifted) else shifted(x, self.x.shift)
        y = y if isinstance(y, Shifted) else shifted(y, self.y.shift)
        if x.n != y.n:
            raise InputError(f"x and y must hold the same tokens, got {x.n} and {y.n} rows.")
        for mine, theirs in ((self.x.shift, x.shift), (self.y.shift, y.shift)):
            if mine is not None and mine is not theirs and not torch.equal(mine, theirs):
                raise InputError("a shifted batch must use the state's shift; shift it with shifted(values, "
                                 "state.x.shift).")
        self.x.update(x)
        self.y.update(y)
        self.sxy.add_(x.values.T @ y.values)  # float32 GEMM, added into the float64 sums

    def comoment(self) -> torch.Tensor:
        """``Σ (x − x̄)(y − ȳ)ᵀ``, shape (p, q), float64."""
        return self.sxy - torch.outer(self.x.s1, self.y.s1) / self.n

    def correlation(self) -> torch.Tensor:
        """Pearson correlations, shape (p, q), float64; NaN where a variable is constant."""
        if self.n < 2:
            raise InputError(f"correlations need at least 2 tokens, got {self.n}.")
        scale = torch.sqrt(torch.outer(self.x.m2, self.y.m2))
        return torch.where(scale > 0, self.comoment() / scale, torch.full_like(scale, float("nan")))

    def merge(self, other: CrossMoments) -> CrossMoments:
        """The state of both streams together; ``self`` is updated and returned.

        States with the same shifts add their sums (bit for bit what one pass
        gives when float32 rounds nothing); otherwise Chan et al.'s pairwise
        update combines the centred moments, exact in exact arithmetic.
        """
        if self.sxy.shape != other.sxy.shape:
            raise InputError(f"cannot merge moments of shapes {tuple(self.sxy.shape)} and {tuple(other.sxy.shape)}.")
        if other.n == 0:
            return self
        if self.n == 0:
            self.x, self.y, self.sxy = (ColumnMoments.from_state(other.x.state()),
                                        ColumnMoments.from_state(other.y.state()), other.sxy.clone())
            return self
        if torch.equal(self.x.shift, other.x.shift) and torch.equal(self.y.shift, other.y.shift):
            # Same shifts (shards of one stream that share them): the sums simply add, exactly.
            for mine, theirs in ((self.x, other.x), (self.y, other.y)):
                mine.n += theirs.n
                mine.s1 = mine.s1 + theirs.s1
                mine.s2 = mine.s2 + theirs.s2
            self.sxy = self.sxy + other.sxy
            return self
        n1, n2 = self.n, other.n
        n = n1 + n2
        mx1, my1, mx2, my2 = self.x.mean, self.y.mean, other.x.mean, other.y.mean
        c = self.comoment() + other.comoment() + torch.outer(mx2 - mx1, my2 - my1) * (n1 * n2 / n)
        m2x = self.x.m2 + other.x.m2 + (mx2 - mx1) ** 2 * (n1 * n2 / n)
        m2y = self.y.m2 + other.y.m2 + (my2 - my1) ** 2 * (n1 * n2 / n)
        mx, my = (n1 * mx1 + n2 * mx2) / n, (n1 * my1 + n2 * my2) / n
        # Re-express around this state's shifts: s1 = n (mean - shift), s2 = m2 + n (mean - shift)^2.
        dx, dy = mx - self.x.shift.double(), my - self.y.shift.double()
        self.x.n = self.y.n = n
        self.x.s1, self.x.s2 = n * dx, m2x + n * dx ** 2
        self.y.s1, self.y.s2 = n * dy, m2y + n * dy ** 2
        self.sxy = c + n * torch.outer(dx, dy)
        return self

    def state(self) -> dict:
        """Tensors to save (``torch.save``) and restore with :meth:`from_state`."""
        return {"x": self.x.state(), "y": self.y.state(), "sxy": self.sxy}

    @classmethod
    def from_state(cls, state: dict) -> CrossMoments:
        new = cls(1, 1)
        new.x, new.y = ColumnMoments.from_state(state["x"]), ColumnMoments.from_state(state["y"])
        new.sxy = state["sxy"].clone()
        return new
