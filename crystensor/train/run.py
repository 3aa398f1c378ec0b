"""Training runs: the plans behind ``crystensor train`` and ``crystensor finetune``.

A run is a plan of one or two stages, written to ``RUN_DIR/run.json`` before anything trains:

* ``train``: a fresh network from a preset, trained on the store;
* ``train --pretrain band-gap --pretrain-data S.h5``: stage ``pretrain`` trains the network on
  the scalar store in ``RUN_DIR/pretrain/``; its best backbone then gets a head for the tensor
  target and stage ``train`` trains it on the tensor store in ``RUN_DIR`` (the paper's
  scalar -> tensor progression);
* ``train --pretrain CKPT`` and ``finetune CKPT``: the network starts from a checkpoint's
  backbone (and keeps its head when the target is the same). Its stage's ``backbone_mode``
  (``None``: the checkpoint's) is the mode its pretrained potential is trained in
  (``--backbone-mode``; :func:`finetune` says which changes are allowed), so that a resumed run
  rebuilds the same network.

:func:`resume` reads the plan back and re-runs it: a finished stage (its ``metrics.json``
exists) is skipped, an interrupted one continues from its ``last.pt``.

Each stage trains on its store's saved split, or on one recomputed in memory
(:meth:`~crystensor.data.store.GraphStore.use_split`; ``split="random"`` or ``"family"`` with
``split_seed``). The stage's ``split`` entry in the plan (``{"method", "seed"}``; absent in
older plans: the store's) makes a resumed run use the same one, and the checkpoints' ``meta``
record the split used (``method``, ``seed``, ``fractions``, ``source``).

A stage may also train on label stores beside its store (its ``labels`` entry: ``{"data",
"store", "weight"}`` each; mixed supervision, :mod:`crystensor.train.supervision`); they take
the stage's split method and seed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crystensor.checkpoint import (
    Checkpoint,
    check_backbone,
    check_featurization,
    featurization_of,
    load_checkpoint,
)
from crystensor.errors import InputError
from crystensor.io.atomic import atomic_write_text
from crystensor.train import distributed
from crystensor.train.config import TrainConfig, train_config_from_dict
from crystensor.train.loop import FitResult, Reporter, fit

__all__ = ["PRETRAIN_TARGETS", "RunResult", "finetune", "resume", "train"]

log = logging.getLogger(__name__)

# --pretrain names -> store targets (bandgap: the spelling before the store's name was used)
PRETRAIN_TARGETS = {
    "band-gap": "band-gap",
    "bandgap": "band-gap",
    "formation-energy": "formation-energy",
}
PLAN_FILE = "run.json"
PLAN_VERSION = 1
# --split: the store's saved split, or one recomputed by GraphStore.use_split
SPLITS = ("store", "random", "family")
# state_dict keys of a pretrained potential's weights (absent from a frozen model's)
POTENTIAL_PREFIX = "backbone.embedding.pretrained."


@dataclass
class RunResult:
    """The stages a run trained, in order; ``final`` is the one whose model is the result."""

    run_dir: Path
    stages: list[FitResult] = field(default_factory=list)

    @property
    def final(self) -> FitResult:
        return self.stages[-1]


def _open_store(path: str | os.PathLike, what: str):
    from crystensor.data.store import GraphStore

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; build it with crystensor featurize")
    return GraphStore(path)


def _store_identity(store) -> dict[str, Any]:
    return {
        "path": str(store.path.resolve()),
        "created": store.attrs["created"],
        "n_graphs": len(store),
        "target": store.target,
    }


def _check_identity(store, recorded: dict[str, Any]) -> None:
    now = _store_identity(store)
    for key in ("created", "n_graphs", "target"):
        if now[key] != recorded[key]:
            raise InputError(
                f"{store.path} changed since the run began ({key} {recorded[key]!r} -> "
                f"{now[key]!r}); start a new run instead of --resume"
            )


def _split_plan(split: str, seed: int | None) -> dict[str, Any]:
    """The plan's record of a ``--split`` / ``--split-seed`` choice (checked)."""
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "store":
        if seed is not None:
            raise InputError(
                "--split-seed needs --split random or family (the store's split has its seed)"
            )
        return {"method": "store", "seed": None}
    return {"method": split, "seed": 0 if seed is None else int(seed)}


def _model_config(plan: dict[str, Any], store, target: str):
    """The network's config: the plan's preset and overrides, cutoff and features from the store."""
    from crystensor.models import preset

    overrides = dict(plan.get("model_overrides") or {})
    overrides.setdefault("avg_num_neighbors", round(store.num_edges / max(store.num_nodes, 1), 1))
    try:
        return preset(
            plan["arch"],
            plan["preset"],
            num_node_features=int(store.attrs["feature_dim"]),
            target=target,
            cutoff=store.cutoff,
            **overrides,
        )
    except ValueError as exc:
        raise InputError(f"bad model settings: {exc}") from exc


def _new_model(plan: dict[str, Any], store, target: str, seed: int):
    from crystensor.models import build_model

    config = _model_config(plan, store, target)
    torch.manual_seed(seed)
    return build_model(config)


def _check_backbone_mode(source: Checkpoint, mode: str | None, freeze: str, name: str) -> None:
    """Refuse a ``--backbone-mode`` that does not apply to the checkpoint ``source``."""
    from crystensor.models.config import BACKBONE_MODES

    if mode is None:
        return
    if mode not in BACKBONE_MODES:
        raise InputError(
            f"--backbone-mode must be one of {', '.join(BACKBONE_MODES)}, got {mode!r}"
        )
    config = source.model_config
    if config.backbone == "native":
        raise InputError(
            f"--backbone-mode applies to a checkpoint trained with a pretrained backbone "
            f"(crystensor train --backbone sevennet-0), but {name} has the native one; drop "
            "--backbone-mode"
        )
    if mode == "frozen" and config.backbone_mode != "frozen":
        raise InputError(
            f"{name} holds a {config.backbone} potential trained in mode "
            f"{config.backbone_mode}; --backbone-mode frozen would use the installed file's "
            "weights and lose the trained ones: use partial or full, or drop --backbone-mode"
        )
    if mode != "frozen" and freeze != "none":
        raise InputError(
            f"--freeze {freeze} keeps the {config.backbone} potential fixed (it is part of the "
            f"embedding); drop --freeze to train it with --backbone-mode {mode}"
        )


def _rebuild(source: Checkpoint, mode: str | None, name: str):
    """The checkpoint's network, its pretrained potential in ``mode`` (None: the checkpoint's).

    From ``frozen``, whose checkpoints hold no weights of the potential, the potential starts
    from the installed file's weights (the ones the checkpoint was trained on, which
    :func:`~crystensor.checkpoint.check_backbone` makes sure of); between ``partial``
    and ``full`` every weight carries over.
    """
    from crystensor.models import build_model

    config = source.model_config
    if mode is None or mode == config.backbone_mode:
        return source.build_model()
    check_backbone(source.featurization.get("backbone"))
    model = build_model(config.replace(backbone_mode=mode))
    loaded = model.load_state_dict(source.state_dict, strict=False)
    # strict but for the potential's weights, which only a frozen checkpoint lacks
    may_lack = POTENTIAL_PREFIX if config.backbone_mode == "frozen" else None
    bad = [k for k in loaded.missing_keys if not (may_lack and k.startswith(may_lack))]
    bad += loaded.unexpected_keys
    if bad:
        raise InputError(
            f"{name} does not fit the network its config builds ({len(bad)} weights missing "
            f"or unexpected, e.g. {bad[0]}); it is damaged or from another crystensor"
        )
    log.info("%s: %s potential %s -> %s", name, config.backbone, config.backbone_mode, mode)
    return model.to(dtype=torch.float32).eval()


def _transfer(
    checkpoint_path: str | os.PathLike, store, what: str, backbone_mode: str | None = None
):
    """The network of a checkpoint, with a head for ``store``'s target (kept if the same), its
    pretrained potential (if any) in ``backbone_mode`` (None: the checkpoint's).

    A new head for an odd-rank (piezoelectric) target on a backbone without pooled-feature
    gains gets them (``add_pool_norm``; :func:`~crystensor.train.loop.fit` calibrates them), as
    a network trained for that target from scratch has them: without, the odd-parity pooled
    features are ~100x smaller than the scalars and the new head starts at about zero.
    """
    source = load_checkpoint(checkpoint_path)
    check_featurization(source.featurization, store, f"the checkpoint {Path(checkpoint_path).name}")
    model = _rebuild(source, backbone_mode, Path(checkpoint_path).name)
    if source.target != store.target:
        model.replace_head(store.target)
        log.info(
            "%s: backbone of %s (%s), new %s head",
            what,
            Path(checkpoint_path).name,
            source.target,
            store.target,
        )
        if default_model_overrides(store.kind)["pool_norm"] and not model.backbone.pool_norm:
            model.add_pool_norm()
            log.info("%s: pooled-feature gains added for the %s head", what, store.target)
    else:
        log.info("%s: backbone and head of %s (%s)", what, checkpoint_path, source.target)
    return model.train()


@contextlib.contextmanager
def _log_file(path: Path, info: distributed.DistInfo):
    """Copy crystensor's INFO log records to ``path`` (rank 0) for the run's duration."""
    if not info.is_main:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("crystensor")
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def _stage(
    plan: dict[str, Any],
    stage: dict[str, Any],
    stage_dir: Path,
    *,
    info: distributed.DistInfo,
    reporter: Reporter,
    parent: Path | None,
) -> FitResult:
    """Run (or resume, or skip if finished) one stage of ``plan``."""
    store = _open_store(stage["data"], "store")
    _check_identity(store, stage["store"])
    split = stage.get("split") or {"method": "store"}  # plans from before --split: the store's
    store.use_split(split["method"], split.get("seed") or 0)
    labels = []
    for entry in stage.get("labels", ()):
        label_store = _open_store(entry["data"], "label store")
        _check_identity(label_store, entry["store"])
        label_store.use_split(split["method"], split.get("seed") or 0)
        labels.append((label_store, float(entry["weight"])))
    config = train_config_from_dict(stage["train"])
    metrics_file = stage_dir / "metrics.json"
    if metrics_file.is_file() and (stage_dir / "best.pt").is_file():
        log.info("%s: already finished in %s", stage["name"], stage_dir)
        history = json.loads((stage_dir / "history.json").read_text())
        return FitResult(stage_dir, json.loads(metrics_file.read_text()), history)
    if parent is not None:
        model = _transfer(parent, store, stage["name"], stage.get("backbone_mode"))
    else:
        model = _new_model(plan, store, store.target, config.seed)
    resume_from = None
    if (stage_dir / "last.pt").is_file():
        resume_from = load_checkpoint(stage_dir / "last.pt")
        log.info("%s: resuming after epoch %d", stage["name"], resume_from.training["epoch"])
    meta = {
        "command": plan.get("command"),
        "created": plan["created"],
        "parent": str(parent) if parent else None,
        "run_dir": str(stage_dir),
        "split": store.split_info,
    }
    return fit(
        model,
        store,
        config,
        stage_dir,
        featurization=featurization_of(store),
        info=info,
        reporter=reporter,
        resume=resume_from,
        transferred=parent is not None,
        stage=stage["name"],
        meta=meta,
        labels=labels,
    )


def _execute(
    plan: dict[str, Any], run_dir: Path, reporter: Reporter | None, info: distributed.DistInfo
) -> RunResult:
    reporter = reporter or Reporter()
    result = RunResult(run_dir)
    try:
        with _log_file(run_dir / "train.log", info):
            parent = Path(plan["start_from"]) if plan.get("start_from") else None
            for stage in plan["stages"]:
                stage_dir = run_dir / stage["subdir"] if stage["subdir"] else run_dir
                fitted = _stage(plan, stage, stage_dir, info=info, reporter=reporter, parent=parent)
                result.stages.append(fitted)
                parent = fitted.best_checkpoint
    finally:
        distributed.teardown(info)
    return result


def _stage_plan(
    name: str, store, config: TrainConfig, subdir: str = "", split: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "data": str(store.path.resolve()),
        "store": _store_identity(store),
        "train": config.to_dict(),
        "subdir": subdir,
        "split": split or {"method": "store", "seed": None},
    }


def _label_plan(store, labels: Sequence[tuple[str | os.PathLike, float]]) -> list[dict]:
    """The plan's record of the label stores, each checked against ``store`` now."""
    from crystensor.train.supervision import check_label_store

    plan, seen = [], {store.path.resolve()}
    for path, weight in labels:
        label_store = _open_store(path, "label store")
        if label_store.path.resolve() in seen:
            raise InputError(f"{label_store.path.name} is given twice to --data; give it once")
        seen.add(label_store.path.resolve())
        check_label_store(store, label_store)
        plan.append(
            {
                "data": str(label_store.path.resolve()),
                "store": _store_identity(label_store),
                "weight": float(weight),
            }
        )
    return plan


def _start(plan: dict[str, Any], run_dir: Path, reporter: Reporter | None) -> RunResult:
    run_dir = Path(run_dir)
    info = distributed.setup(plan["stages"][-1]["train"]["device"])
    try:
        if info.is_main:  # the other ranks wait: rank 0's plan would look like an old run
            if (run_dir / PLAN_FILE).exists():
                raise InputError(
                    f"{run_dir} already holds a run; continue it with --resume {run_dir} or "
                    "choose a new output directory"
                )
            if run_dir.exists() and not run_dir.is_dir():
                raise InputError(f"{run_dir} is a file; pass a directory for the run")
            plan.update(
                format="crystensor-run",
                format_version=PLAN_VERSION,
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                command=plan.get("command") or sys.argv,
            )
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / PLAN_FILE, json.dumps(plan, indent=1) + "\n")
        distributed.barrier(info)
        if not info.is_main:
            plan = json.loads((run_dir / PLAN_FILE).read_text())
    except BaseException:
        distributed.teardown(info)
        raise
    return _execute(plan, run_dir, reporter, info)


def default_model_overrides(kind, backbone: str = "native") -> dict[str, Any]:
    """The model settings ``train`` records for a store of ``kind`` when none are given.

    ``pool_norm`` is on exactly for odd-rank (piezoelectric) targets: measured, it is what lets
    those leave the zero tensor, and it cost the even targets accuracy. ``pooling`` is
    ``density`` for the elastic and piezoelectric tensors of a native network, which it made
    more accurate on unseen chemical systems for every seed tried (RESULTS.md, issue 12), and
    ``mean`` otherwise (dielectric tensors, scalars, pretrained backbones), where it made no
    measurable difference.
    """
    density = kind.name in ("elastic", "piezoelectric") and backbone == "native"
    return {"pool_norm": kind.rank % 2 == 1, "pooling": "density" if density else "mean"}


def train(
    data: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    arch: str = "segnn",
    preset_name: str = "default",
    model_overrides: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    pretrain: str | None = None,
    pretrain_data: str | os.PathLike | None = None,
    pretrain_config: TrainConfig | None = None,
    backbone_mode: str | None = None,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    split: str = "store",
    split_seed: int | None = None,
    labels: Sequence[tuple[str | os.PathLike, float]] = (),
) -> RunResult:
    """Train a model on a graph store, optionally after scalar pretraining.

    Parameters
    ----------
    data : path
        HDF5 graph store of the target property (from ``crystensor featurize``).
    run_dir : path
        New directory for the run's files (``run.json``, ``best.pt``, ``metrics.json``, ...).
    arch, preset_name, model_overrides
        Architecture (``segnn``, ``seconv``, ``setransformer``), preset (``small``,
        ``default``) and field overrides of :class:`~crystensor.models.ModelConfig`; the
        cutoff and feature width always come from the store.
    config : TrainConfig
    pretrain : {"band-gap", "formation-energy"} or checkpoint path, optional
        First train on the scalar store ``pretrain_data`` (``RUN_DIR/pretrain``; ``"bandgap"``
        is accepted for ``"band-gap"``), or start from a checkpoint's backbone.
    pretrain_config : TrainConfig, optional
        Settings of the pretraining stage (default: ``config``).
    backbone_mode : {"frozen", "partial", "full"}, optional
        With ``pretrain`` a checkpoint: the mode of its pretrained potential, as in
        :func:`finetune` (default: the checkpoint's).
    split : {"store", "random", "family"}
        The store's saved train/val/test split, or one recomputed in memory from its ids (by
        material id, or by chemical system) with ``split_seed`` (default 0); applied to the
        pretraining store too.
    labels : sequence of (path, weight)
        Label stores trained on beside ``data`` with their loss weights (mixed supervision,
        :mod:`crystensor.train.supervision`), in the final stage; ``split`` applies to them.
    """
    config = config or TrainConfig()
    split_plan = _split_plan(split, split_seed)
    store = _open_store(data, "store")
    label_plan = _label_plan(store, labels)
    if backbone_mode is not None and (pretrain is None or pretrain in PRETRAIN_TARGETS):
        raise InputError("backbone_mode applies to a network started from a checkpoint file")
    if store.kind.rank == 0 and pretrain is not None and pretrain in PRETRAIN_TARGETS:
        log.info("pretraining a scalar model on another scalar: allowed, but unusual")
    plan: dict[str, Any] = {
        "mode": "train",
        "arch": arch,
        "preset": preset_name,
        "model_overrides": {
            **default_model_overrides(
                store.kind, (model_overrides or {}).get("backbone") or "native"
            ),
            **(model_overrides or {}),
        },
        "start_from": None,
        "command": command,
        "stages": [],
    }
    if pretrain is not None:
        if pretrain in PRETRAIN_TARGETS:
            target = PRETRAIN_TARGETS[pretrain]
            if pretrain_data is None:
                raise InputError(
                    f"--pretrain {pretrain} needs --pretrain-data STORE.h5, a {target} store "
                    "(build one with crystensor featurize; see examples/build_stores.sh)"
                )
            pre_store = _open_store(pretrain_data, "pretraining store")
            if pre_store.target != target:
                raise InputError(
                    f"--pretrain {pretrain} needs a {target} store, but {pre_store.path.name} "
                    f"holds {pre_store.target}"
                )
            if pre_store.cutoff != store.cutoff or (
                pre_store.attrs["feature_set"] != store.attrs["feature_set"]
            ):
                raise InputError(
                    f"{pre_store.path.name} (cutoff {pre_store.cutoff}, "
                    f"{pre_store.attrs['feature_set']}) and {store.path.name} (cutoff "
                    f"{store.cutoff}, {store.attrs['feature_set']}) were featurized differently;"
                    " featurize both with the same --cutoff"
                )
            plan["stages"].append(
                _stage_plan(
                    "pretrain", pre_store, pretrain_config or config, "pretrain", split_plan
                )
            )
        else:
            path = Path(pretrain)
            if not path.is_file():
                raise InputError(
                    f"--pretrain {pretrain!r} is neither "
                    f"{', '.join(sorted(set(PRETRAIN_TARGETS.values())))} nor an existing "
                    "checkpoint file"
                )
            source = load_checkpoint(path)  # fail now, not after the plan is written
            _check_backbone_mode(source, backbone_mode, config.freeze, path.name)
            plan["start_from"] = str(path.resolve())
    plan["stages"].append(_stage_plan("train", store, config, split=split_plan))
    if label_plan:
        plan["stages"][-1]["labels"] = label_plan
    if plan["start_from"] is not None:
        plan["stages"][-1]["backbone_mode"] = backbone_mode
    else:
        _model_config(plan, store, store.target)  # refuse bad settings before writing anything
    return _start(plan, Path(run_dir), reporter)


def finetune(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    config: TrainConfig | None = None,
    backbone_mode: str | None = None,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    split: str = "store",
    split_seed: int | None = None,
) -> RunResult:
    """Continue training a checkpoint's network on another store (any target).

    The backbone is transferred; the head is kept when the store's target is the
    checkpoint's, else a new one is built. ``config.freeze`` and ``config.backbone_lr``
    control how much the transferred part moves (a trained pretrained potential learns at
    ``backbone_lr`` too, ``lr / 10`` if None). ``split`` and ``split_seed`` as in
    :func:`train`.

    ``backbone_mode`` (None: the checkpoint's) changes how a pretrained potential is trained:
    ``frozen`` -> ``partial`` or ``full`` starts it from the installed file's weights (a
    frozen checkpoint holds none), ``partial`` <-> ``full`` carries its trained weights over.
    Refused: any mode for a native checkpoint, ``frozen`` for a trained potential (the
    installed file's weights would silently replace the trained ones), and ``partial`` or
    ``full`` with ``config.freeze`` other than ``"none"`` (which freezes the potential).
    """
    config = config or TrainConfig()
    split_plan = _split_plan(split, split_seed)
    source = load_checkpoint(checkpoint)
    _check_backbone_mode(source, backbone_mode, config.freeze, Path(checkpoint).name)
    store = _open_store(data, "store")
    check_featurization(source.featurization, store, f"the checkpoint {Path(checkpoint).name}")
    plan = {
        "mode": "finetune",
        "arch": source.arch,
        "preset": None,
        "model_overrides": {},
        "start_from": str(Path(checkpoint).resolve()),
        "command": command,
        "stages": [_stage_plan("finetune", store, config, split=split_plan)],
    }
    plan["stages"][0]["backbone_mode"] = backbone_mode
    return _start(plan, Path(run_dir), reporter)


def resume(run_dir: str | os.PathLike, reporter: Reporter | None = None) -> RunResult:
    """Continue an interrupted run exactly where its ``last.pt`` left off."""
    run_dir = Path(run_dir)
    plan_file = run_dir / PLAN_FILE
    if not plan_file.is_file():
        raise InputError(
            f"{run_dir} holds no run ({PLAN_FILE} missing); pass the -o directory of an "
            "earlier crystensor train or finetune"
        )
    plan = json.loads(plan_file.read_text())
    if plan.get("format") != "crystensor-run" or int(plan.get("format_version", 0)) > PLAN_VERSION:
        raise InputError(f"{plan_file} is not a run plan this crystensor reads")
    return _execute(
        plan, run_dir, reporter, distributed.setup(plan["stages"][-1]["train"]["device"])
    )
