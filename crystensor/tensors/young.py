r"""The paper's explicit harmonic decomposition: Young symmetrisers, traces, epsilon contractions.

This is the human-readable view of a tensor (Heilman, Schlesinger & Yan, Appendix A): each kind
is split by Young symmetrisers into a fully symmetric part ``S`` and a mixed-symmetry part ``A``,
which traces (contraction with :math:`\delta`) and contractions with the Levi-Civita symbol
:math:`\varepsilon` reduce to fully symmetric sub-tensors. Each ``split_*`` function returns the
named sub-tensors; ``reconstruct`` rebuilds the tensor from them exactly.

Conventions and corrections to the printed paper
-----------------------------------------------
* Dielectric: :math:`\varepsilon = \tfrac{T}{3}\delta + R` with :math:`T = \varepsilon_{ii}`;
  the paper prints :math:`R_{ij} = \varepsilon_{ij} - T g_{ij}`, missing the factor 1/3.
* Piezoelectric: we use the *stress* constants :math:`e_{ijk} = e_{ikj}` (symmetric pair last,
  as the Materials Project stores them); the paper writes the strain constants
  :math:`d_{ijk} = d_{jik}`. The formulas below are the paper's with the indices permuted to
  match. The vector part of ``A`` is
  :math:`V_{ijk} = \tfrac14(2\delta_{jk}v_i - \delta_{ij}v_k - \delta_{ik}v_j)` with
  :math:`v_i = A_{ijj}`; the paper's printed
  :math:`V_{ijk} = \tfrac14[v_i g_{jk} + v_j g_{ik} - 2 v_j g_{ik}]` repeats a term and lacks
  the symmetry of the tensor. The rank-2 part is
  :math:`b_{ij} = \tfrac12(\varepsilon_{imk}A_{mkj} + \varepsilon_{jmk}A_{mki})` and
  :math:`B_{ijk} = \tfrac13(\varepsilon_{ijp}b_{pk} + \varepsilon_{ikp}b_{pj})`, as printed.
* Elastic: the paper's :math:`S_{ijkl} = \tfrac13(C_{ijkl} + C_{ikjl} + C_{klij})` is not fully
  symmetric (with the major symmetry :math:`C_{klij} = C_{ijkl}`); the third term must be
  :math:`C_{iljk}`. We use the full symmetriser, which equals the corrected formula.
  :math:`t_{ij} = \varepsilon_{imk}\varepsilon_{jnl}A_{mnkl}` (the paper's
  :math:`A_{mnl}` lacks an index) and the reconstruction is
  :math:`N_{ijkl} = \tfrac16(\varepsilon_{ikm}\varepsilon_{jln} + \varepsilon_{ilm}
  \varepsilon_{jkn})\,t_{mn}`; the paper prints only a schematic
  :math:`\tfrac12(\varepsilon\varepsilon - \varepsilon\varepsilon)t`. The fully symmetric
  part is :math:`S = H + \tfrac67\,\mathrm{Sym}(\delta\otimes d) +
  \tfrac{s}{5}\,\mathrm{Sym}(\delta\otimes\delta)` with :math:`s = S_{iijj}`, the traceless
  :math:`d_{ij} = S_{ijkk} - \tfrac{s}{3}\delta_{ij}` and the harmonic (fully symmetric,
  traceless) :math:`H`.

All functions take a single unbatched tensor in float64 and need only numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = [
    "SubTensor",
    "levi_civita",
    "split",
    "split_dielectric",
    "split_elastic",
    "split_piezoelectric",
    "symmetrize_fully",
]

DELTA = np.eye(3)


@cache
def levi_civita() -> np.ndarray:
    r"""The Levi-Civita symbol :math:`\varepsilon_{ijk}`, shape ``(3, 3, 3)``.

    >>> float(levi_civita()[0, 1, 2]), float(levi_civita()[1, 0, 2])
    (1.0, -1.0)
    """
    eps = np.zeros((3, 3, 3))
    for perm in itertools.permutations(range(3)):
        eps[perm] = np.linalg.det(np.eye(3)[list(perm)])
    eps.setflags(write=False)
    return eps


def symmetrize_fully(tensor: np.ndarray) -> np.ndarray:
    r"""The fully symmetric part :math:`\mathrm{Sym}(T) = \frac{1}{n!}\sum_\pi T_{\pi(i_1..i_n)}`.

    >>> t = np.zeros((3, 3)); t[0, 1] = 2.0
    >>> float(symmetrize_fully(t)[1, 0])
    1.0
    """
    perms = list(itertools.permutations(range(tensor.ndim)))
    return sum(np.transpose(tensor, p) for p in perms) / len(perms)


@dataclass(frozen=True)
class SubTensor:
    """One named piece of the explicit decomposition.

    Attributes
    ----------
    name : str
        Symbol used in the paper (``T``, ``R``, ``s``, ``W``, ``v``, ``b``, ...).
    description : str
        What the piece is, in words.
    l : int
        Rotational order of the irreducible part it carries (0 for scalars).
    value : np.ndarray
        The sub-tensor, shape ``(3,) * rank`` (``()`` for a scalar); fully symmetric, and
        traceless when it is a single irreducible part.
    """

    name: str
    description: str
    l: int
    value: np.ndarray


def _check(tensor: np.ndarray, rank: int) -> np.ndarray:
    t = np.asarray(tensor, dtype=float)
    if t.shape != (3,) * rank:
        raise ValueError(f"expected a Cartesian tensor of shape {(3,) * rank}, got {t.shape}")
    return t


def split_dielectric(eps: np.ndarray) -> list[SubTensor]:
    r"""Trace and traceless residue of a symmetric rank-2 tensor.

    :math:`T = \varepsilon_{ii}` (l = 0) and :math:`R = \mathrm{sym}(\varepsilon) - \tfrac{T}{3}
    \delta` (l = 2); an antisymmetric part, if any, is not represented (it is not a dielectric
    tensor's).

    >>> parts = split_dielectric(np.diag([2.0, 3.0, 4.0]))
    >>> float(parts[0].value), float(parts[1].value[2, 2])
    (9.0, 1.0)
    """
    e = _check(eps, 2)
    sym = symmetrize_fully(e)
    trace = np.trace(sym)
    return [
        SubTensor("T", "trace", 0, np.asarray(trace)),
        SubTensor("R", "traceless symmetric residue", 2, sym - trace / 3 * DELTA),
    ]


def _reconstruct_dielectric(parts: dict[str, np.ndarray]) -> np.ndarray:
    return parts["T"] / 3 * DELTA + parts["R"]


def _piezo_vector_tensor(v: np.ndarray) -> np.ndarray:
    # V_ijk = (2 d_jk v_i - d_ij v_k - d_ik v_j) / 4: symmetric in jk, zero fully symmetric part,
    # and V_ijj = v_i.
    return (
        2 * np.einsum("jk,i->ijk", DELTA, v)
        - np.einsum("ij,k->ijk", DELTA, v)
        - np.einsum("ik,j->ijk", DELTA, v)
    ) / 4


def _sym_delta_vector(s: np.ndarray) -> np.ndarray:
    # (d_ij s_k + d_ik s_j + d_jk s_i) / 5: the trace part of a fully symmetric rank-3 tensor.
    return (
        np.einsum("ij,k->ijk", DELTA, s)
        + np.einsum("ik,j->ijk", DELTA, s)
        + np.einsum("jk,i->ijk", DELTA, s)
    ) / 5


def split_piezoelectric(e: np.ndarray) -> list[SubTensor]:
    r"""Young decomposition of piezoelectric stress constants :math:`e_{ijk} = e_{ikj}`.

    ``S = Sym(e)`` gives the vector :math:`s_k = S_{iik}` (l = 1) and the harmonic
    :math:`W = S - \tfrac15(\delta_{ij}s_k + \delta_{ik}s_j + \delta_{jk}s_i)` (l = 3);
    ``A = e - S`` gives the vector :math:`v_i = A_{ijj}` (l = 1) and the symmetric traceless
    :math:`b_{ij} = \tfrac12(\varepsilon_{imk}A_{mkj} + \varepsilon_{jmk}A_{mki})` (l = 2).

    >>> e = np.zeros((3, 3, 3)); e[2, 2, 2] = 1.0
    >>> [p.name for p in split_piezoelectric(e)]
    ['s', 'W', 'v', 'b']
    """
    t = _check(e, 3)
    eps = levi_civita()
    sym = symmetrize_fully(t)
    mixed = t - sym
    s = np.einsum("iik->k", sym)
    v = np.einsum("ijj->i", mixed)
    c = np.einsum("imk,mkj->ij", eps, mixed)
    b = (c + c.T) / 2
    return [
        SubTensor("s", "trace vector of the symmetric part S", 1, s),
        SubTensor("W", "harmonic (traceless) part of S", 3, sym - _sym_delta_vector(s)),
        SubTensor("v", "trace vector of the mixed-symmetry part A", 1, v),
        SubTensor("b", "symmetric traceless epsilon contraction of A", 2, b),
    ]


def _reconstruct_piezoelectric(parts: dict[str, np.ndarray]) -> np.ndarray:
    eps = levi_civita()
    b = parts["b"]
    big_b = (np.einsum("ijp,pk->ijk", eps, b) + np.einsum("ikp,pj->ijk", eps, b)) / 3
    sym = parts["W"] + _sym_delta_vector(parts["s"])
    return sym + _piezo_vector_tensor(parts["v"]) + big_b


def split_elastic(c: np.ndarray) -> list[SubTensor]:
    r"""Young decomposition of an elastic stiffness tensor (minor and major symmetries).

    ``S = Sym(C)`` gives the scalar :math:`s = S_{iijj}` (l = 0), the traceless
    :math:`d_{ij} = S_{ijkk} - \tfrac{s}{3}\delta_{ij}` (l = 2) and the harmonic ``H`` (l = 4);
    ``A = C - S`` gives :math:`t_{ij} = \varepsilon_{imk}\varepsilon_{jnl}A_{mnkl}`, split into
    its trace :math:`t_{ii}` (l = 0) and traceless part (l = 2).

    >>> c = np.einsum("ij,kl->ijkl", np.eye(3), np.eye(3))   # C_ijkl = d_ij d_kl
    >>> {p.name: round(float(np.linalg.norm(p.value)), 6) for p in split_elastic(c)}["s"]
    5.0
    """
    t = _check(c, 4)
    eps = levi_civita()
    sym = symmetrize_fully(t)
    mixed = t - sym
    s0 = np.einsum("iijj->", sym)
    s2 = np.einsum("ijkk->ij", sym)
    d = s2 - s0 / 3 * DELTA
    harmonic = sym - 6 / 7 * symmetrize_fully(np.einsum("ij,kl->ijkl", DELTA, d))
    harmonic -= s0 / 5 * symmetrize_fully(np.einsum("ij,kl->ijkl", DELTA, DELTA))
    tt = np.einsum("imk,jnl,mnkl->ij", eps, eps, mixed)
    t0 = np.trace(tt)
    return [
        SubTensor("s", "full trace of the symmetric part S", 0, np.asarray(s0)),
        SubTensor("d", "traceless part of the trace S_ijkk", 2, d),
        SubTensor("H", "harmonic (traceless) part of S", 4, harmonic),
        SubTensor("t0", "trace of t = eps.eps.A (mixed-symmetry part A)", 0, np.asarray(t0)),
        SubTensor("t2", "traceless part of t = eps.eps.A", 2, tt - t0 / 3 * DELTA),
    ]


def _reconstruct_elastic(parts: dict[str, np.ndarray]) -> np.ndarray:
    eps = levi_civita()
    s0, d = parts["s"], parts["d"]
    sym = parts["H"] + 6 / 7 * symmetrize_fully(np.einsum("ij,kl->ijkl", DELTA, d))
    sym += s0 / 5 * symmetrize_fully(np.einsum("ij,kl->ijkl", DELTA, DELTA))
    tt = parts["t2"] + parts["t0"] / 3 * DELTA
    n = (
        np.einsum("ikm,jln,mn->ijkl", eps, eps, tt) + np.einsum("ilm,jkn,mn->ijkl", eps, eps, tt)
    ) / 6
    return sym + n


_SPLITTERS = {2: split_dielectric, 3: split_piezoelectric, 4: split_elastic}
_RECONSTRUCTORS = {
    2: _reconstruct_dielectric,
    3: _reconstruct_piezoelectric,
    4: _reconstruct_elastic,
}


def split(tensor: np.ndarray) -> list[SubTensor]:
    """The explicit decomposition of a dielectric, piezoelectric or elastic tensor (by rank).

    >>> [p.name for p in split(np.eye(3))]
    ['T', 'R']
    """
    t = np.asarray(tensor, dtype=float)
    if t.ndim not in _SPLITTERS:
        raise ValueError(f"no explicit decomposition for a tensor of rank {t.ndim}")
    return _SPLITTERS[t.ndim](t)


def reconstruct(parts: list[SubTensor] | dict[str, np.ndarray], rank: int) -> np.ndarray:
    """Rebuild the tensor of ``rank`` from the sub-tensors returned by :func:`split`.

    >>> e = np.arange(27.0).reshape(3, 3, 3); e = (e + e.transpose(0, 2, 1)) / 2
    >>> bool(np.allclose(reconstruct(split(e), 3), e))
    True
    """
    values = parts if isinstance(parts, dict) else {p.name: p.value for p in parts}
    if rank not in _RECONSTRUCTORS:
        raise ValueError(f"no explicit decomposition for a tensor of rank {rank}")
    return _RECONSTRUCTORS[rank](values)
