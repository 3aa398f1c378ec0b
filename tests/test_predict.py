"""The prediction API: symmetry projection, equivariance, inputs, failures, shipped models.

The models are untrained ``small`` presets saved as checkpoints in a temporary folder
(``make_checkpoint``, shared with the CLI tests): the numbers are meaningless, the symmetry and
the equivariance are exact whatever the weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import write as ase_write
from pymatgen.analysis.elasticity import ElasticTensor
from pymatgen.analysis.piezo import PiezoTensor
from pymatgen.core import Lattice, Structure
from pymatgen.core.tensors import Tensor
from pymatgen.io.ase import AseAtomsAdaptor

import crystensor
from crystensor import pretrained
from crystensor.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crystensor.data import elements
from crystensor.data.dataset import GraphDataset, _collate, graph_to_data
from crystensor.data.featurize import featurize
from crystensor.data.graph import build_graph
from crystensor.errors import InputError
from crystensor.io.structures import _parse_plain_poscar, atoms_to_structure
from crystensor.models import build_model, preset
from crystensor.prediction import (
    Predictor,
    load_predictor,
    model_info,
    predict_results,
    read_inputs,
)
from tests.data.test_featurize import write_test_records
from tests.helpers import (
    STRUCTURES,
    americium,
    float64_one_thread,
    isolated_cs,
    nacl,
    random_orthogonal,
    rotate,
    silicon,
    triclinic,
    zno_wurtzite,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "structures"
FEATURIZATION = {
    "cutoff": 5.0,
    "auto_cutoff": False,
    "max_cutoff": 10.0,
    "feature_set": elements.FEATURE_SET,
    "feature_dim": elements.FEATURE_DIM,
    "feature_table_sha256": elements.feature_table_sha256(),
}


def make_checkpoint(path: Path, target: str = "elastic", arch: str = "segnn", **fields) -> Path:
    """An untrained ``small``-preset model for ``target`` saved as a checkpoint at ``path``."""
    torch.manual_seed(7)
    model = build_model(
        preset(arch, "small", num_node_features=elements.FEATURE_DIM, target=target)
    )
    fields = {
        "split": {"train": ["a", "b", "c"], "val": ["d"], "test": ["e"]},
        "meta": {"note": "untrained test model"},
        **fields,
    }
    return save_checkpoint(Checkpoint.from_model(model, FEATURIZATION, **fields), path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        target: make_checkpoint(folder / f"{target}.pt", target)
        for target in ("elastic", "piezoelectric", "dielectric-electronic")
    }


@pytest.fixture(scope="module")
def predictors(checkpoints) -> dict[str, Predictor]:
    return {target: load_predictor(model=path) for target, path in checkpoints.items()}


def rattled(structure: Structure, amplitude: float = 2e-3, seed: int = 0) -> Structure:
    """``structure`` with every atom moved by up to ``amplitude`` A (well within symprec)."""
    rng = np.random.default_rng(seed)
    moved = structure.copy()
    for i in range(len(moved)):
        moved.translate_sites([i], rng.uniform(-amplitude, amplitude, 3), frac_coords=False)
    return moved


def rotated(structure: Structure, rot: np.ndarray) -> Structure:
    """The same crystal turned by ``rot`` (x -> rot x): lattice rows rotated, same fractions."""
    return Structure(
        Lattice(structure.lattice.matrix @ rot.T), structure.species, structure.frac_coords
    )


# -- symmetry ---------------------------------------------------------------------------------


def conventional(structure: Structure) -> Structure:
    """The conventional cell, its axes along x, y, z (so the Voigt pattern is the textbook one)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(structure).get_conventional_standard_structure()


@pytest.mark.parametrize("build", [silicon, nacl])
def test_cubic_elastic_and_dielectric_are_exactly_cubic(predictors, build):
    structure = rattled(conventional(build()))
    (c,) = predictors["elastic"].predict_results([structure])
    assert c.ok and c.point_group == "m-3m" and c.crystal_system == "cubic"
    v = c.voigt
    assert v[0, 0] == v[1, 1] == v[2, 2] != 0
    assert v[0, 1] == v[0, 2] == v[1, 2] == v[1, 0] == v[2, 0] == v[2, 1]
    assert v[3, 3] == v[4, 4] == v[5, 5]
    mask = np.ones((6, 6), bool)
    mask[:3, :3] = False
    mask[[3, 4, 5], [3, 4, 5]] = False
    assert np.all(v[mask] == 0.0)
    assert np.all(c.tensor == c.tensor.transpose(1, 0, 2, 3))
    assert np.all(c.tensor == c.tensor.transpose(2, 3, 0, 1))
    # the rattled structure makes the raw output break the symmetry a little
    assert 0 < c.symmetry_violation < 0.5 and not np.array_equal(c.raw, c.symmetrized)

    (eps,) = predictors["dielectric-electronic"].predict_results([structure])
    e = eps.tensor
    assert e[0, 0] == e[1, 1] == e[2, 2] and np.all(e[~np.eye(3, dtype=bool)] == 0.0)
    assert eps.properties["eigenvalues"] == pytest.approx([e[0, 0]] * 3)

    (piezo,) = predictors["piezoelectric"].predict_results([structure])
    assert np.all(piezo.tensor == 0.0)  # centrosymmetric: no piezoelectricity
    assert piezo.properties["eij_max"] == 0.0


def test_wurtzite_has_the_6mm_pattern(predictors):
    structure = rattled(zno_wurtzite())
    (c,) = predictors["elastic"].predict_results([structure])
    assert c.point_group == "6mm" and c.crystal_system == "hexagonal"
    assert c.space_group_number == 186
    v = c.voigt
    assert v[0, 0] == v[1, 1] and v[0, 2] == v[1, 2] and v[3, 3] == v[4, 4]
    assert v[5, 5] == pytest.approx((v[0, 0] - v[0, 1]) / 2, rel=1e-12, abs=1e-15)
    zero = [(0, 3), (0, 4), (0, 5), (1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5), (3, 4)]
    zero += [(3, 5), (4, 5)]
    assert all(v[i, j] == 0.0 and v[j, i] == 0.0 for i, j in zero)

    (piezo,) = predictors["piezoelectric"].predict_results([structure])
    e = piezo.voigt  # 6mm: e15 = e24, e31 = e32, e33; everything else vanishes
    assert e[0, 4] == e[1, 3] and e[2, 0] == e[2, 1]
    nonzero = {(0, 4), (1, 3), (2, 0), (2, 1), (2, 2)}
    assert all(e[i, j] == 0.0 for i in range(3) for j in range(6) if (i, j) not in nonzero)
    assert piezo.properties["eij_max"] > 0

    (eps,) = predictors["dielectric-electronic"].predict_results([structure])
    assert eps.tensor[0, 0] == eps.tensor[1, 1] and eps.tensor[0, 1] == 0.0


def test_no_symmetrize_reports_the_raw_output(predictors):
    structure = rattled(conventional(silicon()))
    (raw,) = predictors["elastic"].predict_results([structure], symmetrize=False, physical=False)
    (sym,) = predictors["elastic"].predict_results([structure], physical=False)
    assert not raw.symmetrize and raw.point_group == "m-3m" and raw.crystal_system == "cubic"
    np.testing.assert_array_equal(raw.tensor, sym.raw)
    assert raw.voigt[0, 3] != 0.0 and sym.voigt[0, 3] == 0.0
    assert raw.properties["k_vrh"] != sym.properties["k_vrh"]


def test_triclinic_keeps_every_component(predictors):
    (c,) = predictors["elastic"].predict_results([triclinic()])
    assert c.point_group == "1" and c.crystal_system == "triclinic"
    np.testing.assert_allclose(c.symmetrized, c.raw, rtol=1e-12, atol=1e-15)
    assert np.count_nonzero(c.voigt) == 36


# -- equivariance -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["elastic", "piezoelectric"])
def test_rotating_the_structure_rotates_the_prediction(checkpoints, rng, target):
    with float64_one_thread():
        predictor = load_predictor(model=checkpoints[target], dtype=torch.float64)
        structures = [zno_wurtzite(), triclinic()]
        rots = [random_orthogonal(rng, proper=True) for _ in structures]
        turned = [rotated(s, r) for s, r in zip(structures, rots, strict=True)]
        before = predictor.predict_results(structures)
        after = predictor.predict_results(turned)
    for a, b, rot in zip(before, after, rots, strict=True):
        assert a.point_group == b.point_group
        scale = np.abs(a.raw).max()
        np.testing.assert_allclose(b.raw, rotate(a.raw, rot), atol=1e-10 * scale)
        np.testing.assert_allclose(b.symmetrized, rotate(a.symmetrized, rot), atol=1e-9 * scale)
        for key in ("k_vrh", "g_vrh", "eij_max"):
            if key in a.properties:
                assert b.properties[key] == pytest.approx(a.properties[key], rel=1e-6)


def test_batching_does_not_change_the_predictions(predictors):
    structures = [s() for s in STRUCTURES.values()]
    one = predictors["elastic"].predict_results(structures, batch_size=1)
    all_ = predictors["elastic"].predict_results(structures, batch_size=8)
    for a, b in zip(one, all_, strict=True):
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-4, atol=1e-6 * np.abs(a.raw).max())


def test_the_graph_is_the_training_graph(tmp_path, predictors):
    """A structure predicted is fed to the model exactly as featurize + GraphDataset feed it."""
    write_test_records(tmp_path / "r.jsonl", "elastic")
    featurize(tmp_path / "r.jsonl", "elastic", tmp_path / "g.h5")
    dataset = GraphDataset(tmp_path / "g.h5")
    for i, build in enumerate(STRUCTURES.values()):
        stored, built = dataset[i], predictors["elastic"].graph(build())
        for name in ("x", "pos", "cell", "edge_index", "edge_shift", "z"):
            assert torch.equal(getattr(stored, name), getattr(built, name)), name


def test_the_batch_is_pygs_batch(predictors):
    """The model gets the same tensors as from PyG's Batch (which prediction does not import)."""
    from torch_geometric.data import Batch

    predictor = predictors["elastic"]
    structures = [build() for build in STRUCTURES.values()]
    ours = _collate([predictor.graph(s) for s in structures])
    pyg = Batch.from_data_list([graph_to_data(build_graph(s, 5.0)) for s in structures])
    for name in ("x", "pos", "cell", "edge_index", "edge_shift", "batch"):
        assert torch.equal(getattr(ours, name), getattr(pyg, name)), name
    assert ours.num_graphs == pyg.num_graphs
    with torch.inference_mode():
        assert torch.equal(predictor.model(ours)["irreps"], predictor.model(pyg)["irreps"])


# -- the symmetry worker ----------------------------------------------------------------------


def _fields(result) -> tuple:
    return (
        result.error,
        result.point_group,
        result.space_group,
        result.space_group_number,
        result.symmetry_violation,
        result.properties,
        None if result.raw is None else result.raw.tolist(),
        None if result.symmetrized is None else result.symmetrized.tolist(),
    )


MIXED = [*(rattled(build()) for build in STRUCTURES.values()), americium(), isolated_cs()]
MIXED += sorted(EXAMPLES.glob("*.POSCAR"))  # 13 inputs, two of which fail


@contextlib.contextmanager
def _torch_threads(n: int):
    """One thread count for both paths: another thread count may round float32 reductions
    differently (not what is tested here); the forked processes run on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def predicted_here(predictors) -> list[tuple]:
    """The results of MIXED predicted in this process alone (workers=1, the default)."""
    with _torch_threads(1):
        results = predictors["piezoelectric"].predict_results(MIXED, batch_size=4)
    assert sum(r.ok for r in results) == len(MIXED) - 2
    return [_fields(r) for r in results]


def _in_processes(predictor, processes: int = 2, **options) -> list:
    """predict_results of MIXED shared between ``processes`` forked processes."""
    with _torch_threads(1):
        return predictor.predict_results(MIXED, batch_size=4, workers=processes, **options)


class _Spy(Predictor):
    """A predictor whose per-structure check records where it ran, logs, or dies."""

    def __init__(self, checkpoint, *, log_it: bool = False, die_after: int | None = None):
        super().__init__(checkpoint, source="spy")
        self.log_it, self.die_after, self.parent, self.seen = log_it, die_after, os.getpid(), 0

    def structure_warnings(self, structure):
        self.seen += 1
        if self.die_after is not None and os.getpid() != self.parent:
            if self.seen > self.die_after:
                os._exit(3)
        if self.log_it:
            logging.getLogger("crystensor.tensors.symmetry").warning(
                "checked %s", structure.composition.reduced_formula
            )
        where = f"{os.getpid()} {torch.get_num_threads()}"
        return [*super().structure_warnings(structure), {"code": "spy", "message": where}]


def _where(result) -> tuple[int, int]:
    (spy,) = [w["message"] for w in result.warnings if w["code"] == "spy"]
    pid, threads = spy.split()
    return int(pid), int(threads)


def _same_results(results, expected: list[tuple]) -> None:
    """The same results up to float32 rounding: a chunk given to a process starts a new batch,
    so a failed structure can change which structures share a batch."""
    assert len(results) == len(expected)
    for result, fields in zip(results, expected, strict=True):
        got = _fields(result)
        assert got[:4] == fields[:4]  # error, point group, space group and its number
        for a, b in zip(got[6:], fields[6:], strict=True):
            if a is None or b is None:
                assert a is b
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_processes_change_nothing(predictors, predicted_here):
    """Shared between forked processes or predicted here: the same results, in input order."""
    _same_results(_in_processes(predictors["piezoelectric"]), predicted_here)


def test_forked_processes_predict_on_one_thread(predictors):
    spy = _Spy(predictors["piezoelectric"].checkpoint)
    seen = []
    with _torch_threads(2):
        results = spy.predict_results(
            MIXED, batch_size=2, workers=2, progress=lambda done, total: seen.append((done, total))
        )
        assert torch.get_num_threads() == 2  # this process's threads are left alone
    ok = [r for r in results if r.ok]
    pids = {_where(r)[0] for r in ok}
    assert os.getpid() not in pids and len(pids) == 2
    assert {_where(r)[1] for r in ok} == {1}
    # progress after every chunk (2 batches of 2), then once at the end
    assert seen[-1] == (len(MIXED), len(MIXED))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and len(seen) >= 4


def test_by_default_everything_runs_here(predictors):
    spy = _Spy(predictors["piezoelectric"].checkpoint)
    results = spy.predict_results(MIXED * 6, batch_size=8)  # 78 structures, workers=1
    assert {_where(r)[0] for r in results if r.ok} == {os.getpid()}


def test_what_forked_processes_log_is_logged_here(predictors, caplog):
    spy = _Spy(predictors["piezoelectric"].checkpoint, log_it=True)
    with caplog.at_level(logging.WARNING, logger="crystensor"):
        results = _in_processes(spy)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checked")]
    # every structure with a structure check (all but the Am one, refused before), in order
    expected = [f"checked {r.structure.composition.reduced_formula}" for r in results]
    expected = [e for e, r in zip(expected, results, strict=True) if "Am" not in e]
    assert logged == expected and len(logged) == len(MIXED) - 1


def test_a_dying_process_leaves_its_structures_to_this_one(predictors, predicted_here):
    spy = _Spy(predictors["piezoelectric"].checkpoint, die_after=4)
    results = _in_processes(spy)
    _same_results(results, predicted_here)


@pytest.mark.parametrize(("batch_size", "expected"), [(4, 1), (32, 2)])
def test_small_batches_run_on_one_thread(predictors, batch_size, expected):
    """Predicted here: one torch thread for small batches, all for large."""
    seen = []
    with _torch_threads(2):
        predictors["piezoelectric"].predict_results(
            MIXED * 3,  # 39: at least two batches
            batch_size=batch_size,
            progress=lambda done, total: seen.append(torch.get_num_threads()),
        )
        assert torch.get_num_threads() == 2  # restored
    assert len(seen) >= 2 and set(seen[:-1]) == {expected}


def test_how_many_processes(monkeypatch):
    from crystensor.prediction.api import _processes

    cpu = torch.device("cpu")
    with _torch_threads(2):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        assert _processes(0, 1000, cpu) == 2  # auto: one per torch thread
        assert _processes(0, 10, cpu) == 1  # auto: too few structures
        assert _processes(3, 10, cpu) == 3  # as asked
        assert _processes(1, 1000, cpu) == 1
        assert _processes(0, 1000, torch.device("meta")) == 1  # not a CPU
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
        assert _processes(0, 1000, cpu) == 1  # one core allowed
    with _torch_threads(1):  # e.g. OMP_NUM_THREADS=1
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        assert _processes(0, 1000, cpu) == 1
    with pytest.raises(InputError, match="workers"):
        _processes(-1, 10, cpu)


# -- inputs and outputs -----------------------------------------------------------------------


def _ase_read(text: str) -> Structure:
    from ase.io import read

    return atoms_to_structure(read(io.StringIO(text), format="vasp"), "test")


def _poscar_variants() -> dict[str, str]:
    zno = (EXAMPLES / "ZnO-mp-2133.POSCAR").read_text()
    lines = zno.split("\n")
    n = sum(int(c) for c in lines[6].split())
    structure = Structure.from_str(zno, fmt="poscar")
    return {
        "direct": zno,
        "selective dynamics": "\n".join(
            [*lines[:7], "Selective dynamics", lines[7]]
            + [f"{line} T T F" for line in lines[8 : 8 + n]]
        ),
        "three scale factors": "\n".join([lines[0], "1.01 0.99 1.0", *lines[2:]]),
        "cartesian": "\n".join(
            [*lines[:7], "Cartesian"]
            + [" ".join(repr(float(v)) for v in x) for x in structure.cart_coords]
        ),
        "POTCAR labels": "\n".join([*lines[:5], "Zn_pv/a1b2c3 O_s", *lines[6:]]),
    }


@pytest.mark.parametrize("layout", list(_poscar_variants()))
def test_plain_poscars_are_read_as_ase_reads_them(layout):
    text = _poscar_variants()[layout]
    ours, theirs = _parse_plain_poscar(text), _ase_read(text)
    assert ours is not None
    np.testing.assert_array_equal(ours.lattice.matrix, theirs.lattice.matrix)
    np.testing.assert_array_equal(ours.frac_coords, theirs.frac_coords)
    np.testing.assert_array_equal(ours.cart_coords, theirs.cart_coords)
    assert ours.species == theirs.species


def test_other_poscars_are_left_to_ase():
    lines = _poscar_variants()["direct"].split("\n")
    n = sum(int(c) for c in lines[6].split())
    others = {
        "VASP 4 (symbols in the comment)": "\n".join([*lines[:5], *lines[6:]]),
        "negative scale (a volume)": "\n".join([lines[0], "-47.6", *lines[2:]]),
        "velocities": "\n".join([*lines[: 8 + n], "", *["0.1 0.0 0.0"] * n]),
        "fewer symbols than counts": "\n".join([*lines[:5], "Zn", *lines[6:]]),
        "truncated": "\n".join(lines[: 8 + n - 1]),
        "unknown element": "\n".join([*lines[:5], "Zn Qq", *lines[6:]]),
    }
    for name, text in others.items():
        assert _parse_plain_poscar(text) is None, name


def test_pymatgen_objects_and_the_lazy_top_level_function(checkpoints):
    structure = zno_wurtzite()
    c = crystensor.predict(structure, model=checkpoints["elastic"])
    assert isinstance(c, ElasticTensor) and c.voigt.shape == (6, 6)
    e = crystensor.predict([structure, nacl()], model=checkpoints["piezoelectric"])
    assert [type(t) for t in e] == [PiezoTensor, PiezoTensor] and e[0].voigt.shape == (3, 6)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    eps = crystensor.predict(atoms, "dielectric-electronic", checkpoints["dielectric-electronic"])
    assert type(eps) is Tensor and eps.shape == (3, 3)
    results = crystensor.predict_results([structure], model=checkpoints["elastic"])
    np.testing.assert_allclose(results[0].voigt, c.voigt, rtol=1e-5, atol=1e-9)


def _python(code: str) -> str:
    """The standard output of ``python -c code`` in a fresh interpreter (which must succeed)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_predicting_imports_only_what_it_needs(checkpoints):
    """torch._dynamo and sympy (via e3nn), PyG, ase.io, scipy.optimize and pymatgen's VASP and
    symmetry modules cost seconds of start-up; predicting a POSCAR needs none of them."""
    code = (
        "import sys; from crystensor.prediction import predict_results; "
        f"(r,) = predict_results({str(EXAMPLES / 'ZnO-mp-2133.POSCAR')!r}, "
        f"model={str(checkpoints['elastic'])!r}); assert r.ok, r.error; "
        "heavy = ('torch._dynamo', 'torch_geometric', 'ase.io', 'scipy.optimize', "
        "'pymatgen.io.vasp', 'pymatgen.symmetry.analyzer', 'sympy'); "
        "print(sorted(m for m in heavy if m in sys.modules)); "
        "import torch.compiler, torch._dynamo; "
        "print(torch.compiler.disable.__module__)"
    )
    stdout = _python(code)
    assert stdout.split("\n")[:2] == ["[]", "torch.compiler"]


def test_e3nn_defers_to_torch_compiler_disable_once_dynamo_is_loaded():
    code = (
        "import sys; from crystensor.prediction.startup import import_e3nn_without_dynamo; "
        "import_e3nn_without_dynamo(); print('torch._dynamo' in sys.modules); "
        "from e3nn.o3 import change_basis_real_to_complex as f; before = f(2); "
        "import torch, torch._dynamo; print(torch.equal(f(2), before)); "
        "g = lambda: f(1).abs().sum() * 2; "
        "print(torch.compile(g, backend='eager')().item() == g().item())"
    )
    stdout = _python(code)
    lines = stdout.split("\n")
    assert lines[:3] == ["False", "True", "True"]


def test_e3nn_imports_sympy_when_its_sympy_names_are_first_used():
    """e3nn's alpha-beta harmonics (Legendre polynomials from sympy) still work after an import
    without sympy, and agree with the Cartesian ones."""
    code = (
        "import sys, torch; from crystensor.prediction.startup import import_e3nn_without_dynamo; "
        "import_e3nn_without_dynamo(); print('sympy' in sys.modules); "
        "from e3nn import o3; x = torch.randn(7, 3, dtype=torch.float64); "
        "a, b = o3.xyz_to_angles(x); ls = [0, 1, 2, 3]; "
        "y = o3.spherical_harmonics_alpha_beta(ls, a, b); "
        "ref = o3.spherical_harmonics(ls, x, normalize=True, normalization='integral'); "
        "print('sympy' in sys.modules, torch.allclose(y, ref, atol=1e-10)); "
        "import e3nn.o3._angular_spherical_harmonics as m, sympy; print(m.pi is sympy.pi)"
    )
    stdout = _python(code)
    assert stdout.split("\n")[:3] == ["False", "True True", "True"]


def test_e3nn_is_imported_with_sympy_if_the_stand_in_fails():
    """A module that uses sympy while e3nn is imported (here: a finder that fails on the
    stand-in) makes the import start again with the real sympy."""
    code = (
        "import sys\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'e3nn.o3._angular_spherical_harmonics' and "
        "type(sys.modules.get('sympy')).__name__ == '_SympyStandIn':\n"
        "            raise TypeError('uses sympy at import')\n"
        "sys.meta_path.insert(0, Finder())\n"
        "from crystensor.prediction.startup import import_e3nn_without_dynamo as load; load()\n"
        "import sympy, e3nn.o3._angular_spherical_harmonics as m\n"
        "print(type(sympy).__name__, m.pi is sympy.pi, 'torch._dynamo' in sys.modules)"
    )
    stdout = _python(code)
    assert stdout.strip() == "module True False"


def test_e3nn_import_with_sympy_loaded_leaves_it_alone():
    loaded = _python(
        "import sys, sympy; from crystensor.prediction.startup import import_e3nn_without_dynamo; "
        "import_e3nn_without_dynamo(); import e3nn.o3._angular_spherical_harmonics as m; "
        "print(sys.modules['sympy'] is sympy, m.pi is sympy.pi)"
    )
    assert loaded.strip() == "True True"


def test_import_crystensor_does_not_import_torch():
    code = (
        "import sys, crystensor; "
        "print(sorted(m for m in ('numpy', 'torch', 'pymatgen', 'e3nn') if m in sys.modules)); "
        "from crystensor import predict; print(callable(predict), 'torch' in sys.modules)"
    )
    stdout = _python(code)
    assert stdout.split("\n")[:2] == ["[]", "True False"]


def test_read_inputs_files_frames_directories_and_stdin(tmp_path, monkeypatch):
    frames = [AseAtomsAdaptor.get_atoms(s()) for s in (nacl, silicon, zno_wurtzite)]
    ase_write(tmp_path / "frames.extxyz", frames, format="extxyz")
    folder = tmp_path / "dir"
    folder.mkdir()
    for name in ("Si-mp-149.POSCAR", "NaCl-mp-22862.POSCAR"):
        (folder / name).write_text((EXAMPLES / name).read_text())
    (folder / "notes.txt").write_text("not a structure")
    monkeypatch.setattr("sys.stdin", io.StringIO((EXAMPLES / "ZnO-mp-2133.POSCAR").read_text()))
    entries = read_inputs([tmp_path / "frames.extxyz", folder, "-", silicon()])
    names = [name for name, _ in entries]
    assert names == [
        f"{tmp_path / 'frames.extxyz'}[0]",
        f"{tmp_path / 'frames.extxyz'}[1]",
        f"{tmp_path / 'frames.extxyz'}[2]",
        str(folder / "NaCl-mp-22862.POSCAR"),
        str(folder / "Si-mp-149.POSCAR"),
        "stdin",
        "Si",
    ]
    formulas = [s.composition.reduced_formula for _, s in entries]
    assert formulas == ["NaCl", "Si", "ZnO", "NaCl", "Si", "ZnO", "Si"]


def test_failures_are_per_structure(tmp_path, predictors):
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a oops\n")
    structures = [americium(), zno_wurtzite(), isolated_cs(), bad, tmp_path / "missing.vasp"]
    results = predictors["elastic"].predict_results(structures)
    assert [r.ok for r in results] == [False, True, False, False, False]
    assert "unsupported element(s) Am" in results[0].error
    assert "no neighbour within 5 A" in results[2].error
    assert "bad.cif" in results[3].error and "does not exist" in results[4].error
    assert results[0].as_dict() == {"source": "Am", "target": "elastic", "error": results[0].error}
    with pytest.raises(InputError, match="could not predict 1 of 2 structures: Am: unsupported"):
        crystensor.predict([americium(), nacl()], model=predictors["elastic"])


def test_as_dict_is_json_for_decompose(predictors):
    from crystensor.io.tensors import parse_tensor_json

    results = predictors["piezoelectric"].predict_results([zno_wurtzite(), triclinic()])
    (first, second) = parse_tensor_json({"results": [r.as_dict() for r in results]})
    assert first.kind.name == "piezoelectric" and first.label == "ZnO"
    np.testing.assert_array_equal(first.tensor, results[0].symmetrized)
    np.testing.assert_array_equal(second.tensor, results[1].symmetrized)


# -- models -----------------------------------------------------------------------------------


def test_missing_shipped_model_and_shipped_model_registry(tmp_path, monkeypatch, checkpoints):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    message = "no shipped model for target elastic yet; pass --model CKPT"
    with pytest.raises(InputError, match=message):
        predict_results([nacl()], target="elastic")
    with pytest.raises(InputError, match="say which model"):
        load_predictor()
    assert pretrained.available() == {} and pretrained.model_card("elastic") is None

    (tmp_path / "elastic.pt").write_bytes(checkpoints["elastic"].read_bytes())
    (tmp_path / "elastic.md").write_text("# Elastic model\n\nTrained on nothing.\n")
    assert pretrained.shipped_model("elastic") == tmp_path / "elastic.pt"
    (result,) = predict_results([nacl()], target="elastic")
    assert result.ok
    info = model_info("elastic")
    assert info["source"] == "shipped elastic model" and info["card"].startswith("# Elastic")
    assert info["split"] == {"train": 3, "val": 1, "test": 1} and info["arch"] == "segnn"
    assert info["parameters"] > 0 and info["featurization"]["cutoff"] == 5.0


def test_model_target_and_featurization_are_checked(tmp_path, checkpoints):
    with pytest.raises(InputError, match="predicts 'elastic', not 'piezoelectric'"):
        load_predictor("piezoelectric", checkpoints["elastic"])
    checkpoint = load_checkpoint(checkpoints["elastic"])
    checkpoint.featurization = {**checkpoint.featurization, "feature_set": "other-v9"}
    with pytest.raises(InputError, match="atom features 'other-v9'"):
        Predictor(checkpoint)
    scalar = make_checkpoint(tmp_path / "gap.pt", "band-gap")
    with pytest.raises(InputError, match="predicts the scalar 'band-gap'"):
        load_predictor(model=scalar)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pt is not a readable checkpoint"):
        load_predictor(model=tmp_path / "junk.pt")


def test_example_structures_have_the_documented_symmetry(predictors):
    expected = {
        "Si-mp-149": "m-3m",
        "NaCl-mp-22862": "m-3m",
        "ZnO-mp-2133": "6mm",
        "SiO2-mp-7000": "32",
        "BaTiO3-mp-5986": "4mm",
        "ZrO2-mp-2858": "2/m",
        "PI2-mp-29443": "-1",
    }
    results = predictors["piezoelectric"].predict_results(EXAMPLES)
    found = {Path(r.name).name.removesuffix(".POSCAR"): r.point_group for r in results}
    assert found == expected
    by_name = {Path(r.name).name: r for r in results}
    assert by_name["BaTiO3-mp-5986.POSCAR"].properties["eij_max"] > 0
    assert np.all(by_name["ZrO2-mp-2858.POSCAR"].tensor == 0.0)  # 2/m is centrosymmetric


def test_refractive_index_only_for_the_electronic_tensor(tmp_path, predictors):
    static = load_predictor(model=make_checkpoint(tmp_path / "eps.pt", "dielectric"))
    (eps0,) = static.predict_results([silicon()])
    (eps_inf,) = predictors["dielectric-electronic"].predict_results([silicon()])
    assert "refractive_index" not in eps0.properties
    assert eps_inf.properties["refractive_index"] >= 1.0  # eigenvalues >= 1 after the floor
    assert "eigenvalues" in eps0.properties


def test_elastic_properties_use_the_structure_and_its_crystal_system(predictors):
    (c,) = predictors["elastic"].predict_results([silicon()])
    props = c.properties
    assert props["born_stable"] and c.crystal_system == "cubic"
    for key in ("debye_temperature", "pugh_ratio"):
        assert key in props and np.isfinite(props[key]), key
