"""Speed of ``crystensor predict``: start-up of the command and batch throughput of the API.

Prints

1. the wall time of ``python -m crystensor predict ONE.POSCAR --model CKPT`` (this checkout's
   code) run as a subprocess, start-up (imports, loading the model) included (aim: < 3 s), and
   its CPU time (user + system);
2. the throughput of :meth:`crystensor.prediction.Predictor.predict_results` over the 1181 matminer
   elastic structures of ``../shared/data`` once the model is loaded (aim: > 200 structures/s),
   in wall time and in CPU time (this process plus the processes it forks), shared between
   processes as ``predict_results`` does and in this process alone, with the CPU time split into
   graph building, the network (on all threads and on one, as each forked process runs it), the
   symmetry search (moyo, which predict uses, and spglib with 5 degrees for comparison), and
   the point group (moyo's search included) + projection + derived properties.

On a machine shared with other jobs the wall times are inflated (and a job in another session
gets as much CPU as this whole benchmark): compare CPU times, and quote the load printed.

``--model`` defaults to the shipped elastic model; without one, an untrained checkpoint of the
``default`` preset of ``--arch`` is written to a temporary folder (the speed does not depend on
the weights).

    .venv/bin/python benchmarks/predict_speed.py [--model CKPT] [--arch segnn] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CRYSTENSOR_SHARED_DATA", REPO.parent / "shared" / "data"))
EXAMPLE = REPO / "examples" / "structures" / "ZnO-mp-2133.POSCAR"


def untrained_checkpoint(arch: str, folder: Path) -> Path:
    from crystensor.checkpoint import Checkpoint, save_checkpoint
    from crystensor.data import elements
    from crystensor.models import build_model, preset

    model = build_model(
        preset(arch, "default", num_node_features=elements.FEATURE_DIM, target="elastic")
    )
    featurization = {
        "cutoff": 5.0,
        "auto_cutoff": False,
        "max_cutoff": 10.0,
        "feature_set": elements.FEATURE_SET,
        "feature_dim": elements.FEATURE_DIM,
        "feature_table_sha256": elements.feature_table_sha256(),
    }
    checkpoint = Checkpoint.from_model(model, featurization, meta={"note": "untrained benchmark"})
    return save_checkpoint(checkpoint, folder / f"untrained-{arch}.pt")


def command_seconds(model: Path, repeats: int) -> tuple[list[tuple[float, float]], str]:
    """(wall, CPU) seconds of each run of the command, and how it was run.

    ``python -m crystensor`` in this checkout, so that the code timed is the checkout's own
    (the venv's ``crystensor`` script imports whichever checkout the venv was installed from).
    """
    how = "python -m crystensor predict"
    command = [sys.executable, "-m", "crystensor", "predict", str(EXAMPLE), "--model"]
    command.append(str(Path(model).resolve()))
    times = []
    for _ in range(repeats):
        cpu = _cpu_seconds(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        times.append((time.perf_counter() - start, _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu))
        if done.returncode != 0:
            raise SystemExit(f"the command failed:\n{done.stdout}\n{done.stderr}")
    return times, how


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def matminer_structures() -> list:
    import pandas as pd
    from pymatgen.core import Structure

    path = DATA / "matminer-2018" / "elastic_tensor.csv.gz"
    if not path.is_file():
        raise SystemExit(f"{path} not found (set CRYSTENSOR_SHARED_DATA)")
    with gzip.open(path, "rt") as fh:
        frame = pd.read_csv(fh, skiprows=1)
    return [Structure.from_str(text, fmt="poscar") for text in frame["poscar"]]


def batch_seconds(predictor, structures, batch_size: int, workers: int) -> tuple[float, float, int]:
    """Wall and CPU seconds (this process and those it forks) of
    ``predictor.predict_results(structures)``, and how many failed."""
    cpu = _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    results = predictor.predict_results(structures, batch_size=batch_size, workers=workers)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    return seconds, cpu, sum(not r.ok for r in results)


def stage_seconds(predictor, structures, batch_size: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each stage over all structures, one after the other in this process.

    The two symmetry searches are timed alone for comparison; the moyo one, which predict uses,
    is also part of the last stage (``_finish``: point group, projection, properties).
    """
    import numpy as np

    from crystensor.prediction.api import Prediction, _finish, _Job
    from crystensor.tensors.analysis import derived_properties
    from crystensor.tensors.harmonic import from_irreps
    from crystensor.tensors.symmetry import _find_symmetry, _spglib_cell

    out = {}

    @contextlib.contextmanager
    def stage(name):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)

    with stage("domain checks (distances, vacuum, elements)"):
        [predictor.structure_warnings(s) for s in structures]
    with stage("graphs"):
        graphs = [predictor.graph(s) for s in structures]
    import torch

    threads = torch.get_num_threads()
    for count in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(count)
        with stage(f"network, {count} thread{'s' if count > 1 else ''}"):
            irreps = [
                predictor.forward(graphs[i : i + batch_size])[0]
                for i in range(0, len(graphs), batch_size)
            ]
    torch.set_num_threads(threads)
    raw = from_irreps(np.concatenate(irreps), predictor.kind)
    with stage("spglib symmetry search (5 deg)"):
        [_find_symmetry(_spglib_cell(s), 0.01, 5.0) for s in structures]
    with stage("moyo symmetry search (used)"):
        [_find_symmetry(_spglib_cell(s), 0.01, None) for s in structures]
    job = _Job(predictor, [], True, True, batch_size, 0.01, None)
    with stage("moyo search + group, projection, floor, properties"):
        for s, tensor in zip(structures, raw, strict=True):
            result = Prediction("", predictor.target, predictor.kind, structure=s)
            _finish(result, tensor, job)
    with stage("derived properties alone"):
        for tensor in raw:
            derived_properties(tensor, predictor.kind)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint (default: shipped elastic model)")
    parser.add_argument("--arch", default="segnn", choices=("segnn", "seconv", "setransformer"))
    parser.add_argument("--batch-size", type=int, default=8, help="as crystensor predict")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the command")
    args = parser.parse_args()

    # as `crystensor predict` does: idle OpenMP threads sleep instead of spinning
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from crystensor.checkpoint import load_checkpoint
    from crystensor.prediction import Predictor
    from crystensor.pretrained import available

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or available().get("elastic")
        if model is None:
            model = untrained_checkpoint(args.arch, Path(tmp))
            print(
                f"no shipped elastic model: using an untrained '{args.arch}' default-preset "
                f"checkpoint ({model.name}, in a temporary folder)"
            )
        else:
            print(f"model: {model}")
        threads = torch.get_num_threads()
        print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs")
        print(f"load average (1 min) at the start: {os.getloadavg()[0]:.1f}")

        times, how = command_seconds(model, args.repeats)
        shown = ", ".join(f"{wall:.2f}/{cpu:.2f}" for wall, cpu in times)
        wall, cpu = min(times)
        print(
            f"(1) {how} {EXAMPLE.name} --model CKPT: best {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"(wall/CPU of each run: {shown} s)"
        )

        # the few strained lattices of the data set would print warnings (crystensor predict
        # shows them); they are not what is measured here
        logging.getLogger("crystensor").setLevel(logging.ERROR)
        structures = matminer_structures()
        predictor = Predictor(load_checkpoint(model), source=str(model))
        predictor.predict_results(structures[:64], batch_size=args.batch_size)  # warm-up
        n = len(structures)
        from crystensor.prediction.api import _processes

        processes = _processes(0, n, predictor.device)
        for label, workers in ((f"{processes} processes", 0), ("this process alone", 1)):
            seconds, cpu, failed = batch_seconds(predictor, structures, args.batch_size, workers)
            print(
                f"(2) predict_results over {n} matminer elastic structures, batch "
                f"{args.batch_size}, {label}: {seconds:.2f} s wall, {n / seconds:.0f} "
                f"structures/s; {cpu:.2f} s CPU, {1e3 * cpu / n:.1f} ms/structure "
                f"({failed} failed)"
            )
        for name, (wall, cpu) in stage_seconds(predictor, structures, args.batch_size).items():
            print(
                f"    {name:<44} {wall:6.2f} s wall ({n / wall:4.0f} structures/s), "
                f"{cpu:6.2f} s CPU ({1e3 * cpu / n:.2f} ms/structure)"
            )
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
