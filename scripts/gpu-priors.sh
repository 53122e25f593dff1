#!/usr/bin/env bash
# Train the larger CT and MR priors side by side within a time budget, in one call on a lent GPU,
# and leave the results in an output folder small enough to come back (at most 8 files of 16 MiB).
#
# What it does, for CT and MR at once (two background jobs on the one GPU):
#   1. `medrecon train` from scratch on random CROPxCROP crops of the training slices (UNET_CONFIG,
#      by default the design's UNetConfig (32, 64, 128, 128), attention at the third level, 6.3 M
#      parameters; batch CROP_BATCH) for 35% of the budget (--time-limit);
#   2. `medrecon train --init` of stage 1 on whole SIZExSIZE slices (batch WHOLE_BATCH) for 45%;
#      MR with --orientations all and the contrast augmentation of the CPU-continued mr-starter
#      (MR_AUGMENT: gamma, random monotone curves, histogram matching to the real DWI b0 scans of the
#      training split; no inversion, so non-monotone contrasts stay a test; docs/priors.md);
#   3. `medrecon bench prior` on the validation slices when the starter folder holds them (a pack made
#      with `medrecon data pack` usually does not: the weights are then measured back on the CPU).
# The remaining 20% covers start-up, saving and the benchmark.
#
# Output (OUT): {ct,mr}-large.tar (the prior folder: float16 weights, config, card), {ct,mr}.log
# (both stages' logs and the benchmark), prior-{ct,mr}-large.png (samples, where benchmarked).
#
# Usage (the GPU machine has no network: carry a pack of the starter corpus and the wheels):
#   medrecon data pack -o pack                      # on the development machine, about 9.5 MiB
#   .whl/: the wheels of the packages the GPU image lacks (diffusers with importlib_metadata and
#   zipp, sigpy, nibabel; not pydicom or pywavelets, which this run does not use: no DICOM, no
#   benchmark without validation slices) and medrecon's own wheel, for the GPU machine's Python
#   (pip download --no-deps), so that the tree (38 MiB), wheels and pack fit in 64 MiB;
#   then, on the GPU machine, with pack and .whl carried: pip install --no-index --no-deps .whl/*.whl, and
#   scripts/gpu-priors.sh --out "$OUT" --seconds 480 --starter pack
# Options: --out DIR --seconds N [--starter DIR] [--size 256] [--crop 128] [--crop-batch 64]
#   [--whole-batch 32] [--unet-config JSON] [--sources-ct "IDS"] [--sources-mr "IDS"] [--modalities "ct mr"]
#   [--bench-slices 8] [--mr-augment JSON]
# The Python that runs medrecon is $PYTHON (default: python3).
set -euo pipefail

out="" seconds="" starter="" size=256 crop=128 crop_batch=64 whole_batch=32
unet_config='{"sample_size": 256}' sources_ct="" sources_mr="" modalities="ct mr" bench_slices=8
mr_augment='{"p_gamma": 0.2, "gamma_range": [0.4, 2.5], "p_invert": 0, "p_curve": 0.2, "p_match": 0.2, "match_sources": ["mr-dwi-heudiconv", "mr-b0-dipy"]}'
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2 ;;
    --seconds) seconds=$2 ;;
    --starter) starter=$2 ;;
    --size) size=$2 ;;
    --crop) crop=$2 ;;
    --crop-batch) crop_batch=$2 ;;
    --whole-batch) whole_batch=$2 ;;
    --unet-config) unet_config=$2 ;;
    --sources-ct) sources_ct=$2 ;;
    --sources-mr) sources_mr=$2 ;;
    --modalities) modalities=$2 ;;
    --bench-slices) bench_slices=$2 ;;
    --mr-augment) mr_augment=$2 ;;
    *) echo "gpu-priors.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$out" ] && [ -n "$seconds" ] || { echo "gpu-priors.sh: --out DIR and --seconds N are required" >&2; exit 2; }
case "$seconds" in ''|*[!0-9]*) echo "gpu-priors.sh: --seconds takes a whole number, got $seconds" >&2; exit 2 ;; esac
python=${PYTHON:-python3}
medrecon=("$python" -m medrecon)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crop_s=$(( seconds * 35 / 100 ))
whole_s=$(( seconds * 45 / 100 ))
starter_args=()
[ -z "$starter" ] || starter_args=(--starter "$starter")

has_validation() {  # whether the starter folder holds the validation source of modality $1
  "$python" - "$1" "${starter:-}" <<'PY'
import sys
from medrecon.data import starter_path, validation_sources
try:
    starter_path(validation_sources(sys.argv[1].upper())[0].id, sys.argv[2] or None)
except Exception:
    sys.exit(1)
PY
}

run_modality() {
  local m=$1 sources=$2 log="$out/$m.log" extra=()
  [ -z "$sources" ] || extra=(--sources $sources)
  local augment=()
  [ "$m" != mr ] || augment=(--contrast-augment "$mr_augment" --orientations all)
  {
    echo "== $m: stage 1, ${crop}x${crop} crops, batch $crop_batch, ${crop_s} s (started $(date -u +%FT%TZ))"
    "${medrecon[@]}" train --modality "$m" --out "$work/$m-crops" --size "$size" --crop "$crop" --batch-size "$crop_batch" \
      --lr 2e-4 --steps 1000000 --time-limit "$crop_s" --checkpoint-every 1000000 --unet-config "$unet_config" \
      --name "$m-large-crops" "${starter_args[@]}" "${extra[@]}" "${augment[@]}"
    echo "== $m: stage 2, whole ${size}x${size} slices, batch $whole_batch, ${whole_s} s (started $(date -u +%FT%TZ))"
    "${medrecon[@]}" train --modality "$m" --out "$work/$m-whole" --size "$size" --batch-size "$whole_batch" \
      --lr 1e-4 --p-mean -0.8 --p-std 1.4 --steps 1000000 --time-limit "$whole_s" --checkpoint-every 1000000 \
      --init "$work/$m-crops/prior" --name "$m-large" "${starter_args[@]}" "${extra[@]}" "${augment[@]}"
    if has_validation "$m"; then
      echo "== $m: bench prior (started $(date -u +%FT%TZ))"
      "${medrecon[@]}" bench prior "$work/$m-whole/prior" --device auto --slices "$bench_slices" --grid "$out/prior-$m-large.png" \
        "${starter_args[@]}"
    else
      echo "== $m: no validation slices in the starter folder: bench prior skipped (measure the weights on the CPU)"
    fi
    tar -C "$work/$m-whole" -cf "$out/$m-large.tar" --transform "s,^prior,$m-large," prior
    echo "== $m: done $(date -u +%FT%TZ): $out/$m-large.tar"
  } > "$log" 2>&1
}

pids=()
for m in $modalities; do
  case "$m" in
    ct) run_modality ct "$sources_ct" & pids+=($!) ;;
    mr) run_modality mr "$sources_mr" & pids+=($!) ;;
    *) echo "gpu-priors.sh: unknown modality $m" >&2; exit 2 ;;
  esac
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
ls -l "$out"
tail -n 3 "$out"/*.log
exit $status
