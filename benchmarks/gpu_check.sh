#!/usr/bin/env bash
# One run on a lent GPU machine (one H200) for issues 11 and 12, part 2, in at most ~8 minutes:
#   the GPU tests of the fused sampling kernel and the CUDA-graph sampler, bench_gpu (sampler image tokens/s) at
#   Janus-Pro-1B and -7B shapes, bench_gpu_step (whole BiCoT-GRPO steps, ours vs T2I-R1's way) at 1B and 7B.
# Each stage runs under `timeout` with its own budget (times GPU_CHECK_BUDGET_SCALE, default 1), cut to what is
# left of GPU_CHECK_SECONDS (default 470); a stage with less than 30 s left is skipped. Stages run in order of
# importance, so time runs out on 7B first.
#
# usage: benchmarks/gpu_check.sh OUT_DIR [--dry-run]
#   OUT_DIR gets gpu_check.log (every stage's output), stages.tsv (name, exit code, seconds, budget),
#   tests.xml (JUnit), entries.json (the gpu_* result entries) and summary.txt; the summary is printed last.
#   --dry-run: the same stages on CPU with the tiny model and a few quick tests (checks this script).
# The GPU machine has no omegaconf (cluster.config needs it) and no package registry: `make gpu-wheels` here fills
# .gpu_wheels/ (ignored by git), which the run carries; this script installs whatever wheels are there. Then:
#   run(command="bash benchmarks/gpu_check.sh $OUT", carry=[".gpu_wheels"], timeout_s=560)
# and here, afterwards: python -m benchmarks.gpu_check record <the fetched OUT folder>
set -uo pipefail
usage="usage: benchmarks/gpu_check.sh OUT_DIR [--dry-run]"
[[ $# -ge 1 && $# -le 2 ]] || { echo "$usage" >&2; exit 2; }
dry=${2:-}
[[ -z $dry || $dry == --dry-run ]] || { echo "$usage" >&2; exit 2; }
mkdir -p "$1" && out=$(cd "$1" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
py=${PYTHON:-python3}
total=${GPU_CHECK_SECONDS:-470}
scale=${GPU_CHECK_BUDGET_SCALE:-1}
start=$SECONDS
log=$out/gpu_check.log
: >"$log"
: >"$out/stages.tsv"
rm -f "$out/entries.json" "$out/tests.xml" "$out/summary.txt"

export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".gpu_wheels/*.whl" >/dev/null; then
    site=${TMPDIR:-/tmp}/gpu_check_site
    echo "==== wheels: $(cd .gpu_wheels && echo *.whl)" >>"$log"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        .gpu_wheels/*.whl >>"$log" 2>&1 && PYTHONPATH=$PWD:$site || echo "wheel install failed (see $log)"
fi
{ echo "==== machine"; nvidia-smi -L 2>&1; "$py" -c "import sys, torch, transformers, omegaconf
print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__,
      'cuda', torch.cuda.is_available(), 'omegaconf', omegaconf.__version__, 'from', omegaconf.__file__)" 2>&1
} >>"$log"

# stage NAME BUDGET_S COMMAND...: run COMMAND under timeout, append its output to the log, note its exit code
stage() {
    local name=$1 budget=$(($2 * scale))
    shift 2
    local left=$((total - (SECONDS - start)))
    ((budget > left)) && budget=$left
    if ((budget < 30)); then
        printf '%s\tskipped\t0\t%s\n' "$name" "$left" >>"$out/stages.tsv"
        echo "$name: skipped (${left}s left)"
        return
    fi
    echo "==== $name (budget ${budget}s): $*" >>"$log"
    local t0=$SECONDS rc
    timeout -k 10 "$budget" "$@" >>"$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$budget" >>"$out/stages.tsv"
    echo "$name: exit $rc after $((SECONDS - t0))s"
    ((rc == 0)) || tail -n 15 "$log" | sed 's/^/    /'
}

if [[ -n $dry ]]; then
    tests=(tests/test_cuda_graph_sampler.py -k unpadded_default_params)
else
    tests=(tests/test_fused_sampling.py tests/test_cuda_graph_sampler.py)
fi
stage tests 110 "$py" -m pytest -q -p no:cacheprovider --junitxml="$out/tests.xml" "${tests[@]}"
stage bench_gpu_1b 80 "$py" -m benchmarks.gpu_check bench_gpu 1b "$out" $dry
stage step_1b 130 "$py" -m benchmarks.gpu_check step 1b "$out" $dry
stage bench_gpu_7b 110 "$py" -m benchmarks.gpu_check bench_gpu 7b "$out" $dry
stage step_7b 150 "$py" -m benchmarks.gpu_check step 7b "$out" $dry
"$py" -m benchmarks.gpu_check summary "$out"
