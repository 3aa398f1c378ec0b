#!/usr/bin/env bash
# Build the combined HDF5 graph stores the shipped (pretrained) models are trained on.
# Usage: examples/build_shipped_stores.sh [SHARED_DATA_DIR] [OUT_DIR]   (defaults: ../shared/data, data/)
#
#   elastic-shipped.h5                matminer elastic_tensor + StrainTensorNet, --dedupe id
#                                     (~120 shared material ids; the matminer copy is kept)
#   dielectric-electronic-shipped.h5  matminer e_electronic + e3nn Born-set eps, --dedupe structure
#                                     (the Born set has no material ids: same reduced formula and a
#                                     pymatgen StructureMatcher fit; the matminer copy is kept)
#
# The dielectric (total) and piezoelectric models use the single-source stores of
# examples/build_stores.sh (dielectric.h5, piezoelectric.h5): those have one source only.
# Record files already in OUT_DIR are reused (build_stores.sh writes the same names); delete one
# to fetch it again. The stores are rebuilt every time (featurize --force). CRYSTENSOR may hold a
# command with options, e.g. ".venv/bin/crystensor -v".
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-data}
read -ra CT <<< "${CRYSTENSOR:-crystensor}"
mkdir -p "$OUT"

records() {  # name target source input [extra fetch options...]: fetch unless already there
  local name=$1 target=$2 source=$3 input=$4; shift 4
  if [[ -s "$OUT/$name.jsonl.gz" ]]; then
    echo "reusing $OUT/$name.jsonl.gz"
  else
    "${CT[@]}" -q fetch --target "$target" --source "$source" --input "$input" \
      -o "$OUT/$name.jsonl.gz" "$@"
  fi
}

# Elastic: the two sources share Materials Project ids, so the id decides.
records elastic elastic matminer-csv "$DATA/matminer-2018/elastic_tensor.csv.gz"
records elastic-stn elastic straintensornet "$DATA/straintensornet-mp/mp_elastic_ieee.json.gz"
"${CT[@]}" featurize "$OUT/elastic.jsonl.gz" "$OUT/elastic-stn.jsonl.gz" --target elastic \
  -o "$OUT/elastic-shipped.h5" --dedupe id --workers 2 --force

# Electronic dielectric: the Born set has running numbers as ids, so the structure decides.
records dielectric-electronic dielectric-electronic matminer-csv \
  "$DATA/matminer-2018/dielectric_constant.csv.gz"
records dielectric-electronic-born dielectric-electronic extxyz \
  "$DATA/e3nn-born-dielectric/phonon_becs_epsilon.xyz.gz" --key eps
"${CT[@]}" featurize "$OUT/dielectric-electronic.jsonl.gz" \
  "$OUT/dielectric-electronic-born.jsonl.gz" --target dielectric-electronic \
  -o "$OUT/dielectric-electronic-shipped.h5" --dedupe structure --workers 2 --force

echo "shipped stores written to $OUT/ (rejections, duplicates included, in" \
  "*.fetch-rejects.jsonl and *-shipped.featurize-rejects.jsonl)"
