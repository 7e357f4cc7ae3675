#!/usr/bin/env bash
# The thread-scaling table of paper_repro/README.md ("Training speed"): refimpl against PyTorch CPU at
# 1-16 threads, refimpl's GEMMs left to BLAS's threading or split into one piece per thread
# (refimpl.nn.parallel). Meant for a machine with >= 16 cores; ~5 minutes there.
#   bash paper_repro/bench_threads.sh OUTDIR [DATA_ROOT]
# Writes OUTDIR/threads_lenet5.json and OUTDIR/threads_deep.json (and the logs beside them).
set -euo pipefail
out=${1:?usage: bench_threads.sh OUTDIR [DATA_ROOT]}
root=${2:+--data-root $2}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import numpy, numba, torch, threadpoolctl, os; print('cpus', os.cpu_count(), 'numpy', numpy.__version__, 'numba', numba.__version__, 'torch', torch.__version__)"
# LeNet-5: 50 batches of 64 per row, per-layer profile
python3 paper_repro/bench_training.py $root --model lenet5 --limit 3200 --eval-limit 2000 \
    --threads 1 2 4 8 16 --gemm blas split --profile --output "$out/threads_lenet5.json" 2>&1 | tee "$out/threads_lenet5.log"
# VGG-small (32-64-128) and ResNet-20 on 28x28 images: 20 batches of 64 per row
python3 paper_repro/bench_training.py $root --model vgg_small resnet_small --limit 1280 --eval-limit 1000 \
    --threads 2 8 16 --gemm blas split --chunk 5 --output "$out/threads_deep.json" 2>&1 | tee "$out/threads_deep.log"
