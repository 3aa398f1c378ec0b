"""The file sources and ``crystensor.data.fetch``: small files written here, and the real data.

Files written in a test are parsed by the real readers (pandas, ASE, pymatgen's Outcar and
Vasprun), never mocked. Tests on ``../shared/data`` read a few dozen entries each; the
full-dataset runs, which check the counts quoted in the data README, are marked slow.
"""

from __future__ import annotations

import gzip
import importlib
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure
from pymatgen.core.tensors import Tensor
from pymatgen.io.cif import CifWriter

from crystensor.data import fetch as fetch_module
from crystensor.data.consistency import check_entries
from crystensor.data.fetch import SOURCES, fetch, rejects_path_for
from crystensor.data.records import read_records
from crystensor.data.rejects import read_rejects
from crystensor.data.sources import (
    FetchOptions,
    RawEntry,
    Rejected,
    extxyz,
    jsonfile,
    matminer,
    straintensornet,
    vasp,
)
from crystensor.errors import InputError
from crystensor.tensors.voigt import from_voigt, to_voigt
from tests.helpers import rotate

REPO = Path(__file__).resolve().parents[2]
ZNO_POSCAR = (REPO / "examples/structures/ZnO-mp-2133.POSCAR").read_text()
ZNO_ELASTIC = np.array(
    json.loads((REPO / "examples/tensors/ZnO-mp-2133-elastic.json").read_text())["voigt"]
)
ZNO_PIEZO = np.array([
    [0, 0, 0, 0, -0.45, 0],
    [0, 0, 0, -0.45, 0, 0],
    [-0.51, -0.51, 1.22, 0, 0, 0],
])  # fmt: skip
OPTIONS = FetchOptions()


def zno() -> Structure:
    return Structure.from_str(ZNO_POSCAR, fmt="poscar")


def turn() -> np.ndarray:
    """A rotation about a tilted axis (takes a structure out of IEEE orientation)."""
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    a = np.radians(37.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def turned(structure: Structure) -> Structure:
    """The structure rotated by :func:`turn` (Cartesian x -> Q x)."""
    return Structure(
        Lattice(structure.lattice.matrix @ turn().T), structure.species, structure.frac_coords
    )


def entries(module, target: str, path: Path, key: str | None = None, limit: int | None = None):
    return list(itertools.islice(module.read(target, path, FetchOptions(key=key)), limit))


def checked(module, target: str, path: Path, key: str | None = None, limit: int | None = None):
    return check_entries(entries(module, target, path, key, limit), target)


# --------------------------------------------------------------------------------------------
# matminer-csv
# --------------------------------------------------------------------------------------------


def write_csv(
    path: Path,
    frame: pd.DataFrame,
    comment: str | None = "# ref: Someone, A. et al., Sci. Data 2, 1 (2015).",
) -> Path:
    text = frame.to_csv(index=False)
    text = (comment + "\n" if comment else "") + text
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def elastic_table() -> pd.DataFrame:
    # The CIF column holds the same crystal in another orientation: a reader using it would put
    # the tensor in the wrong frame.
    cif = str(CifWriter(turned(zno())))
    return pd.DataFrame(
        {
            "material_id": ["mp-2133", "mp-bad", "mp-nan"],
            "K_VRH": [130.0, 1.0, float("nan")],
            "G_VRH": [40.0, 1.0, 2.0],
            "elastic_tensor_original": [json.dumps(ZNO_ELASTIC.tolist())] * 3,
            "poscar": [ZNO_POSCAR, "not a poscar", ZNO_POSCAR],
            "structure": [cif] * 3,
            "space_group": [186, 186, 186],
        }
    )


def test_matminer_reads_poscar_frame_and_skips_comment_lines(tmp_path):
    path = write_csv(tmp_path / "elastic_tensor.csv.gz", elastic_table())
    got = entries(matminer, "elastic", path)
    assert [type(e) for e in got] == [RawEntry, Rejected, RawEntry]
    first = got[0]
    assert first.id == "mp-2133"
    np.testing.assert_allclose(first.structure.lattice.matrix, zno().lattice.matrix)
    np.testing.assert_allclose(to_voigt(first.value), ZNO_ELASTIC)
    assert first.source["citation"] == "Someone, A. et al., Sci. Data 2, 1 (2015)."
    assert first.meta == {"row": 0, "reported_space_group": 186}
    assert got[1].reason.startswith("unreadable structure: ")
    records, report = check_entries(got, "elastic")
    assert report.kept == 2 and records[0].symmetry["point_group"] == "6mm"


def test_matminer_scalars_and_missing_cells(tmp_path):
    path = write_csv(tmp_path / "elastic.csv", elastic_table(), comment=None)
    got = entries(matminer, "bulk-modulus", path)
    assert got[0].value == 130.0
    assert got[2] == Rejected("mp-nan", "missing value: empty cell")
    assert [
        e.value for e in entries(matminer, "shear-modulus", path) if isinstance(e, RawEntry)
    ] == [40.0, 2.0]


def test_matminer_rotates_piezoelectric_tensors_out_of_ieee(tmp_path):
    structure = turned(zno())
    e_frame = rotate(from_voigt(ZNO_PIEZO), turn())  # the 6mm tensor in the turned frame
    # matminer stores convert_to_ieee's result, R . e with R the structure's IEEE rotation
    e_ieee = rotate(e_frame, Tensor.get_ieee_rotation(structure))
    table = pd.DataFrame(
        {
            "material_id": ["mp-2133"],
            "piezoelectric_tensor": [json.dumps(to_voigt(e_ieee).tolist())],
            "poscar": [structure.to(fmt="poscar")],
        }
    )
    (entry,) = entries(matminer, "piezoelectric", write_csv(tmp_path / "piezo.csv", table))
    np.testing.assert_allclose(entry.value, e_frame, atol=1e-5)  # POSCAR has 6 decimals
    (record,), report = check_entries([entry], "piezoelectric")
    assert report.kept == 1 and record.consistency < 1e-4


def test_matminer_structure_dicts_and_unsupported_targets(tmp_path):
    table = pd.DataFrame(
        {
            "material_id": ["mp-1", "mp-2"],
            "formation_energy_per_atom": [-1.5, 0.2],
            "structure": [str(zno().as_dict()), "{'bad': 1}"],
        }
    )
    path = write_csv(tmp_path / "flla.csv", table)
    got = entries(matminer, "formation-energy", path)
    assert got[0].value == -1.5 and got[0].structure.composition.reduced_formula == "ZnO"
    assert got[1].reason.startswith("unreadable structure: not a pymatgen structure dict")
    with pytest.raises(
        InputError, match=r"cannot provide target 'elastic' .* it provides: formation-energy"
    ):
        list(matminer.read("elastic", path, OPTIONS))
    with pytest.raises(InputError, match="unknown property 'gap'"):
        list(matminer.read("gap", path, OPTIONS))


def test_matminer_refuses_cif_only_files_and_foreign_files(tmp_path):
    table = pd.DataFrame(
        {"material_id": ["a"], "band_gap": [1.0], "structure": [str(CifWriter(zno()))]}
    )
    with pytest.raises(InputError, match="CIF structures are not used"):
        list(matminer.read("band-gap", write_csv(tmp_path / "cif.csv", table), OPTIONS))
    foreign = tmp_path / "data.json.gz"
    foreign.write_bytes(gzip.compress(b'{"a": [1, 2]}'))
    with pytest.raises(InputError, match="it provides: none"):
        list(matminer.read("elastic", foreign, OPTIONS))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00" * 100)
    with pytest.raises(InputError, match=r"cannot read binary\.csv as a CSV table|provides: none"):
        list(matminer.read("elastic", binary, OPTIONS))
    with pytest.raises(InputError, match="does not exist"):
        list(matminer.read("elastic", tmp_path / "missing.csv", OPTIONS))


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("file", "target", "n", "min_kept"),
    [
        ("elastic_tensor.csv.gz", "elastic", 40, 38),
        ("elastic_tensor.csv.gz", "bulk-modulus", 40, 40),
        ("dielectric_constant.csv.gz", "dielectric", 40, 39),
        ("dielectric_constant.csv.gz", "dielectric-electronic", 40, 39),
        ("dielectric_constant.csv.gz", "band-gap", 40, 40),
        ("flla_2015.csv.gz", "formation-energy", 40, 40),
    ],
)
def test_matminer_real_files(shared_data, file, target, n, min_kept):
    records, report = checked(matminer, target, shared_data / "matminer-2018" / file, limit=n)
    assert report.read == n and report.kept >= min_kept
    assert all(r.units == matminer_units(target) for r in records)


def matminer_units(target: str) -> str:
    from crystensor.tensors.kinds import get_property

    return get_property(target).units


@pytest.mark.shared_data
def test_matminer_piezoelectric_rotation_direction_on_real_data(shared_data):
    """R^T (ours) makes far more tensors consistent than R or no rotation (README: ~764/941)."""
    from crystensor.tensors.symmetry import point_group_of, symmetry_violation

    path = shared_data / "matminer-2018" / "piezoelectric_tensor.csv.gz"
    got = [
        e for e in entries(matminer, "piezoelectric", path, limit=120) if isinstance(e, RawEntry)
    ]
    ours = other = 0
    for e in got:
        group = point_group_of(e.structure)
        r = Tensor.get_ieee_rotation(e.structure)
        ieee = rotate(e.value, r)  # back to what the file stores
        ours += symmetry_violation(e.value, group) <= 0.05
        other += symmetry_violation(rotate(ieee, r), group) <= 0.05
    assert ours >= 0.7 * len(got) and other <= 0.5 * len(got)


# --------------------------------------------------------------------------------------------
# straintensornet
# --------------------------------------------------------------------------------------------


def test_straintensornet_rejects_other_layouts_and_targets(tmp_path):
    path = tmp_path / "stn.json"
    path.write_text(json.dumps({"material_id": {"a": "a"}, "cif": {"a": "x"}}))
    with pytest.raises(
        InputError, match=r"not StrainTensorNet's dict of columns .*elasticity.elastic_tensor"
    ):
        list(straintensornet.read("elastic", path, OPTIONS))
    cif = str(CifWriter(zno()))
    path.write_text(
        json.dumps({"cif": {"a": cif}, "elasticity.elastic_tensor": {"a": ZNO_ELASTIC.tolist()}})
    )
    with pytest.raises(
        InputError, match=r"cannot provide target 'bulk-modulus' .* provides: elastic"
    ):
        list(straintensornet.read("bulk-modulus", path, OPTIONS))
    path.write_text("[1, 2")
    with pytest.raises(InputError, match=r"cannot read stn\.json as JSON"):
        list(straintensornet.read("elastic", path, OPTIONS))


@pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF")
def test_straintensornet_rotates_the_structure_into_ieee(tmp_path):
    structure = turned(zno())
    ieee = from_voigt(ZNO_ELASTIC)  # the ZnO POSCAR is in IEEE orientation (a || x, c || z)
    path = tmp_path / "stn.json.gz"
    columns = {
        "material_id": {"mp-2133": "mp-2133", "x": None},
        "cif": {"mp-2133": str(CifWriter(structure)), "x": str(CifWriter(structure))},
        "elasticity.elastic_tensor": {"mp-2133": to_voigt(ieee).tolist(), "x": None},
        "spacegroup.crystal_system": {"mp-2133": "hexagonal", "x": "hexagonal"},
    }
    path.write_bytes(gzip.compress(json.dumps(columns).encode()))
    got = entries(straintensornet, "elastic", path)
    assert got[1] == Rejected("stn#x", "missing value: no elastic tensor")
    entry = got[0]
    from_cif = Structure.from_str(columns["cif"]["mp-2133"], fmt="cif")
    rot = Tensor.get_ieee_rotation(from_cif)
    np.testing.assert_allclose(entry.structure.lattice.matrix, from_cif.lattice.matrix @ rot.T)
    np.testing.assert_allclose(entry.structure.frac_coords, from_cif.frac_coords)
    (record,), report = check_entries([entry], "elastic")
    assert report.kept == 1 and record.consistency < 0.02
    assert entry.meta == {"reported_crystal_system": "hexagonal"}


@pytest.mark.shared_data
def test_straintensornet_real_file(shared_data):
    path = shared_data / "straintensornet-mp" / "mp_elastic_ieee.json.gz"
    records, report = checked(straintensornet, "elastic", path, limit=30)
    assert report.read == 30 and report.kept >= 28
    assert all(r.id.startswith(("mp-", "mvc-")) for r in records)


# --------------------------------------------------------------------------------------------
# extxyz
# --------------------------------------------------------------------------------------------


def xyz_frames() -> list[Atoms]:
    s = zno()
    periodic = Atoms(
        [site.specie.symbol for site in s], positions=s.cart_coords, cell=s.lattice.matrix, pbc=True
    )
    first = periodic.copy()
    first.info.update(material_id="mp-2133", eps=np.diag([3.7, 3.7, 3.8]), band_gap=0.73)
    first.arrays["becs"] = np.tile(np.diag([2.1, 2.1, 2.2]).ravel(), (4, 1))
    second = periodic.copy()
    second.info.update(eps=np.diag([3.7, 3.7, 3.8]).ravel(), band_gap=0.8)
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], pbc=False)
    molecule.info.update(eps=np.eye(3), band_gap=10.0)
    return [first, second, molecule]


@pytest.mark.parametrize("name", ["frames.xyz", "frames.extxyz.gz"])
def test_extxyz_reads_info_values_ids_and_per_atom_arrays(tmp_path, name):
    plain = tmp_path / "frames.xyz"
    ase_write(plain, xyz_frames(), format="extxyz")
    path = plain
    if name.endswith(".gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(plain.read_bytes()))
    got = entries(extxyz, "dielectric-electronic", path, key="eps")
    assert [e.id for e in got] == ["mp-2133", "frames#1", "frames#2"]
    np.testing.assert_allclose(got[0].value, np.diag([3.7, 3.7, 3.8]))
    np.testing.assert_allclose(got[1].value, np.diag([3.7, 3.7, 3.8]))
    assert np.asarray(got[0].meta["becs"]).shape == (4, 9)
    assert got[0].meta["info"] == {"band_gap": 0.73}
    assert got[2].reason.startswith("not periodic: ")
    np.testing.assert_allclose(got[0].structure.lattice.matrix, zno().lattice.matrix, atol=1e-6)
    gaps = entries(extxyz, "band-gap", path)  # default key band_gap
    assert [e.value for e in gaps[:2]] == [0.73, 0.8]


def test_extxyz_key_errors_name_the_available_keys(tmp_path):
    path = tmp_path / "frames.xyz"
    ase_write(path, xyz_frames(), format="extxyz")
    with pytest.raises(
        InputError,
        match=r"key 'epsilon' is not in the frame info .* band_gap, eps, material_id; choose",
    ):
        list(extxyz.read("dielectric", path, FetchOptions(key="epsilon")))
    with pytest.raises(InputError, match=r"key 'dielectric_total' \(the default for this target\)"):
        list(extxyz.read("dielectric", path, OPTIONS))
    with pytest.raises(InputError, match=r"'becs' .* is a per-atom array"):
        list(extxyz.read("dielectric", path, FetchOptions(key="becs")))


def test_extxyz_bad_files(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("this is not\nan xyz file\n")
    with pytest.raises(InputError, match="line 1: expected the atom count"):
        list(extxyz.read("band-gap", path, OPTIONS))
    frames = tmp_path / "frames.xyz"
    ase_write(frames, xyz_frames()[:2], format="extxyz")
    lines = frames.read_text().splitlines(keepends=True)
    broken = (
        lines[:6]
        + ["4\n", 'Lattice="1 0 0 0 1 0 0 0 1" Properties=species:S:1:pos:R:3\n']
        + ["Zn 0 0 x\n"] * 4
    )
    path.write_text("".join(broken))
    got = entries(extxyz, "band-gap", path)
    assert got[0].value == 0.73 and got[1].reason.startswith(
        "unreadable frame: cannot parse the frame at line 7"
    )
    path.write_text("".join(lines[:4]))
    with pytest.raises(InputError, match="truncated"):
        list(extxyz.read("band-gap", path, OPTIONS))


@pytest.mark.shared_data
def test_extxyz_real_born_dielectric_file(shared_data):
    path = shared_data / "e3nn-born-dielectric" / "phonon_becs_epsilon.xyz.gz"
    records, report = checked(extxyz, "dielectric-electronic", path, key="eps", limit=30)
    assert report.read == 30 and report.kept >= 29
    n_atoms = len(records[0].structure["sites"])
    assert np.asarray(records[0].meta["becs"]).shape == (n_atoms, 9)


@pytest.mark.shared_data
def test_extxyz_real_scalars_stream(shared_data):
    path = shared_data / "mp-2018-scalars" / "mp_2018_scalars.extxyz.gz"
    start = time.perf_counter()
    got = entries(extxyz, "formation-energy", path, limit=500)
    elapsed = time.perf_counter() - start
    assert len(got) == 500 and all(isinstance(e, RawEntry) for e in got)
    assert got[0].id == "mp-1" and got[0].value == pytest.approx(0.038769612068965564)
    assert elapsed < 5, f"streaming 500 frames took {elapsed:.1f} s"


# --------------------------------------------------------------------------------------------
# vasp (synthetic OUTCAR / vasprun.xml in VASP's printed format)
# --------------------------------------------------------------------------------------------

OUTCAR_HEADER = """ vasp.6.3.2 18Jan22 (build Feb 01 2022 12:00:00) complex
 running on    4 total cores
   NKPTS =     20   k-points in BZ     NKDIM =     20   number of bands    NBANDS=     32
   total plane-waves  NPLWV =  46656
   IBRION =      6    ionic relax: 0-MD 1-quasi-New 2-CG
   ISIF   =      3    stress and relaxation
   LEPSILON=     T    determine dielectric tensor
"""
VASP_LABELS = ("XX", "YY", "ZZ", "XY", "YZ", "ZX")


def elastic_block(c_kbar: np.ndarray) -> str:
    lines = [
        " TOTAL ELASTIC MODULI (kBar)",
        " Direction    " + "          ".join(VASP_LABELS),
        " " + "-" * 80,
    ]
    lines += [
        f" {lab}    " + "".join(f"{v:12.4f}" for v in row)
        for lab, row in zip(VASP_LABELS, c_kbar, strict=True)
    ]
    return "\n".join([*lines, " " + "-" * 80]) + "\n"


def eps_block(title: str, eps: np.ndarray) -> str:
    lines = [f" {title}", " " + "-" * 54]
    lines += ["          " + " ".join(f"{v:12.6f}" for v in row) for row in eps]
    return "\n".join([*lines, " " + "-" * 54]) + "\n"


def piezo_block(title: str, e_vasp: np.ndarray) -> str:
    lines = [
        f" {title}  for field in x, y, z        (C/m^2)",
        "         " + "          ".join(VASP_LABELS),
        " " + "-" * 88,
    ]
    lines += [
        f"  {lab}   " + " ".join(f"{v:11.5f}" for v in row)
        for lab, row in zip("xyz", e_vasp, strict=True)
    ]
    return "\n".join([*lines, " " + "-" * 88]) + "\n"


def to_vasp_order(voigt: np.ndarray, rows_too: bool) -> np.ndarray:
    """Our Voigt order (xx yy zz yz xz xy) -> VASP's (XX YY ZZ XY YZ ZX)."""
    order = [0, 1, 2, 5, 3, 4]
    out = voigt[..., order]
    return out[order, :] if rows_too else out


EPS_NO_LFE = np.diag([4.1, 4.1, 4.2])
EPS_ELECTRONIC = np.diag([3.7, 3.7, 3.8])
EPS_IONIC = np.diag([4.4, 4.4, 5.0])
PIEZO_ELECTRONIC = np.array(
    [[0, 0, 0, 0, -0.2, 0], [0, 0, 0, -0.2, 0, 0], [-0.1, -0.1, 0.3, 0, 0, 0]]
)
PIEZO_IONIC = ZNO_PIEZO - PIEZO_ELECTRONIC


def outcar_text(
    elastic: bool = True, lepsilon: bool = True, ionic: bool = True, lfe: bool = True
) -> str:
    text = OUTCAR_HEADER
    if lepsilon:
        text += eps_block(
            "MACROSCOPIC STATIC DIELECTRIC TENSOR (excluding local field effects)", EPS_NO_LFE
        )
        text += piezo_block(
            "PIEZOELECTRIC TENSOR", to_vasp_order(PIEZO_ELECTRONIC * (1.1 if lfe else 1.0), False)
        )
        if lfe:
            text += eps_block(
                "MACROSCOPIC STATIC DIELECTRIC TENSOR (including local field effects in DFT)",
                EPS_ELECTRONIC,
            )
            text += piezo_block(
                "PIEZOELECTRIC TENSOR (including local field effects)",
                to_vasp_order(PIEZO_ELECTRONIC, False),
            )
    if ionic:
        text += eps_block("MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC CONTRIBUTION", EPS_IONIC)
        text += piezo_block("PIEZOELECTRIC TENSOR IONIC CONTR", to_vasp_order(PIEZO_IONIC, False))
    if elastic:
        text += elastic_block(to_vasp_order(ZNO_ELASTIC, True) * 10.0)
    return text


def vasp_run(folder: Path, poscar: str | None = ZNO_POSCAR, name: str = "POSCAR", **blocks) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "OUTCAR").write_text(outcar_text(**blocks))
    if poscar is not None:
        (folder / name).write_text(poscar)
    return folder


def test_vasp_elastic_units_and_voigt_order(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    c = 100 * np.eye(6) + 10 * (a + a.T)  # every component distinct
    folder = tmp_path / "calc"
    folder.mkdir()
    (folder / "OUTCAR").write_text(OUTCAR_HEADER + elastic_block(to_vasp_order(c, True) * 10.0))
    (folder / "POSCAR").write_text(ZNO_POSCAR)
    (entry,) = entries(vasp, "elastic", tmp_path)
    np.testing.assert_allclose(to_voigt(entry.value), c, atol=1e-4)  # kBar -> GPa, reordered
    assert entry.id == "calc" and entry.meta == {"folder": "calc", "files": ["OUTCAR"]}


def test_vasp_all_targets_from_one_lepsilon_run(tmp_path):
    vasp_run(tmp_path / "zno")
    (elastic,) = entries(vasp, "elastic", tmp_path)
    np.testing.assert_allclose(to_voigt(elastic.value), ZNO_ELASTIC, atol=1e-4)
    (total,) = entries(vasp, "dielectric", tmp_path)
    np.testing.assert_allclose(total.value, EPS_ELECTRONIC + EPS_IONIC)
    (electronic,) = entries(vasp, "dielectric-electronic", tmp_path)
    np.testing.assert_allclose(electronic.value, EPS_ELECTRONIC)  # with local field effects
    (piezo,) = entries(vasp, "piezoelectric", tmp_path)
    np.testing.assert_allclose(to_voigt(piezo.value), ZNO_PIEZO, atol=1e-6)
    # pymatgen reads VASP's layout the same way
    vasp_layout = to_vasp_order(ZNO_PIEZO, False)
    np.testing.assert_allclose(piezo.value, vasp_piezo(vasp_layout), atol=1e-9)
    for target in ("elastic", "dielectric", "piezoelectric"):
        (record,), report = check_entries(entries(vasp, target, tmp_path), target)
        assert report.kept == 1 and record.symmetry["point_group"] == "6mm"


def vasp_piezo(vasp_layout: np.ndarray) -> np.ndarray:
    from pymatgen.analysis.piezo import PiezoTensor

    return np.asarray(PiezoTensor.from_vasp_voigt(vasp_layout))


def test_vasp_without_local_field_block_uses_pymatgens_piezo_tensor(tmp_path):
    vasp_run(tmp_path / "old", lfe=False)
    (piezo,) = entries(vasp, "piezoelectric", tmp_path)
    np.testing.assert_allclose(to_voigt(piezo.value), PIEZO_ELECTRONIC + PIEZO_IONIC, atol=1e-6)
    (eps,) = entries(vasp, "dielectric-electronic", tmp_path)
    np.testing.assert_allclose(eps.value, EPS_NO_LFE)


def test_vasp_missing_blocks_and_structures_become_rejections(tmp_path):
    vasp_run(tmp_path / "a-no-ionic", ionic=False)
    vasp_run(tmp_path / "b-no-poscar", poscar=None)
    vasp_run(tmp_path / "c-contcar", name="CONTCAR")
    (tmp_path / "d-truncated").mkdir()
    (tmp_path / "d-truncated" / "OUTCAR").write_text(" vasp.6.3.2\n running on 4 total cores\n")
    vasp_run(tmp_path / "e" / "nested" / "run", elastic=False)
    got = {e.id: e for e in entries(vasp, "dielectric", tmp_path)}
    assert list(got) == ["a-no-ionic", "b-no-poscar", "c-contcar", "d-truncated", "e/nested/run"]
    assert got["a-no-ionic"].reason.startswith(
        "missing value: no MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC"
    )
    assert got["b-no-poscar"].reason.startswith("unreadable structure: no POSCAR")
    assert isinstance(got["c-contcar"], RawEntry)
    assert got["d-truncated"].reason.startswith("unreadable output: OUTCAR")
    assert isinstance(got["e/nested/run"], RawEntry)
    elastic = {e.id: e for e in entries(vasp, "elastic", tmp_path)}
    assert elastic["e/nested/run"].reason.startswith("missing value: no TOTAL ELASTIC MODULI")


def test_vasp_unreadable_calculations_are_rejected_with_reasons_in_words(tmp_path):
    text = outcar_text()

    def cut_after(title: str, chars: int) -> str:
        return text[: text.index(title) + chars]

    outcars = {
        "binary": "\x00\x01\x02 not text\n",
        "empty": "",
        "foreign": "hello\nthis is a text file\n",
        "stopped": " vasp.6.3.2\n running on 4 total cores\n",
        # blocks cut short: pymatgen would read the missing rows as zeros
        "cut-eps-ionic": cut_after("MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC", 120),
        "cut-piezo-ionic": cut_after("PIEZOELECTRIC TENSOR IONIC CONTR", 250),
    }
    for name, content in outcars.items():
        (vasp_run(tmp_path / name) / "OUTCAR").write_text(content)
    (vasp_run(tmp_path / "bad-poscar") / "POSCAR").write_text("junk\n1.0\n")
    xml = tmp_path / "xml-cut"
    xml.mkdir()
    (xml / "vasprun.xml").write_text(vasprun_xml()[:800])
    got = {e.id: getattr(e, "reason", "ok") for e in entries(vasp, "dielectric", tmp_path)}
    assert got["binary"] == "unreadable output: OUTCAR is not a text file (binary or damaged)"
    assert got["empty"].startswith("unreadable output: OUTCAR is empty (the run did not start")
    assert got["foreign"].startswith("unreadable output: OUTCAR is not a VASP OUTCAR")
    assert got["stopped"].startswith(
        "unreadable output: OUTCAR ends before the header pymatgen reads (NBANDS)"
    )
    assert got["cut-eps-ionic"] == (
        "unreadable output: the MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC CONTRIBUTION block "
        "of OUTCAR has 0 of its 3 rows: the run was interrupted or the file was cut short"
    )
    assert got["bad-poscar"].startswith(
        "unreadable structure: POSCAR cannot be read as a VASP structure: it is cut short"
    )
    assert got["xml-cut"].startswith("unreadable output: vasprun.xml ends early: the run was")
    assert got["cut-piezo-ionic"] == "ok"  # its dielectric blocks are whole
    assert "XMLSyntaxError" in got["xml-cut"]
    piezo = {e.id: e for e in entries(vasp, "piezoelectric", tmp_path)}
    assert piezo["cut-piezo-ionic"].reason.startswith(
        "unreadable output: the PIEZOELECTRIC TENSOR IONIC CONTR block of OUTCAR has 0 of its 3"
    )
    assert isinstance(piezo["cut-eps-ionic"], Rejected)  # no ionic piezoelectric block at all


def test_vasp_surprise_in_one_calculation_rejects_it_alone(tmp_path, monkeypatch):
    vasp_run(tmp_path / "a")
    vasp_run(tmp_path / "b")

    def broken(calc):
        if calc.folder.name == "a":
            raise KeyError("boom")
        return readers["elastic"](calc)

    readers = dict(vasp._VALUE_READERS)
    monkeypatch.setitem(vasp._VALUE_READERS, "elastic", broken)
    got = {e.id: e for e in entries(vasp, "elastic", tmp_path)}
    assert got["a"].reason == (
        "unreadable output: OUTCAR: unexpected KeyError: 'boom' (please report it)"
    )
    assert isinstance(got["b"], RawEntry)


def test_vasp_single_file_vasprun_and_errors(tmp_path):
    run = vasp_run(tmp_path / "run")
    (entry,) = entries(vasp, "elastic", run / "OUTCAR")
    assert entry.id == "run"
    folder = tmp_path / "xml"
    folder.mkdir()
    (folder / "vasprun.xml").write_text(vasprun_xml())
    (entry,) = entries(vasp, "dielectric", folder)
    np.testing.assert_allclose(entry.value, EPS_ELECTRONIC + EPS_IONIC)
    assert entry.structure.composition.reduced_formula == "ZnO"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no OUTCAR or vasprun\.xml under"):
        list(vasp.read("elastic", tmp_path / "empty", OPTIONS))
    with pytest.raises(
        InputError, match="provides: elastic, dielectric, dielectric-electronic, piezoelectric"
    ):
        list(vasp.read("band-gap", run, OPTIONS))


def vasprun_xml() -> str:
    """A minimal vasprun.xml of a LEPSILON + IBRION=8 run, in VASP's layout."""
    s = zno()

    def varray(name: str, rows) -> str:
        body = "\n".join("    <v>" + " ".join(f"{x:16.8f}" for x in r) + " </v>" for r in rows)
        return f'   <varray name="{name}">\n{body}\n   </varray>'

    def structure(name: str | None) -> str:
        attr = f' name="{name}"' if name else ""
        return (
            f"  <structure{attr}>\n   <crystal>\n{varray('basis', s.lattice.matrix)}\n"
            "   </crystal>\n"
            f"{varray('positions', s.frac_coords)}\n  </structure>"
        )

    energy = (
        "<energy>"
        + "".join(f'<i name="{n}"> -10.0 </i>' for n in ("e_fr_energy", "e_wo_entrp", "e_0_energy"))
        + "</energy>"
    )
    full = energy.replace("<energy>", '<energy><i name="alphaZ"> 1.0 </i>')
    atoms = "\n".join(
        f"    <rc><c>{site.specie.symbol}</c><c>   {1 + (site.specie.symbol == 'O')}</c></rc>"
        for site in s
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator>
  <i name="program" type="string">vasp </i>
  <i name="version" type="string">6.3.2  </i>
 </generator>
 <incar>
  <i type="int" name="IBRION">     8</i>
  <i type="logical" name="LEPSILON"> T  </i>
 </incar>
 <parameters>
  <i type="int" name="IBRION">     8</i>
  <i type="int" name="NELM">    60</i>
 </parameters>
 <atominfo>
  <atoms>       4 </atoms>
  <types>       2 </types>
  <array name="atoms">
   <set>
{atoms}
   </set>
  </array>
  <array name="atomtypes">
   <set>
    <rc><c>   2</c><c>Zn</c><c>  65.39</c><c>  12.0</c><c>  PAW_PBE Zn 06Sep2000</c></rc>
    <rc><c>   2</c><c>O </c><c>  16.00</c><c>   6.0</c><c>  PAW_PBE O 08Apr2002</c></rc>
   </set>
  </array>
 </atominfo>
{structure("initialpos")}
 <calculation>
  <scstep>{full}</scstep>
  <scstep>{energy}</scstep>
  <scstep>{full}</scstep>
{structure(None)}
{varray("epsilon", EPS_ELECTRONIC)}
{varray("epsilon_ion", EPS_IONIC)}
  {energy}
 </calculation>
{structure("finalpos")}
</modeling>
"""


# --------------------------------------------------------------------------------------------
# json
# --------------------------------------------------------------------------------------------


def json_objects() -> list[dict]:
    s = zno().as_dict()
    return [
        {
            "mp_id": "mp-2133",
            "structure": s,
            "bulk_modulus_vrh": 130.2,
            "shear_modulus": {"vrh": 40.1},
        },
        {"mp_id": "mp-x", "structure": s, "bulk_modulus_vrh": None},
        {
            "structure": ZNO_POSCAR,
            "bulk_modulus_vrh": 131.0,
            "elastic_tensor": {"raw": ZNO_ELASTIC.tolist()},
        },
    ]


@pytest.mark.parametrize("layout", ["records", "columns", "split", "index", "lines"])
def test_json_layouts(tmp_path, layout):
    objs = json_objects()
    if layout == "records":
        data = json.dumps(objs)
    elif layout == "columns":
        names = dict.fromkeys(k for o in objs for k in o)
        data = json.dumps({c: {str(i): o.get(c) for i, o in enumerate(objs)} for c in names})
    elif layout == "split":
        columns = ["mp_id", "structure", "bulk_modulus_vrh"]
        data = json.dumps(
            {
                "columns": columns,
                "index": [0, 1, 2],
                "data": [[o.get(c) for c in columns] for o in objs],
            }
        )
    elif layout == "index":
        data = json.dumps({f"k{i}": o for i, o in enumerate(objs)})
    else:
        data = "\n".join(json.dumps(o) for o in objs)
    path = tmp_path / "data.json"
    path.write_text(data)
    got = entries(jsonfile, "bulk-modulus", path)
    assert got[0].id == "mp-2133" and got[0].value == 130.2
    assert got[1] == Rejected("mp-x", "missing value: no 'bulk_modulus_vrh'")
    assert got[2].value == 131.0 and got[2].id.startswith("data#")


def test_json_keys_nested_values_and_errors(tmp_path):
    path = tmp_path / "data.json.gz"
    path.write_bytes(gzip.compress(json.dumps(json_objects()).encode()))
    shear = entries(jsonfile, "shear-modulus", path, key="shear_modulus.vrh")
    assert shear[0].value == 40.1
    elastic = entries(jsonfile, "elastic", path, key="elastic_tensor")
    np.testing.assert_allclose(to_voigt(elastic[2].value), ZNO_ELASTIC)  # the 'raw' entry
    with pytest.raises(
        InputError,
        match=r"target 'dielectric' .* provides: elastic, bulk-modulus, shear-modulus",
    ):
        list(jsonfile.read("dielectric", path, OPTIONS))
    with pytest.raises(
        InputError, match=r"key 'eps' is not a field .* available fields: mp_id, structure"
    ):
        list(jsonfile.read("dielectric", path, FetchOptions(key="eps")))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"formula": "ZnO", "band_gap": 1.0}]))
    with pytest.raises(InputError, match="no structure field"):
        list(jsonfile.read("band-gap", bad, OPTIONS))
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json is not JSON"):
        list(jsonfile.read("band-gap", bad, OPTIONS))
    bad.write_text("[1, 2, 3]")
    with pytest.raises(InputError, match="unrecognised JSON layout"):
        list(jsonfile.read("band-gap", bad, OPTIONS))


@pytest.mark.shared_data
def test_json_real_files(shared_data):
    records, report = checked(
        jsonfile,
        "elastic",
        shared_data / "matten" / "example_crystal_elasticity_tensor_n100.json",
        limit=20,
    )
    assert report.kept == 20 and all(r.symmetry["crystal_system"] == "cubic" for r in records)
    assert records[0].id == "example_crystal_elasticity_tensor_n100#0"
    matcalc = shared_data / "matcalc" / "mp-binary-pbe-elasticity-2025.1.json.gz"
    records, report = checked(jsonfile, "bulk-modulus", matcalc, limit=200)
    assert report.kept == 200 and records[0].id == "mp-975512" and records[0].value == 53.357


# --------------------------------------------------------------------------------------------
# fetch (the library entry)
# --------------------------------------------------------------------------------------------


def test_sources_registry_modules_have_read():
    assert set(SOURCES) == {
        "mp",
        "matminer-csv",
        "straintensornet",
        "extxyz",
        "vasp",
        "json",
        "naccarato",
    }
    for name, module in SOURCES.items():
        if name == "mp":
            continue  # written elsewhere; needs the mp extra
        assert callable(importlib.import_module(module).read)


def test_rejects_path_naming():
    assert rejects_path_for("out/elastic.jsonl.gz") == Path("out/elastic.fetch-rejects.jsonl")
    assert rejects_path_for("x.json") == Path("x.fetch-rejects.jsonl")
    assert rejects_path_for("records") == Path("records.fetch-rejects.jsonl")


def test_fetch_writes_records_and_rejects(tmp_path):
    csv = write_csv(tmp_path / "elastic.csv", elastic_table())
    out = tmp_path / "out" / "zno.jsonl.gz"
    report = fetch("elastic", "matminer-csv", csv, out)
    assert (report.read, report.kept, report.rejected) == (3, 2, 1)
    assert report.rejected_by_reason == {"unreadable structure": 1}
    records = list(read_records(out))
    assert [r.id for r in records] == ["mp-2133", "mp-nan"]
    assert records[0].source["file"] == "elastic.csv"
    lines = [json.loads(line) for line in report.rejects.read_text().splitlines()]
    assert lines == [
        {
            "stage": "fetch",
            "id": "mp-bad",
            "code": "unreadable-structure",
            "reason": lines[0]["reason"],
            "file": "elastic.csv",
        }
    ]
    assert lines[0]["reason"].startswith("unreadable structure: ")
    assert report.as_dict()["rejected_by_reason"] == {"unreadable structure": 1}
    limited = fetch("elastic", "matminer-csv", csv, tmp_path / "one.jsonl", limit=1)
    assert limited.read == 1 and limited.kept == 1


def test_fetch_failures_leave_nothing(tmp_path):
    csv = write_csv(tmp_path / "elastic.csv", elastic_table())
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="unknown source 'matminer'"):
        fetch("elastic", "matminer", csv, out)
    with pytest.raises(InputError, match="does not exist"):
        fetch("elastic", "matminer-csv", tmp_path / "nope.csv", out)
    with pytest.raises(InputError, match="give its path with --input"):
        fetch("elastic", "json", None, out)
    with pytest.raises(InputError, match="cannot provide target 'piezoelectric'"):
        fetch("piezoelectric", "matminer-csv", csv, out)
    with pytest.raises(InputError, match="is the input file"):
        fetch("elastic", "matminer-csv", csv, csv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elastic.csv"]
    # nothing passes: no records file, but the rejects file says why, as when some pass
    with pytest.raises(InputError, match="none of the 3 entries passed the checks"):
        fetch("elastic", "matminer-csv", csv, out, tolerance=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elastic.csv", "out.fetch-rejects.jsonl"]
    assert len(read_rejects(tmp_path / "out.fetch-rejects.jsonl")) == 3


def test_a_failed_rejects_file_leaves_the_previous_records(tmp_path, monkeypatch):
    csv = write_csv(tmp_path / "elastic.csv", elastic_table())
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fetch_module, "_write_rejects", failing)
    with pytest.raises(OSError, match="disk full"):
        fetch("elastic", "matminer-csv", csv, out)
    assert out.read_text() == "old\n"  # the new records were never renamed into place
    assert not rejects_path_for(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elastic.csv", "out.jsonl"]


# --------------------------------------------------------------------------------------------
# full datasets (the counts of the data README; minutes)
# --------------------------------------------------------------------------------------------

FULL_RUNS = [
    # source, path, target, key, read, kept (measured; spglib/pymatgen updates may move a few)
    ("matminer-csv", "matminer-2018/elastic_tensor.csv.gz", "elastic", None, 1181, 1164),
    ("matminer-csv", "matminer-2018/dielectric_constant.csv.gz", "dielectric", None, 1056, 1051),
    ("matminer-csv", "matminer-2018/piezoelectric_tensor.csv.gz", "piezoelectric", None, 941, 764),
    ("straintensornet", "straintensornet-mp/mp_elastic_ieee.json.gz", "elastic", None, 1061, 1054),
    (
        "extxyz",
        "e3nn-born-dielectric/phonon_becs_epsilon.xyz.gz",
        "dielectric-electronic",
        "eps",
        1520,
        1520,
    ),
    pytest.param(
        "extxyz",
        "mp-2018-scalars/mp_2018_scalars.extxyz.gz",
        "band-gap",
        None,
        36737,
        36737,
        marks=pytest.mark.heavy,  # 90 s: run by `make test-all`, not by CI
    ),
    ("json", "matten/example_crystal_elasticity_tensor_n100.json", "elastic", None, 100, 100),
    ("json", "matcalc/mp-binary-pbe-elasticity-2025.1.json.gz", "bulk-modulus", None, 3905, 3905),
]


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize(("source", "file", "target", "key", "read", "kept"), FULL_RUNS)
def test_full_dataset_counts(shared_data, tmp_path, source, file, target, key, read, kept):
    report = fetch(
        target, source, shared_data / file, tmp_path / "out.jsonl.gz", options=FetchOptions(key=key)
    )
    assert report.read == read
    assert abs(report.kept - kept) <= max(3, read // 200), report.rejected_by_reason
