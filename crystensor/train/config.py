"""The typed, frozen training configuration (everything but the network's own hyper-parameters).

The network's hyper-parameters live in :class:`crystensor.models.ModelConfig`; a checkpoint
stores both, so ``--resume`` continues with exactly the settings a run started with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from crystensor.errors import InputError

__all__ = [
    "FREEZE_CHOICES",
    "LOSS_FUNCTIONS",
    "LOSS_SPACES",
    "SCHEDULES",
    "TrainConfig",
    "train_config_from_dict",
]

SCHEDULES = ("cosine", "plateau", "constant")
LOSS_SPACES = ("irreps", "cartesian")
LOSS_FUNCTIONS = ("mse", "huber", "l1")
FREEZE_CHOICES = ("none", "embedding", "interactions")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings of one training stage.

    Parameters
    ----------
    epochs : int
        Upper bound on passes over the training split (early stopping may end sooner).
    batch_size : int
        Graphs per optimiser step, summed over all ranks (each of ``K`` DDP ranks takes
        ``batch_size / K``).
    lr : float
        AdamW learning rate of the parts trained from scratch (the head, or everything).
    backbone_lr : float or None
        Learning rate of a transferred backbone (fine-tuning); ``None`` means ``lr``.
    weight_decay : float
        AdamW decoupled weight decay.
    schedule : {"cosine", "plateau", "constant"}
        Cosine decay to ``min_lr`` over ``epochs``; halve on a validation plateau of
        ``patience // 3`` epochs; or constant.
    min_lr : float
        Floor of the cosine and plateau schedules.
    loss : {"irreps", "cartesian"}
        Compare the irreps normalised per part, or the Cartesian components divided by their
        training-set RMS.
    loss_function : {"mse", "huber", "l1"}
        Squared error, Huber (quadratic within one normalised unit, linear beyond: robust to
        the heavy-tailed targets), or absolute error.
    sign_agnostic : bool
        Odd-rank targets (piezoelectric) only: each structure's loss is the smaller of the
        losses against ``T`` and ``-T``, and early stopping follows the sign-agnostic
        validation MAE. For data whose signs are not reliable relative to the structure (see
        README: IEEE-frame piezoelectric tensors of point groups with improper operations).
    clip_grad : float
        Clip the global gradient norm to this value; 0 disables.
    patience : int
        Stop when the validation MAE has not improved for this many epochs; 0 disables.
    seed : int
        Seeds the weights' initialisation and the shuffling (the store fixes the split).
    device : {"auto", "cpu", "cuda"}
    compile : bool
        Wrap the model in ``torch.compile`` (slow to start; see README for when it pays).
    freeze : {"none", "embedding", "interactions"}
        Keep the atom embedding, or the embedding and the interaction layers, fixed.
    num_workers : int
        DataLoader worker processes per rank.
    label_share : float
        With label stores beside the tensor store: the share of each label store's training
        graphs drawn afresh each epoch (:class:`crystensor.train.supervision.LabelShareSampler`);
        1 takes them all.
    """

    epochs: int = 200
    batch_size: int = 32
    lr: float = 2e-3
    backbone_lr: float | None = None
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    min_lr: float = 1e-5
    loss: str = "irreps"
    loss_function: str = "mse"
    sign_agnostic: bool = False
    clip_grad: float = 10.0
    patience: int = 40
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    freeze: str = "none"
    num_workers: int = 0
    label_share: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (
                self.backbone_lr is None or self.backbone_lr >= 0,
                f"--backbone-lr must be >= 0, got {self.backbone_lr}",
            ),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (
                self.schedule in SCHEDULES,
                f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
            ),
            (0 <= self.min_lr <= self.lr, f"--min-lr must be in [0, lr], got {self.min_lr}"),
            (
                self.loss in LOSS_SPACES,
                f"--loss must be one of {', '.join(LOSS_SPACES)}, got {self.loss!r}",
            ),
            (
                self.loss_function in LOSS_FUNCTIONS,
                f"--loss-function must be one of {', '.join(LOSS_FUNCTIONS)}, got "
                f"{self.loss_function!r}",
            ),
            (self.clip_grad >= 0, f"--clip-grad must be >= 0, got {self.clip_grad}"),
            (self.patience >= 0, f"--patience must be >= 0, got {self.patience}"),
            (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
            ),
            (
                self.freeze in FREEZE_CHOICES,
                f"--freeze must be one of {', '.join(FREEZE_CHOICES)}, got {self.freeze!r}",
            ),
            (self.num_workers >= 0, f"--workers must be >= 0, got {self.num_workers}"),
            (
                0 < self.label_share <= 1,
                f"--label-share must be in (0, 1], got {self.label_share}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` from :meth:`TrainConfig.to_dict` (unknown keys refused)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown training setting(s) {', '.join(unknown)}")
    return TrainConfig(**data)
