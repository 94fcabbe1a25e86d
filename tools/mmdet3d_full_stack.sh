#!/usr/bin/env bash
# The full OpenMMLab stack next to renderlss, and one mmengine Runner training iteration of
# the renderlss plugin on the synthetic data.
#
# The normal install (`make install`) carries the light stack only (mmcv-lite: registries,
# transforms, mmengine; no mmcv.ops, no mmdet3d.models). This script builds mmcv 2.1.0 with
# its compiled ops from source in a separate virtual environment that sees the main one's
# packages (--system-site-packages), so torch stays the installed build, and then trains one
# iteration of configs/mmdet3d/renderlss_occ3d.py with mmdet3d's own modules registered.
#
# Usage: tools/mmdet3d_full_stack.sh [VENV]      (default /tmp/venv-mmdet3d-full)
# Environment: MAX_JOBS (compile jobs, default 2), DATA (default data/synthetic).
# A second run reuses a venv whose mmcv ops import. Prints PASS or FAIL at the end.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-/tmp/venv-mmdet3d-full}
DATA=${DATA:-$REPO/data/synthetic}
export MAX_JOBS=${MAX_JOBS:-2}
PY="$VENV/bin/python"
LOG_PREFIX="[mmdet3d_full_stack]"

fail() { echo "$LOG_PREFIX FAIL: $*"; exit 1; }
step() { echo "$LOG_PREFIX $(date -u +%H:%M:%S) $*"; }

if [ ! -x "$PY" ]; then
    step "creating $VENV (--system-site-packages)"
    python3 -m venv --system-site-packages "$VENV" || fail "venv"
fi
# Whatever pip resolves, torch and numpy stay the versions the main environment has.
CONSTRAINTS="$VENV/renderlss-constraints.txt"
"$PY" -c "import torch, numpy; print(f'torch=={torch.__version__}'); print(f'numpy=={numpy.__version__}')" \
    > "$CONSTRAINTS" || fail "torch and numpy must be importable"
TORCH_BEFORE=$("$PY" -c "import torch; print(torch.__version__)")

if "$PY" -c "import mmcv.ops" 2>/dev/null; then
    step "mmcv ops already import in $VENV: build skipped"
    BUILD_S=0
else
    START=$(date +%s)
    step "build tools: setuptools<81 (mmcv 2.1.0's setup.py needs pkg_resources)"
    "$PY" -m pip install -q -c "$CONSTRAINTS" "setuptools<81" wheel ninja \
        "mmengine>=0.10,<1" addict yapf packaging || fail "build tools"
    step "mmcv==2.1.0 from source, MMCV_WITH_OPS=1, MAX_JOBS=$MAX_JOBS (about 15 min on 2 cores)"
    # Without --no-build-isolation pip builds against a fresh torch in an isolated
    # environment and the ops are silently left out.
    MMCV_WITH_OPS=1 FORCE_CUDA=0 "$PY" -m pip install -q -c "$CONSTRAINTS" \
        --no-build-isolation --no-binary mmcv "mmcv==2.1.0" || fail "mmcv build"
    step "mmdet==3.3.0 mmdet3d==1.4.0 (nuscenes-devkit pinned: else the resolver builds an old one)"
    "$PY" -m pip install -q -c "$CONSTRAINTS" "mmdet==3.3.0" "mmdet3d==1.4.0" \
        "nuscenes-devkit==1.2.0" || fail "mmdet3d install"
    BUILD_S=$(( $(date +%s) - START ))
fi
TORCH_AFTER=$("$PY" -c "import torch; print(torch.__version__)")
[ "$TORCH_BEFORE" = "$TORCH_AFTER" ] || fail "torch changed: $TORCH_BEFORE -> $TORCH_AFTER"

step "one Runner training iteration of configs/mmdet3d/renderlss_occ3d.py on $DATA"
WORK_DIR=$(mktemp -d /tmp/renderlss-mmdet3d-runner.XXXXXX)
START=$(date +%s)
cd "$REPO" && PYTHONPATH="$REPO" "$PY" - "$DATA" "$WORK_DIR" <<'PYTHON'
import sys

import mmcv
import mmdet
import mmdet3d
import mmengine
import torch
from mmcv.ops import nms  # noqa: F401  (the compiled ops are there)
from mmdet3d.utils import register_all_modules
from mmengine.config import Config
from mmengine.runner import Runner

data, work_dir = sys.argv[1:3]
register_all_modules(init_default_scope=True)
import mmdet3d.models  # noqa: F401,E402  (the full model zoo registers next to the plugin)

from renderlss.mmdet3d.single_iteration import single_iteration_config  # noqa: E402

cfg = Config.fromfile("configs/mmdet3d/renderlss_occ3d.py")
cfg = single_iteration_config(cfg, f"{data}/infos/renderlss_infos_train.pkl", work_dir)
runner = Runner.from_cfg(cfg)
runner.train()
loss = runner.message_hub.get_scalar("train/loss").current()
print(f"versions: torch {torch.__version__} mmcv {mmcv.__version__} mmdet {mmdet.__version__} "
      f"mmdet3d {mmdet3d.__version__} mmengine {mmengine.__version__}")
print(f"iteration loss: {loss:.4f}")
assert torch.isfinite(torch.tensor(loss)), "loss is not finite"
PYTHON
RC=$?
RUN_S=$(( $(date +%s) - START ))
[ $RC -eq 0 ] || fail "Runner iteration (exit $RC; work dir $WORK_DIR)"
echo "$LOG_PREFIX PASS: build ${BUILD_S}s, Runner iteration ${RUN_S}s, torch $TORCH_AFTER kept"
