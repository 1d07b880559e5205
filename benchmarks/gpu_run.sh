#!/usr/bin/env bash
# The one GPU session of this project's wave 2 (a lent H100/H200, 15 minutes in all): run from the repository root
# with Fashion-MNIST's training IDX files in data/raw/fashion-mnist/. It
#   1. times NCSN++ at the official configurations (benchmarks/ncsnpp_speed.py: batch 8, full widths, the
#      FFHQ-1024 network also compiled) -> $OUT/speed_gpu.json, and
#   2. trains the three stronger stand-ins side by side (NCSN++ nf 32 / 2 blocks, NCSNv2 ngf 24 with NCSNv2's
#      ladder, NCSN ngf 24), stopped by SIGTERM at a time budget (the trainer saves, the sidecar records the step),
#      then exports their EMA weights -> $OUT/<name>.tar.
# Budgets (seconds) come from the environment so that a CPU dry run (DRY=1) checks every step in a minute.
set -uo pipefail
OUT=${OUT:-build/gpu_run}
mkdir -p "$OUT" runs/gpu
export PYTHONPATH=src PYTHONUNBUFFERED=1
DEV=${DEV:-cuda}
TRAIN_S=${TRAIN_S:-270}
BENCH_S=${BENCH_S:-240}
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
if [ "${DRY:-0}" = 1 ]; then
  BENCH=(--configs cifar10 --repeats 1 --batch 1); STEPS=40; EXTRA=(--n 512); WIDTHS=(8 4 4)
else
  BENCH=(--configs cifar10 bedroom ffhq_1024 --compile ffhq_1024 --repeats 5); STEPS=100000; EXTRA=(); WIDTHS=(32 24 24)
fi
timeout -s TERM "$BENCH_S" python benchmarks/ncsnpp_speed.py --device "$DEV" "${BENCH[@]}" --json "$OUT/speed_gpu.json" \
  2>&1 | tee "$OUT/speed_gpu.log"

common=(--data fashion-mnist --steps "$STEPS" --batch-size 256 --ema 0.999 --seed 0 --save-every 500 --device "$DEV"
        --quiet "${EXTRA[@]}")
python -m pds train --kind ncsnpp --pad 2 --width "${WIDTHS[0]}" --ch-mult 1 2 2 2 --blocks 2 --levels 1000 \
  --sigma-max 25 --sigma-min 0.01 --lr 5e-4 "${common[@]}" --out runs/gpu/ncsnpp_fashion32_nf32.pth &
P1=$!
python -m pds train --kind ncsnv2 --pad 2 --width "${WIDTHS[1]}" --levels 116 --sigma-max 25 --sigma-min 0.01 \
  --lr 5e-4 "${common[@]}" --out runs/gpu/ncsnv2_fashion32.pth &
P2=$!
python -m pds train --kind ncsn --width "${WIDTHS[2]}" --levels 10 --sigma-max 1 --sigma-min 0.01 --lr 1e-3 \
  "${common[@]}" --out runs/gpu/ncsn_fashion28_ngf24.pth &
P3=$!
sleep "$TRAIN_S"
kill -TERM $P1 $P2 $P3 2>/dev/null
wait $P1 $P2 $P3
for name in ncsnpp_fashion32_nf32 ncsnv2_fashion32 ncsn_fashion28_ngf24; do
  python -m pds export --checkpoint "runs/gpu/$name.pth" --out "runs/gpu/export/$name.pth" \
    && cp "runs/gpu/$name.log.jsonl" "runs/gpu/export/$name.log.jsonl" \
    && tar -C runs/gpu/export -cf "$OUT/$name.tar" "$name.pth" "$name.json" "$name.log.jsonl"
done
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$OUT/nvidia_smi.txt"
ls -la "$OUT"
