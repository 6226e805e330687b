#!/bin/sh
# The long IMN training run (documented in the README): ~85 min wall budget; starts with 1 thread and
# switches to 2 only while the other core is idle (benchmarks/train_curve.py, measured reasons there).
cd /work/main && . .venv/bin/activate
RUN=runs/imn_k6g24_diff_eq
mkdir -p $RUN
nohup python benchmarks/train_curve.py train /work/shared/data/train_faces $RUN \
  --minutes 85 --blocks 6 --growth 24 --hide difference --crop 64 --batch 8 --pairs realistic \
  --lr 2e-4 --lam 1 3 1 --balance equalize --offset 0 --ckpt-every 500 --threads 1 \
  > $RUN/train.log 2>&1 &
echo $! > $RUN/pid
