#!/usr/bin/env bash
# GPU check of the compiled kernels and the paper-scale costs, in under 8 minutes on one GPU:
#   1. build the splat kernels of cuda/ (CPU + CUDA) into $RENDERLSS_EXT_CACHE (default
#      OUT_DIR/ext_cache), timed;
#   2. the kernel tests, CUDA parity included (tests/test_compiled_splat.py);
#   3. tools/benchmark.py at the paper scale on cuda: splat variants, renderer, one training
#      step (time, peak memory);
#   4. one summary: splat and renderer times next to the memory-traffic floor of
#      ../shared/reference.md (~170 MB moved by the 256x704, C=32 splat: ~51 us on H100,
#      ~35 us on H200), written to OUT_DIR/gpu_check.json.
#
# Usage: tools/gpu_check.sh OUT_DIR [--dry-run]
#   --dry-run: the CPU-side parts only (build of the CPU kernels, the CPU tests, the splat
#   section at the demo scale on CPU, the summary), for checking the script without a GPU.
# Without CUDA (and without --dry-run) it stops at once with exit status 2.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: tools/gpu_check.sh OUT_DIR [--dry-run]" >&2
    exit 64
fi
out_dir=$1
dry_run=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RENDERLSS_EXT_CACHE="${RENDERLSS_EXT_CACHE:-$out_dir/ext_cache}"

if [[ "$dry_run" == "--dry-run" ]]; then
    device=cpu
    scales=demo
    sections=splat
    repeats=1
else
    if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: no CUDA device visible to torch ($(python -c 'import torch; print(torch.__version__)')); nothing checked. Use --dry-run for the CPU-side parts." >&2
        exit 2
    fi
    device=cuda
    scales=paper
    sections="splat render model"
    repeats=5
fi

echo "== build the splat kernels ($device) into $RENDERLSS_EXT_CACHE"
timeout 300 python - "$out_dir/build.json" "$device" <<'EOF'
import json, sys, time
import torch
from renderlss.ops import compiled
start = time.perf_counter()
ops = compiled.build(compiled.cuda_build_possible(), compiled.cache_dir())
seconds = time.perf_counter() - start
if sys.argv[2] == "cuda" and not ops.has_cuda:
    sys.exit("gpu_check: the build has no CUDA kernels (torch without CUDA, or no nvcc)")
json.dump(dict(build_s=round(seconds, 1), has_cuda=ops.has_cuda), open(sys.argv[1], "w"))
print(f"built in {seconds:.1f} s (CUDA kernels: {ops.has_cuda})")
EOF

echo "== kernel tests (CUDA parity where a GPU is present)"
OMP_NUM_THREADS=4 timeout 240 python -m pytest tests/test_compiled_splat.py -q -rs \
    --junitxml="$out_dir/tests.xml"

echo "== benchmark ($scales on $device)"
timeout 300 python tools/benchmark.py --only $sections --scales $scales \
    --device $device --repeats $repeats --out "$out_dir/benchmark.json"

python - "$out_dir" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
bench = json.loads((out / "benchmark.json").read_text())
build = json.loads((out / "build.json").read_text())
# ../shared/reference.md section 7: ~170 MB moved by the paper-scale splat.
floor_us = {"H100": 170e6 / 3.35e12 * 1e6, "H200": 170e6 / 4.8e12 * 1e6}
rows = {(r["section"], r["scale"], r["case"]): r for r in bench["rows"]}
summary = dict(device=bench["device"], torch=bench["torch"], build_s=build["build_s"], rows=[])
for (section, scale, case), r in sorted(rows.items()):
    if "error" in r:
        summary["rows"].append(dict(section=section, scale=scale, case=case, error=r["error"]))
        continue
    entry = dict(section=section, scale=scale, case=case, ms=round(r["seconds"] * 1e3, 3),
                 peak_extra_mb=r.get("peak_extra_mb"))
    if section == "splat" and scale == "paper":
        entry["x_floor_h100"] = round(r["seconds"] * 1e6 / floor_us["H100"], 1)
        entry["x_floor_h200"] = round(r["seconds"] * 1e6 / floor_us["H200"], 1)
    summary["rows"].append(entry)
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
print(f"\n== summary: {summary['device']}, torch {summary['torch']}, kernel build {build['build_s']} s")
print("splat floor (memory traffic): %.0f us on H100, %.0f us on H200" % (floor_us["H100"], floor_us["H200"]))
for e in summary["rows"]:
    if "error" in e:
        print(f"{e['section']:<7} {e['scale']:<6} {e['case']:<30} ERROR {e['error']}")
        continue
    floor = f"  {e['x_floor_h200']}x the H200 floor" if "x_floor_h200" in e else ""
    print(f"{e['section']:<7} {e['scale']:<6} {e['case']:<30} {e['ms']:>10.3f} ms  "
          f"peak +{e['peak_extra_mb']} MB{floor}")
print(f"wrote {out / 'gpu_check.json'}")
EOF
