"""The Materials Project, downloaded through mp-api's ``MPRester`` (extra ``crystensor[mp]``).

Where each target comes from (emmet-core 0.87 document schemas, which ``MPRester`` uses):

=========================  =====================================  ==============================
target                     endpoint and field                     frame as stored
=========================  =====================================  ==============================
``elastic``                ``materials/elasticity``               ``raw``: the document's
                           ``elastic_tensor.raw`` /               ``structure``; ``ieee_format``:
                           ``elastic_tensor.ieee_format`` (6x6)   IEEE, rounded to 1 GPa
``dielectric``             ``materials/dielectric`` ``total``     IEEE
``dielectric-electronic``  ``materials/dielectric`` ``electronic``  IEEE
``piezoelectric``          ``materials/piezoelectric`` ``total``  IEEE (3x6 Voigt)
``band-gap``               ``materials/summary`` ``band_gap``     scalar
``formation-energy``       ``materials/summary``                  scalar
                           ``formation_energy_per_atom``
``bulk-modulus``           ``materials/summary``                  scalar
                           ``bulk_modulus.vrh``
``shear-modulus``          ``materials/summary``                  scalar
                           ``shear_modulus.vrh``
=========================  =====================================  ==============================

Frames. emmet's ``ElasticTensorDoc`` documents ``raw`` as "corresponding to structure
orientation" and ``ieee_format`` as "corresponding to IEEE orientation" (the symmetrised fit,
``convert_to_ieee``, rounded to integer GPa); ``ElasticityDoc`` carries the ``structure`` it was
computed on. ``DielectricDoc`` and ``PiezoelectricDoc`` are built by
``from_ionic_and_electronic``, which calls ``Tensor.convert_to_ieee(structure)`` on every
tensor, and they carry no structure (materialsproject/api issue #988: fetch the structures
separately). So:

* elastic: ``raw`` in the frame of the document's own ``structure``. When both ``raw`` and
  ``ieee_format`` are present they are compared (after rotating ``ieee_format`` into the
  structure's frame); if they disagree by more than :data:`FRAME_TOLERANCE` the one that better
  obeys the structure's point group is kept (``meta["frame"]`` says which).
* dielectric, piezoelectric: the structure is the document's own when the server sends one,
  else the ``materials/summary`` structure of the same material id; the IEEE tensor ``T`` is
  rotated into that structure's frame, ``T_s = R^T . T`` on every index, with ``R`` from
  pymatgen's ``Tensor.get_ieee_rotation(structure)`` (``T_ieee = R . T_s`` is what
  ``convert_to_ieee`` computes). The IEEE frame is fixed to the crystal's conventional axes, so
  ``R`` computed for any orientation of the same crystal gives the tensor in that orientation.

Paging. ``MPRester.<route>.search()`` with no filter does not query the endpoint at all: mp-api
0.46 sends it to the S3 open-data bucket through deltalake (``_query_resource``: ``query_s3 =
no_query and num_chunks is None``) and writes a local copy to ``~/mp_datasets``. Every request
here therefore goes through the rester's own ``_query_resource`` with ``num_chunks=1`` and
explicit ``_skip`` / ``_limit`` (the same parameters mp-api's paginator sends), one page per
call: this keeps the REST path, gives ``meta.total_doc`` for progress and makes each page a
unit that can be cached. Documents are requested as plain dicts (``use_document_model=False``)
and only the fields needed (``_fields``): one malformed document becomes a :class:`Rejected`
instead of a validation error that would stop the whole download.

Failures. A heartbeat with a timeout runs first (mp-api's own heartbeat has none, and a silent
server would hang its constructor); the constructor itself runs with a bounded wait; every page
request has ``options.timeout``. Connection errors, HTTP 429 and 5xx are retried
:data:`RETRIES` times with exponential backoff. Everything else (bad key, no network, a silent
server, a refused request) becomes one :class:`~crystensor.errors.InputError` whose message
never contains the API key.

Resuming. With ``options.cache_dir`` every page is saved (atomically) as it arrives, under a
folder keyed by endpoint URL, route, fields, filters and the database version the heartbeat
reports; a rerun reads the saved pages instead of requesting them again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from crystensor import __version__
from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.data.sources._common import ieee_rotation, rotate_tensor
from crystensor.errors import InputError
from crystensor.io.atomic import atomic_open
from crystensor.tensors import voigt
from crystensor.tensors.kinds import PROPERTIES, get_property

if TYPE_CHECKING:
    import requests
    from pymatgen.core import Structure

__all__ = ["FRAME_TOLERANCE", "PAGE_SIZE", "RETRIES", "read"]

logger = logging.getLogger(__name__)

#: Documents per request: the API's largest page (mp-api's default chunk size).
PAGE_SIZE = 1000
#: Material ids per ``materials/summary`` structure look-up (keeps the URL short).
STRUCTURE_BATCH = 100
#: Retries of a request that failed transiently (connection error, HTTP 429 or 5xx).
RETRIES = 3
#: Seconds before the first retry; doubled for each further one.
BACKOFF = 0.5
#: Largest relative disagreement between ``elastic_tensor.raw`` and the rotated
#: ``ieee_format`` accepted without checking which one fits the structure (rounding to 1 GPa
#: and the symmetrisation of ``ieee_format`` account for a few percent).
FRAME_TOLERANCE = 0.05

DATASET = "materials-project"
CITATION = "A. Jain et al., APL Materials 1, 011002 (2013); Materials Project data under CC BY 4.0"

_T = TypeVar("_T")
_NO_ID = "?"
_STATUS = re.compile(r"status code (\d{3})")


@dataclass(frozen=True)
class _Route:
    """Where one target is read: the endpoint (``MPRester.materials.<name>``) and field."""

    name: str
    field: str
    subfield: str | None = None
    ieee: bool = False
    filters: tuple[tuple[str, Any], ...] = ()


_CURRENT = (("deprecated", False),)
_WITH_ELASTICITY = (*_CURRENT, ("has_props", "elasticity"))

_ROUTES: dict[str, _Route] = {
    "elastic": _Route("elasticity", "elastic_tensor"),
    "dielectric": _Route("dielectric", "total", ieee=True),
    "dielectric-electronic": _Route("dielectric", "electronic", ieee=True),
    "piezoelectric": _Route("piezoelectric", "total", ieee=True),
    "band-gap": _Route("summary", "band_gap", filters=_CURRENT),
    "formation-energy": _Route("summary", "formation_energy_per_atom", filters=_CURRENT),
    "bulk-modulus": _Route("summary", "bulk_modulus", "vrh", filters=_WITH_ELASTICITY),
    "shear-modulus": _Route("summary", "shear_modulus", "vrh", filters=_WITH_ELASTICITY),
}


def read(
    target: str, path: Path | None = None, options: FetchOptions | None = None
) -> Iterator[RawEntry | Rejected]:
    """Download every Materials Project document for ``target``, tensors in the structure frame.

    The target, the API key and the mp-api installation are checked before this returns; the
    network is used only while the iterator is consumed, one page at a time.

    Parameters
    ----------
    target : str
        Property name from :data:`crystensor.tensors.kinds.PROPERTIES`.
    path : Path or None
        Unused (the Materials Project has no local file); accepted for the source contract.
    options : FetchOptions, optional
        ``api_key`` (required; 32 characters), ``endpoint`` (default: mp-api's, which honours
        ``MP_API_ENDPOINT``), ``cache_dir`` (pages kept there; a rerun resumes),
        ``progress(done, total)`` (documents), ``timeout`` (seconds per network answer).

    Yields
    ------
    RawEntry or Rejected
        One per document, ``id`` the material id. ``value`` is a ``(3,)*rank`` Cartesian
        tensor in the frame of ``structure`` (units of the target: GPa, C/m^2, unitless) or a
        float (eV, eV/atom, GPa).

    Raises
    ------
    InputError
        Unknown target, mp-api missing, no API key, or (while iterating) a network or server
        failure that retries did not cure: one line, without the key.
    """
    options = options if options is not None else FetchOptions()
    if target not in PROPERTIES:
        raise InputError(
            f"unknown target {target!r} for the Materials Project; "
            f"choose one of {', '.join(PROPERTIES)}"
        )
    if path is not None:
        logger.warning("the Materials Project source downloads its data; ignoring path %s", path)
    key = options.api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise InputError(
            "no Materials Project API key: pass --api-key or set the MP_API_KEY environment "
            "variable (get a key at https://materialsproject.org/api)"
        )
    if len(key) != 32:
        raise InputError(
            f"the Materials Project API key must be 32 characters, the one given has {len(key)}:"
            " check --api-key or MP_API_KEY"
        )
    try:
        import mp_api.client  # noqa: F401
    except ImportError:
        raise InputError(
            "downloading from the Materials Project needs mp-api: pip install 'crystensor[mp]'"
        ) from None
    return _Download(target, _ROUTES[target], key, options).entries()


class _Download:
    """One download: connection, paging with cache and retries, conversion of documents."""

    def __init__(self, target: str, route: _Route, key: str, options: FetchOptions) -> None:
        from mp_api.client.core.utils import validate_endpoint

        self.target = target
        self.route = route
        self.rank = get_property(target).tensor_kind.rank
        self._key = key
        self.options = options
        self.timeout = float(options.timeout)
        self.endpoint = validate_endpoint(options.endpoint)
        self.db_version = ""
        self.fields: list[str] = []
        self._session: requests.Session | None = None
        self._rester: Any = None
        self._summary: Any = None
        self._cache: Path | None = None

    def __repr__(self) -> str:
        return f"<MP download of {self.target!r} from {self.endpoint}>"

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        import requests
        from mp_api.client import MPRester

        self.db_version = self._heartbeat()
        session = requests.Session()
        session.headers["x-api-key"] = self._key
        session.headers["user-agent"] = f"crystensor/{__version__} (mp-api)"
        self._session = session
        cache = self.options.cache_dir
        local = {} if cache is None else {"local_dataset_cache": Path(cache) / "mp_datasets"}

        def construct() -> Any:
            # The constructor's heartbeats have no timeout: hence the bounded wait around it.
            mpr = MPRester(
                api_key=self._key,
                endpoint=self.endpoint,
                session=session,
                mute_progress_bars=True,
                **local,
            )
            # Sub-resters are built lazily and repeat the (then cached) heartbeat.
            return getattr(mpr.materials, self.route.name), mpr.materials.summary

        # Two heartbeats (each allowed one timeout) and a second to build the resters.
        self._rester, self._summary = self._call(
            lambda: _bounded(construct, 2 * self.timeout + 1.0), retry=False
        )
        fields = ["material_id", "formula_pretty", "deprecated", self.route.field]
        # Dielectric and piezoelectric documents carry no structure in emmet 0.87; ask for it
        # wherever the installed schema has it (mp-api refuses unknown field names).
        if "structure" in self._rester.available_fields:
            fields.append("structure")
        self.fields = fields

    def _heartbeat(self) -> str:
        """GET ``heartbeat`` with a timeout; the database version, or a clear InputError."""
        import requests

        url = self.endpoint + "heartbeat"
        for attempt in range(RETRIES + 1):
            try:
                response = requests.get(url, timeout=self.timeout)
            except requests.Timeout:
                raise InputError(self._no_answer()) from None
            except requests.ConnectionError:
                raise InputError(self._unreachable()) from None
            except requests.RequestException as exc:
                raise InputError(
                    f"cannot use the Materials Project endpoint {self.endpoint!r} "
                    f"({type(exc).__name__}); check --endpoint"
                ) from None
            status = response.status_code
            if (status == 429 or status >= 500) and attempt < RETRIES:
                self._wait(attempt, f"heartbeat answered HTTP {status}")
                continue
            break
        if status == 403:
            return ""  # as mp-api does: carry on, the data requests tell whether the key works
        if status == 429 or status >= 500:
            raise InputError(
                f"the Materials Project API at {self.endpoint} is not available (heartbeat: "
                f"HTTP {status}, {RETRIES} retries); try again later or see "
                "https://status.materialsproject.org"
            )
        try:
            info = response.json()
        except ValueError:
            info = None
        if status != 200 or not isinstance(info, dict):
            raise InputError(
                f"{self.endpoint} does not answer like the Materials Project API "
                f"(heartbeat: HTTP {status}); check --endpoint"
            )
        return str(info.get("db_version") or "")

    def _no_answer(self) -> str:
        return (
            f"no answer from the Materials Project API at {self.endpoint} within "
            f"{self.timeout:g} s; check your network, --endpoint or the status page "
            "https://status.materialsproject.org"
        )

    def _unreachable(self) -> str:
        return (
            f"cannot connect to the Materials Project API at {self.endpoint}: no network, or "
            "nothing answers there; check your connection or --endpoint"
        )

    def _wait(self, attempt: int, why: str) -> None:
        delay = BACKOFF * 2**attempt
        logger.warning("Materials Project: %s; retrying in %.1f s", why, delay)
        time.sleep(delay)

    def _call(self, fn: Callable[[], _T], what: str = "request", retry: bool = True) -> _T:
        """``fn()`` with retries of transient failures; other failures become InputError."""
        import requests
        from mp_api.client.core.exceptions import MPRestError

        attempt = 0
        while True:
            try:
                return fn()
            except (MPRestError, requests.RequestException, json.JSONDecodeError) as exc:
                message, transient = self._explain(exc, what)
                if not (transient and retry):
                    raise InputError(message) from None
                if attempt == RETRIES:
                    raise InputError(f"{message} (gave up after {RETRIES} retries)") from None
                self._wait(attempt, message)
                attempt += 1

    def _explain(self, exc: BaseException, what: str) -> tuple[str, bool]:
        """One-line message (without the key) and whether a retry may help."""
        import requests

        # mp-api re-raises requests' exceptions as MPRestError(str(ex)): look at the chain.
        chain: list[BaseException] = []
        link: BaseException | None = exc
        while link is not None and link not in chain:
            chain.append(link)
            link = link.__cause__ or link.__context__
        if any(isinstance(c, requests.Timeout) for c in chain):
            return self._no_answer(), False
        if any(isinstance(c, requests.ConnectionError) for c in chain):
            return self._unreachable(), True
        if isinstance(exc, json.JSONDecodeError):
            return f"the Materials Project API sent a {what} answer that is not JSON", True
        text = _scrub(str(exc), self._key)
        found = _STATUS.search(text)
        status = int(found.group(1)) if found else None
        if status in (401, 403):
            return (
                f"the Materials Project API refused the API key (HTTP {status}): check "
                "--api-key or MP_API_KEY",
                False,
            )
        if status is not None and (status == 429 or status >= 500):
            return f"the Materials Project API failed with HTTP {status} on a {what}", True
        first = " ".join(text.split())[:300]
        return f"the Materials Project API refused a {what}: {first}", False

    # -- paging with cache ------------------------------------------------------------------

    def _cache_folder(self) -> Path | None:
        if self.options.cache_dir is None:
            return None
        recipe = {
            "endpoint": self.endpoint,
            "route": self.route.name,
            "fields": self.fields,
            "filters": list(self.route.filters),
            "db_version": self.db_version,
        }
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        folder = Path(self.options.cache_dir) / "materials-project" / f"{self.route.name}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _page_file(self, skip: int) -> Path | None:
        return None if self._cache is None else self._cache / f"skip-{skip:09d}.json.gz"

    def _load_page(self, skip: int) -> dict | None:
        file = self._page_file(skip)
        if file is None or not file.is_file():
            return None
        try:
            with gzip.open(file, "rt", encoding="utf-8") as f:
                page = json.load(f)
            if isinstance(page.get("docs"), list) and isinstance(page.get("total"), int):
                logger.debug("Materials Project: page at %d read from %s", skip, file)
                return page
        except (OSError, ValueError, AttributeError):
            pass
        logger.warning("Materials Project: ignoring unreadable cached page %s", file)
        return None

    def _save_page(self, skip: int, page: dict) -> None:
        file = self._page_file(skip)
        if file is None:
            return
        with atomic_open(file, "w") as f:  # gzip-compressed: the name ends in .gz
            json.dump(page, f, separators=(",", ":"))

    def _query(self, rester: Any, criteria: dict, fields: list[str], limit: int, what: str) -> dict:
        """One REST request through the rester (``num_chunks=1``: never the S3 path)."""
        result = self._call(
            partial(
                rester._query_resource,
                criteria=criteria,
                fields=fields,
                use_document_model=False,
                num_chunks=1,
                chunk_size=limit,
                timeout=self.timeout,
            ),
            what=what,
        )
        if not isinstance(result, dict) or not isinstance(result.get("data"), list):
            raise InputError(f"the Materials Project API answered a {what} without data")
        return result

    def _download_page(self, skip: int) -> dict:
        criteria = {"_skip": skip, "_limit": PAGE_SIZE, **dict(self.route.filters)}
        result = self._query(self._rester, criteria, self.fields, PAGE_SIZE, "page request")
        docs = result["data"]
        total = (result.get("meta") or {}).get("total_doc")
        if not isinstance(total, int):
            total = skip + len(docs)
        page: dict[str, Any] = {"total": total, "docs": docs, "structures": {}}
        if self.route.ieee:
            page["structures"] = self._structures(docs)
        return page

    def _structures(self, docs: list) -> dict[str, dict]:
        """Summary structures of the documents that do not carry their own."""
        ids = [
            str(d["material_id"])
            for d in docs
            if isinstance(d, dict) and d.get("material_id") and not d.get("structure")
        ]
        found: dict[str, dict] = {}
        for start in range(0, len(ids), STRUCTURE_BATCH):
            batch = ids[start : start + STRUCTURE_BATCH]
            criteria = {"material_ids": ",".join(batch), "_limit": len(batch)}
            fields = ["material_id", "structure"]
            result = self._query(self._summary, criteria, fields, len(batch), "structure request")
            for doc in result["data"]:
                if isinstance(doc, dict) and doc.get("structure"):
                    found[str(doc.get("material_id"))] = doc["structure"]
        return found

    def _pages(self) -> Iterator[dict]:
        skip, total = 0, None
        while total is None or skip < total:
            page = self._load_page(skip)
            if page is None:
                page = self._download_page(skip)
                self._save_page(skip, page)
            total = page["total"]
            if not page["docs"]:
                if skip < total:
                    logger.warning(
                        "Materials Project: empty page at %d of %d documents; stopping", skip, total
                    )
                return
            yield page
            skip += len(page["docs"])

    # -- documents --------------------------------------------------------------------------

    def entries(self) -> Iterator[RawEntry | Rejected]:
        """The generator behind :func:`read`."""
        try:
            self._connect()
            self._cache = self._cache_folder()
            seen: set[str] = set()
            done = 0
            for page in self._pages():
                for doc in page["docs"]:
                    item = self._entry(doc, page["structures"])
                    if item.id in seen:  # paging over a changing database can repeat one
                        logger.debug("Materials Project: duplicate document %s skipped", item.id)
                        continue
                    if item.id != _NO_ID:
                        seen.add(item.id)
                    yield item
                done += len(page["docs"])
                if self.options.progress is not None:
                    self.options.progress(min(done, page["total"]), page["total"])
        finally:
            if self._session is not None:
                self._session.close()

    def _entry(self, doc: Any, structures: dict[str, dict]) -> RawEntry | Rejected:
        if not isinstance(doc, dict) or not doc.get("material_id"):
            return Rejected(id=_NO_ID, reason="document without a material_id")
        mid = str(doc["material_id"])
        if doc.get("deprecated"):
            return Rejected(id=mid, reason="deprecated in the Materials Project")
        structure_dict = doc.get("structure") or structures.get(mid)
        if not structure_dict:
            return Rejected(id=mid, reason="no structure for this material id")
        try:
            structure = _structure(structure_dict)
        except Exception as exc:  # any malformed dict: pymatgen raises many kinds
            return Rejected(id=mid, reason=f"unreadable structure ({type(exc).__name__})")
        meta: dict[str, Any] = {
            "formula": doc.get("formula_pretty") or structure.composition.reduced_formula,
            "structure_from": "document" if doc.get("structure") else "materials/summary",
        }
        try:
            value = self._value(doc, structure, meta)
        except _Reject as reason:
            return Rejected(id=mid, reason=str(reason))
        source = {
            "dataset": DATASET,
            "citation": CITATION,
            "url": f"{self.endpoint}materials/{self.route.name}/",
            "field": meta.pop("field"),
            "db_version": self.db_version,
        }
        return RawEntry(id=mid, structure=structure, value=value, source=source, meta=meta)

    def _value(self, doc: dict, structure: Structure, meta: dict) -> np.ndarray | float:
        route = self.route
        raw = doc.get(route.field)
        if self.rank == 0:
            name = route.field if route.subfield is None else f"{route.field}.{route.subfield}"
            meta["field"] = name
            if route.subfield is not None:
                raw = raw.get(route.subfield) if isinstance(raw, dict) else None
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise _Reject(f"no {name} in the document")
            if not np.isfinite(raw):
                raise _Reject(f"{name} is not finite")
            return float(raw)
        if self.target == "elastic":
            return _elastic(raw, structure, meta)
        meta["field"] = route.field
        meta["frame"] = "ieee-rotated"
        shape = (3, 3) if self.rank == 2 else voigt.voigt_shape(self.rank)
        array = _matrix(raw, shape, route.field)
        tensor = array if self.rank == 2 else voigt.from_voigt(array)
        return _from_ieee(tensor, structure)


class _Reject(Exception):
    """A document that cannot become an entry; the message is the reason."""


def _matrix(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if value is None:
        raise _Reject(f"no {name} in the document")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise _Reject(f"{name} is not a numeric array") from None
    if array.shape != shape:
        raise _Reject(f"{name} has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise _Reject(f"{name} has non-finite components")
    return array


def _structure(d: dict) -> Structure:
    from pymatgen.core import Structure

    return Structure.from_dict(d)


def _ieee_rotation(structure: Structure) -> np.ndarray:
    """pymatgen's rotation ``R`` from the structure's Cartesian frame into IEEE orientation."""
    try:
        return ieee_rotation(structure)
    except ValueError as exc:
        raise _Reject(str(exc)) from None


def _from_ieee(tensor: np.ndarray, structure: Structure) -> np.ndarray:
    """An IEEE-oriented tensor in the frame of ``structure``: ``R^T . T`` on every index."""
    return rotate_tensor(tensor, _ieee_rotation(structure).T)


def _elastic(value: Any, structure: Structure, meta: dict) -> np.ndarray:
    """The elastic tensor of an ElasticityDoc in the frame of its structure (see module doc)."""
    value = value if isinstance(value, dict) else {}
    candidates: dict[str, np.ndarray] = {}
    problems = []
    for name in ("raw", "ieee_format"):
        try:
            c = voigt.from_voigt(_matrix(value.get(name), (6, 6), f"elastic_tensor.{name}"))
            candidates[name] = c if name == "raw" else _from_ieee(c, structure)
        except _Reject as reason:
            problems.append(str(reason))
    if not candidates:
        raise _Reject("; ".join(problems))
    if len(candidates) == 1:
        name, tensor = next(iter(candidates.items()))
        meta["field"] = f"elastic_tensor.{name}"
        meta["frame"] = "document" if name == "raw" else "ieee-rotated"
        return tensor
    raw, ieee = candidates["raw"], candidates["ieee_format"]
    scale = float(np.abs(raw).max()) or 1.0
    mismatch = float(np.abs(raw - ieee).max() / scale)
    meta["raw_ieee_mismatch"] = mismatch
    choice = "raw"
    if mismatch > FRAME_TOLERANCE:
        from crystensor.tensors.symmetry import point_group_of, symmetry_violation

        try:
            group = point_group_of(structure, angle_tolerance=5.0)  # spglib, as on import
        except Exception as exc:  # no symmetry found: keep the documented frame
            logger.debug("no point group to compare raw and IEEE tensors (%s)", exc)
        else:
            if symmetry_violation(ieee, group) < symmetry_violation(raw, group):
                choice = "ieee_format"
        logger.debug("elastic raw and IEEE tensors differ by %.3g; using %s", mismatch, choice)
    meta["field"] = f"elastic_tensor.{choice}"
    meta["frame"] = "document" if choice == "raw" else "ieee-rotated"
    return candidates[choice]


def _bounded(fn: Callable[[], _T], timeout: float) -> _T:
    """``fn()`` in a daemon thread, abandoned (with a Timeout) if it does not finish in time.

    For calls that have no timeout of their own (mp-api's heartbeat in the MPRester
    constructor); a daemon thread cannot keep the interpreter alive after it is abandoned.
    """
    import requests

    box: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name="crystensor-mp-connect", daemon=True).start()
    if not finished.wait(timeout):
        raise requests.Timeout(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "<api-key>") if key else text
