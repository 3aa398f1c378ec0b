#!/usr/bin/env bash
# Data-parallel training of crystensor on a SLURM cluster: one torchrun per node, K processes each.
#
#   sbatch examples/slurm_train.sh data/elastic.h5 runs/elastic
#
# Every process trains on its shard of each global batch (--batch-size is the global size, so it
# must be a multiple of nodes x tasks); metrics are gathered across processes and only rank 0
# writes the run directory. CPU nodes use the gloo backend, GPU nodes NCCL (chosen from --device).
# An interrupted job (time limit, preemption) continues exactly with --resume: the script does
# that by itself when the run directory already holds a run.
#SBATCH --job-name=crystensor-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=12:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

STORE=${1:?usage: slurm_train.sh STORE.h5 RUN_DIR [extra crystensor train options]}
RUN=${2:?usage: slurm_train.sh STORE.h5 RUN_DIR [extra crystensor train options]}
shift 2
PROCS_PER_NODE=${PROCS_PER_NODE:-4}          # processes per node (GPUs per node on a GPU machine)
export OMP_NUM_THREADS=$(( ${SLURM_CPUS_PER_TASK:-4} / PROCS_PER_NODE ))

HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
if [[ -f "$RUN/run.json" ]]; then
  ARGS=(train --resume "$RUN")
else
  ARGS=(train --data "$STORE" --output "$RUN" --arch segnn --epochs 300 --batch-size 64 "$@")
fi

srun torchrun \
  --nnodes "$SLURM_NNODES" \
  --nproc_per_node "$PROCS_PER_NODE" \
  --rdzv_id "$SLURM_JOB_ID" \
  --rdzv_backend c10d \
  --rdzv_endpoint "$HEAD:29500" \
  -m crystensor "${ARGS[@]}"
