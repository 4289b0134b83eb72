#!/usr/bin/env bash
# facekd against PyTorch (Debian's python3-torch at /usr/bin/python3; bf16 by autocast) and
# ONNX Runtime (onnxruntime-node, fp32 inference) on the same shapes, threads and batch, in
# one run: each case runs every engine in turn, R rounds, and the table gives medians over
# the rounds and the ratios facekd / other. Engines that are not installed are left out.
#
#   scripts/bench_compare.sh [--batch 32] [--threads 2] [--width 64] [--steps 10]
#                            [--warmup 3] [--rounds 3] [--cases "iresnet50:infer:bf16 ..."]
#
# ONNX Runtime: `npm install --prefix build/bench --ignore-scripts onnxruntime-node` (the
# package's own install script only fetches GPU libraries); or point NODE_PATH at a
# node_modules that has it. Models are exported once to build/bench/*.onnx.
# Prints a markdown table (and the raw JSON lines to build/bench/compare.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."

batch=32 threads=2 width=64 steps=10 warmup=3 rounds=3
cases="iresnet50:infer:bf16 mbf:train:bf16 r18:train:bf16 iresnet50:infer:fp32 mbf:train:fp32 r18:train:fp32 mbf:infer:fp32"
while [ $# -gt 0 ]; do
    case "$1" in
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench_compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

out=build/bench
mkdir -p "$out"
raw="$out/compare.jsonl"
: > "$raw"
[ -x build/facekd ] || make build/facekd >/dev/null
torch_ok=0
/usr/bin/python3 -c "import torch" 2>/dev/null && torch_ok=1
export NODE_PATH="${NODE_PATH:-}${NODE_PATH:+:}$PWD/$out/node_modules"
ort_ok=0
node -e "require('onnxruntime-node')" 2>/dev/null && ort_ok=1
[ $torch_ok = 1 ] || echo "note: PyTorch not found at /usr/bin/python3: its columns stay empty" >&2
[ $ort_ok = 1 ] || echo "note: onnxruntime-node not found: its columns stay empty" >&2

# run ENGINE ARCH MODE PRECISION: one JSON line tagged with the engine and case, or nothing.
run() {
    local engine=$1 arch=$2 mode=$3 prec=$4 json=""
    case $engine in
    facekd) json=$(OMP_NUM_THREADS=$threads build/facekd bench --arch "$arch" --mode "$mode" --precision "$prec" \
                   --batch "$batch" --threads "$threads" --width "$width" --steps "$steps" --warmup "$warmup" \
                   --json 2>"$out/facekd.err") || json="" ;;
    torch) json=$(OMP_NUM_THREADS=$threads /usr/bin/python3 scripts/bench_torch.py --arch "$arch" --mode "$mode" \
                  --precision "$prec" --batch "$batch" --threads "$threads" --width "$width" --steps "$steps" \
                  --warmup "$warmup" 2>"$out/torch.err") || json="" ;;
    ort) local model="$out/${arch}_w${width}_b${batch}.onnx"
         [ -f "$model" ] || /usr/bin/python3 scripts/bench_torch.py --arch "$arch" --width "$width" --batch "$batch" \
             --export-onnx "$model" 2>"$out/export.err" >/dev/null || { echo "note: ONNX export of $arch failed" >&2; return 0; }
         json=$(OMP_NUM_THREADS=$threads node scripts/bench_ort.js "$model" "$batch" "$threads" "$steps" "$warmup" \
                2>"$out/ort.err") || json="" ;;
    esac
    if [ -n "$json" ]; then
        printf '{"who": "%s", "case": "%s:%s:%s", "r": %s}\n' "$engine" "$arch" "$mode" "$prec" "$json" >> "$raw"
    elif [ $engine = facekd ]; then
        printf '{"who": "facekd", "case": "%s:%s:%s", "error": "%s"}\n' "$arch" "$mode" "$prec" \
            "$(tr -d '"\\' < "$out/facekd.err" | tr '\n' ' ')" >> "$raw"
    fi
}

# The arithmetic peak on these threads (before the rounds: a quiet machine gives the truest
# figure), for the table's "% of peak" column.
build/facekd bench --peak --threads "$threads" --json > "$out/peak.json" 2>/dev/null || echo '{}' > "$out/peak.json"

for round in $(seq "$rounds"); do
    for c in $cases; do
        IFS=: read -r arch mode prec <<< "$c"
        echo "round $round/$rounds: $arch $mode $prec (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        run facekd "$arch" "$mode" "$prec"
        [ $torch_ok = 1 ] && run torch "$arch" "$mode" "$prec"
        [ $ort_ok = 1 ] && [ "$mode" = infer ] && [ "$prec" = fp32 -o "$arch" = iresnet50 ] && run ort "$arch" "$mode" fp32
    done
done

python3 - "$raw" "$batch" "$threads" "$width" "$steps" "$rounds" "$out/peak.json" <<'PY'
import json, statistics, sys, platform
raw, batch, threads, width, steps, rounds, peak_path = sys.argv[1:]
peak = json.load(open(peak_path))
rows = [json.loads(l) for l in open(raw)]
cases = list(dict.fromkeys(r["case"] for r in rows))
def med(case, who, key="images_per_s"):
    v = [r["r"][key] for r in rows if r["case"] == case and r["who"] == who and "r" in r]
    return statistics.median(v) if v else None
def fmt(v, f="%.1f"):
    return "—" if v is None else f % v
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
loads = [r["r"].get("load_after") for r in rows if "r" in r]
print("machine: %s, %s threads, batch %s, width %s, %s timed steps, median of %s rounds; load %.1f-%.1f"
      % (cpu, threads, batch, width, steps, rounds, min(loads or [0]), max(loads or [0])))
if peak.get("fp32_gflops"):
    print("measured peak (facekd bench --peak): fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s"
          % (peak["fp32_gflops"], peak.get("bf16_gflops", 0)))
print()
print("| case | facekd img/s | PyTorch img/s | facekd/PyTorch | ORT fp32 img/s | facekd/ORT | facekd % of peak | facekd MB | PyTorch MB |")
print("|---|---|---|---|---|---|---|---|---|")
for c in cases:
    arch, mode, prec = c.split(":")
    # ONNX Runtime runs fp32 only: a bf16 inference row is compared with it too (the issue's
    # "bf16 facekd vs fp32 ONNX Runtime").
    f, t, o = med(c, "facekd"), med(c, "torch"), med("%s:%s:fp32" % (arch, mode), "ort")
    err = next((r["error"] for r in rows if r["case"] == c and "error" in r), "")
    fm, tm = med(c, "facekd", "peak_rss_mb"), med(c, "torch", "peak_rss_mb")
    # GFLOP/s over the measured peak of the case's precision (Winograd can exceed 100 %:
    # the GFLOP count is that of direct convolution).
    gf, pk = med(c, "facekd", "gflops"), peak.get("%s_gflops" % prec)
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        c.replace(":", " "), fmt(f) if f is not None else ("fails: " + err.strip()[:60] if err else "—"),
        fmt(t), fmt(f / t if f and t else None, "%.2f×"), fmt(o), fmt(f / o if f and o else None, "%.2f×"),
        fmt(100 * gf / pk if gf and pk else None, "%.0f %%"), fmt(fm, "%.0f"), fmt(tm, "%.0f")))
PY
