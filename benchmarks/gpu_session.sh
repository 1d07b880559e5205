#!/usr/bin/env bash
# One lent GPU session (H100/H200; 12 minutes of work at most), run from the repository root:
#   (a) make full-shapes at batch 8: every experiment of the full profile at the official shapes, random weights
#       -> $OUT/full_shapes_cuda_batch8.json
#   (b) the FFHQ-1024 and bedroom PC iteration, eager and compiled (compile time reported separately), vanilla and PDS
#       (benchmarks/ncsnpp_speed.py) -> $OUT/ncsnpp_speed_cuda.json; compared with the released code's 308 ms
#       (benchmarks/README.md)
#   (c) torchrun --nproc_per_node=1 -m pds sample ... --device cuda through NCCL, one shard -> $OUT/torchrun_nccl.json
#   (d) with the minutes left, a wider NCSN++ on Fashion-MNIST 32² (nf 32, the shipped recipe otherwise), stopped by
#       SIGTERM at the budget and exported with its sidecar and loss log -> $OUT/ncsnpp_fashion32_nf32.tar
# Each step has its own time limit and the script goes on after a failed step (the JSON says what finished).
# DRY=1: the same steps at tiny sizes on the CPU, (a) on two of the seven experiments (what tests/test_gpu_session.py
# runs; tests/test_shapes.py runs all seven at tiny sizes).
set -uo pipefail
OUT=${OUT:-build/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python}
START=$(date +%s)
if [ "${DRY:-0}" = 1 ]; then
  DEV=cpu; SHAPES=(--tiny --batch 2 --only mnist_ncsn cifar10_ncsnpp); SPEED=(--configs cifar10 --repeats 1 --batch 1 --fir-shapes 1); TRAIN_S=90; TOTAL_S=240
  TRAIN=(--steps 6 --save-every 3 --n 64); WIDTH=4; LIMIT=(120 120 120)
else
  DEV=cuda; SHAPES=(--batch 8); SPEED=(--configs ffhq_1024 bedroom --compile ffhq_1024 bedroom --repeats 5)
  TRAIN=(--steps 1000000 --save-every 500); WIDTH=32; TOTAL_S=${TOTAL_S:-720}; LIMIT=(180 300 90)
fi
step() {  # name, limit seconds, command...: run it, record rc and seconds
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  timeout -s TERM "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 )), \"limit_s\": $limit}" >> "$OUT/steps.jsonl"
  echo "[$name] rc=$rc in $(( $(date +%s) - t0 )) s"
}
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" \
  | tee "$OUT/device.txt"

# (a) the full profile's experiments at the official shapes
step full_shapes "${LIMIT[0]}" $PY -m pds.lessons.shapes --device "$DEV" "${SHAPES[@]}" --root "$OUT/full_shapes" \
  --json "$OUT/full_shapes_${DEV}.json"

# (b) eager and compiled PC iterations
step ncsnpp_speed "${LIMIT[1]}" $PY benchmarks/ncsnpp_speed.py --device "$DEV" "${SPEED[@]}" \
  --json "$OUT/ncsnpp_speed_${DEV}.json"

# (c) one shard through torchrun (NCCL on a GPU, gloo on the CPU), on the CIFAR-10 stand-in of (a)
if [ "${DRY:-0}" = 1 ]; then  # the tiny networks of (a) are not official configurations: the shipped NCSN++ instead
  PDS=(--checkpoint ncsnpp_fashion32 --method pds --radius 0.2 --lam 1.6)
else
  PDS=(--checkpoint "$OUT/full_shapes/checkpoints/ncsnpp_cifar10/checkpoint.pth" --method pds
       --filters "$OUT/full_shapes/filters/cifar10-32.npz")
fi
step torchrun "${LIMIT[2]}" $PY -m torch.distributed.run --nproc_per_node=1 -m pds sample "${PDS[@]}" --T 2 \
  --count 8 --batch 8 --shard-size 8 --device "$DEV" --out "$OUT/torchrun_samples"
$PY - "$OUT" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
try:
    from pds.lab.generate import load_samples
    images, manifest = load_samples(out / "torchrun_samples")
    info = {"images": len(images), "nfe": manifest["nfe"], "checkpoint": manifest["checkpoint"], "ok": True}
except Exception as exc:  # recorded, not fatal: the step's log says why
    info = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
(out / "torchrun_nccl.json").write_text(json.dumps(info, indent=1))
print(info)
EOF

# (d) the minutes left: a wider NCSN++ (nf 32) on Fashion-MNIST 32², the shipped recipe otherwise
LEFT=$(( TOTAL_S - ($(date +%s) - START) - 45 ))
if [ "${DRY:-0}" = 1 ]; then LEFT=$TRAIN_S; fi
if [ "$LEFT" -gt 30 ]; then
  mkdir -p "$OUT/train"
  step train "$LEFT" $PY -m pds train --kind ncsnpp --data fashion-mnist --pad 2 --width "$WIDTH" --ch-mult 1 2 2 2 \
    --blocks 1 --levels 1000 --sigma-max 25 --sigma-min 0.01 --batch-size 64 --lr 5e-4 --ema 0.999 --seed 0 \
    --device "$DEV" --quiet "${TRAIN[@]}" --out "$OUT/train/ncsnpp_fashion32_nf32.pth"
  if [ -f "$OUT/train/ncsnpp_fashion32_nf32.pth" ]; then
    $PY -m pds export --checkpoint "$OUT/train/ncsnpp_fashion32_nf32.pth" \
      --out "$OUT/train/export/ncsnpp_fashion32_nf32.pth" \
      && cp "$OUT/train/ncsnpp_fashion32_nf32.log.jsonl" "$OUT/train/export/" \
      && tar -C "$OUT/train/export" -cf "$OUT/ncsnpp_fashion32_nf32.tar" ncsnpp_fashion32_nf32.pth \
           ncsnpp_fashion32_nf32.json ncsnpp_fashion32_nf32.log.jsonl
  fi
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$OUT/nvidia_smi.txt" 2>/dev/null
echo "total $(( $(date +%s) - START )) s"
