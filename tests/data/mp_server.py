"""A local stand-in for the Materials Project API, answering the requests ``MPRester`` makes.

Observed requests of mp-api 0.46 (see ``crystensor.data.sources.mp``): ``GET /heartbeat``
(no key needed), then ``GET /materials/<route>/`` with ``_skip``, ``_limit``, ``_fields`` or
``_all_fields`` and filters (``material_ids``, ``deprecated``, ``has_props``), the key in the
``x-api-key`` header. Answers are ``{"data": [...], "meta": {"total_doc": N, ...}}``; a wrong
key gets 403, a ``_limit`` above the server's maximum 400 (as the API does).

The documents are built with emmet-core's own constructors (``ElasticityDoc.from_structure``,
``DielectricDoc.from_ionic_and_electronic``, ``PiezoelectricDoc.from_ionic_and_electronic``,
``SummaryDoc.from_structure``) from the matminer 2018 sets in ``../shared/data``, so they have
the schema ``MPRester`` validates, and dielectric/piezoelectric tensors are IEEE-oriented by the
same code the Materials Project builders run.
"""

from __future__ import annotations

import csv
import gzip
import json
import socket
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from tests.helpers import random_orthogonal, rotate

#: A syntactically valid (32 characters) key the fake server accepts.
GOOD_KEY = "crystensorFakeKey0123456789abcde"
HEARTBEAT = {"version": "0.87.3", "db_version": "2025.09.25", "access_controlled_batch_ids": []}
MAX_LIMIT = 1000
_DEFAULT_FIELDS = ("material_id", "formula_pretty")


@dataclass
class Material:
    """What a test needs to check one served document: the expected result in the frame of
    the structure the client will use."""

    id: str
    structure: Any  # pymatgen Structure the client should return (doc's own or summary's)
    expected: np.ndarray | float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Collections:
    """Documents per route (JSON-ready dicts) and the expectations per target."""

    docs: dict[str, list[dict]]
    expected: dict[str, dict[str, Material]]


class FakeMaterialsProject:
    """A threaded HTTP server on 127.0.0.1 (random port) serving ``collections``.

    Attributes
    ----------
    requests : list of (path, params)
        Every request received, in order (``params``: first value of each query parameter).
    fail : Counter
        ``fail[route] = n``: answer the next ``n`` requests of that route with HTTP 500.
    drop : Counter
        ``drop[route] = n``: close the connection of the next ``n`` requests without answering
        (what a connection reset looks like to the client).
    hang : dict of str to int
        ``hang[route] = n``: answer ``n`` requests of that route (or ``"heartbeat"``), then
        leave every further one without answer until :meth:`stop`.
    """

    def __init__(self, docs: dict[str, list[dict]], api_key: str = GOOD_KEY) -> None:
        self.docs = docs
        self.api_key = api_key
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.fail: Counter[str] = Counter()
        self.drop: Counter[str] = Counter()
        self.hang: dict[str, int] = {}
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> FakeMaterialsProject:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def count(self, route: str, **params: Any) -> int:
        """Requests received for ``route`` whose parameters include ``params``."""
        want = {k: str(v) for k, v in params.items()}
        with self._lock:
            return sum(
                1
                for path, got in self.requests
                if path == route and all(got.get(k) == v for k, v in want.items())
            )

    # -- answering ----------------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str], key: str | None) -> tuple[int, Any]:
        """HTTP status and JSON body for one request (status 0: drop the connection)."""
        route = "heartbeat" if path.strip("/") == "heartbeat" else path.strip("/").split("/")[-1]
        with self._lock:
            self.requests.append((route, params))
            hanging = route in self.hang and self._seen[route] >= self.hang[route]
            self._seen[route] += 1
            failing, dropping = self.fail[route] > 0, self.drop[route] > 0
            if failing:
                self.fail[route] -= 1
            elif dropping:
                self.drop[route] -= 1
        if hanging:
            self._release.wait()
            return 503, {"detail": "released"}
        if dropping and not failing:
            return 0, None
        if failing:
            return 500, {"detail": "Internal Server Error"}
        if route == "heartbeat":
            return 200, HEARTBEAT
        if not path.startswith("/materials/") or route not in self.docs:
            return 404, {"detail": "Not Found"}
        if key != self.api_key:
            return 403, {"message": "Invalid authentication credentials"}
        return self._search(self.docs[route], params)

    def _search(self, docs: list[dict], params: dict[str, str]) -> tuple[int, Any]:
        limit = int(params.get("_limit", 100))
        skip = int(params.get("_skip", 0))
        if limit > MAX_LIMIT:
            return 400, {
                "detail": f"Requested more data per query than allowed by limit query "
                f"parameter. Max limit is {MAX_LIMIT} for this endpoint."
            }
        selected = docs
        if "material_ids" in params:
            ids = set(params["material_ids"].split(","))
            selected = [d for d in selected if d["material_id"] in ids]
        if "deprecated" in params:
            flag = params["deprecated"].lower() == "true"
            selected = [d for d in selected if bool(d.get("deprecated")) == flag]
        if "has_props" in params:
            need = set(params["has_props"].split(","))
            selected = [d for d in selected if all((d.get("has_props") or {}).get(n) for n in need)]
        page = selected[skip : skip + limit]
        if params.get("_all_fields", "").lower() != "true":
            names = params["_fields"].split(",") if "_fields" in params else _DEFAULT_FIELDS
            page = [{k: d[k] for k in names if k in d} for d in page]
        meta = {
            "api_version": HEARTBEAT["version"],
            "total_doc": len(selected),
            "max_limit": MAX_LIMIT,
            "default_fields": list(_DEFAULT_FIELDS),
        }
        return 200, {"data": page, "meta": meta}


def _make_handler(fake: FakeMaterialsProject) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            status, body = fake.answer(parts.path, params, self.headers.get("x-api-key"))
            if status == 0:
                self.close_connection = True
                return
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def closed_port_url() -> str:
    """The URL of a local port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class SilentServer:
    """Accepts TCP connections (kernel backlog) and never answers anything."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/"

    def close(self) -> None:
        self._sock.close()


# -- documents from the shared data ---------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    """Rows of a matminer 2018 CSV (a ``# ref`` line first; some files' data rows carry one
    more leading column than the header names)."""
    csv.field_size_limit(sys.maxsize)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        reader = csv.reader(line for line in f if not line.startswith("#"))
        header = next(reader)
        rows = []
        for row in reader:
            names = header if len(row) == len(header) else ["_index", *header]
            rows.append(dict(zip(names, row, strict=True)))
    return rows


def _rotated(structure: Any, q: np.ndarray) -> Any:
    """``structure`` rotated by ``q`` (Cartesian positions x -> q x, same fractional ones)."""
    from pymatgen.core import Lattice, Structure

    lattice = Lattice(structure.lattice.matrix @ q.T)
    return Structure(lattice, structure.species, structure.frac_coords)


def _json(doc: Any, material_id: str) -> dict:
    # emmet 0.87 serialises ids in its new alphabetic form; the API's documents carry the
    # familiar "mp-149" strings, which emmet still accepts.
    d = doc.model_dump(mode="json", by_alias=True)
    d["material_id"] = material_id
    return d


def build_collections(
    shared_data: Path,
    rng: np.random.Generator,
    n_elastic: int = 30,
    n_dielectric: int = 10,
    n_piezo: int = 10,
) -> Collections:
    """Materials Project-shaped documents from the matminer sets, with expected results.

    * elasticity: the document's structure is the matminer ``poscar`` structure rotated by a
      random rotation ``Q`` and ``raw`` is ``Q . elastic_tensor_original`` (consistent, as in
      the API); ``ieee_format`` is emmet's ``voigt_symmetrized.convert_to_ieee(structure)``
      rounded to 1 GPa. Every 4th document has ``raw = None`` (IEEE path); one has ``raw`` in a
      wrong frame (the client must notice and use ``ieee_format``); one is deprecated.
    * dielectric / piezoelectric: emmet's ``from_ionic_and_electronic`` on the ``poscar``
      structure (IEEE-oriented, no structure in the document); the summary structure of the
      same material is rotated by another random rotation, so the expected tensor is that
      rotation of the symmetrised poscar-frame tensor.
    * summary: one document per material above, with ``band_gap`` (dielectric set), moduli
      (elastic set) and ``has_props``.
    """
    from emmet.core.elasticity import (
        BulkModulus,
        ElasticityDoc,
        ElasticTensorDoc,
        ShearModulus,
    )
    from emmet.core.polar import DielectricDoc, PiezoelectricDoc
    from emmet.core.summary import HasProps, SummaryDoc
    from pymatgen.analysis.elasticity import ElasticTensor
    from pymatgen.core.tensors import Tensor
    from pymatgen.io.vasp import Poscar

    from crystensor.tensors import voigt

    folder = shared_data / "matminer-2018"
    docs: dict[str, list[dict]] = {"elasticity": [], "dielectric": [], "piezoelectric": []}
    expected: dict[str, dict[str, Material]] = {
        t: {}
        for t in (
            "elastic",
            "dielectric",
            "dielectric-electronic",
            "piezoelectric",
            "band-gap",
            "bulk-modulus",
            "shear-modulus",
        )
    }
    summary: dict[str, dict[str, Any]] = {}

    for i, row in enumerate(_rows(folder / "elastic_tensor.csv.gz")[:n_elastic]):
        mid = row["material_id"]
        q = random_orthogonal(rng, proper=True)
        structure = _rotated(Poscar.from_str(row["poscar"]).structure, q)
        original = voigt.from_voigt(np.array(json.loads(row["elastic_tensor_original"])))
        c = ElasticTensor(rotate(original, q))
        ieee = c.voigt_symmetrized.convert_to_ieee(structure).round(0).voigt.tolist()
        raw: list | None = c.voigt.tolist()
        material = Material(mid, structure, expected=rotate(original, q))
        # What the client gets back from ieee_format (up to the rounding to 1 GPa).
        material.notes["ieee"] = np.asarray(c.voigt_symmetrized.fit_to_structure(structure))
        material.notes["field"] = "elastic_tensor.raw"
        if i % 4 == 1:
            raw = None
        elif i == 2:
            wrong = random_orthogonal(rng, proper=True)
            raw = ElasticTensor(rotate(np.asarray(c), wrong)).voigt.tolist()
        if i % 4 == 1 or i == 2:
            material.notes["field"] = "elastic_tensor.ieee_format"
            material.expected = material.notes["ieee"]
        deprecated = i == 3
        if deprecated:
            material.notes["deprecated"] = True
        doc = ElasticityDoc.from_structure(
            structure,
            mid,
            elastic_tensor=ElasticTensorDoc(raw=raw, ieee_format=ieee),
            bulk_modulus=BulkModulus(vrh=float(row["K_VRH"])),
            shear_modulus=ShearModulus(vrh=float(row["G_VRH"])),
            deprecated=deprecated,
            state="failed" if deprecated else "successful",
        )
        docs["elasticity"].append(_json(doc, mid))
        expected["elastic"][mid] = material
        props = {"bulk_modulus": {"vrh": float(row["K_VRH"])}}
        props["shear_modulus"] = {"vrh": float(row["G_VRH"])}
        summary[mid] = {"structure": structure, "has_props": {"elasticity"}, **props}
        expected["bulk-modulus"][mid] = Material(mid, structure, float(row["K_VRH"]))
        expected["shear-modulus"][mid] = Material(mid, structure, float(row["G_VRH"]))

    for row in _rows(folder / "dielectric_constant.csv.gz")[:n_dielectric]:
        mid = row["material_id"]
        poscar = Poscar.from_str(row["poscar"]).structure
        total = np.array(json.loads(row["e_total"]))
        electronic = np.array(json.loads(row["e_electronic"]))
        doc = DielectricDoc.from_ionic_and_electronic(
            epsilon_ionic=(total - electronic).tolist(),
            epsilon_static=electronic.tolist(),
            structure=poscar,
            material_id=mid,
            deprecated=False,
        )
        docs["dielectric"].append(_json(doc, mid))
        q = random_orthogonal(rng, proper=True)
        s = _rotated(poscar, q)
        for target, t in (("dielectric", total), ("dielectric-electronic", electronic)):
            sym = np.asarray(Tensor(t).fit_to_structure(poscar))
            expected[target][mid] = Material(mid, s, rotate(sym, q))
        entry = summary.setdefault(mid, {"structure": s, "has_props": set()})
        entry["structure"] = s
        entry["has_props"].add("dielectric")
        entry["band_gap"] = float(row["band_gap"])
        expected["band-gap"][mid] = Material(mid, s, float(row["band_gap"]))

    for row in _rows(folder / "piezoelectric_tensor.csv.gz")[:n_piezo]:
        mid = row["material_id"]
        poscar = Poscar.from_str(row["poscar"]).structure
        e_ieee = voigt.from_voigt(np.array(json.loads(row["piezoelectric_tensor"])))
        r = np.asarray(Tensor.get_ieee_rotation(poscar))
        e_poscar = rotate(e_ieee, r.T)
        vasp_order = voigt.to_voigt(e_poscar)[:, [0, 1, 2, 5, 3, 4]]  # xx yy zz xy yz zx
        doc = PiezoelectricDoc.from_ionic_and_electronic(
            piezo_ionic=vasp_order.tolist(),
            piezo_static=np.zeros((3, 6)).tolist(),
            structure=poscar,
            material_id=mid,
            deprecated=False,
        )
        docs["piezoelectric"].append(_json(doc, mid))
        q = random_orthogonal(rng, proper=True)
        s = _rotated(poscar, q)
        sym = np.asarray(Tensor(e_poscar).fit_to_structure(poscar))
        expected["piezoelectric"][mid] = Material(mid, s, rotate(sym, q))
        entry = summary.setdefault(mid, {"structure": s, "has_props": set()})
        entry["structure"] = s
        entry["has_props"].add("piezoelectric")

    docs["summary"] = []
    for mid, entry in summary.items():
        structure = entry.pop("structure")
        entry["has_props"] = {p.value: p.value in entry["has_props"] for p in HasProps}
        doc = SummaryDoc.from_structure(structure, mid, deprecated=False, **entry)
        docs["summary"].append(_json(doc, mid))
    # A deprecated summary document: filtered out by the client's deprecated=False.
    extra = SummaryDoc.from_structure(structure, "mp-999999999", deprecated=True, band_gap=1.0)
    docs["summary"].append(_json(extra, "mp-999999999"))
    return Collections(docs=docs, expected=expected)
