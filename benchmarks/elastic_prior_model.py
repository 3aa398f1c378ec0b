"""Elastic tensors with a physics prior (issue 16, part 4): prior alone, network, prior + network.

On the elastic store (``data/elastic-shipped.h5``) and each split (``family``, ``random``; seed
0), prints validation and test MAE (all 36 Voigt entries), test MAE over the 21 independent
ones, median relative Frobenius error, EwT25 / EwT10 and seconds per structure of

* **prior alone**: SevenNet-0's clamped-ion stiffness at the stored (DFT) geometry, from the
  store's prior cache (:mod:`crystensor.data.prior_cache`; built if missing, which takes
  20-60 min on one core), scored on the graphs it exists for (``n`` says how many);
* **native**: the SEGNN of ``benchmarks/backbone_comparison.py`` (Huber loss, at most 40
  epochs, patience 13, seed 0);
* **prior + network**: the same with ``--prior sevennet-0`` (:mod:`crystensor.nn.prior`).

Networks are trained with ``python -m crystensor train`` (one run directory per cell under
``--runs``, skipped when its ``metrics.json`` exists, resumed when its ``run.json`` does). The
metrics are those training reports (:func:`crystensor.train.metrics.tensor_metrics`), the prior's
computed with the same function. Seconds per structure: the network's forward pass on the test
split (batch 32, one thread, after one warm-up batch); the prior's median time per structure
when the cache was built (one torch thread per process), added for prior + network.

    .venv/bin/python benchmarks/elastic_prior_model.py --data data --runs runs/prior \\
        [--splits family random] [--models prior-alone native prior] [--epochs 40]
        [--only-table] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tables import HEAD, figures, row

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STORE = "elastic-shipped.h5"
MODELS = {  # the pooling of the runs in RESULTS.md (train's elastic default is now density)
    "native": ["--pooling", "mean"],
    "prior": ["--prior", "sevennet-0", "--pooling", "mean"],
}


def train_cell(data: Path, runs: Path, split: str, model: str, epochs: int) -> Path:
    """Train one network unless its metrics exist; returns the run directory."""
    run_dir = runs / f"elastic-{split}-{model}"
    if (run_dir / "metrics.json").exists():
        return run_dir
    command = [sys.executable, "-m", "crystensor", "-q", "train"]
    if (run_dir / "run.json").exists():
        command += ["--resume", str(run_dir)]
    else:
        command += [
            "-d", str(data / STORE), "-o", str(run_dir), "--arch", "segnn", "--split", split,
            "--epochs", str(epochs), "--patience", str(max(5, epochs // 3)), "--seed", "0",
            "--loss-function", "huber", *MODELS[model],
        ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    return run_dir


def network_summary(run_dir: Path, store_path: Path, prior_seconds: float | None) -> dict | None:
    """Figures of a finished run, and its seconds per test structure."""
    path = run_dir / "metrics.json"
    if path.exists():
        metrics = json.loads(path.read_text())
        history = json.loads((run_dir / "history.json").read_text())
        out: dict[str, Any] = {"epochs": len(history), "best_epoch": metrics["best_epoch"]}
        for split in ("val", "test"):
            if metrics.get(split):
                out[split] = figures(metrics[split])
    elif (run_dir / "best.pt").exists() and (run_dir / "last.pt").exists():
        out = unfinished_summary(run_dir, store_path)
    else:
        return None
    network = forward_seconds(run_dir / "best.pt", store_path)
    out["seconds_network"] = network
    out["seconds"] = network + (prior_seconds or 0.0)
    return out


def unfinished_summary(run_dir: Path, store_path: Path) -> dict[str, Any]:
    """A run stopped before its last epoch: its best weights so far scored on the validation
    and test graphs of its split (``epochs`` is then ``"N stopped"``)."""
    from crystensor.checkpoint import load_checkpoint
    from crystensor.evaluation import evaluate_store

    last = load_checkpoint(run_dir / "last.pt")
    best = load_checkpoint(run_dir / "best.pt")
    epochs = len(last.training.get("history", []))
    out: dict[str, Any] = {
        "epochs": f"{epochs} stopped",
        "best_epoch": best.training.get("epoch", "?"),
    }
    for split in ("val", "test"):
        out[split] = figures(
            evaluate_store(run_dir / "best.pt", store_path, split=split)["metrics"]
        )
    return out


def forward_seconds(checkpoint_path: Path, store_path: Path) -> float:
    """Median over batches of the network's seconds per structure on the test split."""
    import torch

    from crystensor.checkpoint import load_checkpoint
    from crystensor.data.dataset import GraphDataset
    from crystensor.data.store import GraphStore
    from crystensor.train.loop import _loader, _prior_fields

    torch.set_num_threads(1)
    ckpt = load_checkpoint(checkpoint_path)
    model = ckpt.build_model()
    store = GraphStore(store_path)
    test_ids = set(ckpt.split["test"])
    rows = [i for i, name in enumerate(store.ids) if name in test_ids]
    dataset = GraphDataset(
        store, indices=rows, in_memory=True, graph_fields=_prior_fields(model, store)
    )
    times = []
    with torch.no_grad():
        for batch in _loader(dataset, 32):
            start = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - start) / batch.num_graphs)
    # the first batch warms up
    return float(np.median(times[1:] if len(times) > 1 else times)) if times else float("nan")


def prior_alone(store_path: Path, split: str) -> dict[str, Any]:
    """The cached prior scored as a prediction on the split's validation and test graphs."""
    from crystensor.data.prior_cache import load_or_build
    from crystensor.data.store import GraphStore
    from crystensor.train.metrics import tensor_metrics

    store = GraphStore(store_path).use_split(split, 0)
    cache = load_or_build(store)
    true = store.read("target_cartesian")
    systems = [str(s) for s in store.read("crystal_system")]
    out: dict[str, Any] = {"epochs": "-", "best_epoch": "-"}
    for name in ("val", "test"):
        rows = [int(i) for i in store.split_indices(name) if cache.ok[i]]
        if not rows:
            continue
        pred = np.stack([cache.cartesian(i) for i in rows])
        m = tensor_metrics(pred, true[rows], "elastic", [systems[i] for i in rows])
        out[name] = figures(m)
        out[name]["missing"] = len(store.split_indices(name)) - len(rows)
    test = store.split_indices("test")
    out["seconds"] = float(np.nanmedian(cache.seconds[test]))
    out["seconds_all"] = float(np.nanmedian(cache.seconds))
    return out


def print_table(results: dict[str, Any]) -> None:
    print("\n" + HEAD.format(last="s/structure"))
    for key, r in results.items():
        split, model = key.split("|")
        if r is None:
            continue
        test = r.get("test", {})
        n = f" (n {test['n']})" if test.get("missing") else ""
        print(row(split, f"{model}{n}", r, r.get("seconds")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/prior"))
    parser.add_argument("--splits", nargs="+", default=["family", "random"])
    parser.add_argument(
        "--models", nargs="+", default=["prior-alone", *MODELS], choices=["prior-alone", *MODELS]
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--only-table", action="store_true", help="train nothing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    store_path = args.data / STORE
    results: dict[str, Any] = {}
    for split in args.splits:
        alone = prior_alone(store_path, split)
        if "prior-alone" in args.models:
            results[f"{split}|prior alone"] = alone
        for model in (m for m in args.models if m in MODELS):
            run_dir = args.runs / f"elastic-{split}-{model}"
            if not args.only_table:
                run_dir = train_cell(args.data, args.runs, split, model, args.epochs)
            extra = alone["seconds"] if model == "prior" else None
            name = "prior + network" if model == "prior" else model
            results[f"{split}|{name}"] = network_summary(run_dir, store_path, extra)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
