#!/bin/sh
# Resumes the long run from step 1000 (the first process ended with the helper that started it).
cd /work/main && . .venv/bin/activate
RUN=runs/imn_k6g24_diff_eq
python benchmarks/train_curve.py train /work/shared/data/train_faces $RUN \
  --minutes 82 --blocks 6 --growth 24 --hide difference --crop 64 --batch 8 --pairs realistic \
  --lr 2e-4 --lam 1 3 1 --balance equalize --offset 0 --ckpt-every 500 --threads 2 \
  --resume $RUN/checkpoints/step_00001000.safetensors >> $RUN/train.log 2>&1
echo "exit $?" >> $RUN/train.log
