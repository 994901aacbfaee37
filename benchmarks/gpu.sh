#!/usr/bin/env bash
# The GPU rows of the IMP-at-scale tables in one call, sized for a short lease (about 8 minutes):
# both schedules' depth and latency on one market (M = 4, N = 256 and 64), jit(vmap(imp)) on batches
# up to 4096 default markets with the parallel schedule (the GPU's default) then the sequential one,
# default imp per market with its phase split (M = 4), and one N = 20,000 market. Rows are saved as
# they finish (benchmarks/scale.py --budget-s), so a run cut short keeps what it measured.
#   OUT=/some/folder bash benchmarks/gpu.sh
set -uo pipefail
out=${OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import jax, equinox, optax; print('jax', jax.__version__, jax.devices(), 'equinox', equinox.__version__, 'optax', optax.__version__)"
timeout "${GPU_TIMEOUT:-500}" python3 benchmarks/scale.py --parts schedule,batch,sizes,memory \
    --schedule-shapes 4x256,4x64 --schedules parallel,sequential \
    --batch-sizes 256,64 --batches 4096,1,16,256 --models 4 --sizes 64,256,1024 \
    --memory-sizes 20000 --repeats 2 --budget-s "${GPU_BUDGET:-380}" --out "$out" 2>&1 | tee "$out/gpu-log.txt"
