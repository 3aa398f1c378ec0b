#!/usr/bin/env bash
# The paper's pretraining progressions (its Figures 5-7) with crystensor train and finetune:
#
#   scalar -> elastic -> dielectric -> piezoelectric
#   scalar -> elastic -> piezoelectric
#   scalar -> dielectric -> piezoelectric
#
# Usage: examples/chained_pretraining.sh [STORES_DIR] [RUNS_DIR] [training options for every stage]
# (e.g. --batch-size 16 --lr 0.001); ARCH, PRESET, EPOCHS and SCALAR_EPOCHS are read from the
# environment.
# STORES_DIR holds the stores of examples/build_stores.sh (band-gap.h5, elastic.h5, dielectric.h5,
# piezoelectric.h5). Every stage is one run directory; a finished stage is skipped when the
# script is run again, an interrupted one continues from its last.pt.
set -euo pipefail
STORES=${1:-data}
RUNS=${2:-runs/chained}
shift $(( $# > 2 ? 2 : $# ))
read -ra CT <<< "${CRYSTENSOR:-crystensor}"  # e.g. CRYSTENSOR="crystensor -q"
ARCH=${ARCH:-segnn}
PRESET=${PRESET:-default}
EPOCHS=${EPOCHS:-150}
SCALAR_EPOCHS=${SCALAR_EPOCHS:-20}

stage() {  # run_dir command...: run a stage, or finish an interrupted one
  local dir=$1; shift
  if [[ -f "$dir/metrics.json" ]]; then
    echo "$dir: done"
  elif [[ -f "$dir/run.json" ]]; then
    "${CT[@]}" train --resume "$dir"
  else
    "${CT[@]}" "$@" -o "$dir"
  fi
}

# scalar pretraining, shared by all three chains
stage "$RUNS/scalar" train -d "$STORES/band-gap.h5" --arch "$ARCH" --preset "$PRESET" \
  --epochs "$SCALAR_EPOCHS" "$@"
SCALAR=$RUNS/scalar/best.pt

# scalar -> elastic -> dielectric -> piezoelectric
stage "$RUNS/s-el" finetune "$SCALAR" -d "$STORES/elastic.h5" --epochs "$EPOCHS" "$@"
stage "$RUNS/s-el-di" finetune "$RUNS/s-el/best.pt" -d "$STORES/dielectric.h5" --epochs "$EPOCHS" "$@"
stage "$RUNS/s-el-di-pz" finetune "$RUNS/s-el-di/best.pt" -d "$STORES/piezoelectric.h5" \
  --epochs "$EPOCHS" "$@"
# scalar -> elastic -> piezoelectric
stage "$RUNS/s-el-pz" finetune "$RUNS/s-el/best.pt" -d "$STORES/piezoelectric.h5" --epochs "$EPOCHS" "$@"
# scalar -> dielectric -> piezoelectric
stage "$RUNS/s-di" finetune "$SCALAR" -d "$STORES/dielectric.h5" --epochs "$EPOCHS" "$@"
stage "$RUNS/s-di-pz" finetune "$RUNS/s-di/best.pt" -d "$STORES/piezoelectric.h5" --epochs "$EPOCHS" "$@"

for run in "$RUNS"/*/metrics.json; do
  python3 - "$run" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t = m["test"]
ewt = t.get("ewt", {}).get("25")
print(f"{sys.argv[1].split('/')[-2]:14s} {m['target']:14s} test MAE {t['mae']:.4g} {t['units']}"
      + (f"  EwT25 {100 * ewt:.1f} %" if ewt is not None else ""))
PY
done
