#!/usr/bin/env bash
# Measure the GPU fast path (docs/samplers.md, "Network execution") in one call on a GPU, and leave the tables in
# an output folder small enough to come back.
#
# What it measures (`medrecon bench volume`, end to end through medrecon.reconstruct):
#   - a SLICES-slice 256x256 CT volume (the validation patient ct-lung1 repeated), 23 parallel views:
#     DDS at 50 steps with the fast network execution (bf16 autocast, channels_last, torch.compile,
#     batch size from free memory) and in fp32 eager (the PSNR reference of the 0.05 dB tolerance);
#     score-SDE (2001 NFE) and DPS (1000 steps) at their presets on the first LONG_SLICES slices (default 8);
#     total seconds with the compile time apart, slices/s, network images/s, the network's share of
#     the step time, TFLOP/s, peak memory, PSNR;
#   - the network alone (the shipped prior's and the reference UNet of the GPU figures), eager fp32
#     and fast, at NETWORK_BATCH.
# On a machine with several GPUs it also runs DDS sharded over them with torchrun (NCCL) and checks
# that the gathered volume equals the one-process volume of the same seed.
#
# Output (OUT): volume-gpu.md (the tables, the bench:volume-gpu section of docs/benchmarks.md),
# volume-gpu.json, run.log, and, with several GPUs, torchrun.log.
#
# Usage (the GPU machine has no network: carry a pack holding ct-lung1 and the wheels):
#   medrecon data pack -o pack --only ct-lung1       # on the development machine (1.1 MiB; the tree,
#                                                    # about 38 MiB, and .whl/, 16, fit in the 64)
#   .whl/: the wheels of the packages the GPU image lacks (diffusers with importlib_metadata and
#   zipp, sigpy, pywavelets, nibabel, pydicom) and medrecon's own wheel, for the GPU machine's Python
#   (pip download --no-deps); then, on the GPU machine, with pack and .whl carried:
#   pip install --no-index --no-deps .whl/*.whl, and
#   scripts/gpu-fast-path.sh --out "$OUT" --starter pack
# Options: --out DIR --starter DIR [--slices 300] [--long-slices 8] [--network-batch 64]
#   [--extra "ARGS"] (more `medrecon bench volume` arguments, e.g. "--steps dds=2" for a dry run)
# Planning (from figures measured on an H100, not a measurement of this script): each compiled shape costs
# about 47 s (forward and backward for DPS more), DDS-50 on 300 slices about 20 s, the fp32 reference
# about 20 s, score-SDE and DPS on 8 slices one to two minutes each, the network rows about two
# minutes: some 7 minutes in all, inside one 10-minute call; give it a timeout of 570 s.
# The Python that runs medrecon is $PYTHON (default: python3).
set -euo pipefail

out="" starter="" slices=300 long_slices=8 network_batch=64 extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2 ;;
    --starter) starter=$2 ;;
    --slices) slices=$2 ;;
    --long-slices) long_slices=$2 ;;
    --network-batch) network_batch=$2 ;;
    --extra) extra=$2 ;;
    *) echo "gpu-fast-path.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$out" ] && [ -n "$starter" ] || { echo "gpu-fast-path.sh: --out DIR and --starter DIR are required" >&2; exit 2; }
python=${PYTHON:-python3}
mkdir -p "$out"
{
  echo "== $(date -u +%FT%TZ) $("$python" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")')"
  # shellcheck disable=SC2086  # --extra is a list of arguments
  "$python" -m medrecon bench volume --slices "$slices" --long-slices "$long_slices" --networks \
    --network-batch "$network_batch" --starter "$starter" --json "$out/volume-gpu.json" \
    --write "$out/volume-gpu.md" --section volume-gpu $extra
} 2>&1 | tee "$out/run.log"

gpus=$("$python" -c 'import torch; print(torch.cuda.device_count())')
if [ "$gpus" -gt 1 ]; then
  {
    work=$(mktemp -d)
    "$python" -m medrecon simulate "$starter/ct-lung1.nii.gz" -o "$work/sim" --modality ct --views 23
    "$python" -m medrecon reconstruct "$work/sim" -o "$work/one.nii.gz" --quiet
    start=$SECONDS
    "$python" -m torch.distributed.run --standalone --nproc_per_node "$gpus" -m medrecon reconstruct "$work/sim" \
      -o "$work/many.nii.gz" --quiet
    echo "torchrun on $gpus GPUs: $((SECONDS - start)) s (start-up included)"
    "$python" - "$work/one.nii.gz" "$work/many.nii.gz" <<'PY'
import sys
import nibabel as nib
import numpy as np
one, many = (np.asarray(nib.load(p).dataobj, dtype=np.float64) for p in sys.argv[1:3])
print(f"one process vs torchrun: max |difference| {np.abs(one - many).max():.3g} HU")
PY
  } 2>&1 | tee "$out/torchrun.log"
fi
