"""Training and inference speed of every architecture and preset on realistic crystal graphs.

For each architecture x preset (each in its own subprocess, so peak memory is its own):

* training throughput: structures/s over full epochs (forward + backward + Adam step, batches
  of 32, MSE on the irreps against fixed random targets). "best" sums each batch's fastest
  time over ``--repeats`` epochs (robust when other processes share the cores), "med" is the
  median epoch;
* inference throughput: structures/s, forward only under ``torch.inference_mode``;
* ``torch.compile(dynamic=True)`` (``--modes eager,compile``): compile time of the first
  training step and of the first inference call, then the same throughputs; a failure is
  reported, not raised;
* peak memory: ``ru_maxrss`` of the worker after training (whole process, data included) and
  the increase over the process before the model was built.

Graphs: the 1181 structures of ``../shared/data/matminer-2018/elastic_tensor.csv.gz``
(``poscar`` column, cutoff 5 Angstrom) when present, else synthetic random cells of the same
size distribution. Atom features come from :func:`crystensor.data.elements.node_features`
(a fixed random table per element if that module is missing: the cost does not depend on the
values). Batches are collated
once before timing. The machine's load average is printed with every row: other processes on
the same cores slow everything down, so compare rows measured at similar load.

Usage::

    python benchmarks/model_speed.py                      # all archs, small + default, eager
    python benchmarks/model_speed.py --modes eager,compile --presets default
    python benchmarks/model_speed.py --archs seconv --json speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ELASTIC_CSV = REPO.parent / "shared" / "data" / "matminer-2018" / "elastic_tensor.csv.gz"
try:  # the project's featurizer (the paper's atom features), when present
    from crystensor.data.elements import FEATURE_DIM as NUM_FEATURES
    from crystensor.data.elements import node_features as _node_features
except ImportError:  # pragma: no cover - older checkouts
    NUM_FEATURES, _node_features = 135, None
CUTOFF = 5.0


def _graph_to_data(graph, table: np.ndarray):
    from torch_geometric.data import Data

    if _node_features is not None:
        x = np.asarray(_node_features(graph.atomic_numbers))
    else:
        x = table[graph.atomic_numbers]
    return Data(
        x=torch.tensor(x, dtype=torch.float32),
        z=torch.tensor(graph.atomic_numbers),
        pos=torch.tensor(graph.positions, dtype=torch.float32),
        cell=torch.tensor(graph.cell, dtype=torch.float32).unsqueeze(0),
        edge_index=torch.tensor(graph.edge_index),
        edge_shift=torch.tensor(graph.edge_shift),
        num_nodes=graph.num_nodes,
    )


def _synthetic_structures(n: int, rng: np.random.Generator):
    from pymatgen.core import Lattice, Structure

    structures = []
    while len(structures) < n:
        n_atoms = int(rng.choice([2, 4, 6, 8, 10, 12, 16, 20, 24]))
        volume = n_atoms * rng.uniform(12.0, 22.0)
        lengths = rng.uniform(0.8, 1.2, size=3) * volume ** (1 / 3)
        angles = rng.uniform(75, 105, size=3)
        lattice = Lattice.from_parameters(*lengths, *angles)
        coords = []
        while len(coords) < n_atoms:
            trial = rng.random(3)
            if all(lattice.get_distance_and_image(trial, c)[0] > 1.8 for c in coords):
                coords.append(trial)
        species = rng.integers(3, 84, size=n_atoms).tolist()
        structures.append(Structure(lattice, species, coords))
    return structures


def load_graphs(max_structures: int | None, log) -> tuple[list, str]:
    """PyG ``Data`` objects of the matminer elastic structures (or synthetic ones)."""
    from crystensor.data.graph import build_graph

    rng = np.random.default_rng(0)
    table = rng.normal(size=(119, NUM_FEATURES))
    if ELASTIC_CSV.is_file():
        import pandas as pd
        from pymatgen.core import Structure

        frame = pd.read_csv(ELASTIC_CSV, skiprows=1)
        poscars = frame["poscar"].tolist()[:max_structures]
        structures = [Structure.from_str(p, fmt="poscar") for p in poscars]
        source = f"matminer elastic_tensor ({len(structures)} structures)"
    else:
        structures = _synthetic_structures(max_structures or 1181, rng)
        source = f"synthetic random cells ({len(structures)} structures; {ELASTIC_CSV} absent)"
    log(f"building graphs: {source}")
    graphs = [build_graph(s, CUTOFF, auto_extend=True) for s in structures]
    return [_graph_to_data(g, table) for g in graphs], source


def _batches(data: list, batch_size: int, seed: int) -> list:
    from torch_geometric.data import Batch

    order = np.random.default_rng(seed).permutation(len(data))
    return [
        Batch.from_data_list([data[i] for i in order[k : k + batch_size]])
        for k in range(0, len(order), batch_size)
    ]


class _Epochs(NamedTuple):
    best: float  # sum over batches of each batch's fastest time (least disturbed)
    median: float  # median wall time of a whole epoch


def _timed_epochs(step, num_batches: int, repeats: int) -> _Epochs:
    """Run ``step(k)`` for every batch ``k``, ``repeats`` times, timing each call."""
    times = np.zeros((repeats, num_batches))
    for r in range(repeats):
        for k in range(num_batches):
            start = time.perf_counter()
            step(k)
            times[r, k] = time.perf_counter() - start
    return _Epochs(float(times.min(axis=0).sum()), float(np.median(times.sum(axis=1))))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(args: argparse.Namespace) -> dict:
    """Measure one architecture x preset x mode; returns a JSON-able row."""
    torch.set_num_threads(args.threads)
    from crystensor.models import build_model, preset

    data = torch.load(args.graphs, weights_only=False)
    batches = _batches(data, args.batch_size, seed=0)
    n_structures = sum(b.num_graphs for b in batches)
    rss_before = _rss_mb()
    torch.manual_seed(0)
    overrides = {}
    for item in args.set:
        field, _, value = item.partition("=")
        overrides[field] = json.loads(value) if value[:1].isdigit() or value[:1] == "-" else value
    config = preset(
        args.arch, args.preset, num_node_features=NUM_FEATURES, target="elastic", **overrides
    )
    row_overrides = {"overrides": overrides} if overrides else {}
    model = build_model(config)
    row = {
        "arch": args.arch,
        "preset": args.preset,
        "mode": args.mode,
        "threads": args.threads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "structures": n_structures,
        "edges_per_batch": float(np.mean([b.edge_index.shape[1] for b in batches])),
        "load_before": os.getloadavg()[0],
        **row_overrides,
    }
    targets = [torch.randn(b.num_graphs, model.head.irreps_out.dim) for b in batches]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    forward = model
    if args.mode == "compile":
        forward = torch.compile(model, dynamic=True)

    def train_step(batch, target) -> None:
        loss = torch.nn.functional.mse_loss(forward(batch)["irreps"], target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if args.mode == "compile":
        start = time.perf_counter()
        train_step(batches[0], targets[0])
        row["compile_train_s"] = time.perf_counter() - start
    for batch, target in list(zip(batches, targets, strict=True))[: args.warmup]:
        train_step(batch, target)
    epochs = _timed_epochs(lambda k: train_step(batches[k], targets[k]), len(batches), args.repeats)
    row["train_epoch_s"] = epochs.best
    row["train_per_s"] = n_structures / epochs.best
    row["train_per_s_median"] = n_structures / epochs.median
    row["peak_rss_mb"] = _rss_mb()
    row["peak_rss_increase_mb"] = row["peak_rss_mb"] - rss_before

    model.eval()
    with torch.inference_mode():
        if args.mode == "compile":
            forward = torch.compile(model, dynamic=True)
            start = time.perf_counter()
            forward(batches[0])
            row["compile_infer_s"] = time.perf_counter() - start
        for batch in batches[: args.warmup]:
            forward(batch)
        passes = _timed_epochs(lambda k: forward(batches[k]), len(batches), args.repeats)
    row["infer_per_s"] = n_structures / passes.best
    row["infer_per_s_median"] = n_structures / passes.median
    row["load_after"] = os.getloadavg()[0]
    return row


def _table(rows: list[dict]) -> str:
    head = (
        f"{'arch':<14}{'preset':<9}{'mode':<9}{'params':>8}{'train/s':>9}{'(med)':>7}"
        f"{'epoch s':>9}{'infer/s':>9}{'(med)':>7}{'peak MB':>9}{'+MB':>7}{'compile s':>11}"
        f"{'load':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['arch']:<14}{r['preset']:<9}{r['mode']:<9}  failed: {r['error']}")
            continue
        compile_s = (
            f"{r['compile_train_s']:.0f}+{r['compile_infer_s']:.0f}"
            if "compile_train_s" in r
            else "-"
        )
        lines.append(
            f"{r['arch']:<14}{r['preset']:<9}{r['mode']:<9}{r['parameters']:>8}"
            f"{r['train_per_s']:>9.1f}{r['train_per_s_median']:>7.1f}{r['train_epoch_s']:>9.1f}"
            f"{r['infer_per_s']:>9.0f}{r['infer_per_s_median']:>7.0f}{r['peak_rss_mb']:>9.0f}"
            f"{r['peak_rss_increase_mb']:>7.0f}{compile_s:>11}"
            f"{r['load_before']:>5.1f}/{r['load_after']:<4.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="segnn,seconv,setransformer")
    parser.add_argument("--presets", default="small,default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per measurement")
    parser.add_argument("--warmup", type=int, default=4, help="untimed batches first")
    parser.add_argument("--max-structures", type=int, default=None)
    parser.add_argument(
        "--modes", default="eager", help="comma-separated: eager, compile (torch.compile)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field of every measured preset, e.g. --set channels=24",
    )
    # internal: one measurement in this process
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--graphs", help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="eager", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    data, source = load_graphs(args.max_structures, log)
    modes = args.modes.split(",")
    unknown = set(modes) - {"eager", "compile"}
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; use eager and/or compile")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs_file = Path(tmp) / "graphs.pt"
        torch.save(data, graphs_file)
        for preset_name in args.presets.split(","):
            for arch in args.archs.split(","):
                for mode in modes:
                    log(f"measuring {arch} / {preset_name} / {mode} ...")
                    cmd = [
                        sys.executable,
                        __file__,
                        "--worker",
                        f"--graphs={graphs_file}",
                        f"--arch={arch}",
                        f"--preset={preset_name}",
                        f"--mode={mode}",
                        f"--threads={args.threads}",
                        f"--batch-size={args.batch_size}",
                        f"--repeats={args.repeats}",
                        f"--warmup={args.warmup}",
                        *[f"--set={item}" for item in args.set],
                    ]
                    row = {"arch": arch, "preset": preset_name, "mode": mode}
                    try:
                        done = subprocess.run(
                            cmd, capture_output=True, text=True, timeout=args.timeout, check=False
                        )
                        if done.returncode == 0:
                            row = json.loads(done.stdout.strip().splitlines()[-1])
                        else:
                            row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
                    except subprocess.TimeoutExpired:
                        row["error"] = f"timeout after {args.timeout:.0f} s"
                    rows.append(row)
                    log(_table([row]).splitlines()[-1])
    print(f"data: {source}; batch {args.batch_size}; {args.threads} threads")
    print(f"torch {torch.__version__}; load = 1-min load average before/after each row")
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"source": source, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
