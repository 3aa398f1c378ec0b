"""The prediction pipeline: :class:`Predictor`, :func:`predict_results`, :func:`predict`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError
from crystensor.parallel import available_cores, can_fork, fork_map
from crystensor.prediction.inputs import StructureInput, _is_single, read_inputs
from crystensor.prediction.result import Prediction
from crystensor.prediction.startup import import_e3nn_without_dynamo
from crystensor.tensors.kinds import TensorKind

if TYPE_CHECKING:
    import torch
    from pymatgen.core import Structure

    from crystensor.checkpoint import Checkpoint

__all__ = ["Predictor", "load_predictor", "model_info", "predict", "predict_results"]

log = logging.getLogger("crystensor.prediction")


# -- the model --------------------------------------------------------------------------------


def _check_featurization(featurization: dict[str, Any], where: str) -> None:
    from crystensor.data import elements

    feature_set = featurization.get("feature_set")
    if feature_set != elements.FEATURE_SET:
        raise InputError(
            f"{where} was trained on atom features {feature_set!r}, but this crystensor builds "
            f"{elements.FEATURE_SET!r}; use the crystensor release it was trained with"
        )
    if int(featurization.get("feature_dim", -1)) != elements.FEATURE_DIM:
        raise InputError(
            f"{where} expects {featurization.get('feature_dim')} atom features, this crystensor "
            f"builds {elements.FEATURE_DIM}; use the crystensor release it was trained with"
        )
    if featurization.get("feature_table_sha256") != elements.feature_table_sha256():
        log.warning(
            "%s: the %s atom-feature table differs from the one it was trained with (a "
            "different pymatgen release?); predictions may shift slightly",
            where,
            elements.FEATURE_SET,
        )


class Predictor:
    """A loaded model with the featurization it was trained with.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`crystensor.checkpoint.load_checkpoint`.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
    dtype : torch.dtype
        Floating dtype of the model and the graphs (float64 for exact equivariance checks).
    source : str
        How to name the model in messages (a path, or ``"shipped elastic model"``).

    Raises
    ------
    InputError
        The checkpoint predicts a scalar, or was featurized with other atom features.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        source: str = "model",
    ) -> None:
        import torch

        from crystensor.train.distributed import resolve_device

        import_e3nn_without_dynamo()
        self.checkpoint = checkpoint
        self.source = source
        self.kind = checkpoint.kind
        if self.kind.rank == 0:
            raise InputError(
                f"{source} predicts the scalar {checkpoint.target!r}; crystensor predict is for "
                "the tensor targets (elastic, dielectric, dielectric-electronic, piezoelectric)"
            )
        _check_featurization(checkpoint.featurization, source)
        self.device = resolve_device(device)
        self.dtype = dtype or torch.float32
        #: the networks: one, or the members of an ensemble (averaged; their spread reported)
        self.models = checkpoint.build_members(self.device, self.dtype)
        self.model = self.models[0]
        # the calibrated factor of an ensemble's spread (crystensor.ensembles), 1 if none
        self.std_scale = float((checkpoint.meta.get("ensemble") or {}).get("std_scale", 1.0))
        # members trained sign-agnostically are turned to one sign before they are averaged
        train_config = (checkpoint.training or {}).get("train_config") or {}
        self.sign_agnostic = bool(train_config.get("sign_agnostic"))
        # a pretrained backbone knows fewer elements than the atom features: checked per structure
        potential = getattr(self.model.backbone.embedding, "potential", None)
        self._check_backbone_species = getattr(potential, "check_species", None)
        # a model that corrects a physics prior computes it for every structure (~1 s each)
        self.prior = self.model.config.prior
        self.prior_kind = self.model.config.prior_kind
        if self.prior is not None:
            _check_prior(checkpoint.featurization.get("prior"), self.prior, source)
        from crystensor.domain import DomainWarning, FeatureDomain, descriptor_kind

        domain = checkpoint.domain or {}
        self.training_elements: list[str] | None = domain.get("elements")
        features = domain.get("features")
        if features and features.get("descriptor", "pooled") != descriptor_kind(self.model.config):
            log.warning(
                "%s: its far-from-training reference was computed from other features than "
                "predict reads (made before 0.1.0's domain change for density pooling); it is "
                "not used: recompute it with tools/ship_model.py --refresh-domain",
                source,
            )
            features = None
        self.feature_domain = FeatureDomain.from_dict(features) if features else None
        caveat = checkpoint.meta.get("caveat")
        self.caveat = DomainWarning("model-caveat", caveat) if caveat else None

    def structure_warnings(self, structure: Structure) -> list[dict[str, str]]:
        """The structure-only warnings of :mod:`crystensor.domain` for this model.

        Raises
        ------
        InputError
            Overlapping atoms (closer than :data:`crystensor.domain.MIN_DISTANCE`).
        """
        from crystensor.domain import structure_warnings

        found = structure_warnings(structure, self.training_elements)
        if self.caveat is not None:
            found.append(self.caveat)
        return [w.as_dict() for w in found]

    @property
    def target(self) -> str:
        return self.checkpoint.target

    @property
    def featurization(self) -> dict[str, Any]:
        return self.checkpoint.featurization

    def graph(self, structure: Structure) -> SimpleNamespace:
        """The model's input for ``structure``, built exactly as the training graphs were.

        The tensors of :func:`crystensor.data.dataset.graph_to_data` (``z``, ``x``, ``pos``,
        ``cell``, ``edge_index``, ``edge_shift``) and ``num_nodes``, as a namespace rather than
        a PyG ``Data``: prediction does not import PyG (half a second of start-up).

        Raises
        ------
        InputError
            An element outside the atom features (or unknown to the model's pretrained
            backbone), or an atom with no neighbour in the cutoff.
        """
        self.check_structure(structure)
        return self.checked_graph(structure)

    def checked_graph(self, structure: Structure) -> SimpleNamespace:
        """:meth:`graph` of a structure that already passed :meth:`check_structure`.

        Raises
        ------
        InputError
            An atom with no neighbour in the cutoff.
        """
        from crystensor.data.dataset import _graph_tensors
        from crystensor.data.graph import IsolatedAtomError, build_graph

        f = self.featurization
        try:
            graph = build_graph(
                structure,
                float(f["cutoff"]),
                auto_extend=bool(f.get("auto_cutoff", False)),
                max_cutoff=float(f.get("max_cutoff") or 10.0),
            )
        except IsolatedAtomError as err:
            raise InputError(
                f"{str(err).split('; raise --cutoff')[0]}; the model was trained on graphs with "
                f"a {float(f['cutoff']):g} A cutoff, so this atom sees nothing (is the cell or "
                "its scale right?)"
            ) from None
        tensors = _graph_tensors(graph, self.dtype)
        if self.prior is not None:
            tensors["prior"], tensors["prior_mask"] = self.prior_of(structure)
        return SimpleNamespace(**tensors, num_nodes=graph.num_nodes)

    def prior_of(self, structure: Structure) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's physics prior of ``structure``: irreps ``(kind.dim,)`` and mask ``()``
        (zeros and 0 where the potential cannot give one, logged as a warning).

        The potential's stiffness at the given geometry, one torch thread
        (:func:`crystensor.physics.compute_elastic_prior`): about 0.6 s for up to 10 atoms,
        1.7 s for 11-20, on one core.
        """
        import torch

        from crystensor.physics import compute_elastic_prior
        from crystensor.tensors.harmonic import to_irreps

        try:
            prior = compute_elastic_prior(
                structure, self.prior, relaxed_ions=self.prior_kind == "relaxed", threads=1
            )
        except InputError as err:
            log.warning(
                "%s: no %s prior (%s); the network predicts without it",
                structure.composition.reduced_formula,
                self.prior,
                err,
            )
            return torch.zeros(self.kind.dim, dtype=self.dtype), torch.tensor(0.0, dtype=self.dtype)
        irreps = to_irreps(prior.tensor, self.kind)
        return torch.tensor(irreps, dtype=self.dtype), torch.tensor(1.0, dtype=self.dtype)

    def check_structure(self, structure: Structure) -> None:
        """Refuse what the model cannot take: no sites, or elements outside its features.

        Raises
        ------
        InputError
        """
        from crystensor.data.elements import check_species

        if len(structure) == 0:
            raise InputError("the structure has no sites")
        check_species(structure.species)
        if self._check_backbone_species is not None:
            self._check_backbone_species(np.array([site.specie.Z for site in structure]))

    def raw_irreps(self, graphs: list[Any]) -> np.ndarray:
        """Model output ``(len(graphs), kind.dim)``, float64, for graphs from :meth:`graph`.

        PyG ``Data`` graphs (:func:`crystensor.data.dataset.graph_to_data`) work too.
        """
        return self.forward(graphs)[0]

    def forward(self, graphs: list[Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The model's output for ``graphs`` from :meth:`graph`, float64.

        Returns
        -------
        irreps : array ``(n, kind.dim)``
            The network's output (the members' mean for an ensemble).
        distances : array ``(n,)`` or None
            Of the graphs' pooled features from the training set (the first member's; None if
            the model records no feature reference).
        members : array ``(n_members, n, kind.dim)`` or None
            Each member's output, for an ensemble.
        """
        import torch

        from crystensor.data.dataset import _collate
        from crystensor.domain import invariant_descriptor, pooled_irreps
        from crystensor.ensembles import align_signs

        batch = _collate(graphs, self.device)
        if self.prior is not None:
            batch.prior = torch.stack([g.prior for g in graphs]).to(self.device)
            batch.prior_mask = torch.stack([g.prior_mask for g in graphs]).to(self.device)
        outputs = []
        with torch.inference_mode():
            for k, model in enumerate(self.models):
                pooled_k, descriptor_k = model.backbone.pooled_and_descriptor(batch)
                out = model.head_of(pooled_k, batch)
                outputs.append(out["irreps"].to("cpu", torch.float64).numpy())
                if k == 0:
                    features = descriptor_k
        members = np.stack(outputs) if len(outputs) > 1 else None
        if members is not None and self.sign_agnostic:
            members = align_signs(members)
        irreps = outputs[0] if members is None else members.mean(axis=0)
        if self.feature_domain is None:
            return irreps, None, members
        layout = pooled_irreps(self.model)
        descriptor = invariant_descriptor(features.to("cpu", torch.float64).numpy(), layout)
        return irreps, self.feature_domain.distances(descriptor), members

    def predict_results(
        self,
        structures: StructureInput | Iterable[StructureInput],
        *,
        symmetrize: bool = True,
        physical: bool = True,
        batch_size: int = 8,
        symprec: float = 0.01,
        angle_tolerance: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        elastic: Predictor | None = None,
        recursive: bool = True,
        workers: int = 1,
    ) -> list[Prediction]:
        """One :class:`Prediction` per structure, in input order (see :func:`predict_results`).

        ``elastic``: for a piezoelectric model, an elastic model whose (reported) tensor of the
        same structure gives the strain constants d = e S among the derived properties.
        """
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        entries = read_inputs(structures, recursive=recursive)
        options = dict(
            symmetrize=symmetrize,
            physical=physical,
            batch_size=batch_size,
            symprec=symprec,
            angle_tolerance=angle_tolerance,
            workers=workers,
        )
        stiffness = None
        if elastic is not None:
            if self.kind.name != "piezoelectric" or elastic.kind.name != "elastic":
                raise InputError(
                    "an elastic model goes with a piezoelectric one (for d = e S); "
                    f"got {elastic.target!r} with {self.target!r}"
                )
            stiffness = elastic._predict_entries(entries, **options)
        return self._predict_entries(entries, **options, progress=progress, stiffness=stiffness)

    def _predict_entries(
        self,
        entries: list[tuple[str, Any]],
        *,
        symmetrize: bool,
        physical: bool,
        batch_size: int,
        symprec: float,
        angle_tolerance: float | None,
        workers: int,
        progress: Callable[[int, int], None] | None = None,
        stiffness: list[Prediction] | None = None,
    ) -> list[Prediction]:
        import torch

        results = [Prediction(name, self.target, self.kind) for name, _ in entries]
        todo = []
        for i, (_, item) in enumerate(entries):
            if isinstance(item, InputError):
                results[i].error = str(item)
            else:
                results[i].structure = item
                todo.append(i)
        job = _Job(self, results, symmetrize, physical, batch_size, symprec, angle_tolerance)
        job.stiffness = stiffness
        done = len(entries) - len(todo)
        processes = _processes(workers, len(todo), self.device)
        if processes > 1:
            todo = _predict_in_processes(job, todo, processes, progress, done)
            done = len(entries) - len(todo)
        threads = torch.get_num_threads()
        wanted = _network_threads(threads, batch_size, self.device)
        try:
            torch.set_num_threads(wanted)
            job.run(todo, progress, done)
        finally:
            torch.set_num_threads(threads)
        if progress is not None:
            progress(len(entries), len(entries))
        return results


#: Models that are a universal potential's own elastic tensor, not a trained network:
#: name -> (potential, relaxed ions) (:mod:`crystensor.physics.elastic_prior`).
POTENTIAL_MODELS = {
    "sevennet-0": ("sevennet-0", False),
    "sevennet-0-relaxed": ("sevennet-0", True),
}


def _check_prior(recorded: dict[str, Any] | None, name: str, where: str) -> None:
    """Refuse a prior model whose potential file differs from the installed one."""
    from crystensor.data.prior_cache import potential_identity

    have = potential_identity(name)
    if not recorded or recorded.get("potential_sha256") != have["potential_sha256"]:
        trained = str((recorded or {}).get("potential_sha256", "?"))[:12]
        raise InputError(
            f"{where} corrects the {name} prior of file sha256 {trained}, but the installed "
            f"one is {have['potential_version']} (sha256 {have['potential_sha256'][:12]}); "
            "install the sevenn version the model was trained with"
        )


class PotentialPredictor(Predictor):
    """The elastic tensor of a universal potential (SevenNet-0, in the ``sevenn`` wheel) by
    automatic differentiation, through predict's pipeline: point-group projection, physical
    floor, derived properties and the structure warnings, like any model's prediction.

    ``relaxed_ions``: the relaxed-ion tensor (the internal-strain correction on top of the
    clamped-ion one; slower). Seconds per structure instead of milliseconds (RESULTS.md).
    """

    def __init__(self, potential: str = "sevennet-0", *, relaxed_ions: bool = False) -> None:
        import torch

        from crystensor.checkpoint import Checkpoint
        from crystensor.physics import load_potential

        ions = "relaxed ions" if relaxed_ions else "clamped ions"
        self.potential = load_potential(potential)
        self.potential_name = potential
        self.relaxed_ions = relaxed_ions
        self.checkpoint = Checkpoint(
            config={"arch": f"{potential} potential, autograd, {ions}"},
            state_dict={},
            featurization={},
            target="elastic",
        )
        self.source = f"{potential} ({ions})"
        self.kind = self.checkpoint.kind
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.models, self.model, self.std_scale = [], None, 1.0
        self.training_elements, self.feature_domain, self.caveat = None, None, None
        self._check_backbone_species = None
        self.prior = None

    @property
    def featurization(self) -> dict[str, Any]:
        return {}

    def check_structure(self, structure: Structure) -> None:
        if len(structure) == 0:
            raise InputError("the structure has no sites")
        self.potential.check_species(np.array([site.specie.Z for site in structure]))

    def card(self) -> str:
        """A Markdown card: what this model is and what was measured (RESULTS.md)."""
        ions = "relaxed-ion" if self.relaxed_ions else "clamped-ion"
        return (
            f"# {self.potential_name}: a universal potential's {ions} elastic tensor\n\n"
            "Not a trained crystensor network: the second derivative of the pretrained "
            f"{self.potential_name} potential's energy (shipped inside the `sevenn` wheel) with "
            "respect to a homogeneous strain at the given geometry, by automatic "
            "differentiation (`crystensor.physics.elastic_prior`), then projected onto the "
            "point group and made positive definite like any prediction.\n\n"
            "Measured on 40 matminer elastic tensors (MAE over 21 components against DFT): "
            "14.7 GPa clamped-ion, 14.9 relaxed-ion; about 0.6 s per structure of up to 10 "
            "atoms and 1.7 s for 11-20 (clamped, one core), several seconds more for relaxed "
            "ions. Its stiffness jumps where a neighbour distance crosses the potential's "
            "cutoff switch (4.5-5 A). See RESULTS.md.\n"
        )

    def checked_graph(self, structure: Structure) -> Structure:
        """The structure itself: the potential builds its own graph."""
        return structure

    def forward(self, graphs: list[Any]) -> tuple[np.ndarray, None, None]:
        from crystensor.physics import compute_elastic_prior
        from crystensor.tensors.harmonic import to_irreps

        tensors = [
            compute_elastic_prior(
                s, self.potential_name, relaxed_ions=self.relaxed_ions, threads=None
            ).tensor
            for s in graphs
        ]
        return to_irreps(np.stack(tensors), self.kind), None, None


@dataclass
class _Job:
    """One call of :meth:`Predictor.predict_results`: the results to fill in and the options."""

    predictor: Predictor
    results: list[Prediction]
    symmetrize: bool
    physical: bool
    batch_size: int
    symprec: float
    angle_tolerance: float | None
    # elastic predictions of the same structures, for a piezoelectric model's d = e S
    stiffness: list[Prediction] | None = None

    def run(
        self,
        indices: list[int],
        progress: Callable[[int, int], None] | None = None,
        done: int = 0,
    ) -> None:
        """Predict ``results[i]`` for every ``i`` in ``indices``, batch by batch, here."""
        pending: list[tuple[int, Any]] = []
        for n, i in enumerate(indices, 1):
            result = self.results[i]
            try:
                self.predictor.check_structure(result.structure)
                result.warnings = self.predictor.structure_warnings(result.structure)
                pending.append((i, self.predictor.checked_graph(result.structure)))
            except InputError as err:
                result.error = str(err)
            except Exception as err:  # one structure never stops the others
                result.error = _internal(err)
            if len(pending) == self.batch_size or (n == len(indices) and pending):
                self._run_batch(pending)
                pending = []
                if progress is not None:
                    progress(done + n, len(self.results))

    def _run_batch(self, pending: list[tuple[int, Any]]) -> None:
        try:
            self._predict_batch(pending)
        except Exception as err:  # a failed batch: each structure alone
            if len(pending) == 1:
                self.results[pending[0][0]].error = _internal(err)
                return
            for item in pending:
                self._run_batch([item])

    def _predict_batch(self, pending: list[tuple[int, Any]]) -> None:
        from crystensor.tensors.harmonic import from_irreps

        raw, distances, members = self.predictor.forward([g for _, g in pending])
        kind = self.predictor.kind
        spread = None
        if members is not None:  # (n_members, n, dim) -> (n, n_members, 3, ..., 3)
            spread = from_irreps(members.reshape(-1, members.shape[-1]), kind)
            spread = spread.reshape(members.shape[0], len(pending), *kind.cartesian_shape)
            spread = np.moveaxis(spread, 0, 1)
        domain = self.predictor.feature_domain
        for n, ((i, _), tensor) in enumerate(
            zip(pending, from_irreps(raw, self.predictor.kind), strict=True)
        ):
            result = self.results[i]
            if distances is not None:
                result.feature_distance = float(distances[n])
                result.warnings.extend(w.as_dict() for w in domain.warning(distances[n]))
            try:
                _finish(result, tensor, self, i, None if spread is None else spread[n])
            except Exception as err:  # one structure never stops the others
                result.error = _internal(err)


# -- many structures: one process per core ----------------------------------------------------

# On a CPU a batch of predict's size is too small to share between threads: on this project's
# 2-core machine (quiet, shipped elastic SEGNN) a batch of 8 ran at 177 structures/s on one
# thread and 133 on two, a batch of 1 at 117 and 31; only from batch 32 on did a second thread
# help (179 against 152). So many structures are shared between processes instead, each on one
# thread: forked from this one (the model is loaded once, the fork costs milliseconds), each
# predicting chunks of the structures with the whole pipeline (graph, network, symmetry,
# properties). ``workers=0`` (auto) forks from this many structures on:
_AUTO_MIN_STRUCTURES = 64
_ONE_THREAD_MAX_BATCH = 16
# structures per task given to a process: small enough that the processes finish together
_CHUNK_BATCHES = 2


def _network_threads(threads: int, batch_size: int, device: Any) -> int:
    """torch threads for the network when this process predicts by itself.

    On a CPU one for batches up to ``_ONE_THREAD_MAX_BATCH`` (see above), else all of them. On a
    GPU, unchanged.
    """
    if getattr(device, "type", "cpu") != "cpu" or threads <= 1:
        return threads
    return 1 if batch_size <= _ONE_THREAD_MAX_BATCH else threads


def _processes(workers: int, n_structures: int, device: Any) -> int:
    """How many processes predict ``n_structures`` structures (1: this one alone).

    ``workers`` >= 1 is taken as it is (at most one per structure); 0 means one per torch
    thread and available core from ``_AUTO_MIN_STRUCTURES`` structures on. Always 1 on a GPU,
    off Linux or inside a daemon process (see :mod:`crystensor.parallel`).
    """
    import torch

    if workers < 0:
        raise InputError(f"workers must be 0 (one per core) or more, got {workers}")
    if getattr(device, "type", "cpu") != "cpu" or n_structures < 2 or not can_fork():
        return 1
    if workers == 0:
        if n_structures < _AUTO_MIN_STRUCTURES:
            return 1
        return max(1, min(torch.get_num_threads(), available_cores()))
    return min(workers, n_structures)


def _predict_in_processes(
    job: _Job,
    indices: list[int],
    processes: int,
    progress: Callable[[int, int], None] | None,
    done: int,
) -> list[int]:
    """Predict ``indices`` in ``processes`` forked processes; return those left undone.

    Each process predicts chunks of ``_CHUNK_BATCHES`` batches and sends back the fields of
    their predictions (:func:`crystensor.parallel.fork_map` re-logs what they logged). If the
    processes cannot be started or one dies, the structures not yet predicted are returned.
    """
    size = job.batch_size * _CHUNK_BATCHES
    chunks = [indices[k : k + size] for k in range(0, len(indices), size)]
    left = list(indices)
    for chunk, predicted in fork_map(_predict_chunk, job, chunks, processes):
        for i, values in predicted:
            for name, value in values.items():
                setattr(job.results[i], name, value)
        done += len(chunk)
        left = left[len(chunk) :]
        if progress is not None:
            progress(done, len(job.results))
    return left


def _predict_chunk(job: _Job, indices: list[int]) -> list[tuple[int, dict[str, Any]]]:
    """In a forked process: predict ``indices`` of the job, return the fields filled in."""
    job.run(indices)
    return [
        (i, {name: getattr(job.results[i], name) for name in _PREDICTED_FIELDS}) for i in indices
    ]


# the fields of a Prediction that predicting fills in (the others are known before)
_PREDICTED_FIELDS = tuple(
    f.name for f in fields(Prediction) if f.name not in ("name", "target", "kind", "structure")
)


def _exact_index_symmetry(tensor: np.ndarray, kind: TensorKind) -> np.ndarray:
    """``tensor`` with its index-symmetric copies made bit-for-bit equal (via the Voigt form)."""
    v = kind.to_voigt(tensor)
    if v.shape[0] == v.shape[-1]:  # 3x3 and 6x6: the (major) symmetry of the matrix itself
        v = 0.5 * (v + v.T)
    return kind.from_voigt(v) if kind.rank > 2 else v


@contextlib.contextmanager
def _named_warnings(name: str) -> Iterator[None]:
    """Prefix what the tensor code logs while it handles one structure with that structure."""
    prefix = name.replace("%", "%%")

    def add_name(record: logging.LogRecord) -> bool:
        record.msg = f"{prefix}: {record.msg}"
        return True

    loggers = [logging.getLogger(f"crystensor.tensors.{m}") for m in ("symmetry", "properties")]
    for logger in loggers:
        logger.addFilter(add_name)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(add_name)


def _finish(
    result: Prediction,
    raw: np.ndarray,
    job: _Job,
    index: int | None = None,
    members: np.ndarray | None = None,
) -> None:
    """Point group, projections and derived properties of one raw prediction (in place);
    ``index``: of ``result`` in ``job.results`` (needed with ``job.stiffness``); ``members``:
    an ensemble's tensors ``(n_members, 3, ..., 3)``, whose spread is reported."""
    with _named_warnings(result.name):
        _symmetrize_and_derive(result, raw, job, index, members)


def _symmetrize_and_derive(
    result: Prediction,
    raw: np.ndarray,
    job: _Job,
    index: int | None,
    members: np.ndarray | None = None,
) -> None:
    from crystensor.tensors import symmetry
    from crystensor.tensors.analysis import derived_properties
    from crystensor.tensors.physical import make_physical, shift_to_floor

    if not np.all(np.isfinite(raw)):
        result.error = "the model produced non-finite values for this structure"
        return
    kind = result.kind
    raw = _exact_index_symmetry(raw, kind)
    try:
        group = symmetry.point_group_of(result.structure, job.symprec, job.angle_tolerance)
    except ValueError as err:
        result.error = str(err)
        return
    result.raw = raw
    result.symmetrized = _exact_index_symmetry(symmetry.project_to_point_group(raw, group), kind)
    result.symmetrize = job.symmetrize
    result.physical = job.physical
    base = result.symmetrized if job.symmetrize else raw
    valid, adjustment = make_physical(base, kind)
    if adjustment is not None:
        result.adjustment = adjustment.as_dict()
        if adjustment.changed and job.symmetrize:  # exact zeros again (eigh rounds them)
            valid = symmetry.project_to_point_group(valid, group)
        # the projection may undo the floor by a rounding error: lift isotropically
        result.valid = shift_to_floor(_exact_index_symmetry(valid, kind), kind)
        if adjustment.changed:
            result.warnings.append(_adjustment_warning(adjustment, kind, job.physical))
    result.point_group = group.symbol
    result.crystal_system = group.crystal_system
    result.space_group = group.space_group_symbol
    result.space_group_number = group.space_group_number
    result.symmetry_violation = symmetry.symmetry_violation(raw, group)
    if members is not None:
        _spread(result, members, group, job.symmetrize, job.predictor.std_scale)
    elastic = None
    if job.stiffness is not None:
        partner = job.stiffness[index]
        elastic = partner.tensor if partner.ok else None
        result.elastic = elastic
        if partner.ok:
            notes = [w for w in partner.warnings if w["code"] != "model-caveat"]
            result.warnings.extend(
                {"code": f"elastic-{w['code']}", "message": f"elastic model: {w['message']}"}
                for w in notes
            )
        else:
            result.warnings.append(
                {"code": "no-elastic", "message": f"no d = e S: {partner.error}"}
            )
    result.properties = derived_properties(
        result.tensor,
        kind,
        target=result.target,
        structure=result.structure,
        crystal_system=group.crystal_system,
        elastic=elastic,
    )


def _potential_name(model: str | os.PathLike) -> str | None:
    """The potential model ``model`` names (``sevennet-0``), unless it is an existing file."""
    from pathlib import Path

    name = str(model)
    return name if name in POTENTIAL_MODELS and not Path(name).exists() else None


def _selectable_path(name: str | os.PathLike) -> Any:
    """The file of shipped selectable model ``name`` (``elastic-prior``), unless ``name`` is an
    existing file."""
    from pathlib import Path

    from crystensor.pretrained import selectable_model

    return None if Path(name).exists() else selectable_model(str(name))


def _spread(
    result: Prediction, members: np.ndarray, group: Any, symmetrize: bool, scale: float = 1.0
) -> None:
    """The members' standard deviation per component (times the ensemble's calibrated
    ``scale``, :mod:`crystensor.ensembles`) and the relative uncertainty."""
    from crystensor.tensors import symmetry

    kind = result.kind
    if symmetrize:  # each member as reported: projected onto the point group
        members = np.stack([symmetry.project_to_point_group(m, group) for m in members])
    members = np.stack([_exact_index_symmetry(m, kind) for m in members])
    std = members.std(axis=0, ddof=1) * scale
    result.std = std
    norm, spread = float(np.linalg.norm(result.tensor)), float(np.linalg.norm(std))
    if norm:
        result.uncertainty = spread / norm
    else:  # a tensor zero by symmetry has no spread either; otherwise the ratio is undefined
        result.uncertainty = None if spread else 0.0


def _internal(err: Exception) -> str:
    log.debug("internal error", exc_info=err)
    return (
        f"internal error ({type(err).__name__}: {str(err)[:200]}); please report it with this "
        "structure (-vv shows the traceback)"
    )


def _adjustment_warning(adjustment: Any, kind: TensorKind, applied: bool) -> dict[str, str]:
    what = "stable (positive definite)" if kind.name == "elastic" else "at least 1 (vacuum)"
    units = f" {kind.units}" if kind.units else ""
    done = (
        f"raised to {adjustment.floor:g}{units}, which changed the tensor by "
        f"{100 * adjustment.relative_change:.3g} % (Frobenius norm)"
        if applied
        else f"not corrected (raw output requested); the nearest valid tensor differs by "
        f"{100 * adjustment.relative_change:.3g} %"
    )
    return {
        "code": "not-physical",
        "message": f"the network's tensor is not {what}: its smallest {adjustment.quantity} "
        f"is {adjustment.smallest_before:.3g}{units}, {done}",
    }


def load_predictor(
    target: str | None = None,
    model: str | os.PathLike | Checkpoint | Predictor | None = None,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
) -> Predictor:
    """A :class:`Predictor` for ``model`` (a checkpoint path or object) or the shipped model.

    Parameters
    ----------
    target : str, optional
        ``"elastic"``, ``"dielectric"``, ``"dielectric-electronic"`` or ``"piezoelectric"``.
        Picks the shipped model when ``model`` is None; otherwise it must be what ``model``
        predicts (or None).
    model : path, Checkpoint or Predictor, optional
        A Predictor is used as it is (its device and dtype are kept).

    Raises
    ------
    InputError
        Neither ``target`` nor ``model``; no shipped model for ``target``; an unreadable
        checkpoint; or a checkpoint for another target.
    """
    from crystensor.checkpoint import Checkpoint, load_checkpoint

    if isinstance(model, Predictor):
        predictor = model
    elif isinstance(model, str | os.PathLike) and _potential_name(model) is not None:
        potential, relaxed = POTENTIAL_MODELS[_potential_name(model)]
        predictor = PotentialPredictor(potential, relaxed_ions=relaxed)
    elif isinstance(model, str | os.PathLike) and _selectable_path(model) is not None:
        checkpoint = load_checkpoint(_selectable_path(model))
        predictor = Predictor(
            checkpoint, device=device, dtype=dtype, source=f"shipped {model} model"
        )
    else:
        if model is None:
            if target is None:
                raise InputError("say which model to use: pass --target or --model CKPT")
            from crystensor.pretrained import shipped_model

            checkpoint, source = load_checkpoint(shipped_model(target)), f"shipped {target} model"
        elif isinstance(model, Checkpoint):
            checkpoint, source = model, "the given checkpoint"
        else:
            checkpoint, source = load_checkpoint(model), str(model)
        predictor = Predictor(checkpoint, device=device, dtype=dtype, source=source)
        caveat = checkpoint.meta.get("caveat")
        if caveat:  # what its model card says a user must know before trusting the numbers
            log.warning("%s: %s", source, caveat)
    if target is not None and target != predictor.target:
        raise InputError(
            f"{predictor.source} predicts {predictor.target!r}, not {target!r}; drop --target "
            f"or pass a model trained for {target}"
        )
    return predictor


def predict_results(
    structures: StructureInput | Iterable[StructureInput],
    target: str | None = None,
    model: str | os.PathLike | Checkpoint | Predictor | None = None,
    *,
    symmetrize: bool = True,
    physical: bool = True,
    device: str = "cpu",
    batch_size: int = 8,
    symprec: float = 0.01,
    angle_tolerance: float | None = None,
    dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    recursive: bool = True,
    elastic: str | os.PathLike | Checkpoint | Predictor | None = None,
) -> list[Prediction]:
    """Predict a tensor for every structure; a structure that fails does not stop the others.

    Parameters
    ----------
    structures : Structure, ase.Atoms, path, or an iterable of them
        Paths may be files (POSCAR/CONTCAR, CIF, extended XYZ with many frames, vasprun.xml,
        anything pymatgen or ASE reads), directories of such files, or ``-`` (a POSCAR on
        standard input).
    target, model
        See :func:`load_predictor`; the shipped model for ``target`` unless ``model`` is given.
    symmetrize : bool
        Report the tensor projected onto the point group (default) or the raw network output.
        Both are kept in each :class:`Prediction`.
    physical : bool
        Report the nearest physically valid tensor (default: elastic positive definite with
        Kelvin moduli >= 1 GPa, dielectric eigenvalues >= 1;
        :func:`crystensor.tensors.physical.make_physical`) or the tensor as it is. Each
        :class:`Prediction` keeps both and says in ``adjustment`` what the floor changed.
    device : str
        ``"cpu"``, ``"cuda"``, ``"auto"``, ...
    batch_size : int
        Structures per forward pass. 8 is fastest on a CPU (SEGNN 4.3 ms of CPU per structure
        against 6.2 at 32: a bigger batch's per-edge tensors no longer fit in cache). Another
        batch size changes the predictions by float32 rounding only (~1e-6 relative).
    symprec, angle_tolerance : float
        Tolerances (Angstrom, degrees) for the point group: moyo with ``symprec`` alone, or
        spglib with both when ``angle_tolerance`` is given
        (:func:`crystensor.tensors.symmetry.point_group_of`).
    dtype : torch.dtype, optional
        Of the model and graphs; float32 by default.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch.
    workers : int
        Processes to predict in: 1 (default) this one; N > 1 that many processes forked from
        this one, each running the whole pipeline on one torch thread on a share of the
        structures; 0 one per torch thread and available core when there are 64 structures or
        more (what ``crystensor predict`` does). CPU on Linux only; otherwise 1.
    recursive : bool
        Search directories with their subdirectories (default) or the directory alone.
    elastic : path, Checkpoint or Predictor, optional
        With a piezoelectric model: an elastic model (``"elastic"`` for the shipped one) whose
        tensor of each structure gives the strain constants d = e S in ``properties``.

    Returns
    -------
    list of Prediction
        In input order; check ``.error`` (``.ok``) of each.

    Notes
    -----
    The results of several processes are those of one (to float32 rounding of the thread
    count: ~1e-7 relative); what the processes log is logged here. If they cannot start or
    one dies, this process predicts what is left.

    Raises
    ------
    InputError
        Only for problems with the model (see :func:`load_predictor`) or the options.
    """
    predictor = load_predictor(target, model, device=device, dtype=dtype)
    stiffness = None
    if elastic is not None:
        shipped = isinstance(elastic, str) and elastic == "elastic"
        stiffness = load_predictor(
            "elastic", None if shipped else elastic, device=device, dtype=dtype
        )
    return predictor.predict_results(
        structures,
        symmetrize=symmetrize,
        physical=physical,
        batch_size=batch_size,
        symprec=symprec,
        angle_tolerance=angle_tolerance,
        progress=progress,
        workers=workers,
        recursive=recursive,
        elastic=stiffness,
    )


def predict(
    structures: StructureInput | Iterable[StructureInput],
    target: str | None = None,
    model: str | os.PathLike | Checkpoint | Predictor | None = None,
    *,
    symmetrize: bool = True,
    physical: bool = True,
    device: str = "cpu",
    batch_size: int = 8,
    symprec: float = 0.01,
    angle_tolerance: float | None = None,
    dtype: torch.dtype | None = None,
    workers: int = 1,
) -> Any:
    """Predicted tensors as pymatgen objects, in the Cartesian frame of each structure.

    ``ElasticTensor`` (GPa) for ``elastic``, ``PiezoTensor`` (stress constants, C/m^2) for
    ``piezoelectric``, ``Tensor`` (relative permittivity) for the dielectric targets. The
    arguments are those of :func:`predict_results`.

    Returns
    -------
    one tensor for one Structure / Atoms, else a list in input order

    Raises
    ------
    InputError
        If any structure could not be predicted (naming each and the reason); use
        :func:`predict_results` to keep the others.
    """
    results = predict_results(
        structures,
        target,
        model,
        symmetrize=symmetrize,
        physical=physical,
        device=device,
        batch_size=batch_size,
        symprec=symprec,
        angle_tolerance=angle_tolerance,
        dtype=dtype,
        workers=workers,
    )
    failed = [r for r in results if not r.ok]
    if failed:
        reasons = "; ".join(f"{r.name}: {r.error}" for r in failed)
        raise InputError(f"could not predict {len(failed)} of {len(results)} structures: {reasons}")
    tensors = [r.to_pymatgen() for r in results]
    return tensors[0] if _is_single(structures) else tensors


# -- model cards ------------------------------------------------------------------------------


def model_info(
    target: str | None = None, model: str | os.PathLike | Checkpoint | None = None
) -> dict[str, Any]:
    """What a model is: the model card of a shipped model and its checkpoint's contents.

    Returns
    -------
    dict
        ``source``, ``target``, ``kind``, ``units``, ``irreps``, ``arch``, ``parameters``,
        ``featurization``, ``split`` (counts), ``metrics``, ``versions``, ``meta``, ``config``,
        ``epoch`` and ``card`` (the shipped Markdown model card, or None).
    """
    predictor = load_predictor(target, model)
    checkpoint = predictor.checkpoint
    card = None
    if isinstance(predictor, PotentialPredictor):
        card = predictor.card()
    elif model is None:
        from crystensor.pretrained import model_card

        card = model_card(predictor.target)
    elif isinstance(model, str | os.PathLike) and _selectable_path(model) is not None:
        from crystensor.pretrained import model_card

        card = model_card(str(model))
    kind = predictor.kind
    return {
        "source": predictor.source,
        "target": checkpoint.target,
        "kind": kind.name,
        "units": kind.units,
        "irreps": kind.irreps,
        "arch": checkpoint.arch,
        "parameters": sum(p.numel() for m in predictor.models for p in m.parameters())
        if predictor.models
        else sum(p.numel() for p in predictor.potential.model.parameters())
        if isinstance(predictor, PotentialPredictor)
        else 0,
        "featurization": dict(checkpoint.featurization),
        "split": {name: len(ids) for name, ids in checkpoint.split.items()},
        "metrics": checkpoint.metrics,
        "versions": dict(checkpoint.versions),
        "meta": dict(checkpoint.meta),
        "config": dict(checkpoint.config),
        "epoch": checkpoint.training.get("epoch"),
        "card": card,
    }
