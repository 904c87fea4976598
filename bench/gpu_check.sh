#!/usr/bin/env bash
# The first-GPU check: every stage on CUDA at toy scale, then the CUDA benchmarks, one line per figure.
#
#   bash bench/gpu_check.sh              # on a machine with one NVIDIA GPU and this repository (< 10 minutes)
#   bash bench/gpu_check.sh --dry-run    # print every command it would run, with --device cpu (CI checks them)
#
# It installs nasbert itself (no dependencies: a GPU image brings torch/transformers/datasets; a wheelhouse in
# $WHEELS is installed first when given), makes a tiny teacher and corpus, and runs: train-supernet (bf16 autocast),
# a 1-GPU torchrun of it (NCCL), latency profile on CUDA in bf16 (CUDA-event timing), search with that table,
# export with refinement, finetune; then bench/supernet_overhead.py, bench/student_speed.py and
# bench/train_throughput.py (tokens/s and model-FLOPs utilisation against the GPU's bf16 peak; the same against the
# CPU's measured matmul rate is printed by `bench/train_throughput.py --device cpu`).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
DEVICE=cuda
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY=1
  DEVICE=cpu
fi
WORK=${WORK:-/tmp/nasbert-gpu-check}
PY=${PYTHON:-python3}

run() {  # print the command (quoted, so it can be pasted or parsed back); run it unless this is the dry run
  echo "+ $(printf '%q ' "$@")"
  if [[ $DRY == 0 ]]; then "$@"; fi
}

figure() {  # run a command and keep only the lines that carry figures
  echo "+ $(printf '%q ' "$@")"
  if [[ $DRY == 0 ]]; then "$@" 2>&1 | grep -E "ratio|tokens/s|utilisation|student/BertModel|median|wrote|validation:|MAPE" || true; fi
}

if [[ $DRY == 0 ]]; then
  if [[ -n "${WHEELS:-}" ]]; then $PY -m pip install -q --no-index --no-deps "$WHEELS"/*.whl; fi
  $PY -m pip install -q --no-deps --no-build-isolation -e . || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('gpu:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
  rm -rf "$WORK" && mkdir -p "$WORK"
fi

# The quickstart's generated corpus, sentiment task and small MLM-trained teacher: nothing is downloaded.
run $PY -c "from pathlib import Path; from nasbert.quickstart import synthetic; from nasbert.quickstart.run import train_teacher; w = Path('$WORK'); synthetic.write_corpus(w / 'corpus.txt', 2000); synthetic.write_task(w / 'task', 1000, 200); train_teacher(w / 'teacher', w / 'corpus.txt', ${TEACHER_STEPS:-60})"

NB="$PY -m nasbert"
figure $NB train-supernet --teacher "$WORK/teacher" --train-file "$WORK/corpus.txt" --output "$WORK/run" \
  --max-steps 60 --batch-size 32 --seq-len 32 --eval-every 30 --save-every 30 --init etd-impt --device "$DEVICE"
figure $PY -m torch.distributed.run --standalone --nproc-per-node=1 -m nasbert train-supernet \
  --teacher "$WORK/teacher" --train-file "$WORK/corpus.txt" --output "$WORK/run-ddp" --max-steps 20 --batch-size 32 \
  --seq-len 32 --eval-every 10 --save-every 10 --device "$DEVICE"
figure $NB latency profile --space "$WORK/run" --device "$DEVICE" --dtype bfloat16 --seq-len 32 --min-run-time 0.05 \
  --output "$WORK/lut.json"
figure $NB latency validate --lut "$WORK/lut.json" --samples 10
figure $NB search "$WORK/run" --lut "$WORK/lut.json" --params-budget 1M --top-k 10 --recheck-batches 2 \
  --device "$DEVICE" --output "$WORK/search.json"
figure $NB export "$WORK/run" --search "$WORK/search.json" --init supernet --refine-steps 20 \
  --train-file "$WORK/corpus.txt" --refine-seq-len 32 --device "$DEVICE" --output "$WORK/students"
figure $NB finetune "$WORK/students" --train-file "$WORK/task/train.tsv" --validation-file "$WORK/task/dev.tsv" \
  --epochs 1 --max-seq-len 32 --device "$DEVICE" --output "$WORK/finetuned"

figure $PY bench/supernet_overhead.py --device "$DEVICE" --archs 5
figure $PY bench/student_speed.py --device "$DEVICE"
figure $PY bench/train_throughput.py --device "$DEVICE" --steps 5 --batch-size 32
echo "gpu check done"
