"""The Materials Project source against a local fake of the API, through the real MPRester.

Nothing in mp-api is mocked: the client talks HTTP to :class:`FakeMaterialsProject`, which
serves emmet-built documents made from the matminer sets in ``../shared/data``.
"""

from __future__ import annotations

import logging
import sys
import time
from importlib.util import find_spec

import numpy as np
import pytest

from crystensor.data.sources import FetchOptions, RawEntry, Rejected, mp
from crystensor.errors import InputError
from tests.data.mp_server import (
    GOOD_KEY,
    FakeMaterialsProject,
    SilentServer,
    build_collections,
    closed_port_url,
)

BAD_KEY = "ThisKeyIsWrongButHas32Characters"
N_ELASTIC = 30


@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """A throw-away HOME and no MP settings from the environment; nothing may land in it."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        for var in ("MP_API_KEY", "MP_API_ENDPOINT", "MPRESTER_ENDPOINT", "PMG_MAPI_KEY"):
            patch.delenv(var, raising=False)
        yield home
    assert not (home / "mp_datasets").exists(), "mp-api took the S3/deltalake path"


@pytest.fixture
def mp_api_loaded() -> None:
    """mp-api imported (after isolated_home; a cold import takes seconds, kept out of timings)."""
    if find_spec("mp_api") is None:
        pytest.skip("mp-api (extra crystensor[mp]) is not installed")
    import mp_api.client  # noqa: F401


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 7 documents (several pages per endpoint) and short retry pauses."""
    monkeypatch.setattr(mp, "PAGE_SIZE", 7)
    monkeypatch.setattr(mp, "BACKOFF", 0.05)


@pytest.fixture(scope="module")
def collections(shared_data):
    return build_collections(shared_data, np.random.default_rng(20261125), n_elastic=N_ELASTIC)


@pytest.fixture
def server(mp_api_loaded, collections):
    fake = FakeMaterialsProject(collections.docs).start()
    yield fake
    fake.stop()


@pytest.fixture
def empty_server(mp_api_loaded):
    fake = FakeMaterialsProject({"elasticity": [], "summary": []}).start()
    yield fake
    fake.stop()


def _options(url: str, **kwargs) -> FetchOptions:
    return FetchOptions(api_key=kwargs.pop("api_key", GOOD_KEY), endpoint=url, **kwargs)


def _split(items) -> tuple[dict[str, RawEntry], dict[str, Rejected]]:
    items = list(items)
    entries = {e.id: e for e in items if isinstance(e, RawEntry)}
    rejected = {e.id: e for e in items if isinstance(e, Rejected)}
    assert len(entries) + len(rejected) == len(items)
    return entries, rejected


def _violation(tensor: np.ndarray, structure) -> float:
    from crystensor.tensors.symmetry import point_group_of, symmetry_violation

    return symmetry_violation(tensor, point_group_of(structure))


# -- the fake server is faithful ----------------------------------------------------------------


@pytest.mark.shared_data
def test_fake_documents_pass_mprester_validation(server, collections):
    """MPRester's own search (document models on) accepts what the fake serves."""
    from mp_api.client import MPRester

    with MPRester(api_key=GOOD_KEY, endpoint=server.url, mute_progress_bars=True) as mpr:
        for route in ("elasticity", "dielectric", "piezoelectric", "summary"):
            ids = [d["material_id"] for d in collections.docs[route][:3]]
            docs = getattr(mpr.materials, route).search(material_ids=ids)
            assert sorted(str(d.material_id) for d in docs) == sorted(ids)
        assert docs[0].structure.lattice.volume > 0
    assert server.count("elasticity", _all_fields="True", _limit=1000) == 1


# -- every document, in the frame of its structure ----------------------------------------------


@pytest.mark.shared_data
def test_elastic_arrives_complete_in_structure_frame(server, collections):
    progress: list[tuple[int, int | None]] = []
    options = _options(server.url, progress=lambda done, total: progress.append((done, total)))
    entries, rejected = _split(mp.read("elastic", None, options))

    expected = collections.expected["elastic"]
    assert set(entries) | set(rejected) == set(expected)
    assert {m for m, r in rejected.items() if "deprecated" in r.reason} == {
        m for m, e in expected.items() if e.notes.get("deprecated")
    }
    assert len(entries) == N_ELASTIC - 1
    from_raw = 0
    for mid, entry in entries.items():
        want = expected[mid]
        field = entry.source["field"]
        assert entry.value.shape == (3, 3, 3, 3)
        assert np.allclose(entry.structure.lattice.matrix, want.structure.lattice.matrix)
        if want.notes["field"].endswith("ieee_format"):  # raw missing or in a wrong frame
            assert field == want.notes["field"], mid
        elif field.endswith("ieee_format"):  # raw itself too asymmetric: the better fit is kept
            assert entry.meta["raw_ieee_mismatch"] > mp.FRAME_TOLERANCE, mid
        if field.endswith("raw"):
            from_raw += 1
            assert np.allclose(entry.value, want.expected, rtol=1e-9, atol=1e-9), mid
        else:  # rounded to 1 GPa by the Materials Project, then rotated
            assert np.allclose(entry.value, want.notes["ieee"], rtol=1e-9, atol=2.0), mid
        assert _violation(entry.value, entry.structure) <= (
            _violation(want.expected, want.structure) + 0.01
        ), mid
    assert from_raw >= N_ELASTIC // 2
    assert progress == [(min(7 * (i + 1), N_ELASTIC), N_ELASTIC) for i in range(5)]
    assert server.count("elasticity") == 5  # ceil(30 / 7) pages, each requested once
    data_requests = [p for route, p in server.requests if route != "heartbeat"]
    assert all("_fields" in p and "_all_fields" not in p for p in data_requests)


@pytest.mark.shared_data
@pytest.mark.parametrize("target", ["dielectric", "dielectric-electronic", "piezoelectric"])
def test_ieee_tensors_rotated_into_summary_structure(server, collections, target):
    entries, rejected = _split(mp.read(target, None, _options(server.url)))
    expected = collections.expected[target]
    assert not rejected
    assert set(entries) == set(expected)
    atol = 1e-3 if target == "piezoelectric" else 1e-5  # emmet zeroes |e_iJ| < 1e-3
    for mid, entry in entries.items():
        want = expected[mid]
        assert entry.meta["structure_from"] == "materials/summary"
        assert np.allclose(entry.structure.lattice.matrix, want.structure.lattice.matrix)
        assert np.allclose(entry.value, want.expected, rtol=1e-6, atol=atol), mid
        assert _violation(entry.value, entry.structure) < 0.01, mid
    route = "piezoelectric" if target == "piezoelectric" else "dielectric"
    assert server.count(route) == 2
    assert server.count("summary", _fields="material_id,structure") == 2


@pytest.mark.shared_data
@pytest.mark.parametrize("target", ["band-gap", "bulk-modulus", "shear-modulus"])
def test_scalars_from_summary(server, collections, target):
    entries, rejected = _split(mp.read(target, None, _options(server.url)))
    expected = collections.expected[target]
    assert "mp-999999999" not in entries and "mp-999999999" not in rejected  # deprecated
    for mid, want in expected.items():
        assert entries[mid].value == pytest.approx(want.expected)
    assert all("no band_gap" in r.reason for r in rejected.values())
    if target != "band-gap":
        assert set(entries) == set(expected) and not rejected
        assert server.count("summary", deprecated="False", has_props="elasticity") >= 1


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_transient_server_error_is_retried(server, caplog):
    server.fail["elasticity"] = 1
    with caplog.at_level(logging.WARNING, logger="crystensor"):
        entries, _ = _split(mp.read("elastic", None, _options(server.url)))
    assert len(entries) == N_ELASTIC - 1
    assert server.count("elasticity", _skip=0) == 2
    assert "HTTP 500" in caplog.text and "retrying" in caplog.text


@pytest.mark.shared_data
def test_connection_reset_is_retried(server):
    server.drop["elasticity"] = 2
    entries, _ = _split(mp.read("elastic", None, _options(server.url)))
    assert len(entries) == N_ELASTIC - 1
    assert server.count("elasticity", _skip=0) == 3


@pytest.mark.shared_data
def test_interrupted_download_resumes_from_cache(server, tmp_path):
    options = _options(server.url, cache_dir=tmp_path)
    received = []
    with pytest.raises(InputError, match=r"HTTP 500.*gave up after 3 retries"):
        for entry in mp.read("elastic", None, options):
            received.append(entry)
            if len(received) == 14:  # two pages in: the server breaks down for good
                server.fail["elasticity"] = 100
    assert len(received) == 14
    assert server.count("elasticity", _skip=14) == 1 + mp.RETRIES

    server.fail.clear()
    entries, rejected = _split(mp.read("elastic", None, options))
    assert len(entries) + len(rejected) == N_ELASTIC
    for skip in (0, 7):  # cached pages are not requested again
        assert server.count("elasticity", _skip=skip) == 1
    assert server.count("elasticity", _skip=14) == 2 + mp.RETRIES
    assert server.count("elasticity", _skip=28) == 1
    first = {e.id: e for e in received if isinstance(e, RawEntry)}
    for mid, entry in first.items():
        assert np.array_equal(entry.value, entries[mid].value)

    server.requests.clear()  # a third run reads everything from the cache
    again, _ = _split(mp.read("elastic", None, options))
    assert set(again) == set(entries)
    assert server.count("elasticity") == 0


def test_bad_key_is_one_clear_error(empty_server, caplog):
    start = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as info:
        list(mp.read("elastic", None, _options(empty_server.url, api_key=BAD_KEY)))
    assert time.monotonic() - start < 4
    message = str(info.value)
    assert "API key" in message and "HTTP 403" in message and "\n" not in message
    assert BAD_KEY not in message and BAD_KEY not in caplog.text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_key_names_both_ways(monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(InputError, match=r"--api-key.*MP_API_KEY"):
        mp.read("elastic", None, FetchOptions())


def test_key_of_wrong_length_is_refused_without_echo():
    with pytest.raises(InputError, match="32 characters") as info:
        mp.read("elastic", None, FetchOptions(api_key="secret-but-short"))
    assert "secret-but-short" not in str(info.value)


def test_unknown_target():
    with pytest.raises(InputError, match="unknown target 'hardness'"):
        mp.read("hardness", None, FetchOptions(api_key=GOOD_KEY))


def test_missing_mp_api_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mp_api.client", None)  # makes the import fail
    with pytest.raises(InputError, match=r"pip install 'crystensor\[mp\]'"):
        mp.read("elastic", None, FetchOptions(api_key=GOOD_KEY))


def test_nothing_listening_fails_within_seconds(mp_api_loaded):
    start = time.monotonic()
    with pytest.raises(InputError, match="cannot connect to the Materials Project API"):
        list(mp.read("elastic", None, _options(closed_port_url(), timeout=10)))
    assert time.monotonic() - start < 3


def test_silent_server_fails_within_timeout(mp_api_loaded):
    silent = SilentServer()
    try:
        start = time.monotonic()
        with pytest.raises(InputError, match=r"no answer .* within 0.5 s"):
            list(mp.read("elastic", None, _options(silent.url, timeout=0.5)))
        assert time.monotonic() - start < 3
    finally:
        silent.close()


def test_server_silent_on_data_requests_fails_within_timeout(empty_server):
    empty_server.hang["elasticity"] = 0
    start = time.monotonic()
    with pytest.raises(InputError, match=r"no answer .* within 0.5 s"):
        list(mp.read("elastic", None, _options(empty_server.url, timeout=0.5)))
    assert time.monotonic() - start < 4  # timeouts are not retried
    assert empty_server.count("elasticity") == 1


def test_mprester_heartbeat_without_answer_is_bounded(empty_server):
    """Our heartbeat is answered, MPRester's own (no timeout in mp-api) is not."""
    empty_server.hang["heartbeat"] = 1
    start = time.monotonic()
    with pytest.raises(InputError, match=r"no answer .* within 0.5 s"):
        list(mp.read("elastic", None, _options(empty_server.url, timeout=0.5)))
    assert time.monotonic() - start < 4
