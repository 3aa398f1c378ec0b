"""The dataset record: its JSON line, and the JSON Lines file round trip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from crystensor.data.records import Record, read_records, write_records
from tests.helpers import zno_wurtzite


def zno_record() -> Record:
    structure = zno_wurtzite()
    return Record(
        id="mp-2133",
        formula=structure.composition.reduced_formula,
        structure=structure.as_dict(),
        target="piezoelectric",
        value=np.arange(27.0).reshape(3, 3, 3).tolist(),
        units="C/m^2",
        source={"dataset": "tests", "citation": "", "file": "zno.json"},
        symmetry={"space_group_number": 186, "crystal_system": "hexagonal"},
        consistency=0.012,
        meta={"born": [[1.0, 2.0], [3.0, 4.0]], "pair": (1, 2), "note": None},
    )


def test_to_json_is_the_dataclass_as_compact_json():
    record = zno_record()
    expected = json.dumps(dataclasses.asdict(record), separators=(",", ":"), allow_nan=False)
    assert record.to_json() == expected
    assert list(json.loads(record.to_json())) == [f.name for f in dataclasses.fields(Record)]


def test_to_json_refuses_nan():
    record = dataclasses.replace(zno_record(), consistency=float("nan"))
    with pytest.raises(ValueError, match="JSON compliant"):
        record.to_json()


@pytest.mark.parametrize("name", ["records.jsonl", "records.jsonl.gz"])
def test_write_read_round_trip(tmp_path, name):
    records = [zno_record(), dataclasses.replace(zno_record(), id="mp-2", meta={})]
    assert write_records(tmp_path / name, records) == 2
    back = list(read_records(tmp_path / name))
    assert [r.to_json() for r in back] == [r.to_json() for r in records]
