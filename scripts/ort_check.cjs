#!/usr/bin/env node
// Runs a facekd-exported ONNX model in ONNX Runtime (onnxruntime-node, CPU) and compares
// its embeddings with facekd's own.
//
//   node scripts/ort_check.cjs ORT_DIR MODEL.onnx CASE.safetensors [TOLERANCE]
//
// ORT_DIR holds node_modules/onnxruntime-node (scripts/check_onnxruntime.sh installs it
// there). CASE.safetensors holds "input" (N, 3, 112, 112) and "embedding" (N, F), both F32,
// written by tests/test_onnx.c from facekd's engine. The model runs on the whole batch N
// and on image 0 alone (batch 1). Prints one JSON line; exit 0 when both stay within the
// tolerance (default 1e-4, max absolute difference), 1 when not, 77 when ONNX Runtime
// cannot be loaded (the caller reports "skipped").
"use strict";
const fs = require("fs");
const path = require("path");

function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32") throw new Error(`${file}: ${name}: dtype ${t.dtype}, expected F32`);
    const [b, e] = t.data_offsets;
    const bytes = buf.subarray(8 + n + b, 8 + n + e);
    const data = new Float32Array(bytes.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(4 * i);
    out[name] = { shape: t.shape, data };
  }
  return out;
}

async function main() {
  const [ortDir, model, casePath, tolArg] = process.argv.slice(2);
  if (!ortDir || !model || !casePath) {
    console.error("usage: node scripts/ort_check.cjs ORT_DIR MODEL.onnx CASE.safetensors [TOLERANCE]");
    process.exit(2);
  }
  const tol = tolArg ? Number(tolArg) : 1e-4;
  let ort, version;
  try {
    const pkg = path.resolve(ortDir, "node_modules", "onnxruntime-node");
    ort = require(pkg);
    version = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")).version;
  } catch (e) {
    console.log(JSON.stringify({ skipped: `onnxruntime-node not loadable from ${ortDir}: ${e.message}` }));
    process.exit(77);
  }
  const c = readSafetensors(casePath);
  const [N, C, H, W] = c.input.shape;
  const F = c.embedding.shape[1];
  const session = await ort.InferenceSession.create(model);
  const run = async (n) => {
    const x = new ort.Tensor("float32", c.input.data.subarray(0, n * C * H * W), [n, C, H, W]);
    const r = await session.run({ input: x });
    const y = r.embedding;
    if (y.dims[0] !== n || y.dims[1] !== F) throw new Error(`output dims ${y.dims}, expected [${n}, ${F}]`);
    let m = 0;
    for (let i = 0; i < n * F; i++) m = Math.max(m, Math.abs(y.data[i] - c.embedding.data[i]));
    return m;
  };
  const batchN = await run(N);
  const batch1 = await run(1);
  const ok = batchN <= tol && batch1 <= tol;
  console.log(JSON.stringify({ onnxruntime_node: version, node: process.version, inputs: session.inputNames,
    outputs: session.outputNames, batch: N, max_abs_batch: batchN, max_abs_batch1: batch1, tolerance: tol, ok }));
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  console.error(`ort_check: ${e.stack || e}`);
  process.exit(1);
});
