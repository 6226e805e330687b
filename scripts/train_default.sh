#!/bin/sh
# Trains phase 1 (CPU) of the shipped default IMN weights (src/imnkit/weights/imn_default.safetensors).
#
#   sh scripts/train_default.sh [TRAIN_DIR] [RUN_DIR]      environment: MINUTES, PAIRS, RESUME
#
# The configuration: 6 coupling blocks, growth 24, hiding the difference (protected - Mask),
# realistic pairs (an elliptical face region replaced by another colour-matched face; PAIRS=swap for
# the swap stage's pairs), 64 px crops, batch 8, Adam 2e-4 halved at 50/75/90 % of an 82-minute wall
# budget (MINUTES), losses 1:3:1 with the embed weight steered so masked and recovered Y-PSNR meet
# ("equalize"), bf16 + channels_last, gradient clipping 1.0 and the explosion guard, on 2 CPU cores.
# The step, the clock and the schedule continue across a resume, so phase 1 was these three commands:
#   1. steps 0-1,000:     sh scripts/train_default.sh            (interrupted at step 1,000)
#   2. steps 1,000-6,000: RESUME=$RUN/checkpoints/step_00001000.safetensors sh scripts/train_default.sh
#   3. steps 6,000-8,882: PAIRS=swap MINUTES=80 RESUME=$RUN/checkpoints/step_00006000.safetensors sh scripts/train_default.sh
# The later phases (GPU fine-tune with scripts/train_gpu.sh, CPU fine-tunes averaged with
# scripts/average_weights.py) and their results: docs/model-card.md.
# benchmarks/train_curve.py wraps `imnkit.train.train` to pick 1 or 2 threads by what else is
# running; `imnkit train DATA -o W --blocks 6 --growth 24 --minutes 82 --balance equalize` trains
# the same configuration.
set -eu
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/train_faces}
RUN=${2:-runs/imn_k6g24_diff_eq}
mkdir -p "$RUN"
python benchmarks/train_curve.py train "$DATA" "$RUN" \
  --minutes "${MINUTES:-82}" --blocks 6 --growth 24 --hide difference --crop 64 --batch 8 --pairs "${PAIRS:-realistic}" \
  --lr 2e-4 --lam 1 3 1 --balance equalize --offset 0 --ckpt-every 500 --threads 2 \
  ${RESUME:+--resume "$RESUME"}
