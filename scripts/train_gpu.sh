#!/bin/bash
# One GPU session: fine-tune the shipped IMN, train four sizes from scratch and one that hides the
# image instead of the difference, side by side on one GPU,
# each for the same wall time, then time the network on CUDA. Everything the run makes goes to $OUT.
#
#   OUT=out MINUTES=6.5 DEVICE=cuda bash scripts/train_gpu.sh PAIRS_CACHE
#
# PAIRS_CACHE is a swap-pairs file made on a machine with the front end (dlib), e.g.
#   imnkit train ../shared/data/train_faces -o /tmp/x.safetensors --pairs swap --pairs-cache pairs.safetensors --steps 1
# (the GPU machine has no dlib). Small nets leave an H100 mostly idle, so the five runs share it; each
# gets the same wall time, which makes the quality-vs-size comparison one at equal (shared) compute.
# Runs: name:blocks:growth:hidden:peak lr:init weights. Every run warms its rate up over $WARMUP steps,
# steers masked - recovered Y-PSNR to $OFFSET dB (default -1.5, favouring recovery) and
# keeps a moving average of its weights (decay $EMA, default 0.999).
set -u
CACHE=${1:?usage: train_gpu.sh PAIRS_CACHE}
OUT=${OUT:?set OUT}
MINUTES=${MINUTES:-6.5}
DEVICE=${DEVICE:-cuda}
CROP=${CROP:-128}
BATCH=${BATCH:-32}
HARD_LIMIT=$(python3 -c "print(int(float('$MINUTES') * 60 + 90))")  # wall stop, so packing always runs
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/runs"
DEFAULT_RUNS="ft_k6g24:6:24:difference:5e-5:src/imnkit/weights/imn_default.safetensors
k6g24:6:24:difference:2e-4:
k4g16:4:16:difference:2e-4:
k8g32:8:32:difference:2e-4:
k16g32:16:32:difference:1e-4:
k6g24_image:6:24:image:2e-4:"
RUNS=${RUNS:-$DEFAULT_RUNS}  # or one's own list, e.g. RUNS="ft2:6:24:difference:3e-5:prev.safetensors"
if [ -n "${ONLY:-}" ]; then RUNS=$(echo "$RUNS" | head -n "$ONLY"); fi
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true) > "$OUT/runs/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/runs/gpu.txt" 2>&1
pids=""
for spec in $RUNS; do
  IFS=: read -r name blocks growth hide lr init <<< "$spec"
  run="$OUT/runs/$name"
  mkdir -p "$run"
  timeout "$HARD_LIMIT" python3 benchmarks/train_curve.py train - "$run" --device "$DEVICE" --pairs swap \
    --pairs-cache "$CACHE" --minutes "$MINUTES" --blocks "$blocks" --growth "$growth" --hide "$hide" \
    --crop "$CROP" --batch "$BATCH" --lr "$lr" --lam 1 3 1 --balance equalize --offset "${OFFSET:--1.5}" --ema "${EMA:-0.999}" --ckpt-every 1000 --warmup "${WARMUP:-500}" \
    --log-every 20 --threads 1 ${init:+--init "$init"} > "$run/stdout.log" 2>&1 &
  pids="$pids $!"
done
for p in $pids; do wait "$p"; done
# Pack: the final weights one file each (at most 8 files come back), logs and configs in one archive.
for d in "$OUT"/runs/*/; do
  n=$(basename "$d")
  if [ -f "$d/imn_final.safetensors" ]; then
    cp "$d/imn_final.safetensors" "$OUT/imn_$n.safetensors"
  else  # killed before the end: keep its newest checkpoint
    last=$(ls "$d"/checkpoints/step_*.safetensors 2>/dev/null | tail -n 1)
    [ -n "$last" ] && cp "$last" "$OUT/ckpt_$n.safetensors"
  fi
done
timeout 60 python3 - "$OUT"/imn_ft_k6g24.safetensors > "$OUT/runs/cuda_speed.txt" 2>&1 <<'EOF'
# CUDA speed of the network alone (float32, like embed/extract), at 512 and 1024 px.
import sys, time, torch
sys.path.insert(0, "src")
from imnkit.nets.imn import draw_aux_noise
from imnkit.train.checkpoint import load_weights
for path in ["src/imnkit/weights/imn_default.safetensors"] + sys.argv[1:]:
    try:
        net = load_weights(path, "cuda").eval()
    except Exception as err:
        print(path, "not loaded:", type(err).__name__); continue
    for size in (512, 1024):
        x = torch.rand(1, 3, size, size, device="cuda"); m = torch.rand_like(x)
        n = draw_aux_noise(x.shape, 0).cuda()
        with torch.inference_mode():
            for _ in range(3): y, _ = net(x, m); net.inverse(y, n)
            torch.cuda.synchronize(); t = time.perf_counter()
            for _ in range(10): y, _ = net(x, m)
            torch.cuda.synchronize(); f = (time.perf_counter() - t) / 10; t = time.perf_counter()
            for _ in range(10): net.inverse(y, n)
            torch.cuda.synchronize(); i = (time.perf_counter() - t) / 10
        print(f"{path} {size}px forward {f*1000:.1f} ms inverse {i*1000:.1f} ms")
EOF
tar czf "$OUT/logs.tar.gz" -C "$OUT" --exclude="*.safetensors" runs && rm -rf "$OUT/runs"
ls -la "$OUT"
