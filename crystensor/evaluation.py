"""Metrics of a model on labelled data: what ``crystensor evaluate`` prints.

Two kinds of data, two ways to predict:

- **records** (``*.jsonl.gz`` / ``*.jsonl`` of ``crystensor fetch``): every structure goes
  through the pipeline of ``crystensor predict`` (:meth:`crystensor.prediction.Predictor.
  predict_results`): projected onto its point group and made physically valid as a user gets
  it, or, with ``raw=True``, the network's output untouched. Each prediction keeps its domain
  warnings, so the metrics are also split by warning code (structures flagged
  ``far-from-training`` against the others, ...). A structure that cannot be predicted is
  counted and listed in ``failures``, not fatal.
- **a graph store** (``.h5`` of ``crystensor featurize``): the network's output on the stored
  graphs (:func:`crystensor.train.loop.evaluate`), as in training; the store must be
  featurized as the model was (:func:`crystensor.checkpoint.check_featurization`).

Which graphs or records: a split, ``train``, ``val``, ``test`` or ``all``. When the data
shares materials with the model's training split (its own store, or records of the same
materials), the split is the model's (by material id, as recorded in the checkpoint) and the
default is ``test``; otherwise a store's saved split (a records file has none) and the default
is ``all``. The result says which split, whose, and how many of the evaluated materials the
model was trained or validated on.

The metrics are :func:`crystensor.train.metrics.tensor_metrics` (MAE over all and over the
independent Voigt components, Frobenius MAE, median relative Frobenius error, EwT25/10/5, per
crystal system; for the odd-rank piezoelectric tensor also ``sign_agnostic``), beside those of
predicting the zero tensor (``zero_baseline``).

>>> from crystensor.evaluation import evaluate
>>> result = evaluate("elastic", "my-elastic.jsonl.gz")  # doctest: +SKIP
>>> result["metrics"]["mae"], result["zero_baseline"]["mae"]  # doctest: +SKIP
(8.1, 41.7)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError

if TYPE_CHECKING:
    from crystensor.checkpoint import Checkpoint
    from crystensor.data.records import Record
    from crystensor.prediction import Predictor

__all__ = [
    "SPLITS",
    "data_format",
    "describe_model",
    "evaluate",
    "evaluate_records",
    "evaluate_store",
    "load_model",
]

log = logging.getLogger(__name__)

#: The splits a user can ask for; ``all`` is every graph or record.
SPLITS = ("train", "val", "test", "all")
# warnings every structure of a model gets (the model card's caveat): nothing to split by
_UNSPLIT_WARNINGS = frozenset({"model-caveat"})
# the keys of a tensor_metrics result kept in a group's summary (by warning, zero baseline)
_SUMMARY_KEYS = ("n", "mae", "mae_independent", "frobenius_mae", "relative_frobenius_median")

_NON_FINITE = "the model produced non-finite values for this structure"

Model = Any  # a model name or checkpoint path, a Checkpoint, or a Predictor


def load_model(model: str | os.PathLike | Checkpoint) -> tuple[Checkpoint, str]:
    """The checkpoint of ``model`` and how to name it in messages.

    Parameters
    ----------
    model : str, path or Checkpoint
        A shipped model's name (``elastic``, ``dielectric``, ``dielectric-electronic``,
        ``piezoelectric``; :mod:`crystensor.pretrained`) unless a file of that name exists, or
        a checkpoint file (``best.pt``).

    Raises
    ------
    InputError
        Neither a shipped model's name nor an existing file, or not a readable checkpoint.
    """
    from crystensor.checkpoint import Checkpoint, load_checkpoint
    from crystensor.pretrained import SHIPPED_TARGETS, shipped_model

    if isinstance(model, Checkpoint):
        return model, "the given checkpoint"
    text, path = str(model), Path(model)
    if text in SHIPPED_TARGETS and not path.is_file():
        return load_checkpoint(shipped_model(text)), f"shipped {text} model"
    if not path.exists():
        raise InputError(
            f"model {text!r} is neither a checkpoint file nor the name of a shipped model "
            f"({', '.join(SHIPPED_TARGETS)})"
        )
    return load_checkpoint(path), text


def evaluate(
    model: Model,
    data: str | os.PathLike,
    *,
    split: str | None = None,
    raw: bool = False,
    device: str = "cpu",
    batch_size: int | None = None,
    symprec: float = 0.01,
    angle_tolerance: float | None = None,
    ids: Collection[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on a records file or a graph store (see the module docstring).

    Parameters
    ----------
    model : str, path, Checkpoint or Predictor
        A shipped model's name or a checkpoint (:func:`load_model`).
    data : path
        A records file (``.jsonl``, ``.jsonl.gz``) or a graph store (HDF5, ``.h5``).
    split : {"train", "val", "test", "all"}, optional
        Default: ``test`` when the data shares materials with the model's training split,
        else ``all``.
    raw : bool
        Records only: score the network's output, not projected onto the point group or made
        physically valid.
    device : str
    batch_size : int, optional
        Structures per forward pass (default 8 for records, as predict; 16 for a store).
    symprec, angle_tolerance : float
        Records only: tolerances of the point group (as in predict).
    ids : collection of str, optional
        Keep only these material ids (after the split).
    progress : callable, optional
        Records only: ``progress(done, total)`` after each batch.

    Returns
    -------
    dict
        ``model``, ``target``, ``kind``, ``units``, ``arch``, ``data``, ``data_format``
        (``records`` or ``store``), ``tensors`` (``pipeline``, ``raw`` or ``network``),
        ``split`` (``name``, ``source``: ``model``, ``store`` or None, ``n``: graphs or records
        in it, ``of``: in the file), ``counts`` (``evaluated``, ``failed``, ``in_model_train``,
        ``in_model_val``), ``metrics`` (:func:`~crystensor.train.metrics.tensor_metrics`),
        ``zero_baseline`` (the same for the zero tensor: ``n``, ``mae``, ``mae_independent``,
        ``frobenius_mae``, ``relative_frobenius_median``, ``ewt``), ``by_warning`` (records:
        ``{code: {"flagged": summary, "not_flagged": summary}}``), ``by_source`` (a store of
        several record files: ``{file: metrics}``), ``failures`` (``[{"id", "formula",
        "error"}]``) and ``model_caveat``.

    Raises
    ------
    InputError
        A missing, empty or unreadable file, a model of another target than the data, a store
        featurized differently from the model, or nothing left to evaluate.
    """
    path = Path(data)
    if data_format(path) == "store":
        if raw:
            log.info("a store is always scored on the network output; --raw changes nothing")
        return evaluate_store(
            model, path, split=split, device=device, batch_size=batch_size or 16, ids=ids
        )
    return evaluate_records(
        model,
        path,
        split=split,
        raw=raw,
        device=device,
        batch_size=batch_size or 8,
        symprec=symprec,
        angle_tolerance=angle_tolerance,
        ids=ids,
        progress=progress,
    )


def data_format(path: Path) -> str:
    """``"store"`` for an HDF5 file (or a ``.h5`` name), ``"records"`` otherwise.

    Raises
    ------
    InputError
        The file is missing, a directory, or empty.
    """
    if not path.exists():
        raise InputError(
            f"data file {str(path)!r} does not exist; give a records file (crystensor fetch) "
            "or a graph store (crystensor featurize)"
        )
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a records file or a graph store")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty; give a records file or a graph store")
    import h5py

    if h5py.is_hdf5(path) or path.suffix.lower() in (".h5", ".hdf5"):
        return "store"
    return "records"


# -- the model --------------------------------------------------------------------------------


def _checkpoint_and_source(model: Model) -> tuple[Checkpoint, str, Predictor | None]:
    from crystensor.prediction import Predictor

    if isinstance(model, Predictor):
        return model.checkpoint, model.source, model
    checkpoint, source = load_model(model)
    return checkpoint, source, None


def describe_model(source: str) -> str:
    """``the shipped elastic model`` or ``the model PATH``, for sentences."""
    return f"the {source}" if source.startswith("shipped ") else f"the model {source}"


def _check_target(data_target: str, checkpoint: Checkpoint, source: str, where: str) -> None:
    if data_target == checkpoint.target:
        return
    from crystensor.pretrained import SHIPPED_TARGETS

    hint = (
        f" (the shipped one: crystensor evaluate {data_target} {where})"
        if data_target in SHIPPED_TARGETS
        else ""
    )
    raise InputError(
        f"{where} holds {data_target} data, but {describe_model(source)} predicts "
        f"{checkpoint.target}; "
        f"evaluate a model for {data_target}{hint}"
    )


# -- which materials --------------------------------------------------------------------------


def _choose_split(
    split: str | None,
    ids: Sequence[str],
    model_split: dict[str, list[str]],
    store_split: Callable[[str], np.ndarray] | None,
    what: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Indices of ``ids`` in the split and ``{"name", "source", "n", "of"}``.

    The model's own split (by id) when ``ids`` share any material with its training split;
    else ``store_split(name)`` (a store's saved split) or, for records, ``all`` only.
    """
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    train = set(model_split.get("train", ()))
    source = "model" if train.intersection(ids) else ("store" if store_split else None)
    name = split or ("test" if source == "model" else "all")
    if name == "all":
        rows = np.arange(len(ids))
    elif source == "model":
        members = set(model_split.get(name, ()))
        rows = np.array([i for i, m in enumerate(ids) if m in members], dtype=np.int64)
    elif source == "store":
        rows = np.asarray(store_split(name), dtype=np.int64)
    else:
        raise InputError(
            f"{what} has no split: none of its materials is in the model's training split, "
            "and a records file saves none; use --split all"
        )
    info = {"name": name, "source": source if name != "all" else None}
    info |= {"n": len(rows), "of": len(ids)}
    if len(rows) == 0:
        whose = "the model's" if source == "model" else "its saved"
        raise InputError(
            f"none of the {len(ids)} materials of {what} is in {whose} {name} split; choose "
            "another --split (or all)"
        )
    return rows, info


def _seen(ids: Sequence[str], model_split: dict[str, list[str]]) -> dict[str, int]:
    """How many of ``ids`` the model was trained and validated on."""
    out = {}
    for name in ("train", "val"):
        members = set(model_split.get(name, ()))
        out[f"in_model_{name}"] = sum(1 for i in ids if i in members)
    return out


# -- metrics ----------------------------------------------------------------------------------


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a :func:`tensor_metrics` result (and its sign-agnostic MAE)."""
    out = {k: metrics[k] for k in _SUMMARY_KEYS if k in metrics}
    if "ewt" in metrics:
        out["ewt"] = metrics["ewt"]
    if "sign_agnostic" in metrics:
        out["sign_agnostic_mae"] = metrics["sign_agnostic"]["mae"]
    return out


def _metrics(
    pred: np.ndarray,
    true: np.ndarray,
    kind: str,
    systems: list[str] | None,
    units: str,
    warnings: list[set[str]] | None = None,
) -> dict[str, Any]:
    """``metrics``, ``zero_baseline`` and, given each structure's warning codes, ``by_warning``."""
    from crystensor.train.metrics import tensor_metrics

    out: dict[str, Any] = {
        "metrics": tensor_metrics(pred, true, kind, systems, units=units),
        "zero_baseline": _summary(tensor_metrics(np.zeros_like(true), true, kind, units=units)),
        "by_warning": {},
    }
    codes = sorted(set().union(*warnings) - _UNSPLIT_WARNINGS) if warnings else []
    for code in codes:
        flagged = np.array([code in w for w in warnings])
        out["by_warning"][code] = {
            group: _summary(tensor_metrics(pred[rows], true[rows], kind, units=units))
            if rows.any()
            else None
            for group, rows in (("flagged", flagged), ("not_flagged", ~flagged))
        }
    return out


def _header(checkpoint: Checkpoint, source: str, data: Path, fmt: str) -> dict[str, Any]:
    from crystensor import __version__

    return {
        "crystensor_version": __version__,
        "model": source,
        "target": checkpoint.target,
        "kind": checkpoint.kind.name,
        "units": checkpoint.kind.units,
        "arch": checkpoint.arch,
        "model_caveat": checkpoint.meta.get("caveat"),
        "data": str(data),
        "data_format": fmt,
    }


# -- records ----------------------------------------------------------------------------------


_PRINCIPAL_ONLY = (
    "{name} holds principal values without a frame, not tensors; evaluate scores full "
    "tensors. Train with -d TENSORS.h5 -d STORE.h5:WEIGHT to get test metrics on them"
)


def _read_labelled(path: Path) -> list[Record]:
    from crystensor.data.consistency import PRINCIPAL_VALUES
    from crystensor.data.records import read_records

    records = list(read_records(path))
    if not records:
        raise InputError(f"{path.name} holds no records; write some with crystensor fetch")
    if any((r.meta or {}).get("label") == PRINCIPAL_VALUES for r in records):
        raise InputError(_PRINCIPAL_ONLY.format(name=path.name))
    return records


def _label(record: Record, kind: Any) -> np.ndarray:
    try:
        value = np.asarray(record.value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("its value is not an array of numbers") from None
    if value.shape != kind.cartesian_shape:
        raise InputError(
            f"its value has shape {value.shape}, not the full {kind.name} tensor "
            f"{kind.cartesian_shape}"
        )
    if not np.all(np.isfinite(value)):
        raise InputError("its value is not finite")
    return value


def evaluate_records(
    model: Model,
    path: str | os.PathLike,
    *,
    split: str | None = None,
    raw: bool = False,
    device: str = "cpu",
    batch_size: int = 8,
    symprec: float = 0.01,
    angle_tolerance: float | None = None,
    ids: Collection[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of the predict pipeline on a records file (see :func:`evaluate`)."""
    from crystensor.prediction import Predictor

    path = Path(path)
    checkpoint, source, predictor = _checkpoint_and_source(model)
    records = _read_labelled(path)
    targets = sorted({r.target for r in records})
    if len(targets) > 1:
        raise InputError(f"{path.name} holds records of several targets ({', '.join(targets)})")
    _check_target(targets[0], checkpoint, source, str(path))
    kind = checkpoint.kind
    if kind.rank == 0:
        raise InputError(
            f"records are evaluated through predict's pipeline, which is for tensor targets; "
            f"featurize them (crystensor featurize {path} -t {checkpoint.target} -o STORE.h5) "
            "and evaluate the store"
        )
    rows, split_info = _choose_split(
        split, [r.id for r in records], checkpoint.split, None, path.name
    )
    keep = None if ids is None else set(ids)
    chosen = [records[i] for i in rows if keep is None or records[i].id in keep]
    if predictor is None:
        predictor = Predictor(checkpoint, device=device, source=source)
    options = dict(batch_size=batch_size, symprec=symprec, angle_tolerance=angle_tolerance)
    done, failures = _predict_records(predictor, chosen, raw, progress, **options)
    out = _header(checkpoint, source, path, "records")
    out |= {"tensors": "raw" if raw else "pipeline", "split": split_info}
    out["counts"] = {"evaluated": len(done), "failed": len(failures)}
    out["counts"] |= _seen([r.id for r, _, _ in done], checkpoint.split)
    if not done:
        first = f"; the first: {failures[0]['id']}: {failures[0]['error']}" if failures else ""
        raise InputError(
            f"none of the {len(chosen)} chosen records of {path.name} could be predicted{first}"
        )
    pred = np.stack([r.tensor for _, r, _ in done])
    true = np.stack([label for _, _, label in done])
    systems = [_crystal_system(record, result) for record, result, _ in done]
    warnings = [{w["code"] for w in result.warnings} for _, result, _ in done]
    out |= _metrics(pred, true, kind.name, systems, kind.units, warnings)
    out |= {"by_source": {}, "failures": failures}
    return out


def _predict_records(
    predictor: Predictor,
    records: list[Record],
    raw: bool,
    progress: Callable[[int, int], None] | None,
    **options: Any,
) -> tuple[list[tuple[Record, Any, np.ndarray]], list[dict[str, Any]]]:
    """``(record, Prediction, label)`` of each record predicted, and the failures in file
    order (``{"id", "formula", "error"}``: an unreadable label or structure, or predict's
    reason)."""
    errors: dict[int, str] = {}
    todo: list[tuple[int, Any, np.ndarray]] = []
    for k, record in enumerate(records):
        try:
            label = _label(record, predictor.kind)
            todo.append((k, record.pymatgen_structure(), label))
        except InputError as err:
            errors[k] = str(err)
        except Exception as err:  # a structure dict pymatgen cannot read
            errors[k] = f"unreadable structure ({type(err).__name__}: {err})"
    with _without_property_warnings():
        results = predictor.predict_results(
            [s for _, s, _ in todo],
            symmetrize=not raw,
            physical=not raw,
            progress=progress,
            **options,
        )
    done = []
    for (k, _, label), result in zip(todo, results, strict=True):
        if result.ok:
            done.append((records[k], result, label))
        else:
            errors[k] = result.error
    failures = [
        {"id": records[k].id, "formula": records[k].formula, "error": errors[k]}
        for k in sorted(errors)
    ]
    return done, failures


@contextlib.contextmanager
def _without_property_warnings() -> Iterator[None]:
    """Drop what the derived properties log (e.g. a raw tensor without sound velocities):
    predict computes them for every structure, but no metric uses them."""
    logger = logging.getLogger("crystensor.tensors.properties")

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _crystal_system(record: Record, result: Any) -> str:
    """The label's crystal system (as a store keeps it), else the one predict found."""
    recorded = (record.symmetry or {}).get("crystal_system")
    return str(recorded or result.crystal_system or "")


# -- graph stores -----------------------------------------------------------------------------


def evaluate_store(
    model: Model,
    path: str | os.PathLike,
    *,
    split: str | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    ids: Collection[str] | None = None,
    keep_tensors: bool = False,
) -> dict[str, Any]:
    """Metrics of the network output on a graph store's split (see :func:`evaluate`).

    A store built from several record files also gets ``by_source``: the metrics of each
    file's graphs. ``keep_tensors``: also ``arrays``, the store ``index`` of each evaluated
    graph with its predicted (``pred``) and stored (``true``) Cartesian tensors.
    """
    from crystensor.checkpoint import check_featurization
    from crystensor.data.dataset import GraphDataset
    from crystensor.data.store import GraphStore
    from crystensor.train.distributed import DistInfo, resolve_device
    from crystensor.train.loop import _backbone_fields, _prior_fields, evaluate
    from crystensor.train.metrics import tensor_metrics

    path = Path(path)
    checkpoint, source, predictor = _checkpoint_and_source(model)
    store = GraphStore(path)
    if len(store) == 0:
        raise InputError(f"{path.name} holds no graphs")
    if store.label != "tensor":
        raise InputError(_PRINCIPAL_ONLY.format(name=path.name))
    _check_target(store.target, checkpoint, source, str(path))
    check_featurization(checkpoint.featurization, store, describe_model(source))
    rows, split_info = _choose_split(
        split, store.ids, checkpoint.split, store.split_indices, path.name
    )
    if ids is not None:
        keep = set(ids)
        rows = np.array([i for i in rows if store.ids[i] in keep], dtype=np.int64)
        if len(rows) == 0:
            raise InputError(f"none of the given ids is in the {split_info['name']} split")
    if predictor is not None:
        dev, nets = predictor.device, predictor.models
    else:
        dev = resolve_device(device)
        nets = checkpoint.build_members(dev)
    dtype = next(nets[0].parameters()).dtype
    fields = _backbone_fields(nets[0], store)
    dataset = GraphDataset(
        store,
        indices=rows,
        dtype=dtype,
        node_fields=fields,
        graph_fields=_prior_fields(nets[0], store),
    )
    # an ensemble is scored by its members' mean, as predict reports it
    outs = [
        evaluate(net, dataset, info=DistInfo(0, 1, 0, dev), batch_size=batch_size) for net in nets
    ]
    index, true = outs[0]["index"], outs[0]["true"]
    pred = np.mean([out["pred"] for out in outs], axis=0)
    all_ids = store.ids
    finite = np.isfinite(pred.reshape(len(pred), -1)).all(axis=1)
    formulas = store.read("formula")
    failures = [
        {"id": all_ids[i], "formula": str(formulas[i]), "error": _NON_FINITE}
        for i in index[~finite]
    ]
    index, pred, true = index[finite], pred[finite], true[finite]
    if len(index) == 0:
        raise InputError(f"the model produced no finite prediction on {path.name}")
    systems = [str(s) for s in store.read("crystal_system")[index]]
    kind, units = checkpoint.kind.name, store.units
    result = _header(checkpoint, source, path, "store")
    result |= {"tensors": "network", "split": split_info}
    result["counts"] = {"evaluated": len(index), "failed": len(failures)}
    result["counts"] |= _seen([all_ids[i] for i in index], checkpoint.split)
    result |= _metrics(pred, true, kind, systems if any(systems) else None, units)
    result["by_source"] = {}
    for name, group in _source_groups(store, index).items():
        chosen = [systems[i] for i in np.flatnonzero(group)]
        result["by_source"][name] = tensor_metrics(
            pred[group], true[group], kind, chosen if any(chosen) else None, units=units
        )
    result["failures"] = failures
    if keep_tensors:
        result["arrays"] = {"index": index, "pred": pred, "true": true}
    return result


def _source_groups(store: Any, index: np.ndarray) -> dict[str, np.ndarray]:
    """``{file: mask over index}`` of the record files a store was built from (if several)."""
    sources = store.attrs["sources"]
    if len(sources) < 2:
        return {}
    # record_index counts the records of all source files in order
    ends = np.cumsum([s.get("records", 0) for s in sources])
    if ends[-1] <= 0:
        return {}
    source_of = np.searchsorted(ends, store.read("record_index")[index], side="right")
    groups = {s["file"]: source_of == k for k, s in enumerate(sources)}
    return {name: mask for name, mask in groups.items() if mask.any()}
