r"""Target normalisation and the training losses.

The head de-normalises its output (``y = scale * f(x) + shift`` per irrep part, see
:meth:`crystensor.nn.readout.TensorHead.set_output_normalization`), so the network learns
targets of unit size. The statistics come from the training split only:

.. math::

    \text{shift}_p = \begin{cases} \overline{y_p} & p = 0e \\ 0 & \text{otherwise} \end{cases}
    \qquad
    \text{scale}_p = \sqrt{\tfrac{1}{n\,d_p} \textstyle\sum_i \lVert y_{i,p}
        - \text{shift}_p \rVert^2}

A non-scalar part gets no shift (a constant vector or tensor would break equivariance) and one
scale for its ``2l+1`` components (a per-component scale would too).

Losses, the mean of ``f`` (squared error, Huber or absolute error) over normalised errors:

* ``irreps``: :math:`\frac{1}{n D}\sum_{i,k} f\big((\hat y_{ik} - y_{ik}) / \text{scale}_k\big)`
  — every part counts equally whatever its units or size;
* ``cartesian``: :math:`\frac{1}{n 3^r}\sum_{i,a} f\big((\hat T_{ia} - T_{ia}) / s\big)` with
  ``s`` the RMS of the training Cartesian components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crystensor.errors import InputError
from crystensor.tensors.kinds import TensorKind

__all__ = ["Normalization", "elementwise_function", "loss_function", "target_normalization"]


@dataclass(frozen=True)
class Normalization:
    """Per-part ``scale`` and ``shift`` (length ``n_parts``) and the Cartesian RMS ``s``."""

    scale: tuple[float, ...]
    shift: tuple[float, ...]
    cartesian_rms: float

    def to_dict(self) -> dict[str, list[float] | float]:
        return {
            "scale": list(self.scale),
            "shift": list(self.shift),
            "cartesian_rms": self.cartesian_rms,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        return cls(tuple(data["scale"]), tuple(data["shift"]), float(data["cartesian_rms"]))

    def component_scale(self, kind: TensorKind) -> np.ndarray:
        """``(dim,)``: each part's scale repeated over its components."""
        return np.repeat(np.asarray(self.scale), [p.dim for p in kind.parts])


def target_normalization(
    irreps: np.ndarray, cartesian: np.ndarray, kind: TensorKind
) -> Normalization:
    """Statistics of the training targets.

    Parameters
    ----------
    irreps : array ``(n, dim)``
        Target irreps of the training graphs.
    cartesian : array ``(n, 3, ..., 3)`` or ``(n,)``
        The same targets as Cartesian tensors (scalars for rank 0).
    kind : TensorKind

    Examples
    --------
    >>> from crystensor.tensors.kinds import get_kind
    >>> y = np.array([[1.0], [3.0]])
    >>> norm = target_normalization(y, y[:, 0], get_kind("scalar"))
    >>> norm.scale, norm.shift, round(norm.cartesian_rms, 4)
    ((1.0,), (2.0,), 2.2361)
    """
    irreps = np.asarray(irreps, dtype=np.float64)
    if irreps.ndim != 2 or irreps.shape[1] != kind.dim or irreps.shape[0] == 0:
        raise ValueError(
            f"need target irreps of shape (n >= 1, {kind.dim}) for {kind.name}, got {irreps.shape}"
        )
    scales, shifts = [], []
    start = 0
    for part in kind.parts:
        block = irreps[:, start : start + part.dim]
        start += part.dim
        shift = float(block.mean()) if part.irrep == "0e" else 0.0
        scale = float(np.sqrt(np.mean((block - shift) ** 2)))
        scales.append(scale if scale > 1e-12 else 1.0)  # a constant part: leave it unscaled
        shifts.append(shift)
    rms = float(np.sqrt(np.mean(np.asarray(cartesian, dtype=np.float64) ** 2)))
    return Normalization(tuple(scales), tuple(shifts), rms if rms > 1e-12 else 1.0)


_ELEMENTWISE = {
    "mse": lambda d: d.pow(2),
    "huber": lambda d: torch.nn.functional.huber_loss(d, torch.zeros_like(d), reduction="none"),
    "l1": torch.abs,
}


def elementwise_function(function: str):
    """The elementwise cost of a normalised error: ``"mse"``, ``"huber"`` or ``"l1"``."""
    if function not in _ELEMENTWISE:
        raise ValueError(f"unknown loss function {function!r}; choose {', '.join(_ELEMENTWISE)}")
    return _ELEMENTWISE[function]


def loss_function(
    space: str,
    normalization: Normalization,
    kind: TensorKind,
    function: str = "mse",
    sign_agnostic: bool = False,
    per_structure: bool = False,
):
    """``loss(output, batch) -> scalar tensor``: mean of ``function`` over normalised errors.

    ``space`` is ``"irreps"`` or ``"cartesian"``; ``function`` is ``"mse"``, ``"huber"``
    (delta 1 normalised unit) or ``"l1"``. ``output`` is the model's dict; ``batch`` carries
    ``y (B, dim)`` and ``y_cartesian``. A scalar kind has no Cartesian form beyond its single
    irrep, so both spaces coincide.

    ``sign_agnostic`` (odd-rank kinds only): each structure's loss is the smaller of its losses
    against the target and the negated target, so a label whose sign is arbitrary costs
    nothing for the sign. Invariant under ``y -> -y`` per structure, and still equivariant:
    ``-T`` rotates as ``T`` does.

    ``per_structure``: return each structure's mean cost ``(B,)`` instead of the batch mean
    (for :func:`crystensor.train.supervision.mixed_loss`).

    Raises
    ------
    crystensor.errors.InputError
        ``sign_agnostic`` for an even-rank kind (whose tensors do not flip sign).
    """
    elementwise = elementwise_function(function)
    if space not in ("irreps", "cartesian"):
        raise ValueError(f"unknown loss space {space!r}; choose irreps or cartesian")
    if sign_agnostic and kind.rank % 2 == 0:
        raise InputError(
            f"--sign-agnostic is for odd-rank targets (piezoelectric); a {kind.name} tensor "
            "does not change sign under inversion, so its sign is never ambiguous"
        )

    def reduce(pred: torch.Tensor, true: torch.Tensor, weight) -> torch.Tensor:
        flat = (pred - true).flatten(1) * weight
        cost = elementwise(flat).mean(1)
        if sign_agnostic:
            flipped = (pred + true).flatten(1) * weight
            cost = torch.minimum(cost, elementwise(flipped).mean(1))
        return cost if per_structure else cost.mean()

    if space == "cartesian" and kind.rank > 0:
        inv = 1.0 / normalization.cartesian_rms

        def cartesian_loss(output, batch):
            return reduce(output["cartesian"], batch.y_cartesian, inv)

        return cartesian_loss
    inv_scale = torch.as_tensor(1.0 / normalization.component_scale(kind))

    def irreps_loss(output, batch):
        pred = output["irreps"]
        return reduce(pred, batch.y, inv_scale.to(device=pred.device, dtype=pred.dtype))

    return irreps_loss
