"""The paper's experiments (Heilman, Schlesinger & Yan, section 7, Figures 4-7) on our data.

Every experiment is a set of ``crystensor train`` / ``crystensor finetune`` runs, one directory
each under ``RUNS`` (``--runs``, default ``runs/paper``), on the stores of
``examples/build_stores.sh`` in ``STORES`` (``--stores``, default ``data``):

===========================================  ==================================================
``RUNS/direct/{target}-{arch}``              Figure 4: ``crystensor train -d STORES/{target}.h5
                                             -o DIR --arch ARCH --preset PRESET --epochs E
                                             --patience P --batch-size B --seed 0``
``RUNS/scalar/{scalar}-{arch}``              scalar pretraining: the same on ``{scalar}.h5``
                                             with ``--epochs S`` (``--scalar-epochs``)
``RUNS/scalar-tensor/{scalar}-{target}-      Figure 5: ``crystensor finetune RUNS/scalar/
{arch}``                                     {scalar}-{arch}/best.pt -d STORES/{target}.h5 -o
                                             DIR --epochs E --patience P --batch-size B --seed 0
                                             --lr 0.002 --backbone-lr 0.002``
``RUNS/chained/{scalar}-{arch}/el-di``,      Figures 6 and 7: the same fine-tuning along the
``el-di-pz``, ``el-pz``, ``di-pz``           chains scalar -> elastic -> dielectric ->
                                             piezoelectric (exp. 1), scalar -> elastic ->
                                             piezoelectric (exp. 2) and scalar -> dielectric ->
                                             piezoelectric (exp. 3); the first link of each
                                             chain is the scalar -> tensor run
                                             ``scalar-tensor/{scalar}-{elastic,dielectric}-
                                             {arch}``, not trained twice
===========================================  ==================================================

The fine-tuning keeps training the transferred network at the head's rate (``--backbone-lr`` =
``--lr``), as the paper does ("while continuing to train the transferred graph network").
``--targets`` selects the direct and scalar -> tensor runs; the chains always hold all three
tensors.

``run`` trains what is missing through the library (:mod:`crystensor.train.run`) with exactly
the settings of the commands above, in dependency order (direct, scalar pretraining,
scalar -> tensor, chains). A run whose ``metrics.json`` exists is skipped; one with ``run.json``
but no ``metrics.json`` is resumed (refused if its recorded settings differ); one that another
process is training right now is left alone (a ``crystensor`` command, found by its command
line, or another ``run`` of this script, which holds ``RUN_DIR.lock`` while it trains a run), so
several ``run`` invocations can share the work. ``--dry-run`` prints the plan.
``report`` reads every ``metrics.json`` and prints each figure's table with our number beside
the paper's (``--markdown FILE`` writes the same tables as Markdown).

Usage::

    python benchmarks/paper_experiments.py run --dry-run
    python benchmarks/paper_experiments.py run --experiments direct --archs seconv
    python benchmarks/paper_experiments.py run --scalars band-gap --scalar-epochs 10
    python benchmarks/paper_experiments.py report --markdown runs/paper/report.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crystensor.train.config import TrainConfig

ARCHS = ("segnn", "seconv", "setransformer")
ARCH_NAMES = {"segnn": "SEGNN", "seconv": "SEConv", "setransformer": "SETransformer"}
TARGETS = ("elastic", "dielectric", "piezoelectric")
SCALARS = ("formation-energy", "band-gap")
SCALAR_NAMES = {"formation-energy": "Formation energy", "band-gap": "Band gap"}
EXPERIMENTS = ("direct", "scalar-tensor", "chained")
SEED = 0
PAPER_MODEL = {"pooling": "mean"}  # the paper pools by the mean, train's default differs
FINETUNE_LR = 0.002
MISSING = "—"

# Chained stage -> (the stage it starts from, its target). "el" and "di" are the first links,
# the scalar -> tensor runs RUNS/scalar-tensor/{scalar}-{elastic,dielectric}-{arch}.
CHAINS: dict[str, tuple[str, str]] = {
    "el-di": ("el", "dielectric"),
    "el-di-pz": ("el-di", "piezoelectric"),
    "el-pz": ("el", "piezoelectric"),
    "di-pz": ("di", "piezoelectric"),
}
# The paper's chained experiments (section 7.3) and the stage whose piezoelectric MAE is Figure 6.
CHAIN_EXPERIMENTS = {
    1: ("el-di-pz", "scalar -> elastic -> dielectric -> piezoelectric"),
    2: ("el-pz", "scalar -> elastic -> piezoelectric"),
    3: ("di-pz", "scalar -> dielectric -> piezoelectric"),
}


def _per_arch(segnn: float, seconv: float, setransformer: float) -> dict[str, float]:
    return {"segnn": segnn, "seconv": seconv, "setransformer": setransformer}


_PIEZO = _per_arch(0.170, 0.170, 0.171)
# The paper's published numbers: test MAE averaged over the Voigt components.
PAPER: dict[str, Any] = {
    "Figure 4": {  # direct prediction
        "elastic": _per_arch(8.139, 7.689, 7.941),
        "dielectric": _per_arch(4.82, 4.702, 4.718),
        "piezoelectric": _per_arch(0.170, 0.170, 0.1714),
    },
    "Figure 5": {  # scalar pretraining -> tensor target
        "formation-energy": {
            "elastic": _per_arch(8.19, 7.98, 7.65),
            "dielectric": _per_arch(5.02, 4.52, 4.41),
            "piezoelectric": _PIEZO,
        },
        "band-gap": {
            "elastic": _per_arch(8.39, 7.87, 8.34),
            "dielectric": _per_arch(4.74, 4.35, 4.56),
            "piezoelectric": _PIEZO,
        },
    },
    "Figure 6": {  # chained pretraining, piezoelectric MAE of experiments 1-3
        scalar: {experiment: _PIEZO for experiment in CHAIN_EXPERIMENTS} for scalar in SCALARS
    },
    "Figure 7": {  # chained experiment 1, dielectric stage
        "formation-energy": _per_arch(4.67, 4.69, 4.45),
        "band-gap": _per_arch(4.66, 4.64, 4.74),
    },
    "section 6.1": {  # approximate dataset sizes (Materials Project)
        "elastic": "~12k",
        "dielectric": "~6k",
        "piezoelectric": "~3k",
        "formation-energy": "~150k",
        "band-gap": "~150k",
    },
}


# ------------------------------------------------------------------------------------------
# Run directories and the plan
# ------------------------------------------------------------------------------------------


def direct_key(target: str, arch: str) -> str:
    return f"direct/{target}-{arch}"


def scalar_key(scalar: str, arch: str) -> str:
    return f"scalar/{scalar}-{arch}"


def scalar_tensor_key(scalar: str, target: str, arch: str) -> str:
    return f"scalar-tensor/{scalar}-{target}-{arch}"


def chained_key(scalar: str, arch: str, chain: str) -> str:
    return f"chained/{scalar}-{arch}/{chain}"


@dataclass(frozen=True)
class Stage:
    """One run directory: a fresh network (``preset`` set) or a fine-tuning of ``parent``."""

    key: str  # run directory relative to RUNS, e.g. "direct/elastic-segnn"
    run_dir: Path
    store: Path
    arch: str
    config: TrainConfig
    preset: str | None = None
    parent: Stage | None = None

    @property
    def start_from(self) -> Path | None:
        return None if self.parent is None else self.parent.run_dir / "best.pt"

    def command(self) -> list[str]:
        """The ``crystensor`` command line with the same settings."""
        c = self.config
        common = ["--epochs", str(c.epochs), "--patience", str(c.patience)]
        common += ["--batch-size", str(c.batch_size), "--seed", str(c.seed)]
        if self.parent is None:
            return [
                "crystensor", "train", "-d", str(self.store), "-o", str(self.run_dir),
                "--arch", self.arch, "--preset", str(self.preset), "--pooling", "mean",
                *common,
            ]  # fmt: skip
        return [
            "crystensor", "finetune", str(self.start_from), "-d", str(self.store),
            "-o", str(self.run_dir), *common, "--lr", repr(c.lr),
            "--backbone-lr", repr(c.backbone_lr),
        ]  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What ``run`` was asked to do."""

    stores: Path
    runs: Path
    experiments: tuple[str, ...] = EXPERIMENTS
    targets: tuple[str, ...] = TARGETS
    archs: tuple[str, ...] = ARCHS
    scalars: tuple[str, ...] = SCALARS
    epochs: int = 100
    patience: int = 30
    scalar_epochs: int = 10
    preset: str = "default"
    batch_size: int = 32


def plan(settings: Settings) -> list[Stage]:
    """Every stage the chosen experiments need, each after the one it starts from."""
    s = settings
    tensor = TrainConfig(epochs=s.epochs, patience=s.patience, batch_size=s.batch_size, seed=SEED)
    scalar_config = tensor.replace(epochs=s.scalar_epochs)
    finetune_config = tensor.replace(lr=FINETUNE_LR, backbone_lr=FINETUNE_LR)
    stages: dict[str, Stage] = {}

    def add(stage: Stage) -> Stage:
        if stage.parent is not None:
            add(stage.parent)
        return stages.setdefault(stage.key, stage)

    def fresh(key: str, store: str, arch: str, config: TrainConfig) -> Stage:
        return Stage(key, s.runs / key, s.stores / f"{store}.h5", arch, config, preset=s.preset)

    def tuned(key: str, target: str, parent: Stage) -> Stage:
        store = s.stores / f"{target}.h5"
        return Stage(key, s.runs / key, store, parent.arch, finetune_config, parent=parent)

    def scalar_tensor(scalar: str, target: str, arch: str) -> Stage:
        pre = fresh(scalar_key(scalar, arch), scalar, arch, scalar_config)
        return tuned(scalar_tensor_key(scalar, target, arch), target, pre)

    if "direct" in s.experiments:
        for target in s.targets:
            for arch in s.archs:
                add(fresh(direct_key(target, arch), target, arch, tensor))
    if "scalar-tensor" in s.experiments or "chained" in s.experiments:
        for scalar in s.scalars:
            for arch in s.archs:
                add(fresh(scalar_key(scalar, arch), scalar, arch, scalar_config))
    if "scalar-tensor" in s.experiments:
        for scalar in s.scalars:
            for target in s.targets:
                for arch in s.archs:
                    add(scalar_tensor(scalar, target, arch))
    if "chained" in s.experiments:
        for scalar in s.scalars:
            for arch in s.archs:
                built: dict[str, Stage] = {
                    "el": add(scalar_tensor(scalar, "elastic", arch)),
                    "di": add(scalar_tensor(scalar, "dielectric", arch)),
                }
                for chain, (start, target) in CHAINS.items():
                    built[chain] = add(
                        tuned(chained_key(scalar, arch, chain), target, built[start])
                    )
    return list(stages.values())


# ------------------------------------------------------------------------------------------
# State of a run directory
# ------------------------------------------------------------------------------------------


def _crystensor_processes() -> list[tuple[int, Path, list[str]]]:
    """``(pid, cwd, argv)`` of the other processes whose command line mentions crystensor."""
    out = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [
                a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")
            ]
            if not any("crystensor" in a for a in argv):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        out.append((int(entry.name), cwd, [a for a in argv if a]))
    return out


def _busy(stage: Stage, processes: list[tuple[int, Path, list[str]]]) -> int | None:
    """The pid of a process with the stage's run directory on its command line (training it)."""
    target = stage.run_dir.resolve()
    for pid, cwd, argv in processes:
        for arg in argv:
            try:
                if "/" in arg and (cwd / arg).resolve() == target:
                    return pid
            except (OSError, RuntimeError):  # not a path
                continue
    return None


def settings_mismatch(stage: Stage) -> list[str]:
    """How the run's recorded plan (``run.json``) differs from the stage's settings."""
    plan_file = stage.run_dir / "run.json"
    if not plan_file.is_file():
        return []
    recorded = json.loads(plan_file.read_text())
    stages = recorded.get("stages") or [{}]
    final = stages[-1]
    problems = []
    if stage.parent is None:
        if recorded.get("mode") != "train" or len(stages) != 1 or recorded.get("start_from"):
            problems.append("not a single-stage train run")
        for key, want in (("arch", stage.arch), ("preset", stage.preset)):
            if recorded.get(key) != want:
                problems.append(f"{key} {recorded.get(key)!r} (want {want!r})")
        overrides = recorded.get("model_overrides") or {}
        # runs recorded before train's pooling default became per target pooled by the mean
        if overrides and {**PAPER_MODEL, **overrides} != _default_overrides(stage.store):
            problems.append(f"model overrides {overrides}")
    else:
        start = Path(recorded.get("start_from") or "")
        if recorded.get("mode") != "finetune" or start != stage.start_from.resolve():
            problems.append(f"starts from {start} (want {stage.start_from})")
    if Path(final.get("data", "")) != stage.store.resolve():
        problems.append(f"store {final.get('data')} (want {stage.store.resolve()})")
    train = final.get("train", {})
    recorded_config = {**TrainConfig().to_dict(), **train}  # settings added since: defaults
    for key, want in stage.config.to_dict().items():
        if recorded_config.get(key) != want:
            problems.append(f"{key} {recorded_config.get(key)!r} (want {want!r})")
    return problems


def _default_overrides(store: Path) -> dict[str, Any]:
    """What ``crystensor train`` records as the model overrides of a run of this script on
    ``store``: its defaults, with the paper's mean pooling; ``{}`` if the store cannot be read."""
    from crystensor.data.store import GraphStore
    from crystensor.train.run import default_model_overrides

    try:
        return {**default_model_overrides(GraphStore(store).kind), **PAPER_MODEL}
    except Exception:  # a missing store is reported by the plan; here it is only a mismatch
        return {}


def _lock_path(stage: Stage) -> Path:
    return stage.run_dir.with_name(stage.run_dir.name + ".lock")


@contextlib.contextmanager
def _training_lock(stage: Stage) -> Iterator[bool]:
    """Hold ``RUN_DIR.lock`` (``flock``) while this process trains ``stage``; yields False,
    holding nothing, if another process (say another instance of this script, which trains
    in-process, so its command line does not name the run) holds it."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        yield True
        return
    path = _lock_path(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            mine = True
        except BlockingIOError:
            mine = False
        try:
            yield mine
        finally:
            if mine:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(stage: Stage) -> bool:
    """Another process holds the stage's training lock."""
    if not _lock_path(stage).is_file():
        return False
    with _training_lock(stage) as mine:
        return not mine


def status(stage: Stage, processes: list[tuple[int, Path, list[str]]]) -> str:
    """``done``, ``running`` (by another process), ``resume`` or ``start``."""
    if (stage.run_dir / "metrics.json").is_file():
        return "done"
    if _busy(stage, processes) is not None or _locked(stage):
        return "running"
    if (stage.run_dir / "run.json").is_file():
        return "resume"
    return "start"


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def _summary(metrics: dict[str, Any]) -> str:
    test = metrics.get("test") or metrics.get("val") or {}
    units = f" {test['units']}" if test.get("units") else ""
    text = f"test MAE {_fmt(test.get('mae'))}{units}"
    ewt = (test.get("ewt") or {}).get("25")
    if ewt is not None:
        text += f", EwT25 {100 * ewt:.1f} %"
    text += f", val MAE {_fmt((metrics.get('val') or {}).get('mae'))}"
    return text + f" (best epoch {metrics.get('best_epoch')} of {metrics.get('epochs_run')})"


# ------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------


def _epoch_reporter(key: str):
    from crystensor.train.loop import Reporter

    class EpochLines(Reporter):
        def stage_start(self, name, epochs, start_epoch, batches):
            self.epochs = epochs

        def epoch_end(self, record):
            print(
                f"  {key} epoch {record['epoch']}/{self.epochs}: train loss "
                f"{record['train_loss']:.4g}, val MAE {record['val_mae']:.4g} "
                f"({record['seconds']:.0f} s)",
                flush=True,
            )

    return EpochLines()


def _execute(stage: Stage, state: str, verbose: bool) -> dict[str, Any]:
    from crystensor.train import run

    reporter = _epoch_reporter(stage.key) if verbose else None
    if state == "resume":
        result = run.resume(stage.run_dir, reporter=reporter)
    elif stage.parent is None:
        result = run.train(
            stage.store,
            stage.run_dir,
            arch=stage.arch,
            preset_name=str(stage.preset),
            model_overrides=dict(PAPER_MODEL),
            config=stage.config,
            reporter=reporter,
            command=stage.command(),
        )
    else:
        result = run.finetune(
            stage.start_from,
            stage.store,
            stage.run_dir,
            config=stage.config,
            reporter=reporter,
            command=stage.command(),
        )
    return result.final.metrics


def print_plan(stages: Sequence[Stage], out: Callable[[str], None] = print) -> dict[str, str]:
    """One line per stage: its state and the command; returns ``{key: state}``."""
    processes = _crystensor_processes()
    states: dict[str, str] = {}
    for stage in stages:
        state = status(stage, processes)
        note = ""
        if state == "running":
            note = f" (pid {_busy(stage, processes)})"
        elif state == "start" and stage.parent is not None and states[stage.parent.key] != "done":
            note = f" (after {stage.parent.key})"
        if not stage.store.is_file():
            note += f" [store {stage.store} missing]"
        mismatch = settings_mismatch(stage)
        if mismatch:
            note += f" [settings differ: {'; '.join(mismatch)}]"
        states[stage.key] = state
        out(f"{state:8s} {stage.key}{note}")
        if state != "done":
            out(f"         {' '.join(stage.command())}")
    counts = {s: list(states.values()).count(s) for s in ("done", "running", "resume", "start")}
    out(", ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(stages)} runs)")
    return states


def run_plan(stages: Sequence[Stage], *, verbose: bool = False) -> int:
    """Train every stage that is not done; returns the number that failed or were blocked."""
    unfinished: set[str] = set()
    for stage in stages:
        state = status(stage, _crystensor_processes())
        if state == "done":
            mismatch = settings_mismatch(stage)
            note = f" [recorded settings differ: {'; '.join(mismatch)}]" if mismatch else ""
            metrics = _read_metrics(stage.run_dir)
            print(f"{stage.key}: done earlier, {_summary(metrics)}{note}", flush=True)
            continue
        if stage.parent is not None and stage.parent.key in unfinished:
            print(f"{stage.key}: skipped, {stage.parent.key} did not finish", flush=True)
            unfinished.add(stage.key)
            continue
        if state == "running":
            print(f"{stage.key}: another process is training it; left alone", flush=True)
            unfinished.add(stage.key)
            continue
        mismatch = settings_mismatch(stage)
        if mismatch:
            print(
                f"{stage.key}: its run.json has other settings ({'; '.join(mismatch)}); move "
                f"{stage.run_dir} away to train it with these",
                flush=True,
            )
            unfinished.add(stage.key)
            continue
        with _training_lock(stage) as mine:
            if not mine:  # another instance took it since the status check
                print(f"{stage.key}: another process is training it; left alone", flush=True)
                unfinished.add(stage.key)
                continue
            print(f"{stage.key}: {'resuming' if state == 'resume' else 'starting'}", flush=True)
            t0 = time.perf_counter()
            try:
                metrics = _execute(stage, state, verbose)
            except Exception as exc:  # one failed run must not stop the runs that need none
                traceback.print_exc()
                print(f"{stage.key}: FAILED ({type(exc).__name__}: {exc})", flush=True)
                unfinished.add(stage.key)
                continue
        minutes = (time.perf_counter() - t0) / 60
        print(f"{stage.key}: finished in {minutes:.1f} min, {_summary(metrics)}", flush=True)
    return len(unfinished)


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        """A Markdown pipe table, padded so that it also reads as plain text."""
        cells = [self.header, *self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.header))]

        def line(row: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

        out = [f"## {self.title}", "", line(self.header)]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += [line(row) for row in self.rows]
        if self.notes:
            out += ["", *[f"- {note}" for note in self.notes]]
        return "\n".join(out) + "\n"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return MISSING
    return f"{value:.{digits}g}"


def _paper(value: float) -> str:
    """A paper number as printed: up to 4 significant digits, at least 3 (0.170, 8.139)."""
    text = f"{value:.4g}"
    digits = len(text.replace(".", "").replace("-", "").lstrip("0"))
    return text if digits >= 3 else f"{value:#.3g}"


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f} %"


def load_all_metrics(runs: Path) -> dict[str, dict[str, Any]]:
    """``{run key: metrics}`` of every finished run under ``runs``."""
    if not runs.is_dir():
        return {}
    return {
        path.parent.relative_to(runs).as_posix(): json.loads(path.read_text())
        for path in sorted(runs.rglob("metrics.json"))
    }


def _test_mae(metrics: dict[str, dict[str, Any]], key: str) -> float | None:
    m = metrics.get(key)
    return None if m is None else (m.get("test") or {}).get("mae")


def _with_direct(value: float | None, direct: float | None) -> str:
    return f"{_fmt(value)} ({_fmt(direct)})"


def _paper_with_direct(value: float, target: str, arch: str) -> str:
    return f"{_paper(value)} ({_paper(PAPER['Figure 4'][target][arch])})"


def _target_label(target: str) -> str:
    from crystensor.tensors.kinds import get_property

    units = get_property(target).units
    return f"{target} [{units}]" if units else target


_UNIT_NOTE = (
    "The paper labels the elastic MAE 'log10(GPa)', but its values are GPa-scale MAE of the "
    "components; ours are in GPa."
)
_MAE_NOTE = (
    "ours: MAE on our test split, averaged over all Voigt components (metrics['test']['mae']); "
    "the paper reports the 'MAE averaged over components' on held-out data."
)


def figure4(metrics: dict[str, dict[str, Any]]) -> Table:
    header = ["target"]
    for arch in ARCHS:
        name = ARCH_NAMES[arch]
        header += [f"{name} ours", f"{name} paper", f"{name} EwT25", f"{name} val MAE"]
    table = Table("Figure 4: direct prediction (test MAE)", header, notes=[_MAE_NOTE, _UNIT_NOTE])
    for target in TARGETS:
        row = [_target_label(target)]
        for arch in ARCHS:
            m = metrics.get(direct_key(target, arch)) or {}
            test, val = m.get("test") or {}, m.get("val") or {}
            row += [
                _fmt(test.get("mae")),
                _paper(PAPER["Figure 4"][target][arch]),
                _pct((test.get("ewt") or {}).get("25")),
                _fmt(val.get("mae")),
            ]
        table.rows.append(row)
    return table


def _pair_header(first: list[str], archs: Sequence[str] = ARCHS) -> list[str]:
    header = list(first)
    for arch in archs:
        header += [f"{ARCH_NAMES[arch]} ours (direct)", f"{ARCH_NAMES[arch]} paper (direct)"]
    return header


_PAREN_NOTE = "In parentheses: direct prediction (Figure 4) without pretraining, ours and paper's."


def figure5(
    metrics: dict[str, dict[str, Any]],
    archs: Sequence[str] = ARCHS,
    scalars: Sequence[str] = SCALARS,
) -> Table:
    table = Table(
        "Figure 5: scalar pretraining -> tensor target (test MAE)",
        _pair_header(["pretraining", "target"], archs),
        notes=[
            _PAREN_NOTE,
            "The paper pretrained on all of the scalar data; our scalar runs train on the 70 % "
            "training split of the scalar store.",
            _UNIT_NOTE,
        ],
    )
    for scalar in scalars:
        for target in TARGETS:
            row = [SCALAR_NAMES[scalar], _target_label(target)]
            for arch in archs:
                direct = _test_mae(metrics, direct_key(target, arch))
                ours = _test_mae(metrics, scalar_tensor_key(scalar, target, arch))
                paper = PAPER["Figure 5"][scalar][target][arch]
                row += [
                    _with_direct(ours, direct),
                    _paper_with_direct(paper, target, arch),
                ]
            table.rows.append(row)
    return table


def figure6(
    metrics: dict[str, dict[str, Any]],
    archs: Sequence[str] = ARCHS,
    scalars: Sequence[str] = SCALARS,
) -> Table:
    table = Table(
        "Figure 6: chained pretraining, piezoelectric test MAE [C/m^2]",
        _pair_header(["scalar", "experiment"], archs),
        notes=[f"Exp. {n}: {text}" for n, (_, text) in CHAIN_EXPERIMENTS.items()] + [_PAREN_NOTE],
    )
    for scalar in scalars:
        for number, (chain, _) in CHAIN_EXPERIMENTS.items():
            row = [SCALAR_NAMES[scalar], f"Exp. {number}"]
            for arch in archs:
                direct = _test_mae(metrics, direct_key("piezoelectric", arch))
                ours = _test_mae(metrics, chained_key(scalar, arch, chain))
                paper = PAPER["Figure 6"][scalar][number][arch]
                row += [
                    _with_direct(ours, direct),
                    _paper_with_direct(paper, "piezoelectric", arch),
                ]
            table.rows.append(row)
    return table


def figure7(
    metrics: dict[str, dict[str, Any]],
    archs: Sequence[str] = ARCHS,
    scalars: Sequence[str] = SCALARS,
) -> Table:
    table = Table(
        "Figure 7: chained experiment 1, dielectric stage (scalar -> elastic -> dielectric), "
        "test MAE",
        _pair_header(["pretraining"], archs),
        notes=[_PAREN_NOTE],
    )
    for scalar in scalars:
        row = [SCALAR_NAMES[scalar]]
        for arch in archs:
            direct = _test_mae(metrics, direct_key("dielectric", arch))
            ours = _test_mae(metrics, chained_key(scalar, arch, "el-di"))
            paper = PAPER["Figure 7"][scalar][arch]
            row += [
                _with_direct(ours, direct),
                _paper_with_direct(paper, "dielectric", arch),
            ]
        table.rows.append(row)
    return table


def dataset_table(metrics: dict[str, dict[str, Any]]) -> Table:
    table = Table(
        "Datasets (graphs per split of our stores)",
        ["store", "target", "train", "val", "test", "total", "paper (section 6.1)"],
        notes=["The paper's split is also 70/15/15; ours is by material id (see README)."],
    )
    seen: dict[str, dict[str, Any]] = {}
    for m in metrics.values():
        seen.setdefault(m.get("store", "?"), m)
    order = {f"{t}.h5": i for i, t in enumerate((*TARGETS, *SCALARS))}
    for store in sorted(seen, key=lambda s: (order.get(s, len(order)), s)):
        m = seen[store]
        counts = m.get("counts") or {}
        split = [counts.get(k) for k in ("train", "val", "test")]
        total = sum(split) if all(n is not None for n in split) else None
        table.rows.append(
            [store, str(m.get("target", "?"))]
            + [MISSING if n is None else str(n) for n in (*split, total)]
            + [PAPER["section 6.1"].get(m.get("target"), MISSING)]
        )
    return table


def runs_table(runs: Path, metrics: dict[str, dict[str, Any]]) -> Table:
    table = Table(
        "Runs", ["run", "target", "arch", "best epoch", "epochs run", "stopped early", "minutes"]
    )
    order = ("direct", "scalar", "scalar-tensor", "chained")

    def position(key: str) -> tuple[int, str]:
        first = key.split("/", 1)[0]
        return (order.index(first) if first in order else len(order), key)

    for key in sorted(metrics, key=position):
        m = metrics[key]
        history_file = runs / key / "history.json"
        minutes = None
        if history_file.is_file():
            minutes = sum(h.get("seconds", 0) for h in json.loads(history_file.read_text())) / 60
        table.rows.append(
            [
                key,
                str(m.get("target")),
                ARCH_NAMES.get(m.get("arch"), str(m.get("arch"))),
                str(m.get("best_epoch")),
                str(m.get("epochs_run")),
                "yes" if m.get("stopped_early") else "no",
                MISSING if minutes is None else f"{minutes:.1f}",
            ]
        )
    return table


def machine_lines() -> list[str]:
    import torch

    import crystensor

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"crystensor {crystensor.__version__}, Python {platform.python_version()}"
    ]


def report(
    runs: Path,
    markdown: Path | None = None,
    archs: Sequence[str] = ARCHS,
    scalars: Sequence[str] = SCALARS,
) -> str:
    """Every figure's table from the ``metrics.json`` under ``runs``; printed and returned.

    ``archs`` and ``scalars`` select the columns and rows of the pretraining tables (Figures
    5-7); Figure 4 always shows the three architectures.
    """
    metrics = load_all_metrics(runs)
    parts = [
        "# The paper's experiments on our data",
        "",
        f"runs: {runs} ({len(metrics)} finished)",
        *machine_lines(),
        "",
    ]
    tables = [figure4(metrics)]
    tables += [f(metrics, archs, scalars) for f in (figure5, figure6, figure7)]
    tables += [dataset_table(metrics), runs_table(runs, metrics)]
    text = "\n".join(parts) + "\n" + "\n".join(t.render() for t in tables)
    print(text)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)
    return text


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"{','.join(bad) or repr(text)}: choose from {','.join(allowed)}"
            )
        return values

    return parse


def _list_help(allowed: Sequence[str]) -> str:
    return f"comma-separated, from {','.join(allowed)} (default: all)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the missing runs (or --dry-run: show the plan)")
    r.add_argument("--stores", type=Path, default=Path("data"), help="folder of the stores")
    r.add_argument("--runs", type=Path, default=Path("runs/paper"), help="folder of the runs")
    r.add_argument(
        "--experiments",
        type=_choices(EXPERIMENTS),
        default=EXPERIMENTS,
        help=_list_help(EXPERIMENTS),
    )
    r.add_argument("--targets", type=_choices(TARGETS), default=TARGETS, help=_list_help(TARGETS))
    r.add_argument("--archs", type=_choices(ARCHS), default=ARCHS, help=_list_help(ARCHS))
    r.add_argument("--scalars", type=_choices(SCALARS), default=SCALARS, help=_list_help(SCALARS))
    r.add_argument("--epochs", type=int, default=100, help="epochs of every tensor run")
    r.add_argument("--patience", type=int, default=30, help="early-stopping patience (all runs)")
    r.add_argument("--scalar-epochs", type=int, default=10, help="epochs of scalar pretraining")
    r.add_argument("--preset", choices=("small", "default"), default="default")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    r.add_argument("-v", "--verbose", action="store_true", help="one line per epoch")
    p = sub.add_parser("report", help="the figures' tables from the finished runs")
    p.add_argument("--runs", type=Path, default=Path("runs/paper"))
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    p.add_argument("--archs", type=_choices(ARCHS), default=ARCHS, help="columns of Figures 5-7")
    p.add_argument("--scalars", type=_choices(SCALARS), default=SCALARS, help="rows of Figures 5-7")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        report(args.runs, args.markdown, args.archs, args.scalars)
        return 0
    settings = Settings(
        stores=args.stores,
        runs=args.runs,
        experiments=args.experiments,
        targets=args.targets,
        archs=args.archs,
        scalars=args.scalars,
        epochs=args.epochs,
        patience=args.patience,
        scalar_epochs=args.scalar_epochs,
        preset=args.preset,
        batch_size=args.batch_size,
    )
    stages = plan(settings)
    if args.dry_run:
        print_plan(stages)
        return 0
    missing = sorted({str(s.store) for s in stages if not s.store.is_file()})
    if missing:
        print(
            f"missing store(s) {', '.join(missing)}: build them with examples/build_stores.sh "
            "or pass --stores",
            file=sys.stderr,
        )
        return 2
    failed = run_plan(stages, verbose=args.verbose)
    print(
        f"{len(stages) - failed} of {len(stages)} runs finished; tables: python "
        f"benchmarks/paper_experiments.py report --runs {settings.runs}",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
