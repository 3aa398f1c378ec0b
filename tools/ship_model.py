"""Ship a trained run as the default model of a target: checkpoint and model card.

Writes ``crystensor/pretrained/TARGET.pt`` (the run's ``best.pt`` without optimizer and RNG
state) and ``TARGET.md``, a model card built from what the run recorded, so that no number in
the card is typed by hand: the data (graph store, record files and the shared-data files they
came from, counts, split), the architecture and its size, the training command, the best epoch,
the test metrics (per-component Voigt MAE, Frobenius error, EwT, per crystal system), the
elements and value range seen in training, the date and the package version.

    .venv/bin/python tools/ship_model.py RUN_DIR [--target TARGET] [--selection TEXT]
        [--out crystensor/pretrained]
    .venv/bin/python tools/ship_model.py ENSEMBLE.pt --store STORE.h5 [--records R ...]

An ensemble checkpoint (``crystensor ensemble ... --calibrate``) is shipped with its own
numbers: its validation and test metrics are those of predict's pipeline (the members' mean,
projected onto the point group, physical floor) on the structures and tensors of the record
files (by default the store's source files, next to it), and replace the first member's in the
shipped checkpoint; the card adds how the calibrated spread covers the test errors, each
member's run (when the members' checkpoints it names are found) and the speed measured with
``benchmarks/predict_speed.py`` (``--no-speed`` skips it).

``--selection`` is a sentence on why this run was chosen (e.g. the validation MAE of the other
architectures); it goes into the card verbatim. ``--caveat`` is what a user must know before
trusting the numbers (e.g. that the model does not beat a trivial baseline): it heads the card's
limits and is stored in the checkpoint, and every prediction with the model logs it as a
warning.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPEED_BENCHMARK = REPO / "benchmarks" / "predict_speed.py"
_SPLIT_NAMES = {"val": "validation"}
FEATURE_WORDS = {  # the domain's descriptor (crystensor.domain.descriptor_kind)
    "pooled": "the model's pooled features of the structure are",
    "node-mean": "the mean of the model's node features over the structure (it pools by "
    "density) is",
}

# Record files written by examples/build_stores.sh and build_shipped_stores.sh -> where in
# ../shared/data they come from, and the reference to cite.
ORIGINS = {
    "elastic.jsonl.gz": (
        "`matminer-2018/elastic_tensor.csv.gz`, `elastic_tensor_original` in the `poscar` frame",
        "de Jong et al. 2015, Sci. Data 2:150009",
    ),
    "elastic-stn.jsonl.gz": (
        "`straintensornet-mp/mp_elastic_ieee.json.gz` (Materials Project, IEEE frame, rotated "
        "into the structure's frame)",
        "StrainTensorNet (Materials Project elastic data)",
    ),
    "dielectric.jsonl.gz": (
        "`matminer-2018/dielectric_constant.csv.gz`, `e_total` in the `poscar` frame",
        "Petousis et al. 2017, Sci. Data 4:160134",
    ),
    "dielectric-electronic.jsonl.gz": (
        "`matminer-2018/dielectric_constant.csv.gz`, `e_electronic` in the `poscar` frame",
        "Petousis et al. 2017, Sci. Data 4:160134",
    ),
    "dielectric-electronic-born.jsonl.gz": (
        "`e3nn-born-dielectric/phonon_becs_epsilon.xyz.gz`, `eps` in the frame of the stored "
        "lattice",
        "Materials Project phonon / Born-charge data as packaged by e3nn",
    ),
    "piezoelectric.jsonl.gz": (
        "`matminer-2018/piezoelectric_tensor.csv.gz`, IEEE frame rotated into the `poscar` "
        "frame, inconsistent entries dropped",
        "de Jong et al. 2015, Sci. Data 2:150053",
    ),
}


def _sign_agnostic_lines(test: dict, val: dict, u: str) -> list[str]:
    """The sign-agnostic metrics of an odd-rank target (piezoelectric), if recorded."""
    free, free_val = test.get("sign_agnostic"), val.get("sign_agnostic")
    if not free:
        return []
    return [
        f"- **Sign-agnostic** (each test tensor compared with the stored tensor or its negative, "
        f"whichever is closer): MAE {_num(free['mae'])}{u} (validation "
        f"{_num(free_val['mae']) if free_val else '—'}), Frobenius MAE "
        f"{_num(free['frobenius_mae'])}{u}, EwT25 {100 * free['ewt']['25']:.1f} %; the "
        f"prediction is closer to the stored sign for {100 * free['sign_agreement']:.0f} % "
        "of the test tensors",
    ]


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _store_facts(path: Path, split: dict[str, list[str]]) -> dict[str, Any]:
    """Sources, size, split settings, elements and target range of the training split."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in f["ids"][:]]
        train = set(split["train"])
        rows = np.array([i in train for i in ids])
        node_offsets = f["node_offsets"][:]
        numbers = f["atomic_numbers"][:]
        norms = np.linalg.norm(f["target_cartesian"][:].reshape(len(ids), -1), axis=1)[rows]
        held_out = set(split.get("test", ()))
        test = np.array([i in held_out for i in ids])
        kind = str(attrs["kind"])
        cartesian = f["target_cartesian"][:][test]
        elements = {
            int(z)
            for g in np.flatnonzero(rows)
            for z in numbers[node_offsets[g] : node_offsets[g + 1]]
        }
    return {
        "n_graphs": int(attrs["n_graphs"]),
        "sources": json.loads(attrs["sources"]),
        "split_method": f"{attrs['split_method']} by material id",
        "split_seed": int(attrs["split_seed"]),
        "split_fractions": json.loads(attrs["split_fractions"])
        if isinstance(attrs["split_fractions"], str)
        else [float(x) for x in attrs["split_fractions"]],
        "elements": sorted(elements),
        "norm_percentiles": [float(np.percentile(norms, q)) for q in (5, 50, 95, 100)],
        # what predicting the all-zero tensor scores on the test split (mean |Voigt component|)
        "zero_mae": _zero_mae(cartesian, kind) if len(cartesian) else None,
    }


def _zero_mae(cartesian: Any, kind: str) -> float:
    """Mean absolute Voigt component of the test tensors: the MAE of predicting zero."""
    import numpy as np

    from crystensor.tensors.kinds import get_kind

    tensor_kind = get_kind(kind)
    if tensor_kind.rank == 0:
        return float(np.abs(cartesian).mean())
    return float(np.mean([np.abs(tensor_kind.to_voigt(t)).mean() for t in cartesian]))


def _voigt_table(metrics: dict[str, Any]) -> list[str]:
    labels = metrics["voigt_labels"]
    lines = ["| | " + " | ".join(labels["columns"]) + " |"]
    lines.append("|---" * (len(labels["columns"]) + 1) + "|")
    for row, values in zip(labels["rows"], metrics["component_mae"], strict=True):
        lines.append(f"| **{row}** | " + " | ".join(_num(v, 3) for v in values) + " |")
    return lines


def score_ensemble(checkpoint: Any, records: list[Path]) -> dict[str, Any]:
    """``{"val": metrics, "test": metrics, "calibration": {...}}`` of an ensemble as predict
    reports its tensors, on the split materials found in ``records`` (by id; the first record
    of an id, as a store keeps it).

    ``calibration``: on the test split, the share of the tensor components not fixed by symmetry
    whose error lies within one and two reported standard deviations, the Spearman rank
    correlation of each structure's relative uncertainty with its relative Frobenius error, the
    median relative uncertainty, and the scale the spread was calibrated with.
    """
    import numpy as np

    from crystensor.data.records import read_records
    from crystensor.ensembles import coverage
    from crystensor.evaluation import _crystal_system, _predict_records
    from crystensor.prediction import Predictor
    from crystensor.train.metrics import tensor_metrics

    found: dict[str, Any] = {}
    for path in records:
        for record in read_records(path):
            found.setdefault(record.id, record)
    predictor = Predictor(checkpoint, source="ensemble")
    kind = predictor.kind
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        ids = checkpoint.split[split]
        chosen = [found[i] for i in ids if i in found]
        if len(chosen) < len(ids):
            raise SystemExit(
                f"{len(ids) - len(chosen)} of the {len(ids)} {split} materials are in none of "
                "the record files; give those the store was built from (--records)"
            )
        options = dict(batch_size=8, symprec=0.01, angle_tolerance=None)
        done, failures = _predict_records(predictor, chosen, False, None, **options)
        if failures:
            raise SystemExit(f"{len(failures)} {split} structures failed: {failures[0]}")
        pred = np.stack([r.tensor for _, r, _ in done])
        true = np.stack([label for _, _, label in done])
        systems = [_crystal_system(record, r) for record, r, _ in done]
        out[split] = tensor_metrics(pred, true, kind, systems, units=kind.units)
    std = np.stack([r.std for _, r, _ in done])
    uncertainty = np.array([r.uncertainty for _, r, _ in done])
    out["calibration"] = {
        "split": "test",
        **coverage(pred, true, std, uncertainty),
        "std_scale": predictor.std_scale,
    }
    return out


def member_runs(checkpoint: Any, path: Path) -> list[dict[str, Any]] | None:
    """Seed, best epoch and own metrics (network output on the store) of each member, from the
    checkpoints the ensemble names (as given, or under a folder above ``path``); None if one is
    not found."""
    from crystensor.checkpoint import load_checkpoint

    names = (checkpoint.meta.get("ensemble") or {}).get("of") or []
    runs = []
    for name in names:
        candidates = [Path(name), *(folder / name for folder in path.resolve().parents)]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            return None
        member = load_checkpoint(found)
        if member.n_members > 1:
            return None
        m = member.metrics
        runs.append(
            {
                "seed": member.training.get("train_config", {}).get("seed"),
                "best_epoch": m.get("best_epoch"),
                "epochs_run": m.get("epochs_run"),
                "val_mae": m["val"]["mae"],
                "test_mae": m["test"]["mae"],
                # a sign-agnostic network is selected and judged by its sign-agnostic MAE
                "val_sa": m["val"].get("sign_agnostic", {}).get("mae"),
                "test_sa": m["test"].get("sign_agnostic", {}).get("mae"),
            }
        )
    return runs if len(runs) == checkpoint.n_members else None


def measure_speed(model: Path, repeats: int = 3) -> dict[str, Any]:
    """What ``benchmarks/predict_speed.py --model MODEL`` measures first: the command on one
    POSCAR end to end (best of ``repeats``), and predict_results over the matminer elastic
    structures shared between processes as ``crystensor predict`` does (batch 8)."""
    import importlib.util
    import logging
    import os

    from crystensor.checkpoint import load_checkpoint
    from crystensor.prediction import Predictor
    from crystensor.prediction.api import _processes

    spec = importlib.util.spec_from_file_location("predict_speed", SPEED_BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as crystensor predict
    load = os.getloadavg()[0]
    times, how = bench.command_seconds(model, repeats)
    wall, cpu = min(times)
    logging.getLogger("crystensor").setLevel(logging.ERROR)
    structures = bench.matminer_structures()
    predictor = Predictor(load_checkpoint(model), source=str(model))
    predictor.predict_results(structures[:64])  # warm-up
    seconds, batch_cpu, failed = bench.batch_seconds(predictor, structures, 8, 0)
    return {
        "command": how,
        "example": bench.EXAMPLE.name,
        "poscar_wall": wall,
        "poscar_cpu": cpu,
        "repeats": repeats,
        "n": len(structures),
        "failed": failed,
        "processes": _processes(0, len(structures), predictor.device),
        "per_second": len(structures) / seconds,
        "cpu_ms": 1e3 * batch_cpu / len(structures),
        "load": max(load, os.getloadavg()[0]),
        "cores": os.cpu_count(),
    }


def _members_line(checkpoint: Any, runs: list[dict[str, Any]] | None, u: str) -> str:
    """The card's line on an ensemble's members: each one's seed, best epoch and own MAE."""
    if not runs:
        first = checkpoint.metrics
        return (
            f"- **Members:** {checkpoint.n_members} networks of this configuration trained with "
            f"other seeds; the first's best epoch {first['best_epoch']} of {first['epochs_run']}"
        )

    def scores(r: dict[str, Any]) -> str:
        signed = f"{_num(r['val_mae'])}{u} validation / {_num(r['test_mae'])}{u} test"
        if r.get("val_sa") is None or r.get("test_sa") is None:
            return f"MAE {signed}"
        return (
            f"sign-agnostic MAE {_num(r['val_sa'])}{u} validation / {_num(r['test_sa'])}{u} "
            f"test (signed {signed})"
        )

    each = "; ".join(
        f"seed {r['seed']}: best epoch {r['best_epoch']} of {r['epochs_run']}, {scores(r)}"
        for r in runs
    )
    return (
        f"- **Members:** {each} (each network alone, its output on the store's graphs as "
        "training scores it)"
    )


def _test_coverage(c: dict[str, Any]) -> str:
    """How the calibrated spread covers the test errors (``test_calibration``), in words."""
    if c["within_one_sigma"] is None:
        return "- **On the test split:** symmetry fixes every component; no spread to check."
    line = (
        f"- **On the test split** ({c['n']} structures, {c['components']} components not fixed "
        f"by symmetry): {100 * c['within_one_sigma']:.1f} % of the errors lie within one "
        f"standard deviation and {100 * c['within_two_sigma']:.1f} % within two (a Gaussian: "
        "68 % and 95 %).\n"
    )
    rho = c["rank_correlation"]
    if rho is None:
        return f"{line}- **Ranking:** not measured (a constant uncertainty or error)."
    return (
        f"{line}- **Ranking:** rank correlation (Spearman) of the relative uncertainty with "
        f"the relative Frobenius error per structure {rho:.2f}; median relative uncertainty "
        f"{100 * c['median_uncertainty']:.1f} %."
        + (
            " It tells the typical size of the error better than which structure is worst."
            if rho < 0.3
            else ""
        )
    )


def _ensemble_sections(checkpoint: Any, speed: dict[str, Any] | None) -> list[str]:
    """The card's "Uncertainty" and "Speed" sections of an ensemble."""
    ensemble = checkpoint.meta["ensemble"]
    c = ensemble["test_calibration"]
    lines = [
        "## Uncertainty",
        f"Each prediction reports, per component, the standard deviation of the "
        f"{checkpoint.n_members} members' tensors times {c['std_scale']:.3g} (`std`, "
        "`voigt_std` in JSON), and one relative uncertainty (`uncertainty`: the Frobenius norm "
        "of `std` over that of the tensor).",
        "",
        f"- **Calibration:** the raw spread held {100 * ensemble['within_one_sigma_before']:.1f} "
        f"% of the errors on the {_SPLIT_NAMES.get(ensemble['split'], ensemble['split'])} "
        f"split within one standard deviation ({ensemble['n']} structures); it is scaled by "
        f"{c['std_scale']:.3g} so that 68 % are.",
        _test_coverage(c),
        "",
    ]
    if speed:
        idle = speed["cores"] * 1e3 / speed["cpu_ms"]
        lines += [
            "## Speed",
            f"An ensemble runs each of its {checkpoint.n_members} networks. Measured by "
            "`tools/ship_model.py` with the functions of `benchmarks/predict_speed.py` (run "
            "`python benchmarks/predict_speed.py --model "
            f"crystensor/pretrained/{checkpoint.target}.pt` to repeat), CPU only, "
            f"{speed['cores']} cores, 1-minute load average {speed['load']:.1f} while measuring:",
            "",
            f"- **One structure end to end** (`{speed['command']} {speed['example']}`, start-up "
            f"and model loading included): {speed['poscar_wall']:.2f} s wall (best of "
            f"{speed['repeats']}), {speed['poscar_cpu']:.2f} s CPU.",
            f"- **A batch:** {speed['n']} matminer elastic structures (batch 8, shared between "
            f"{speed['processes']} processes as `crystensor predict` does): "
            f"{speed['per_second']:.0f} structures/s wall, {speed['cpu_ms']:.1f} ms of CPU per "
            f"structure (on {speed['cores']} idle cores about {idle:.0f} structures/s).",
            "",
        ]
    return lines


def limits_section(checkpoint: Any, caveat: str | None, zero_mae: float | None) -> list[str]:
    """The card's "Limits" and "Warnings" sections: what a user must know, in plain words."""
    from crystensor import domain
    from crystensor.tensors.physical import floor_of

    test = checkpoint.metrics["test"]
    units = test["units"]
    u = f" {units}" if units else ""
    lines = ["## Limits", *([f"- **Caveat:** {caveat}"] if caveat else [])]
    if zero_mae:
        free = test.get("sign_agnostic")
        mae = free["mae"] if free else test["mae"]
        how = " (sign-agnostic)" if free else ""
        lines.append(
            f"- **In plain words:** on held-out test materials a Voigt component is off by "
            f"{mae:.3g}{u} on average{how}; predicting the all-zero tensor would be off by "
            f"{zero_mae:.3g}{u}, so the model removes {100 * (1 - mae / zero_mae):.0f} % of that "
            "error."
        )
    lines += [
        "- Trained on DFT (PBE) tensors of relaxed, ordered Materials Project structures; "
        "structures far from these (other elements, disordered, strained, slabs, molecules) "
        "are extrapolation: see the warnings below.",
        "- The prediction is projected onto the structure's point group by default "
        "(`--no-symmetrize` shows the raw output, `--raw` the network's output untouched).",
    ]
    kind = checkpoint.kind
    floor = floor_of(kind)
    if floor is not None:
        what = (
            f"positive definite: Kelvin moduli (eigenvalues of the Mandel matrix) >= {floor:g} GPa"
            if kind.name == "elastic"
            else f"eigenvalues >= {floor:g}"
        )
        lines.append(
            f"- The reported tensor is the nearest physically valid one ({what}); a structure "
            "whose network output needed this gets the `not-physical` warning with the size of "
            "the change (`--no-physical` reports the tensor uncorrected)."
        )
    features = (checkpoint.domain or {}).get("features")
    elements = (checkpoint.domain or {}).get("elements")
    lines += [
        "",
        "## Warnings",
        "Each prediction lists the reasons to trust it less (table: a yellow line; JSON: "
        "`warnings`; CSV: the `warnings` column):",
        "",
        f"- `unseen-element`: an element in none of the {len(elements or [])} elements of the "
        "training structures.",
        f"- `short-distance`: two atoms closer than {domain.SHORT_FRACTION} of the sum of their "
        f"covalent radii (no training structure is); below {domain.MIN_DISTANCE} Å the "
        "structure is refused as overlapping atoms.",
        f"- `vacuum-gap`: an empty slab of at least {domain.VACUUM_GAP:g} Å along a lattice "
        "direction: a slab, wire or isolated molecule rather than a bulk crystal.",
    ]
    if features:
        lines.append(
            f"- `far-from-training`: {FEATURE_WORDS[features.get('descriptor', 'pooled')]} "
            "farther "
            f"from every training structure than {100 * features['quantile']:.0f} % of its "
            f"{features.get('calibrated_on', 'test')} materials (RMS distance per standardised "
            f"channel above {features['threshold']:.3g}). {_flag_quality(features)}"
            + (" Features and error are the first member's." if checkpoint.n_members > 1 else "")
        )
    if floor is not None:
        lines.append("- `not-physical`: see above.")
    if caveat:
        lines.append("- `model-caveat`: the caveat above, repeated in every result.")
    return [*lines, ""]


def _flag_quality(features: dict[str, Any]) -> str:
    """How much the far-from-training flag tells about the error, in words, from its numbers."""
    rho = features.get("error_rank_correlation")
    medians = features.get("median_relative_error") or {}
    if rho is None or medians.get("flagged") is None:
        return "How it relates to the error was not measured."
    strength = "a useful" if rho >= 0.3 else "a weak" if rho >= 0.1 else "no"
    if medians["flagged"] <= medians["others"] and rho >= 0.1:
        strength = "no clear"  # ranked with the error, but the flagged ones are not worse
    return (
        f"On the {features.get('calibrated_on', 'test')} split it is {strength} sign of a larger "
        f"error: rank correlation of distance and relative error {rho:.2f}; median relative "
        f"Frobenius error {100 * medians['flagged']:.0f} % for flagged structures, "
        f"{100 * medians['others']:.0f} % for the others (network output before projection)."
    )


def model_card(
    checkpoint: Any,
    facts: dict[str, Any],
    selection: str | None,
    caveat: str | None = None,
    speed: dict[str, Any] | None = None,
    name: str | None = None,
) -> str:
    """The Markdown model card of ``checkpoint`` (a :class:`Checkpoint` of a finished run, or
    an ensemble scored by :func:`score_ensemble`; ``speed``: of :func:`measure_speed`), titled
    ``name`` (default: its target)."""
    from pymatgen.core.periodic_table import Element

    from crystensor.tensors.kinds import PROPERTIES

    metrics = checkpoint.metrics
    test, val = metrics["test"], metrics["val"]
    prop = PROPERTIES[checkpoint.target]
    kind = prop.tensor_kind
    units = test["units"]
    u = f" {units}" if units else ""  # dielectric tensors have none
    config = dict(checkpoint.config)
    counts = {name: len(ids) for name, ids in checkpoint.split.items()}
    params = None
    try:
        params = sum(p.numel() for p in checkpoint.build_model().parameters())
    except Exception:  # the card is still useful without the count
        params = None
    # without the training machine's paths, as the shipped file's metadata
    command = " ".join(portable_meta({"command": checkpoint.meta.get("command", [])})["command"])
    train_config = checkpoint.training.get("train_config", {})
    elements = [Element.from_Z(z).symbol for z in facts["elements"]]
    today = datetime.date.today().isoformat()
    p5, p50, p95, pmax = facts["norm_percentiles"]
    ensemble = checkpoint.meta.get("ensemble") if checkpoint.n_members > 1 else None
    if ensemble:
        architecture = (
            f"- **Architecture:** an ensemble of {checkpoint.n_members} {checkpoint.arch} "
            "networks whose tensors are averaged"
            + (f", {params:,} parameters each" if params else "")
        )
        epochs = _members_line(checkpoint, ensemble.get("member_runs"), u)
        how = "the first member's; the others differ in `--seed`"
        scored = (
            "the members' mean as `crystensor predict` reports it: projected onto the point "
            "group, physical floor"
        )
    else:
        architecture = f"- **Architecture:** {checkpoint.arch}" + (
            f", {params:,} parameters" if params else ""
        )
        epochs = f"- **Best epoch:** {metrics['best_epoch']} of {metrics['epochs_run']} run" + (
            " (stopped early)" if metrics.get("stopped_early") else ""
        )
        how, scored = None, "best-validation weights"
    lines = [
        f"# Shipped model: {name or checkpoint.target}",
        "",
        f"Predicts the {prop.description} of a crystal structure ({units or 'unitless'}, rank "
        f"{kind.rank}, irreps `{kind.irreps}`), in the Cartesian frame of the structure.",
        "",
        "## Model",
        architecture,
        "- **Hyperparameters:** "
        + ", ".join(
            f"{k} {v}"
            for k, v in config.items()
            if k not in ("arch", "target", "num_node_features") and not isinstance(v, dict)
        ),
        f"- **Featurization:** radius graph, cutoff {checkpoint.featurization['cutoff']} Å, "
        f"atom features `{checkpoint.featurization['feature_set']}`.",
        epochs,
    ]
    if selection:
        lines.append(f"- **Why this model:** {selection}")
    lines += [
        "",
        "## Data",
        f"- **Graph store:** `{metrics['store']}`, {facts['n_graphs']} structures, from:",
    ]
    for source in facts["sources"]:
        origin, _ = ORIGINS.get(source["file"], (source["file"], None))
        records = f" ({source['records']} records)" if "records" in source else ""
        lines.append(f"  - `{source['file']}`{records}: {origin}")
    lines += [
        f"- **Split:** {facts['split_method']}, seed {facts['split_seed']}, "
        f"fractions {'/'.join(f'{x:g}' for x in facts['split_fractions'])}: "
        f"train {counts['train']}, validation {counts['val']}, test {counts['test']}.",
        f"- **Seen in training:** {len(elements)} elements ({' '.join(elements)}); Frobenius "
        f"norm of the training tensors: 5 % {_num(p5, 3)}, median {_num(p50, 3)}, 95 % "
        f"{_num(p95, 3)}, max {_num(pmax, 3)}{u}.",
        "",
        "## Training",
        (f"- **Command** ({how}): `{command}`" if how else f"- **Command:** `{command}`")
        if command
        else "- **Command:** not recorded",
        "- **Settings:** "
        + ", ".join(f"{k} {v}" for k, v in train_config.items() if k not in ("device",)),
        *(
            [
                f"- **Ensemble:** `crystensor ensemble` of the members, its spread calibrated "
                f"on the {_SPLIT_NAMES.get(ensemble['split'], ensemble['split'])} split "
                "(`--calibrate` with the store's record files)"
            ]
            if ensemble
            else []
        ),
        "",
        f"## Test metrics (held-out test split, {scored})",
        f"- **MAE (mean of the Voigt components):** {_num(test['mae'])}{u} "
        f"(validation {_num(val['mae'])})",
        f"- **Largest component MAE:** {_num(test['max_component_mae'])} ({test['max_component']})",
        f"- **Frobenius MAE:** {_num(test['frobenius_mae'])}{u}; median relative "
        f"Frobenius error {_num(test.get('relative_frobenius_median'), 3)}",
        "- **EwT** (share of test tensors with relative Frobenius error below the threshold): "
        + ", ".join(f"{k} % {100 * v:.1f} %" for k, v in test["ewt"].items()),
        *_sign_agnostic_lines(test, val, u),
        "",
        f"Per-component MAE{u and f' ({units})'} in Voigt notation:",
        "",
        *_voigt_table(test),
        "",
        "Per crystal system:",
        "",
        "| crystal system | n | MAE | Frobenius MAE | EwT25 |",
        "|---|---|---|---|---|",
    ]
    for system, m in test.get("per_crystal_system", {}).items():
        lines.append(
            f"| {system} | {m['n']} | {_num(m['mae'])} | {_num(m['frobenius_mae'])} | "
            f"{100 * m['ewt']['25']:.1f} % |"
        )
    cites = sorted({ORIGINS[s["file"]][1] for s in facts["sources"] if s["file"] in ORIGINS})
    lines.append("")
    if ensemble:
        lines += _ensemble_sections(checkpoint, speed)
    lines += [
        *limits_section(checkpoint, caveat, facts.get("zero_mae")),
        "## Citation",
        "Materials Project (Jain et al. 2013, APL Mater. 1:011002); "
        + "; ".join(c for c in cites)
        + ".",
        "",
        f"Shipped {today} with crystensor {checkpoint.versions.get('crystensor', '?')} "
        f"(torch {checkpoint.versions.get('torch', '?')}, e3nn "
        f"{checkpoint.versions.get('e3nn', '?')}).",
        "",
    ]
    return "\n".join(lines)


def portable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without the paths of the machine a model was trained on: the program by name
    (``/x/.venv/bin/crystensor`` -> ``crystensor``), absolute paths by their last parts."""

    def portable(value: Any) -> Any:
        if isinstance(value, list):
            return [portable(v) for v in value]
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("/"):
            parts = Path(value).parts
            return str(Path(*parts[-2:])) if len(parts) > 2 else Path(value).name
        return value

    out = dict(meta)
    command = [str(a) for a in out.get("command") or []]
    if command:
        program = Path(command[0]).name
        program = "crystensor" if program == "__main__.py" else program  # python -m crystensor
        out["command"] = [program, *(portable(a) for a in command[1:])]
    for key in ("parent", "run_dir", "store_path", "ensemble_of", "ensemble"):
        if key in out:  # the ensemble's member checkpoints and runs, too
            out[key] = portable(out[key])
    return out


def add_domain(checkpoint: Any, store_path: Path) -> None:
    """Record what ``checkpoint``'s model has seen (``checkpoint.domain``) from its store.

    The store's graphs are split by the checkpoint's own material ids, so the training
    elements and the feature reference are those of the split the model was trained on.
    """
    import numpy as np

    from crystensor.data.dataset import GraphDataset
    from crystensor.data.store import GraphStore
    from crystensor.train.domain import model_domain
    from crystensor.train.loop import _backbone_fields, _prior_fields

    model = checkpoint.build_model()
    store = GraphStore(store_path)
    ids = store.ids
    order = {name: i for i, name in enumerate(("train", "val", "test"))}
    where = {mid: order[name] for name, members in checkpoint.split.items() for mid in members}
    missing = [mid for mid in ids if mid not in where]
    if missing:
        raise SystemExit(f"{store_path}: {len(missing)} graphs are in no split of the checkpoint")
    store._split = (np.array([where[mid] for mid in ids], dtype=np.int8), {"source": "checkpoint"})
    dataset = GraphDataset(
        store,
        in_memory=True,
        node_fields=_backbone_fields(model, store),
        graph_fields=_prior_fields(model, store),
    )
    checkpoint.domain = model_domain(model, dataset)


def _stale_domain(checkpoint: Any) -> bool:
    """Whether the checkpoint's feature reference was made of other features than predict reads
    (a density-pooled model trained before its descriptor became the node features' mean)."""
    from crystensor.domain import descriptor_kind

    features = (checkpoint.domain or {}).get("features")
    want = descriptor_kind(checkpoint.model_config)
    return bool(features) and features.get("descriptor", "pooled") != want


def refresh_domain(target: str, store_path: Path, out: Path) -> int:
    """Add ``domain`` to an already shipped model and rewrite its card's Limits and Warnings
    sections, keeping everything else of both."""
    from crystensor.checkpoint import load_checkpoint, save_checkpoint
    from crystensor.io.atomic import atomic_open

    path = out / f"{target}.pt"
    checkpoint = load_checkpoint(path)
    add_domain(checkpoint, store_path)
    saved = checkpoint.meta.get("saved")
    checkpoint.meta = portable_meta(checkpoint.meta)
    save_checkpoint(checkpoint, path)
    card = (out / f"{target}.md").read_text()
    head, _, rest = card.partition("## Limits")
    _, _, tail = rest.partition("## Citation")
    zero = _store_facts(store_path, checkpoint.split)["zero_mae"]
    section = "\n".join(limits_section(checkpoint, checkpoint.meta.get("caveat"), zero))
    with atomic_open(out / f"{target}.md", "w") as fh:
        fh.write(f"{head}{section}\n## Citation{tail}")
    threshold = checkpoint.domain.get("features", {}).get("threshold")
    print(
        f"{path}: {len(checkpoint.domain['elements'])} training elements, feature threshold "
        f"{threshold} (shipped {saved})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dir", type=Path, help="a finished run, or an ensemble checkpoint (crystensor ensemble)"
    )
    parser.add_argument("--target", help="default: the run's target")
    parser.add_argument("--selection", help="why this run was chosen (goes into the card)")
    parser.add_argument("--caveat", help="a warning shown with every prediction of the model")
    parser.add_argument("--out", type=Path, default=REPO / "crystensor" / "pretrained")
    parser.add_argument(
        "--store", type=Path, help="the graph store it was trained on (default: as recorded)"
    )
    parser.add_argument(
        "--records",
        type=Path,
        nargs="+",
        help="an ensemble: the record files to score it on (default: the store's source files, "
        "in the store's folder)",
    )
    parser.add_argument(
        "--no-speed", action="store_true", help="an ensemble: do not measure its speed"
    )
    parser.add_argument(
        "--name",
        help="ship as the selectable model NAME (NAME.pt, NAME.md; predict --model NAME, listed "
        "in crystensor.pretrained.SELECTABLE_MODELS) instead of the target's default",
    )
    parser.add_argument(
        "--refresh-domain",
        type=Path,
        metavar="STORE",
        help="only add the training domain (elements, feature reference) to the shipped model "
        "of --target, computed on STORE (the store it was trained on)",
    )
    args = parser.parse_args(argv)
    if args.refresh_domain is not None:
        if not args.target:
            parser.error("--refresh-domain needs --target")
        return refresh_domain(args.target, args.refresh_domain, args.out)

    from crystensor.checkpoint import load_checkpoint, save_checkpoint
    from crystensor.io.atomic import atomic_open

    best = args.run_dir if args.run_dir.is_file() else args.run_dir / "best.pt"
    checkpoint = load_checkpoint(best)
    if not checkpoint.metrics or "test" not in checkpoint.metrics:
        print(f"{best} has no test metrics: the run has not finished", file=sys.stderr)
        return 2
    target = args.target or checkpoint.target
    if target != checkpoint.target:
        print(f"{best} predicts {checkpoint.target}, not {target}", file=sys.stderr)
        return 2
    store = args.store or Path(checkpoint.meta.get("store_path") or "")
    if not store.is_file():
        if args.run_dir.is_file():
            print(f"{best} records no store here: give it with --store", file=sys.stderr)
            return 2
        run = json.loads((args.run_dir / "run.json").read_text())
        store = Path(run["stages"][-1]["store"]["path"])
    facts = _store_facts(store, checkpoint.split)
    if not checkpoint.domain or _stale_domain(checkpoint):
        add_domain(checkpoint, store)
    if checkpoint.n_members > 1:  # its own numbers, not its first member's
        if "std_scale" not in (checkpoint.meta.get("ensemble") or {}):
            print(
                f"{best}: calibrate its spread first (crystensor ensemble --calibrate)",
                file=sys.stderr,
            )
            return 2
        records = args.records or [store.parent / s["file"] for s in facts["sources"]]
        scores = score_ensemble(checkpoint, records)
        checkpoint.metrics = {**checkpoint.metrics, "val": scores["val"], "test": scores["test"]}
        checkpoint.metrics["scored_by"] = "predict pipeline, members' mean"
        checkpoint.meta["ensemble"] = {
            **checkpoint.meta["ensemble"],
            "test_calibration": scores["calibration"],
            "member_runs": member_runs(checkpoint, best),
        }
    split = checkpoint.meta.get("split") or {}
    if split.get("source") == "recomputed":  # train --split: not the store's saved split
        method = {
            "random": "sha256-rank by material id",
            "family": "family (each chemical system wholly in one split)",
        }.get(split["method"], split["method"])
        facts.update(
            split_method=f"{method}, recomputed by train --split",
            split_seed=int(split["seed"]),
            split_fractions=[float(x) for x in split["fractions"]],
        )
    shipped = checkpoint.without_training_state()
    shipped.meta = portable_meta({k: v for k, v in shipped.meta.items() if k != "caveat"})
    if args.caveat:
        shipped.meta["caveat"] = args.caveat
    name = args.name or target
    save_checkpoint(shipped, args.out / f"{name}.pt")
    speed = None
    if shipped.n_members > 1 and not args.no_speed:
        speed = measure_speed(args.out / f"{name}.pt")
    card = model_card(checkpoint, facts, args.selection, args.caveat, speed, args.name)
    with atomic_open(args.out / f"{name}.md", "w") as fh:
        fh.write(card)
    size = (args.out / f"{name}.pt").stat().st_size
    print(f"wrote {args.out / f'{name}.pt'} ({size / 1e6:.2f} MB) and {name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
