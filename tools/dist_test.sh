#!/usr/bin/env bash
# Distributed evaluation through torchrun.
#   tools/dist_test.sh CONFIG CKPT NPROC [tools/test.py arguments...]
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT on each of them.
# CPU processes use gloo, GPU processes nccl (one process per GPU). Every process scores its
# share of the samples and the metrics are summed over processes, so the numbers equal those
# of a single process.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CKPT NPROC [test.py arguments...]" >&2
    exit 2
fi
CONFIG=$1
CKPT=$2
NPROC=$3
shift 3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
# Not training's default port, so that an evaluation can run beside a training run.
MASTER_PORT=${MASTER_PORT:-29510}
# One thread per process unless told otherwise: NPROC processes share the machine's cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC" \
    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CKPT" "$@"
