"""VASP calculations (source ``vasp``): every ``OUTCAR`` / ``vasprun.xml`` under a folder.

Each folder holding an ``OUTCAR`` or ``vasprun.xml`` (``.gz`` allowed) is one calculation and one
entry, its id the folder's path relative to the given root. Parsing goes through pymatgen's
``Outcar`` and ``Vasprun``:

=========================  ==================================================================
target                     where (VASP run)
=========================  ==================================================================
``elastic``                ``TOTAL ELASTIC MODULI (kBar)`` (IBRION=6, ISIF>=3; rigid-ion plus
                           ionic relaxation), ``Outcar.read_elastic_tensor()``
``dielectric-electronic``  ``MACROSCOPIC STATIC DIELECTRIC TENSOR (including local field effects
                           in DFT)`` (LEPSILON or LCALCEPS), ``Outcar.read_lepsilon()`` ->
                           ``dielectric_tensor``; else vasprun's ``epsilon_static``
``dielectric``             electronic + ``MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC
                           CONTRIBUTION`` (IBRION=5-8), ``Outcar.read_lepsilon_ionic()`` ->
                           ``dielectric_ionic_tensor``; else vasprun's ``epsilon_static +
                           epsilon_ionic``
``piezoelectric``          electronic (clamped-ion) ``PIEZOELECTRIC TENSOR (including local
                           field effects) ... (C/m^2)``, or pymatgen's ``piezo_tensor`` (the
                           block without local field effects) when VASP printed only that,
                           plus the ionic ``PIEZOELECTRIC TENSOR IONIC CONTR ... (C/m^2)``
                           (``piezo_ionic_tensor``)
=========================  ==================================================================

pymatgen calls ``read_lepsilon_ionic`` itself only for IBRION 7/8 and ``read_lepsilon`` only when
``LEPSILON = T``; here both are called whenever VASP printed the blocks, so IBRION=5/6 and
LCALCEPS runs are read too.

Units and order. VASP prints the elastic moduli in kBar (converted: 1 kBar = 0.1 GPa) and the
piezoelectric stress constants in C/m^2, both in the Voigt order ``XX YY ZZ XY YZ ZX``; they are
reordered to crystensor's ``xx yy zz yz xz xy`` (:data:`VASP_TO_VOIGT`), without factors of 2
(pymatgen's ``PiezoelectricTensor.from_vasp_voigt`` reads the same layout).

Frame. VASP works in the Cartesian frame of the lattice in the input, so the structure is the
folder's ``POSCAR`` (as given, not standardised), else the initial structure of ``vasprun.xml``,
else ``CONTCAR`` (IBRION=5-8 and LEPSILON runs do not move the ions).

Rejections. A calculation that cannot be read is rejected alone, with a reason in words: an
empty file, a file that is not text or not VASP's, an OUTCAR that ends before the header
pymatgen needs, a block cut short (fewer rows than a complete one: an interrupted run or a
partial copy; pymatgen would read the missing rows as zeros), XML that ends early, a POSCAR that
cannot be read, or an error of pymatgen's (its type and message). pymatgen's warnings are not
shown; the reason says what went wrong.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.data.sources._common import (
    BAD_STRUCTURE,
    MISSING_VALUE,
    Progress,
    as_cartesian,
    property_of,
    unsupported_target,
)
from crystensor.errors import InputError

__all__ = [
    "KBAR_TO_GPA",
    "SOURCE",
    "TARGETS",
    "VASP_TO_VOIGT",
    "Calculation",
    "find_calculations",
    "read",
    "vasp_voigt_to_voigt",
]

logger = logging.getLogger(__name__)

SOURCE = "vasp"
TARGETS: tuple[str, ...] = ("elastic", "dielectric", "dielectric-electronic", "piezoelectric")
#: crystensor's Voigt index I is VASP's column VASP_TO_VOIGT[I] (VASP: XX YY ZZ XY YZ ZX).
VASP_TO_VOIGT: tuple[int, ...] = (0, 1, 2, 4, 5, 3)
KBAR_TO_GPA = 0.1

UNREADABLE = "unreadable output"
_OUTCARS = ("OUTCAR", "OUTCAR.gz", "OUTCAR.bz2", "OUTCAR.xz")
_VASPRUNS = ("vasprun.xml", "vasprun.xml.gz", "vasprun.xml.bz2", "vasprun.xml.xz")
_POSCARS = ("POSCAR", "POSCAR.gz")
_CONTCARS = ("CONTCAR", "CONTCAR.gz")

_ELASTIC = "TOTAL ELASTIC MODULI (kBar)"
_EPS_ELECTRONIC = "MACROSCOPIC STATIC DIELECTRIC TENSOR ("
_EPS_IONIC = "MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC CONTRIBUTION"
_PIEZO_LFE = "PIEZOELECTRIC TENSOR (including local field effects)"
_PIEZO_IONIC = "PIEZOELECTRIC TENSOR IONIC CONTR"
_CM2 = re.compile(r"PIEZOELECTRIC TENSOR  for field in x, y, z\s+\(C/m\^2\)")
_PIEZO_CM2 = "PIEZOELECTRIC TENSOR  for field in x, y, z"
_NUM = r"(-?[\d.]+(?:[Ee][+-]?\d+)?)"
_FLOAT = re.compile(r"-?\d+\.\d*(?:[Ee][+-]?\d+)?")


@dataclass
class Calculation:
    """The output files of one VASP calculation folder."""

    folder: Path
    outcar: Path | None = None
    vasprun: Path | None = None
    files: list[str] = field(default_factory=list)


def find_calculations(root: Path) -> list[Calculation]:
    """Every folder under ``root`` (``root`` included) with an ``OUTCAR`` or ``vasprun.xml``.

    ``root`` may also be one such file, which is then the only output read. Sorted by folder.
    """
    root = Path(root)
    if root.is_file():
        calc = Calculation(root.parent, files=[root.name])
        if root.name.startswith("OUTCAR"):
            calc.outcar = root
        else:
            calc.vasprun = root
        return [calc]
    calcs: dict[Path, Calculation] = {}
    for name in (*_OUTCARS, *_VASPRUNS):
        for found in root.rglob(name):
            if not found.is_file():
                continue
            calc = calcs.setdefault(found.parent, Calculation(found.parent))
            calc.files.append(found.name)
            if name in _OUTCARS and calc.outcar is None:
                calc.outcar = found
            elif name in _VASPRUNS and calc.vasprun is None:
                calc.vasprun = found
    return [calcs[k] for k in sorted(calcs)]


def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]:
    """One entry per VASP calculation folder under ``path``.

    Parameters
    ----------
    target : str
        ``elastic``, ``dielectric``, ``dielectric-electronic`` or ``piezoelectric``.
    path : Path
        A folder searched recursively, or a single ``OUTCAR`` / ``vasprun.xml``.
    options : FetchOptions
        Only ``progress`` is used.

    Yields
    ------
    RawEntry or Rejected
        Tensors in GPa (elastic), unitless (dielectric) or C/m^2 (piezoelectric), in the
        Cartesian frame of the calculation's input structure.

    Raises
    ------
    InputError
        Missing path, no VASP output under it, or a target VASP runs do not provide here.
    """
    if path is None:
        raise InputError(f"source {SOURCE!r} reads a folder of VASP calculations; give --input")
    root = Path(path)
    if not root.exists():
        raise InputError(f"input {str(root)!r} does not exist; check the path")
    if target not in TARGETS:
        raise unsupported_target(SOURCE, target, TARGETS, "VASP output")
    kind = property_of(target).tensor_kind
    calcs = find_calculations(root)
    if not calcs:
        raise InputError(
            f"no OUTCAR or vasprun.xml under {str(root)!r}; give the folder of the VASP runs"
        )
    base = root if root.is_dir() else root.parent
    progress = Progress(options.progress, len(calcs))
    logger.info("%s: %d VASP calculation folder(s)", root, len(calcs))
    for calc in calcs:
        rel = calc.folder.relative_to(base).as_posix()
        entry_id = base.resolve().name if rel == "." else rel
        source = {"dataset": "vasp", "citation": "", "file": str(calc.folder)}
        meta = {"folder": rel, "files": sorted(calc.files)}
        try:
            with warnings.catch_warnings():  # the reason says what went wrong, in words
                warnings.simplefilter("ignore")
                value = _VALUE_READERS[target](calc)
                tensor = as_cartesian(value, kind)
                structure = _structure(calc)
        except ValueError as err:
            yield Rejected(entry_id, str(err))
        except Exception as err:  # one calculation's surprise must not end the import
            files = ", ".join(sorted(calc.files))
            yield Rejected(
                entry_id,
                f"{UNREADABLE}: {files}: unexpected {type(err).__name__}: {_first_line(err)} "
                "(please report it)",
            )
        else:
            yield RawEntry(entry_id, structure, tensor, source, meta)
        progress.step()
    progress.finish()


def vasp_voigt_to_voigt(matrix: np.ndarray, rows_too: bool) -> np.ndarray:
    """Reorder VASP's Voigt columns (and rows, for 6x6) ``XX YY ZZ XY YZ ZX`` to ours.

    >>> vasp = np.arange(6.0)[None, :] * np.ones((3, 1))      # column j holds j
    >>> vasp_voigt_to_voigt(vasp, rows_too=False)[0].tolist()
    [0.0, 1.0, 2.0, 4.0, 5.0, 3.0]
    """
    out = np.asarray(matrix, dtype=float)[..., list(VASP_TO_VOIGT)]
    if rows_too:
        out = out[list(VASP_TO_VOIGT), :]
    return out


# --- values -------------------------------------------------------------------------------------


def _text(path: Path) -> str:
    from monty.io import zopen

    with zopen(str(path), mode="rt", encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else "no message"


def _outcar(calc: Calculation) -> tuple[Any, str]:
    """pymatgen's ``Outcar`` of the folder and the file's text (to see which blocks exist)."""
    from pymatgen.io.vasp.outputs import Outcar

    if calc.outcar is None:
        raise ValueError(f"{MISSING_VALUE}: no OUTCAR in {calc.folder.name}")
    name = calc.outcar.name
    try:
        text = _text(calc.outcar)
    except Exception as err:  # a damaged .gz, a permission problem, ...
        raise ValueError(
            f"{UNREADABLE}: {name} could not be read ({type(err).__name__}: {_first_line(err)})"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcar = Outcar(str(calc.outcar))
    except Exception as err:  # pymatgen raises many types on truncated or foreign files
        detail = f"({type(err).__name__}: {_first_line(err)})"
        raise ValueError(f"{UNREADABLE}: {name} {_outcar_problem(text, detail)}") from None
    return outcar, text


def _outcar_problem(text: str, detail: str) -> str:
    """Why pymatgen could not read an OUTCAR of this text, as far as the text shows."""
    if not text.strip():
        return "is empty (the run did not start, or the file was not copied)"
    head = text[:4096]
    if "\x00" in head or head.count("\ufffd") > 8:
        return "is not a text file (binary or damaged)"
    if "vasp." not in head.lower():
        return "is not a VASP OUTCAR (its first lines name no vasp version)"
    if "NBANDS=" not in text:
        return (
            "ends before the header pymatgen reads (NBANDS): the run stopped at its start or "
            f"the file was cut short {detail}"
        )
    return f"could not be parsed by pymatgen {detail}"


def _complete_rows(text: str, title: str, width: int, unit: str | None = None) -> int:
    """Rows of at least ``width`` numbers in the last block headed by a line with ``title``.

    VASP prints each tensor as a title, a rule of dashes, one row per line and a closing rule
    (the piezoelectric blocks have a line of labels before the first rule). A block cut short
    has fewer rows; pymatgen leaves the missing ones at zero.
    """
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if title in line and (unit is None or unit in line)]
    if not heads:
        return 0
    rows = rules = 0
    for line in lines[heads[-1] + 1 :]:
        stripped = line.strip()
        if stripped and set(stripped) == {"-"}:
            rules += 1
            if rules == 2:
                break
        elif rules == 1:
            if len(_FLOAT.findall(line)) < width:
                break
            rows += 1
    return rows


def _check_block(text: str, title: str, rows: int, width: int, unit: str | None = None) -> None:
    found = _complete_rows(text, title, width, unit)
    if found < rows:
        raise ValueError(
            f"{UNREADABLE}: the {title.strip()} block of OUTCAR has {found} of its {rows} rows: "
            "the run was interrupted or the file was cut short"
        )


def _elastic(calc: Calculation) -> np.ndarray:
    outcar, text = _outcar(calc)
    if _ELASTIC not in text:
        raise ValueError(f"{MISSING_VALUE}: no {_ELASTIC} in OUTCAR (an IBRION=6, ISIF>=3 run)")
    _check_block(text, _ELASTIC, 6, 6)
    outcar.read_elastic_tensor()
    table = np.asarray(outcar.data.get("elastic_tensor", []), dtype=float)
    if table.shape != (6, 6):
        raise ValueError(
            f"{UNREADABLE}: pymatgen read the {_ELASTIC} block of OUTCAR as {table.shape}, not 6x6"
        )
    return vasp_voigt_to_voigt(table, rows_too=True) * KBAR_TO_GPA


def _eps_electronic(calc: Calculation) -> np.ndarray:
    if calc.outcar is None:
        return _vasprun_eps(calc, ionic=False)
    return _lepsilon(*_outcar(calc))


def _eps_total(calc: Calculation) -> np.ndarray:
    if calc.outcar is None:
        return _vasprun_eps(calc, ionic=True)
    outcar, text = _outcar(calc)
    electronic = _lepsilon(outcar, text)
    if _EPS_IONIC not in text:
        raise ValueError(
            f"{MISSING_VALUE}: no {_EPS_IONIC} in OUTCAR; the total needs the ionic part "
            "(IBRION=5-8 with LEPSILON or LCALCEPS); use target dielectric-electronic otherwise"
        )
    _check_block(text, _EPS_IONIC, 3, 3)
    try:
        outcar.read_lepsilon_ionic()
    except RuntimeError as err:
        raise ValueError(_pymatgen_failed(_EPS_IONIC, err)) from None
    return electronic + np.asarray(outcar.dielectric_ionic_tensor, dtype=float)


def _pymatgen_failed(block: str, err: BaseException) -> str:
    return (
        f"{UNREADABLE}: pymatgen could not read the {block.strip(' (')} block of OUTCAR "
        f"({type(err).__name__}: {_first_line(err)})"
    )


def _lepsilon(outcar: Any, text: str) -> np.ndarray:
    """The electronic dielectric tensor (the last block VASP printed: with local fields)."""
    if _EPS_ELECTRONIC not in text:
        raise ValueError(
            f"{MISSING_VALUE}: no {_EPS_ELECTRONIC}...) in OUTCAR (a LEPSILON or LCALCEPS run)"
        )
    _check_block(text, _EPS_ELECTRONIC, 3, 3)
    try:
        outcar.read_lepsilon()
    except RuntimeError as err:
        raise ValueError(_pymatgen_failed(_EPS_ELECTRONIC, err)) from None
    return np.asarray(outcar.dielectric_tensor, dtype=float)


def _piezo(calc: Calculation) -> np.ndarray:
    outcar, text = _outcar(calc)
    if _PIEZO_IONIC not in text or not (_PIEZO_LFE in text or _CM2.search(text)):
        raise ValueError(
            f"{MISSING_VALUE}: the piezoelectric tensor needs the electronic and the ionic "
            "(PIEZOELECTRIC TENSOR IONIC CONTR) blocks in C/m^2 (IBRION=5-8 with LEPSILON)"
        )
    if _PIEZO_LFE in text:
        _check_block(text, _PIEZO_LFE, 3, 6, unit="C/m^2")
    else:
        _check_block(text, _PIEZO_CM2, 3, 6, unit="C/m^2")
    _check_block(text, _PIEZO_IONIC, 3, 6, unit="C/m^2")
    try:
        if _PIEZO_LFE in text:
            header = (
                r"PIEZOELECTRIC TENSOR \(including local field effects\)\s+for field in x, y, z"
                r"\s+\(C/m\^2\)\s+([X-Z][X-Z]\s+)+\-+"
            )
            rows = outcar.read_table_pattern(
                header, r"[x-z]\s+" + r"\s+".join([_NUM] * 6), r"\-+", postprocess=float
            )
            electronic = np.asarray(rows, dtype=float)
        else:
            outcar.read_lepsilon()
            electronic = np.asarray(outcar.piezo_tensor, dtype=float)
        outcar.read_lepsilon_ionic()
        ionic = np.asarray(outcar.piezo_ionic_tensor, dtype=float)
    except RuntimeError as err:
        raise ValueError(_pymatgen_failed("PIEZOELECTRIC TENSOR", err)) from None
    if electronic.shape != (3, 6) or ionic.shape != (3, 6):
        raise ValueError(
            f"{UNREADABLE}: pymatgen read the piezoelectric blocks of OUTCAR as "
            f"{electronic.shape} and {ionic.shape}, not 3x6"
        )
    return vasp_voigt_to_voigt(electronic + ionic, rows_too=False)


def _vasprun(calc: Calculation) -> Any:
    from pymatgen.io.vasp.outputs import Vasprun

    if calc.vasprun is None:
        raise ValueError(f"{MISSING_VALUE}: no OUTCAR or vasprun.xml in {calc.folder.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Vasprun(
                str(calc.vasprun),
                parse_dos=False,
                parse_eigen=False,
                parse_projected_eigen=False,
                parse_potcar_file=False,
            )
    except Exception as err:  # malformed XML, interrupted runs, ...
        why = _xml_problem(calc.vasprun, err)
        raise ValueError(f"{UNREADABLE}: {calc.vasprun.name} {why}") from None


def _xml_problem(path: Path, err: BaseException) -> str:
    """Why a vasprun.xml could not be read, in words, with pymatgen's error."""
    detail = f"({type(err).__name__}: {_first_line(err)})"
    try:
        text = _text(path)
    except Exception:
        return f"could not be read {detail}"
    if not text.strip():
        return "is empty (the run did not start, or the file was not copied)"
    if "</modeling>" not in text[-4096:]:
        return f"ends early: the run was interrupted or the file was cut short {detail}"
    return f"is not a vasprun.xml pymatgen can read {detail}"


def _vasprun_eps(calc: Calculation, ionic: bool) -> np.ndarray:
    run = _vasprun(calc)
    eps = _array(getattr(run, "epsilon_static", None))
    if eps.size == 0:
        raise ValueError(f"{MISSING_VALUE}: no static dielectric tensor (epsilon) in vasprun.xml")
    if ionic:
        part = _array(getattr(run, "epsilon_ionic", None))
        if part.size == 0:
            raise ValueError(
                f"{MISSING_VALUE}: no ionic dielectric tensor (epsilon_ion) in vasprun.xml"
            )
        eps = eps + part
    return eps


def _array(value: Any) -> np.ndarray:
    return np.asarray([] if value is None else value, dtype=float)


_VALUE_READERS = {
    "elastic": _elastic,
    "dielectric": _eps_total,
    "dielectric-electronic": _eps_electronic,
    "piezoelectric": _piezo,
}


def _structure(calc: Calculation) -> Any:
    from pymatgen.io.vasp.inputs import Poscar

    for name in _POSCARS:
        if (calc.folder / name).is_file():
            return _poscar(calc.folder / name, Poscar)
    if calc.vasprun is not None:
        return _vasprun(calc).initial_structure
    for name in _CONTCARS:
        if (calc.folder / name).is_file():
            return _poscar(calc.folder / name, Poscar)
    raise ValueError(f"{BAD_STRUCTURE}: no POSCAR, vasprun.xml or CONTCAR in the folder")


def _poscar(path: Path, poscar_class: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return poscar_class.from_file(str(path), check_for_potcar=False).structure
    except Exception as err:  # pymatgen raises many types on malformed POSCARs
        detail = f"({type(err).__name__}: {_first_line(err)})"
        why = (
            "is empty"
            if path.stat().st_size == 0
            else f"cannot be read as a VASP structure: it is cut short or malformed {detail}"
        )
        raise ValueError(f"{BAD_STRUCTURE}: {path.name} {why}") from None
