"""Rejects files: one JSON line per input entry a stage dropped, with the reason.

``crystensor fetch`` and ``crystensor featurize`` each list what they dropped beside their
output, under a name of their own, so that the two stages run on one stem (as
``examples/build_stores.sh`` does) never overwrite or delete each other's list:

=============  ============================  ============================================
stage          output                        rejects file
=============  ============================  ============================================
``fetch``      ``data/elastic.jsonl.gz``     ``data/elastic.fetch-rejects.jsonl``
``featurize``  ``data/elastic.h5``           ``data/elastic.featurize-rejects.jsonl``
=============  ============================  ============================================

Each line is one :class:`Rejection`:

================  ============================================================================
``stage``         the stage that dropped the entry: ``fetch`` or ``featurize``
``id``            material id (or the source's label of the entry)
``code``          short category in kebab case (``symmetry-violation``, ``isolated-atom``, ...)
``reason``        one sentence naming the problem and, where there is one, the fix
``file``          the input file the entry came from ("" for a download)
``index``         position of the entry in that file, 0-based (featurize; absent otherwise)
``duplicate_of``  for ``duplicate-structure``: the id of the kept entry it repeats
================  ============================================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crystensor.errors import InputError

__all__ = ["STAGES", "Rejection", "read_rejects", "rejects_path", "write_rejects"]

#: The stages that write a rejects file.
STAGES = ("fetch", "featurize")

# Suffixes left out of the stem: records (fetch's output) and graph stores (featurize's).
_SUFFIXES = (".gz", ".jsonl", ".ndjson", ".json", ".h5", ".hdf5")


@dataclass(frozen=True)
class Rejection:
    """One input entry a stage did not keep (see the module docstring for the fields)."""

    id: str
    code: str
    reason: str
    stage: str = ""
    file: str = ""
    index: int | None = None
    duplicate_of: str | None = None

    def to_json(self) -> str:
        """One compact JSON line (without the newline); fields that are None are left out."""
        fields = {"stage": self.stage, **asdict(self)}
        return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], stage: str = "") -> Rejection:
        """Read one line's object; lines written before the stages shared this type are read too.

        >>> Rejection.from_dict({"id": "mp-1", "reason": "wrong shape: (3,)"}, "fetch").code
        'wrong-shape'
        """
        reason = str(obj.get("reason", ""))
        code = obj.get("code") or reason.split(":", 1)[0].strip().replace(" ", "-")
        index = obj.get("index")
        return cls(
            id=str(obj.get("id", "")),
            code=str(code),
            reason=reason,
            stage=str(obj.get("stage") or stage),
            file=str(obj.get("file") or ""),
            index=None if index is None else int(index),
            duplicate_of=obj.get("duplicate_of"),
        )


def rejects_path(output: str | os.PathLike, stage: str) -> Path:
    """``<output stem>.<stage>-rejects.jsonl`` beside ``output``.

    >>> rejects_path("data/elastic.jsonl.gz", "fetch").as_posix()
    'data/elastic.fetch-rejects.jsonl'
    >>> rejects_path("data/elastic.h5", "featurize").as_posix()
    'data/elastic.featurize-rejects.jsonl'
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    p = Path(output)
    name = p.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return p.with_name(f"{name}.{stage}-rejects.jsonl")


def write_rejects(path: str | os.PathLike, rejections: Iterable[Rejection]) -> Path:
    """Write the rejections, one JSON line each, atomically (:mod:`crystensor.io.atomic`)."""
    from crystensor.io.atomic import atomic_write_text

    text = "".join(r.to_json() + "\n" for r in rejections)
    atomic_write_text(path, text, what="rejects file")
    return Path(path)


def read_rejects(path: str | os.PathLike, stage: str = "") -> list[Rejection]:
    """The rejections listed in a rejects file (``stage`` fills lines that do not name one).

    Raises
    ------
    InputError
        A line that is not a JSON object (with its line number).
    """
    p = Path(path)
    out = []
    with open(p, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{p.name} line {number} is not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{p.name} line {number} is not a rejection (a JSON object)")
            out.append(Rejection.from_dict(obj, stage))
    return out
