#!/usr/bin/env bash
# Build the dataset records and HDF5 graph stores of every shared dataset.
# Usage: examples/build_stores.sh [SHARED_DATA_DIR] [OUT_DIR]   (defaults: ../shared/data, data/)
# Rebuilds everything (--force replaces the files of an earlier run). Each NAME gets
# NAME.jsonl.gz + NAME.fetch-rejects.jsonl (fetch) and NAME.h5 + NAME.featurize-rejects.jsonl
# (featurize, only when it rejected something).
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-data}
CT=${CRYSTENSOR:-crystensor}
mkdir -p "$OUT"

build() {  # name target source input [extra fetch options...]
  local name=$1 target=$2 source=$3 input=$4; shift 4
  "$CT" -q fetch --target "$target" --source "$source" --input "$input" \
    -o "$OUT/$name.jsonl.gz" --force "$@"
  "$CT" -q featurize "$OUT/$name.jsonl.gz" --target "$target" -o "$OUT/$name.h5" --workers 2 \
    --force
}

build elastic elastic matminer-csv "$DATA/matminer-2018/elastic_tensor.csv.gz"
build dielectric dielectric matminer-csv "$DATA/matminer-2018/dielectric_constant.csv.gz"
build dielectric-electronic dielectric-electronic matminer-csv \
  "$DATA/matminer-2018/dielectric_constant.csv.gz"
build dielectric-electronic-born dielectric-electronic extxyz \
  "$DATA/e3nn-born-dielectric/phonon_becs_epsilon.xyz.gz" --key eps
build piezoelectric piezoelectric matminer-csv "$DATA/matminer-2018/piezoelectric_tensor.csv.gz"
build band-gap band-gap extxyz "$DATA/mp-2018-scalars/mp_2018_scalars.extxyz.gz" --key band_gap
build formation-energy formation-energy extxyz "$DATA/mp-2018-scalars/mp_2018_scalars.extxyz.gz" \
  --key formation_energy_per_atom
echo "stores written to $OUT/"
