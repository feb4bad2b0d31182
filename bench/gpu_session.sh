#!/usr/bin/env bash
# The GPU figures of docs/performance.md, measured in one run on a machine with no network and
# no model weights (random-weight Llamas of published shapes: speed and memory depend on the
# shape only). Carried beside the code, in .gpu/ (not in git): wheels of the packages the
# machine lacks (pydantic), the embedded model's tokenizer files, and a copy of the data sets.
#
#   OUT=DIR bash bench/gpu_session.sh            # on the GPU machine, from the repository root
#   BIG=tiny SMALL=tiny bash bench/gpu_session.sh  # the same steps, tiny shapes (a smoke test)
set -u
BIG=${BIG:-llama2-7b}      # roofline and training memory
SMALL=${SMALL:-llama-1b}   # the toolkit's own training and generation paths
OUT=${OUT:-/tmp/gpu-out}
EXAMPLES=${EXAMPLES:-256}
ONLY=${ONLY:-roofline model packing workload}  # the steps to run
ROOT=$PWD
mkdir -p "$OUT"
python3 -c "import pydantic" 2>/dev/null ||
    python3 -m pip install -q --no-index --no-deps --target /tmp/pylib .gpu/wheels/*.whl
export PYTHONPATH=$ROOT/src:$ROOT/bench:/tmp/pylib VALUEHARMS_DATA=$ROOT/.gpu/data
export VALUEHARMS_CACHE=/tmp/vh-cache HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers, peft; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"

step() {  # step NAME SECONDS COMMAND...: one measurement, its own time limit, its own log
    local name=$1 limit=$2
    shift 2
    [[ " $ONLY " == *" $name "* ]] || return 0
    echo "== $name"
    local start=$SECONDS
    (cd "$ROOT/bench" && timeout "$limit" "$@") 2>&1 | grep -v -i "warn\|Loading weights\|Writing model" |
        tee "$OUT/$name.txt"
    echo "== $name: ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

step roofline 150 python3 bench_roofline.py --shape "$BIG" --batch 8 --prompt-tokens 512 \
    --new-tokens 64 --decode-batches 1,8,32,128 --memory
step model 60 python3 random_model.py --shape "$SMALL" --tokenizer "$ROOT/.gpu/tokenizer" --out /tmp/small
step packing 120 python3 bench_train_packing.py --model /tmp/small --examples "$EXAMPLES" --batch-size 8
step workload 200 python3 bench_generate_workload.py --study "$ROOT/studies/demo.toml" \
    --model /tmp/small --tolerate-differences
