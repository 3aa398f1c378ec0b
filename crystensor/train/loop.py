"""One training stage: optimise a model on a graph store's training split, validate each epoch,
keep the best weights, and evaluate the result.

:func:`fit` is the engine behind ``crystensor train`` and ``crystensor finetune`` (the
orchestration, pretraining and resuming live in :mod:`crystensor.train.run`). Under ``torchrun``
it trains with DDP (:mod:`crystensor.train.distributed`); each epoch's shuffling comes from a
``DistributedSampler`` seeded with ``seed + epoch``, so a resumed run draws the same batches an
uninterrupted one would.

Files written to ``run_dir`` by rank 0:

====================  ======================================================================
``best.pt``           weights of the epoch with the lowest validation MAE (+ final metrics)
``last.pt``           the latest epoch, with optimizer / scheduler / RNG state for ``--resume``
``metrics.json``      validation and test metrics of the best weights
``history.json``      one record per epoch (losses, validation MAE, learning rate, time)
``*.png``             component-MAE heatmap, parity plot, learning curves
====================  ======================================================================
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crystensor.checkpoint import Checkpoint, save_checkpoint
from crystensor.errors import InputError
from crystensor.io.atomic import atomic_write_text
from crystensor.train import distributed, supervision
from crystensor.train.config import TrainConfig
from crystensor.train.losses import Normalization, loss_function, target_normalization

__all__ = ["FitResult", "Reporter", "evaluate", "fit", "split_ids"]

log = logging.getLogger(__name__)


class Reporter:
    """Receives progress events (the CLI draws rich progress bars); the base does nothing."""

    def stage_start(self, name: str, epochs: int, start_epoch: int, batches: int) -> None:
        """A stage begins; ``start_epoch`` epochs are already done (resume)."""

    def batch_end(self, loss: float) -> None:
        """One optimiser step finished with this (normalised) batch loss."""

    def epoch_end(self, record: dict[str, Any]) -> None:
        """An epoch finished; ``record`` is its entry in ``history.json``."""

    def stage_end(self, result: FitResult) -> None:
        """The stage finished and its files are written."""


@dataclass
class FitResult:
    """What a finished stage left behind."""

    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"


def split_ids(store: Any) -> dict[str, list[str]]:
    """Material ids of each split of ``store``."""
    ids = store.ids
    return {name: [ids[i] for i in store.split_indices(name)] for name in ("train", "val", "test")}


# Training graphs (the first ones of the split, a fixed set) that calibrate the pooled-feature
# gains of a new model (ModelConfig.pool_norm).
_CALIBRATION_GRAPHS = 512


def _loader(dataset, batch_size: int, sampler=None, workers: int = 0):
    from torch_geometric.loader import DataLoader

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: Any,
    *,
    info: distributed.DistInfo,
    batch_size: int = 64,
    loss_fn: Any = None,
) -> dict[str, Any]:
    """Predictions for every graph of ``dataset`` (sharded over ranks, gathered on all).

    Returns
    -------
    dict
        ``index (n,)`` store indices (ascending), ``ids``, ``pred_irreps (n, dim)``,
        ``pred (n, 3, ..., 3)`` (``(n,)`` for scalars), ``true_irreps``, ``true``, and
        ``loss`` (mean normalised loss, if ``loss_fn`` is given).
    """
    was_training = model.training
    model.eval()
    shard = copy.copy(dataset)
    shard.indices = distributed.shard(dataset.indices, info)
    parts: dict[str, list] = {k: [] for k in ("pred_irreps", "pred", "true_irreps", "true")}
    ids: list[str] = []
    loss_sum = 0.0
    for batch in _loader(shard, batch_size):
        batch = batch.to(info.device)
        out = model(batch)
        if loss_fn is not None:
            loss_sum += float(loss_fn(out, batch)) * batch.num_graphs
        scalar = "scalar" in out
        parts["pred_irreps"].append(out["irreps"].double().cpu().numpy())
        parts["pred"].append(out["scalar" if scalar else "cartesian"].double().cpu().numpy())
        parts["true_irreps"].append(batch.y.double().cpu().numpy())
        true = batch.y_cartesian.double().cpu().numpy()
        parts["true"].append(true.reshape(-1) if scalar else true)
        ids.extend(batch.id)
    model.train(was_training)
    arrays = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}
    arrays["index"] = np.asarray(shard.indices, dtype=np.int64)
    arrays["ids"] = ids
    arrays["loss_sum"] = np.array([loss_sum])
    arrays = distributed.gather_arrays(info, arrays)
    order = np.argsort(arrays["index"], kind="stable")
    out = {k: v[order] for k, v in arrays.items() if isinstance(v, np.ndarray) and k != "loss_sum"}
    out["ids"] = [arrays["ids"][i] for i in order]
    n = len(order)
    out["loss"] = float(arrays["loss_sum"].sum()) / max(n, 1) if loss_fn is not None else None
    return out


def _predictor(model, store, info, batch_size: int):
    """``predict(indices) -> (n, 3, ..., 3)``: the model's Cartesian tensors for those graphs."""
    from crystensor.data.dataset import GraphDataset

    def predict(indices):
        data = GraphDataset(
            store,
            indices=indices,
            node_fields=_backbone_fields(model, store),
            graph_fields=_prior_fields(model, store),
        )
        return evaluate(model, data, info=info, batch_size=batch_size)["pred"]

    return predict


def _split_metrics(store, kind, predictions: dict[str, Any]) -> dict[str, Any]:
    from crystensor.train.metrics import tensor_metrics

    systems = store.read("crystal_system")[predictions["index"]]
    systems = [str(s) for s in systems]
    if not any(systems):
        systems = None
    return tensor_metrics(
        predictions["pred"], predictions["true"], kind, systems, units=store.units
    )


def _freeze(model: torch.nn.Module, what: str) -> list[str]:
    """Stop gradients into the named part of the backbone; returns the frozen modules."""
    backbone = model.backbone
    modules = {
        "none": [],
        "embedding": ["embedding"],
        "interactions": ["embedding", "interactions"],
    }
    for name in modules[what]:
        for p in getattr(backbone, name).parameters():
            p.requires_grad_(False)
    return modules[what]


def _backbone_fields(model, store) -> dict[str, Any]:
    """The cached features of a frozen pretrained backbone as a dataset node field (none for
    other models); refuses a store whose graphs are shorter-ranged than the backbone's."""
    config = model.config
    if config.backbone == "native":
        return {}
    needed = model.backbone.embedding.cutoff
    if store.cutoff < needed - 1e-9:
        raise InputError(
            f"{store.path.name} was featurized with cutoff {store.cutoff:g} A, but backbone "
            f"{config.backbone} sees neighbours to {needed:g} A (the radius it was trained "
            f"with); re-run crystensor featurize with --cutoff {needed:g}"
        )
    if config.backbone_mode != "frozen":
        return {}
    from crystensor.data.feature_cache import load_or_build

    cache = load_or_build(store, config.backbone)
    return {"backbone_x": cache.features}


def _prior_fields(model, store, *, build: bool = True) -> dict[str, Any]:
    """The cached physics prior of every graph as dataset graph fields (none for a model
    without a prior); builds the cache when missing or stale (``build``), records its identity
    on the model (``model.prior_identity``, saved in checkpoints) and refuses a cache made by
    another potential file than the model was trained with."""
    config = model.config
    if config.prior is None:
        return {}
    from crystensor.data import prior_cache
    from crystensor.data.dataset import prior_fields

    if build:
        cache = prior_cache.load_or_build(store, config.prior, config.prior_kind)
    else:
        cache = prior_cache.load_prior(store, config.prior, config.prior_kind)
    have = cache.identity()
    recorded = getattr(model, "prior_identity", None)
    if recorded and recorded.get("potential_sha256") != have.get("potential_sha256"):
        raise InputError(
            f"the model was trained on the prior of {config.prior} with file sha256 "
            f"{str(recorded.get('potential_sha256'))[:12]}, but {cache.path.name} was made with "
            f"{str(have.get('potential_sha256'))[:12]}; install the potential the model was "
            "trained with"
        )
    model.prior_identity = have
    if cache.num_failed:
        log.warning(
            "%s: %d of %d graphs have no %s prior (the model sees a zero prior and mask 0): %s",
            store.path.name,
            cache.num_failed,
            len(cache),
            config.prior,
            "; ".join(sorted({r for r in cache.failed if r})[:3]),
        )
    return prior_fields(cache, model.kind)


def _prior_normalization(normalization, store, train_idx, fields, kind) -> tuple[Any, Any]:
    """The correction's output ``scale`` and ``shift`` for a prior head: the targets' scale,
    and the mean residual ``target - prior`` of the invariant parts over the training graphs
    that have a prior (the target's own shift where none has)."""
    scale = torch.tensor(normalization.scale)
    shift = np.array(normalization.shift, dtype=np.float64)
    if not fields:
        return scale, torch.tensor(shift)
    from e3nn import o3

    mask = np.array([fields["prior_mask"](i) for i in train_idx]) > 0
    if mask.any():
        residual = store.read("target_irreps")[train_idx][mask] - np.stack(
            [fields["prior"](i) for i in np.asarray(train_idx)[mask]]
        )
        start = 0
        parts = [ir for mul, ir in o3.Irreps(kind.irreps) for _ in range(mul)]
        for part, ir in enumerate(parts):
            if ir == o3.Irrep("0e"):
                shift[part] = residual[:, start].mean()
            start += ir.dim
    return scale, torch.tensor(shift)


def _uncalibrated(model) -> bool:
    """The pooled-feature gains are those of a new model (all 1), not trained or transferred."""
    return bool(torch.all(model.backbone.pool_gain == 1.0))


def _param_groups(model, config: TrainConfig, transferred: bool) -> list[dict[str, Any]]:
    """Optimizer groups: a transferred backbone and a trained pretrained potential learn at
    ``backbone_lr`` (the potential at ``lr / 10`` when it is not given)."""
    potential = getattr(model.backbone.embedding, "pretrained", None)
    own = {id(p) for p in potential.parameters()} if potential is not None else set()
    pretrained = [p for p in model.backbone.parameters() if p.requires_grad and id(p) in own]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad and id(p) not in own]
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = []
    if pretrained:
        lr = config.backbone_lr if config.backbone_lr is not None else config.lr / 10
        groups.append({"params": pretrained, "lr": lr, "name": "potential"})
    if not transferred or config.backbone_lr is None:
        return [*groups, {"params": backbone + head, "lr": config.lr, "name": "all"}]
    return [
        *groups,
        {"params": backbone, "lr": config.backbone_lr, "name": "backbone"},
        {"params": head, "lr": config.lr, "name": "head"},
    ]


def _scheduler(optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=config.min_lr
        )
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=max(1, config.patience // 3), min_lr=config.min_lr
        )
    return None


def _compile(module: torch.nn.Module) -> torch.nn.Module:
    try:
        return torch.compile(module, dynamic=True)
    except Exception as exc:  # no compiler tool-chain: say so and carry on eagerly
        log.warning("torch.compile is unavailable (%s); training eagerly", exc)
        return module


def fit(
    model: torch.nn.Module,
    store: Any,
    config: TrainConfig,
    run_dir: Path,
    *,
    featurization: dict[str, Any],
    info: distributed.DistInfo,
    reporter: Reporter | None = None,
    resume: Checkpoint | None = None,
    transferred: bool = False,
    stage: str = "train",
    meta: dict[str, Any] | None = None,
    labels: Sequence[tuple[Any, float]] = (),
) -> FitResult:
    """Train ``model`` on ``store``'s train split, validating on its val split.

    Parameters
    ----------
    model : TensorModel
        Initialised (or transferred) network; its target must be the store's.
    store : GraphStore
    config : TrainConfig
    run_dir : Path
        Where the stage's files go (rank 0 writes).
    featurization : dict
        :func:`crystensor.checkpoint.featurization_of` the store (saved with the model).
    info : DistInfo
        From :func:`crystensor.train.distributed.setup`.
    reporter : Reporter, optional
    resume : Checkpoint, optional
        ``last.pt`` of an interrupted run of this stage: weights, optimizer, scheduler, history
        and early-stopping state continue from it.
    transferred : bool
        The backbone comes from another checkpoint (``config.backbone_lr`` then applies).
    stage : str
        Name shown in progress and logs (``"pretrain"``, ``"train"``, ``"finetune"``).
    meta : dict, optional
        Provenance saved in the checkpoints.
    labels : sequence of (GraphStore, weight), optional
        Further stores trained on beside ``store`` (mixed supervision,
        :mod:`crystensor.train.supervision`): invariant labels such as principal values or
        moduli, or more tensors of the target, each with its loss weight. Validation, early
        stopping and the tensor metrics stay on ``store``; each label store gets its own test
        metrics (``metrics["label_sets"]``).
    """
    from crystensor.data.dataset import GraphDataset

    reporter = reporter or Reporter()
    kind = model.kind
    if store.target != model.config.target:
        raise InputError(
            f"{store.path.name} holds {store.target!r} targets but the model predicts "
            f"{model.config.target!r}"
        )
    if resume is not None and model.config.prior is not None:
        model.prior_identity = resume.featurization.get("prior")
    prior = _prior_fields(model, store)
    dataset = GraphDataset(
        store, in_memory=True, node_fields=_backbone_fields(model, store), graph_fields=prior
    )
    train_set, val_set = dataset.subset("train"), dataset.subset("val")
    test_set = dataset.subset("test")
    if len(train_set) == 0 or len(val_set) == 0:
        raise InputError(
            f"{store.path.name} has {len(train_set)} training and {len(val_set)} validation "
            "graphs; training needs both (featurize more structures)"
        )
    if config.batch_size % info.world_size:
        raise InputError(
            f"--batch-size {config.batch_size} must be a multiple of the {info.world_size} "
            "processes (each takes an equal share of a batch)"
        )
    per_rank = config.batch_size // info.world_size

    if resume is not None:
        normalization = Normalization.from_dict(resume.normalization)
        model.load_state_dict(resume.state_dict)
    else:
        train_idx = train_set.indices
        normalization = target_normalization(
            store.read("target_irreps")[train_idx],
            store.read("target_cartesian")[train_idx],
            kind,
        )
        model.head.set_output_normalization(
            *_prior_normalization(normalization, store, train_idx, prior, kind)
        )
    model.to(info.device)
    pretrained = model.config.backbone != "native"
    if resume is None and pretrained and not model.backbone.embedding.calibrated:
        # before the pooled-feature gains, which depend on it; the same graphs on every rank
        calibration = _loader(train_set.head(_CALIBRATION_GRAPHS), 32)
        model.backbone.calibrate_pretrained(batch.to(info.device) for batch in calibration)
        log.info("%s: %s features standardised", stage, model.config.backbone)
    if resume is None and getattr(model.config, "pool_norm", False) and _uncalibrated(model):
        # The same graphs in the same order on every rank: identical gains everywhere.
        calibration = _loader(train_set.head(_CALIBRATION_GRAPHS), 32)
        rms = model.backbone.calibrate_pool_norm(batch.to(info.device) for batch in calibration)
        log.info(
            "%s: pooled-feature RMS before calibration: min %.3g, median %.3g, max %.3g",
            stage,
            rms.min().item(),
            rms.median().item(),
            rms.max().item(),
        )
    frozen = _freeze(model, config.freeze)
    if frozen:
        log.info("%s: frozen backbone parts: %s", stage, ", ".join(frozen))
    label_sets = supervision.label_sets(store, labels) if labels else []
    loss_fn = loss_function(
        config.loss,
        normalization,
        kind,
        config.loss_function,
        config.sign_agnostic,
        per_structure=bool(label_sets),
    )
    if label_sets:
        loss_fn = supervision.mixed_loss(loss_fn, label_sets, config.loss_function)
        train_set = supervision.MixedDataset(
            train_set,
            label_sets,
            [
                GraphDataset(
                    ls.store,
                    indices=ls.train,
                    in_memory=True,
                    node_fields=_backbone_fields(model, ls.store),
                    graph_fields=_prior_fields(model, ls.store),  # a prior model: theirs too
                )
                for ls in label_sets
            ],
        )
    optimizer = torch.optim.AdamW(
        _param_groups(model, config, transferred), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = _scheduler(optimizer, config)

    history: list[dict[str, Any]] = []
    start_epoch, best_mae, best_epoch, bad_epochs = 0, math.inf, 0, 0
    if resume is not None:
        state = resume.training
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        best_mae, best_epoch = float(state["best_val_mae"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])

    net: torch.nn.Module = model
    if info.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device] if info.device.type == "cuda" else None
        )
    if config.compile:
        net = _compile(net)

    if label_sets and config.label_share < 1:
        sampler = supervision.LabelShareSampler(
            train_set, config.label_share, info.world_size, info.rank, config.seed
        )
    else:
        sampler = torch.utils.data.DistributedSampler(
            train_set,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=config.seed,
            drop_last=False,
        )
    train_loader = _loader(train_set, per_rank, sampler, config.num_workers)
    params = [p for p in model.parameters() if p.requires_grad]
    base = dict(
        featurization=featurization,
        normalization=normalization.to_dict(),
        split=split_ids(store),
        meta={
            **(meta or {}),
            "stage": stage,
            "store": store.path.name,
            **(
                {"label_stores": [{"store": ls.name, "weight": ls.weight} for ls in label_sets]}
                if label_sets
                else {}
            ),
        },
    )

    def checkpoint(
        metrics: dict[str, Any], training: dict[str, Any], domain: dict[str, Any] | None = None
    ) -> Checkpoint:
        return Checkpoint.from_model(
            model, metrics=metrics, training=training, domain=domain or {}, **base
        )

    run_dir = Path(run_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    reporter.stage_start(stage, config.epochs, start_epoch, len(train_loader))
    log.info(
        "%s: %s on %s (%d train / %d val graphs), %d epochs, batch %d on %d process(es)",
        stage,
        model.config.arch,
        store.path.name,
        len(train_set),
        len(val_set),
        config.epochs,
        config.batch_size,
        info.world_size,
    )
    stopped_early = False
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        net.train()
        loss_sum = torch.zeros(2, dtype=torch.float64)
        for batch in train_loader:
            batch = batch.to(info.device)
            loss = loss_fn(net(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise InputError(
                    f"{stage}: the training loss became {value} in epoch {epoch + 1}; lower "
                    "--lr or --clip-grad"
                )
            loss_sum += torch.tensor([value * batch.num_graphs, batch.num_graphs])
            reporter.batch_end(value)
        if info.distributed:
            import torch.distributed as dist

            reduced = loss_sum.to(info.device)
            dist.all_reduce(reduced)
            loss_sum = reduced.cpu()
        val = evaluate(model, val_set, info=info, batch_size=2 * per_rank, loss_fn=loss_fn)
        val_metrics = _split_metrics(store, kind, val)
        val_mae = (val_metrics["sign_agnostic"] if config.sign_agnostic else val_metrics)["mae"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_mae)
        elif scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum[0] / loss_sum[1]),
            "val_loss": val["loss"],
            "val_mae": val_mae,
            "lr": optimizer.param_groups[-1]["lr"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(record)
        improved = val_mae < best_mae
        if improved:
            best_mae, best_epoch, bad_epochs = val_mae, epoch + 1, 0
        else:
            bad_epochs += 1
        training = {
            "train_config": config.to_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_val_mae": best_mae,
            "best_epoch": best_epoch,
            "bad_epochs": bad_epochs,
        }
        if info.is_main:
            epoch_metrics = {"val_mae": val_mae, "epoch": epoch + 1}
            if improved:
                save_checkpoint(checkpoint(epoch_metrics, training), run_dir / "best.pt")
            resume_state = {
                **training,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "torch_rng": torch.get_rng_state(),
            }
            save_checkpoint(checkpoint(epoch_metrics, resume_state), run_dir / "last.pt")
            atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1) + "\n")
        log.info(
            "%s epoch %d/%d: train loss %.4g, val loss %.4g, val MAE %.4g %s%s (%.1f s)",
            stage,
            epoch + 1,
            config.epochs,
            record["train_loss"],
            record["val_loss"],
            val_mae,
            store.units,
            " *" if improved else "",
            record["seconds"],
        )
        reporter.epoch_end(record)
        if config.patience and bad_epochs >= config.patience:
            stopped_early = True
            log.info("%s: no improvement for %d epochs; stopping", stage, bad_epochs)
            break

    result = _finish(
        model,
        store,
        dataset,
        run_dir,
        info=info,
        batch_size=2 * per_rank,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        checkpoint=checkpoint,
        loss_fn=loss_fn,
        sets={"val": val_set, "test": test_set},
        label_sets=label_sets,
    )
    reporter.stage_end(result)
    return result


def _finish(
    model,
    store,
    dataset,
    run_dir: Path,
    *,
    info,
    batch_size,
    history,
    best_epoch,
    stopped_early,
    checkpoint,
    loss_fn,
    sets,
    label_sets=(),
) -> FitResult:
    """Reload the best weights, evaluate val and test, write metrics, plots and best.pt."""
    from crystensor.train import plots

    distributed.barrier(info)  # rank 0 has written best.pt
    from crystensor.checkpoint import load_checkpoint

    best = load_checkpoint(run_dir / "best.pt", map_location=info.device)
    model.load_state_dict(best.state_dict)
    kind = model.kind
    metrics: dict[str, Any] = {
        "target": store.target,
        "kind": kind.name,
        "units": store.units,
        "arch": model.config.arch,
        "store": store.path.name,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "counts": {name: len(dataset.subset(name)) for name in ("train", "val", "test")},
    }
    predictions = {}
    for name, subset in sets.items():
        if len(subset) == 0:
            continue
        predictions[name] = evaluate(model, subset, info=info, batch_size=batch_size)
        metrics[name] = _split_metrics(store, kind, predictions[name])
    if label_sets:
        metrics["label_sets"] = [
            supervision.invariant_metrics(_predictor(model, ls.store, info, batch_size), ls)
            for ls in label_sets
        ]
    if info.is_main:
        from crystensor.train.domain import model_domain

        domain = model_domain(model, dataset, batch_size)
        save_checkpoint(checkpoint(metrics, best.training, domain), run_dir / "best.pt")
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        plots.plot_learning_curves(history, run_dir / "learning_curves.png")
        shown = "test" if "test" in predictions else "val"
        if kind.rank > 0:
            plots.plot_component_heatmap(
                metrics[shown], run_dir / "heatmap.png", title=f"{kind.name}, {shown} split"
            )
        plots.plot_parity(
            predictions[shown]["pred"],
            predictions[shown]["true"],
            kind,
            run_dir / "parity.png",
            title=f"{kind.name}, {shown} split",
        )
    distributed.barrier(info)
    return FitResult(run_dir, metrics, history, stopped_early)
