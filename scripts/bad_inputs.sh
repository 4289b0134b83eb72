#!/usr/bin/env bash
# Feeds facekd a set of bad inputs and prints one markdown table row per case:
#   | input | command | what facekd says | exit code |
# Run by hand (scripts/bad_inputs.sh [build/facekd]); docs/RELIABILITY.md holds the output.
# Needs /usr/bin/python3 with numpy (for .npy and pickles).
set -u
FACEKD=$(realpath "${1:-build/facekd}")
work=$(mktemp -d /tmp/fkd_bad_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
export FACEKD_CACHE=$work/cache OMP_NUM_THREADS=1
py=/usr/bin/python3

row() { # row DESCRIPTION COMMAND...
  local what=$1; shift
  local out rc
  out=$("$@" 2>&1 >/dev/null); rc=$?
  out=$(printf '%s\n' "$out" | grep '^facekd' | tail -1)
  out=${out//$work\//}
  out=${out//|/\\|}
  local cmd="$*"
  cmd=${cmd/setpriv --reuid=65534 --regid=65534 --clear-groups /}
  cmd=${cmd/$FACEKD/facekd}
  cmd=${cmd//$work\//}
  echo "| $what | \`$cmd\` | $out | $rc |"
}

# A tiny model to evaluate and embed with.
cat > tiny.yaml <<YAML
name: tiny
steps: 2
batch_size: 8
checkpoint_every: 2
eval_every: 0
threads: 1
output: run
data: {source: synth, synth: {identities: 10, images_per_identity: 10}}
model: {arch: mbf, embedding_size: 32, width: 8}
YAML
"$FACEKD" train tiny.yaml >/dev/null 2>&1 || { echo "cannot train the tiny model" >&2; exit 1; }
# eval, embed and info build the architecture at its standard width: a full-width mbf.
"$FACEKD" train tiny.yaml --set model.width=0 --set model.embedding_size=512 --set output=full >/dev/null 2>&1 ||
  { echo "cannot train the full-width model" >&2; exit 1; }
model=full/model.safetensors

# ---- recipes
printf 'steps: 10\noptimizer:\n  lr: 0.1\n  lr_typo: 3\n' > unknown_key.yaml
row "recipe: unknown key" "$FACEKD" recipe check unknown_key.yaml
printf 'steps: ten\n' > wrong_type.yaml
row "recipe: wrong type" "$FACEKD" recipe check wrong_type.yaml
printf 'steps: 10\nbatch_size: 0\n' > range.yaml
row "recipe: value out of range" "$FACEKD" recipe check range.yaml
printf 'steps: 10\nmodel: {arch: mbf\n' > syntax.yaml
row "recipe: YAML syntax error" "$FACEKD" recipe check syntax.yaml
printf 'extends: missing.yaml\nsteps: 1\n' > extends.yaml
row "recipe: extends a missing file" "$FACEKD" recipe check extends.yaml
row "recipe: file missing" "$FACEKD" recipe check nothere.yaml
row "recipe: bad --set" "$FACEKD" recipe check tiny.yaml --set optimizer.lr=fast

# ---- safetensors
head -c 100 "$model" > truncated.safetensors
row "safetensors: truncated" "$FACEKD" info --model truncated.safetensors
printf '\xff\xff\xff\xff\x00\x00\x00\x00{}' > hugelen.safetensors
row "safetensors: header length past the end" "$FACEKD" info --model hugelen.safetensors
$py - <<'PY'
import struct, json
def st(name, header, data=b""):
    h = json.dumps(header).encode() if isinstance(header, dict) else header
    open(name, "wb").write(struct.pack("<Q", len(h)) + h + data)
st("badjson.safetensors", b'{"w": {"dtype": "F32", "shape": [2]')
st("offsets.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
st("dtype.safetensors", {"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
st("shape.safetensors", {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
PY
row "safetensors: malformed JSON header" "$FACEKD" info --model badjson.safetensors
row "safetensors: data offsets past the end" "$FACEKD" info --model offsets.safetensors
row "safetensors: unknown dtype" "$FACEKD" info --model dtype.safetensors
row "safetensors: shape and byte size disagree" "$FACEKD" info --model shape.safetensors
$py - "$model" <<'PY'
import sys, struct, json
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = next(k for k in h if k != "__metadata__" and k.endswith("weight"))
off = 8 + n + h[name]["data_offsets"][0]
b[off:off + 4] = struct.pack("<f", float("nan"))
open("nan.safetensors", "wb").write(b)
PY
row "safetensors: NaN in a weight" "$FACEKD" info --model nan.safetensors

# ---- verification .bin
printf 'not a pickle' > notpickle.bin
row ".bin: not a pickle" "$FACEKD" eval --model "$model" --bench notpickle.bin
$py - <<'PY'
import pickle, numpy as np
good = pickle.dumps(([b"\xff\xd8jpeg"] * 2, [True]), protocol=2)
open("truncated.bin", "wb").write(good[: len(good) // 2])
open("numpy.bin", "wb").write(pickle.dumps(([np.zeros(3, np.uint8)] * 2, [True]), protocol=2))
open("odd.bin", "wb").write(pickle.dumps(([b"a"] * 3, [True]), protocol=2))
open("badimg.bin", "wb").write(pickle.dumps(([b"\xff\xd8\xff\xe0garbage"] * 20, [True] * 10), protocol=4))
PY
row ".bin: truncated pickle" "$FACEKD" eval --model "$model" --bench truncated.bin
row ".bin: numpy arrays instead of bytes" "$FACEKD" eval --model "$model" --bench numpy.bin
row ".bin: 3 images for 1 pair" "$FACEKD" eval --model "$model" --bench odd.bin
row ".bin: corrupt JPEG inside (10 pairs)" "$FACEKD" eval --model "$model" --bench badimg.bin

# ---- images and .npy (facekd embed)
printf '\xff\xd8\xff\xe0\x00\x10JFIF' > cut.jpg
row "JPEG: cut short" "$FACEKD" embed --model "$model" --input cut.jpg --out e.npy
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' > cut.png
row "PNG: cut short" "$FACEKD" embed --model "$model" --input cut.png --out e.npy
printf 'GIF89a' > gif.png
row "image: not JPEG or PNG" "$FACEKD" embed --model "$model" --input gif.png --out e.npy
$py - <<'PY'
import numpy as np
np.save("shape.npy", np.zeros((2, 3, 64, 64), np.float32))
np.save("int.npy", np.zeros((1, 3, 112, 112), np.int16))
raw = open("shape.npy", "rb").read()
open("truncated.npy", "wb").write(raw[:200])
open("header.npy", "wb").write(b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (1,}")
PY
row ".npy: wrong shape" "$FACEKD" embed --model "$model" --input shape.npy --out e.npy
row ".npy: int16 data" "$FACEKD" embed --model "$model" --input int.npy --out e.npy
row ".npy: truncated data" "$FACEKD" embed --model "$model" --input truncated.npy --out e.npy
row ".npy: broken header" "$FACEKD" embed --model "$model" --input header.npy --out e.npy

# ---- RecordIO (facekd train with data.source recordio)
$py - <<'PY'
import struct
def rec(payload, cflag=0):
    return struct.pack("<II", 0xced7230a, cflag << 29 | len(payload)) + payload + b"\0" * (-len(payload) % 4)
hdr = struct.pack("<IfQQ", 0, 0.0, 1, 0)
hdr1 = struct.pack("<IfQQ", 0, 1.0, 2, 0)
first = rec(hdr + b"\xff\xd8junk")
open("a.rec", "wb").write(first + rec(hdr1 + b"\xff\xd8junk"))
open("a.idx", "w").write("1\t0\n2\t%d\n" % len(first))
open("one.rec", "wb").write(first)
open("one.idx", "w").write("1\t0\n")
open("magic.rec", "wb").write(b"\0" * 16)
open("magic.idx", "w").write("1\t0\n")
open("offset.rec", "wb").write(rec(hdr))
open("offset.idx", "w").write("1\t4096\n")
open("noidx.rec", "wb").write(rec(hdr))
open("idxtext.rec", "wb").write(rec(hdr))
open("idxtext.idx", "w").write("one\tzero\n")
PY
cat > rec.yaml <<YAML
name: rec
steps: 2
batch_size: 1
eval_every: 0
threads: 1
data: {source: recordio, path: a.rec}
model: {arch: mbf, embedding_size: 32, width: 8}
YAML
for case in a:"corrupt image in a record" one:"a single identity" magic:"bad magic" offset:"index offset past the end" \
            noidx:"missing .idx" idxtext:"unparsable .idx line"; do
  name=${case%%:*}
  row "RecordIO: ${case#*:}" "$FACEKD" train rec.yaml --set data.path=$name.rec --set output=run_$name
done

# ---- training runs
touch notes.txt
row "train: run folder under a file" "$FACEKD" train tiny.yaml --set output=notes.txt/run
mkdir -p ro && chmod 555 ro && chmod 755 "$work"
as_user=()
[ "$(id -u)" -eq 0 ] && as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
row "train: read-only parent folder" "${as_user[@]}" "$FACEKD" train tiny.yaml --set output=ro/run
row "train: --resume without a checkpoint" "$FACEKD" train tiny.yaml --set output=fresh --resume
mkdir -p cut && cp run/recipe.yaml cut/ && head -c 5000 run/checkpoint.safetensors > cut/checkpoint.safetensors
row "train: --resume from a cut checkpoint" "$FACEKD" train tiny.yaml --set output=cut --resume
row "train: NaN in model.weights" "$FACEKD" train tiny.yaml --set model.width=0 --set model.embedding_size=512 \
  --set model.weights=nan.safetensors --set output=nan

# Stopped while training: the exit code and the last line facekd prints.
stop_row() { # stop_row SIGNAL
  rm -rf stop_$1
  "$FACEKD" train tiny.yaml --set steps=100000 --set output=stop_$1 >/dev/null 2>stop_$1.txt &
  local pid=$! i
  for i in $(seq 600); do [ -f stop_$1/log.csv ] && [ "$(wc -l < stop_$1/log.csv)" -gt 1 ] && break; sleep 0.1; done
  kill -s "$1" $pid
  wait $pid
  local rc=$? out
  out=$(grep '^facekd' stop_$1.txt | tail -1)
  echo "| train: SIG$1 while training | \`facekd train tiny.yaml\` + \`kill -$1\` | ${out//$work\//} | $rc |"
}
stop_row INT
stop_row TERM

row "train: model.weights of another architecture" "$FACEKD" train tiny.yaml --set model.arch=iresnet18 \
  --set model.weights=$model --set output=other
