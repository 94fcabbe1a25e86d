#!/usr/bin/env bash
# Distributed training through torchrun.
#   tools/dist_train.sh CONFIG NPROC [tools/train.py arguments...]
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT on each of them.
# CPU processes use gloo, GPU processes nccl (one process per GPU).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [train.py arguments...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
# One thread per process unless told otherwise: NPROC processes share the machine's cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC" \
    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
    "$(dirname "$0")/train.py" "$CONFIG" "$@"
