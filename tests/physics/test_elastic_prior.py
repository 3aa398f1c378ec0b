"""SevenNet-0's elastic tensor by autograd (:mod:`crystensor.physics.elastic_prior`).

Checked in float64 (the potential cast; sevenn itself runs in float32) against finite
differences of the potential's stress on cells rebuilt at every strain, against sevenn's own
float32 calculator, and for the symmetries every elastic tensor must have. The finite-difference
slope of ``V sigma`` at a stressed reference is the energy Hessian plus ``sym(delta sigma)``
(module docstring), so that term is added to the autograd tensor before comparing.
"""

from __future__ import annotations

import functools

import ase
import ase.units
import numpy as np
import pytest
import torch
from ase.optimize import BFGS
from pymatgen.core import Lattice, Structure

from crystensor.errors import InputError
from crystensor.physics import (
    EV_PER_A3_IN_GPA,
    compute_elastic_prior,
    elastic_tensor,
    load_potential,
)
from crystensor.tensors.voigt import VOIGT_PAIRS, to_voigt
from tests.helpers import (
    americium,
    isolated_cs,
    nacl,
    random_orthogonal,
    rotate,
    triclinic,
    zno_wurtzite,
)

pytest.importorskip("sevenn")

prior64 = functools.partial(compute_elastic_prior, dtype="float64")

# XPLOR switch of SevenNet-0: the curvature jumps where an edge crosses these lengths (A)
KINKS = (4.5, 5.0)


def silicon_cubic_frame(a: float = 5.47) -> Structure:
    """Diamond Si, primitive cell with the cubic axes along x, y, z (C11, C12, C44 only)."""
    h = a / 2
    lattice = Lattice([[0, h, h], [h, 0, h], [h, h, 0]])
    return Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def copper() -> Structure:
    """fcc Cu, one atom per primitive cell."""
    return Structure(Lattice.from_parameters(2.55, 2.55, 2.55, 60, 60, 60), ["Cu"], [[0, 0, 0]])


def stress_term(stress: np.ndarray) -> np.ndarray:
    d = np.eye(3)
    return 0.25 * (
        np.einsum("ik,jl->ijkl", d, stress)
        + np.einsum("jk,il->ijkl", d, stress)
        + np.einsum("il,jk->ijkl", d, stress)
        + np.einsum("jl,ik->ijkl", d, stress)
    )


def finite_difference(structure, calculator, h: float, relax_ions: bool = False) -> np.ndarray:
    """Voigt ``(6, 6)`` GPa: central difference of ``V sigma / V0`` over engineering strain
    ``+-h`` of each component (row), the cell and its neighbour list rebuilt each time."""
    z = np.array(structure.atomic_numbers)
    pos, cell = structure.cart_coords, structure.lattice.matrix
    c = np.zeros((6, 6))
    for row, (i, j) in enumerate(VOIGT_PAIRS):
        values = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[i, j] += sign * h / 2
            eps[j, i] += sign * h / 2
            f = np.eye(3) + eps
            atoms = ase.Atoms(numbers=z, positions=pos @ f, cell=cell @ f, pbc=True)
            atoms.calc = calculator
            if relax_ions:
                BFGS(atoms, logfile=None).run(fmax=1e-8, steps=200)
            values.append(atoms.get_volume() * atoms.get_stress(voigt=True))
        c[row] = (values[0] - values[1]) / (2 * h) / structure.volume * EV_PER_A3_IN_GPA
    return c


def assert_away_from_kinks(structure, margin: float = 0.01) -> None:
    """The finite differences are only meaningful if no edge crosses a kink of the cutoff."""
    graph = load_potential("sevennet-0", "float64").graph(
        np.array(structure.atomic_numbers), structure.cart_coords, structure.lattice.matrix
    )
    lengths = graph.edge_vec.norm(dim=1).numpy()
    for kink in KINKS:
        assert np.abs(lengths - kink).min() > margin, f"an edge lies within {margin} A of {kink}"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on these tiny graphs a second one only waits for the first (and on a
    busy machine slows the double backward passes down many times)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results():
    """float64 results of the test structures, computed once."""
    cache = {}

    def get(name, make, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = prior64(make(), **kwargs)
        return cache[key]

    return get


def test_units():
    assert EV_PER_A3_IN_GPA == pytest.approx(1 / ase.units.GPa, rel=1e-9)


@pytest.mark.parametrize("make", [silicon_cubic_frame, nacl], ids=["Si", "NaCl"])
def test_clamped_matches_finite_differences(make, results):
    structure = make()
    assert_away_from_kinks(structure)
    result = results(make.__name__, make, relaxed_ions=False)
    calculator = load_potential("sevennet-0", "float64").calculator()
    reference = finite_difference(structure, calculator, 1e-5)
    expected = to_voigt(result.clamped + stress_term(result.stress))
    assert np.abs(reference - expected).max() < 1e-3  # GPa; values ~10-200
    assert np.abs(to_voigt(result.clamped)).max() > 10


def test_clamped_matches_sevenn_calculator(results):
    """sevenn's own ASE calculator (float32, its graph builder and stress) as the reference."""
    structure = silicon_cubic_frame()
    result = results("Si", silicon_cubic_frame, relaxed_ions=False)
    reference = finite_difference(structure, load_potential().calculator(), 5e-4)
    expected = to_voigt(result.clamped + stress_term(result.stress))
    assert np.abs(reference - expected).max() < 0.05  # float32 stresses, GPa


def test_relaxed_ions_match_finite_differences_with_relaxed_ions(results):
    """Diamond Si: the internal strain softens C44 only (the two atoms move along [111] under
    shear), and the autograd correction matches relaxing the ions at every strain."""
    structure = silicon_cubic_frame()
    result = results("Si", silicon_cubic_frame)
    assert result.max_force < 1e-10  # equilibrium by symmetry
    calculator = load_potential("sevennet-0", "float64").calculator()
    reference = finite_difference(structure, calculator, 1e-5, relax_ions=True)
    clamped, relaxed = to_voigt(result.clamped), to_voigt(result.relaxed)
    assert np.abs(reference - to_voigt(result.relaxed + stress_term(result.stress))).max() < 1e-3
    drop = clamped - relaxed
    assert np.abs(drop[:3, :3]).max() < 1e-6
    assert np.allclose(np.diag(drop)[3:], drop[3, 3]) and drop[3, 3] > 5  # GPa
    assert np.abs(drop - np.diag(np.diag(drop))).max() < 1e-6
    assert result.internal_directions == 3 and result.unstable_directions == 0


def test_no_internal_strain_without_free_internal_coordinates(results):
    """One atom per cell (Cu) or every atom at an inversion centre (NaCl): relaxed == clamped."""
    cu = results("Cu", copper)
    assert cu.internal_directions == 0 and cu.hessian_vector_products == 6
    np.testing.assert_array_equal(cu.relaxed, cu.clamped)
    salt = results("NaCl", nacl)
    assert np.abs(salt.relaxed - salt.clamped).max() < 1e-6


def test_index_symmetries(results):
    c = results("triclinic", triclinic, relaxed_ions=False).clamped
    assert np.abs(c).max() > 1
    np.testing.assert_array_equal(c, c.transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(c, c.transpose(0, 1, 3, 2))
    np.testing.assert_allclose(c, c.transpose(2, 3, 0, 1), atol=1e-9)


def rotated(structure: Structure, rot: np.ndarray) -> Structure:
    return Structure(
        Lattice(structure.lattice.matrix @ rot.T),
        structure.species,
        structure.cart_coords @ rot.T,
        coords_are_cartesian=True,
    )


def test_rotations_rotate_the_tensor(rng, results):
    rot = random_orthogonal(rng, proper=True)
    for name, make, relaxed_ions in (
        ("triclinic", triclinic, False),
        ("Si", silicon_cubic_frame, True),
    ):
        reference = results(name, make, relaxed_ions=relaxed_ions)
        turned = prior64(rotated(make(), rot), relaxed_ions=relaxed_ions)
        np.testing.assert_allclose(turned.clamped, rotate(reference.clamped, rot), atol=1e-6)
        if relaxed_ions:
            np.testing.assert_allclose(turned.relaxed, rotate(reference.relaxed, rot), atol=1e-6)
        np.testing.assert_allclose(turned.stress, rot @ reference.stress @ rot.T, atol=1e-8)


def test_reflections(rng, results):
    """Exact for a centrosymmetric crystal; SevenNet-0 has no parity, so only close otherwise."""
    rot = random_orthogonal(rng, proper=False)
    salt = results("NaCl", nacl, relaxed_ions=False).clamped
    mirrored = prior64(rotated(nacl(), rot), relaxed_ions=False).clamped
    np.testing.assert_allclose(mirrored, rotate(salt, rot), atol=1e-6)
    chiral = results("triclinic", triclinic, relaxed_ions=False).clamped
    image = prior64(rotated(triclinic(), rot), relaxed_ions=False).clamped
    assert np.abs(image - rotate(chiral, rot)).max() < 0.1 * np.abs(chiral).max()


def test_supercell_and_atom_order(results):
    """A 2x1x1 supercell of Si with its atoms shuffled has the tensors of the primitive cell."""
    si = results("Si", silicon_cubic_frame)
    double = silicon_cubic_frame().make_supercell([2, 1, 1], in_place=False)
    order = [3, 1, 0, 2]
    shuffled = Structure(
        double.lattice, [double.species[k] for k in order], double.frac_coords[order]
    )
    big = prior64(shuffled)
    np.testing.assert_allclose(big.clamped, si.clamped, atol=1e-6)
    np.testing.assert_allclose(big.relaxed, si.relaxed, atol=1e-6)


@pytest.mark.slow
def test_float32_default_agrees_with_float64_and_atom_order():
    """Wurtzite ZnO (internal strain in 7 directions, residual forces), atoms in two orders."""
    zno64 = prior64(zno_wurtzite())
    s = zno_wurtzite()
    order = [3, 0, 2, 1]
    shuffled = Structure(s.lattice, [s.species[k] for k in order], s.frac_coords[order])
    zno32 = compute_elastic_prior(shuffled)
    assert zno32.potential["dtype"] == "float32" and zno64.potential["dtype"] == "float64"
    np.testing.assert_allclose(zno32.clamped, zno64.clamped, atol=0.01)
    np.testing.assert_allclose(zno32.relaxed, zno64.relaxed, atol=0.05)
    assert zno64.internal_directions == 7
    assert np.abs(zno64.clamped - zno64.relaxed).max() > 10


def test_elastic_tensor_and_relax():
    """``relax=True`` brings displaced ions back to the potential's minimum (the cell is kept)."""
    s = silicon_cubic_frame()
    clamped = elastic_tensor(s)
    shaken = s.copy()
    shaken.translate_sites([1], [0.01, -0.02, 0.015], frac_coords=False)
    result = compute_elastic_prior(shaken, relax=True, fmax=1e-3)
    assert result.relax_converged and result.max_force < 1e-3
    np.testing.assert_allclose(result.structure.lattice.matrix, s.lattice.matrix, atol=1e-12)
    np.testing.assert_allclose(result.clamped, clamped, atol=0.05)
    assert elastic_tensor(s, relaxed_ions=True)[1, 2, 1, 2] < clamped[1, 2, 1, 2] - 5


def test_refusals():
    with pytest.raises(InputError, match="Am"):
        elastic_tensor(americium())
    with pytest.raises(InputError, match="isolated atoms"):
        elastic_tensor(isolated_cs())
    with pytest.raises(InputError, match="unknown potential"):
        elastic_tensor(nacl(), "mace")
    with pytest.raises(InputError, match="dtype"):
        compute_elastic_prior(nacl(), dtype="float16")
    with pytest.raises(InputError, match="relax=True"):
        compute_elastic_prior(nacl(), relax_cell=True)
    with pytest.raises(InputError, match="pymatgen Structure or an ase Atoms"):
        elastic_tensor("NaCl")


def test_ase_atoms_input():
    s = nacl()
    atoms = ase.Atoms(
        numbers=s.atomic_numbers, positions=s.cart_coords, cell=s.lattice.matrix, pbc=True
    )
    np.testing.assert_allclose(elastic_tensor(atoms), elastic_tensor(s), atol=1e-9)
