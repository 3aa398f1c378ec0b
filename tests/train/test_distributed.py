"""DDP under torchrun: two CPU processes (gloo) reproduce the single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from crystensor.checkpoint import load_checkpoint
from crystensor.train import run
from crystensor.train.config import TrainConfig

pytestmark = pytest.mark.slow

SETTINGS = dict(epochs=2, batch_size=8, lr=5e-3, patience=0, seed=3)


def test_two_processes_match_one(tiny_stores, tmp_path):
    store = tiny_stores["elastic"]  # 28 training graphs: 14 per rank, no padding
    single = run.train(
        store, tmp_path / "one", arch="segnn", preset_name="small", config=TrainConfig(**SETTINGS)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "crystensor", "-q", "train", "-d", str(store), "-o", str(tmp_path / "two"),
        "--arch", "segnn", "--preset", "small", "--device", "cpu",
        *[f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()],
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["counts"] == single.final.metrics["counts"]
    for split in ("val", "test"):
        assert two[split]["n"] == single.final.metrics[split]["n"]
        assert two[split]["mae"] == pytest.approx(single.final.metrics[split]["mae"], rel=1e-4)
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    for a, b in zip(history, single.final.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    w1 = load_checkpoint(tmp_path / "one" / "last.pt").state_dict
    w2 = load_checkpoint(tmp_path / "two" / "last.pt").state_dict
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], rtol=1e-4, atol=1e-5)
