// ONNX Runtime side of scripts/bench_compare.sh: inference of an ONNX model exported by
// scripts/bench_torch.py --export-onnx, timed like `facekd bench --arch --mode infer`
// (median step after warm-up). Needs onnxruntime-node (NODE_PATH to its node_modules).
//   node scripts/bench_ort.js model.onnx BATCH THREADS STEPS WARMUP
// Prints one JSON object.
const ort = require('onnxruntime-node');
const os = require('os');

async function main() {
    const [path, batch, threads, steps, warmup] = process.argv.slice(2);
    const n = +batch, data = new Float32Array(n * 3 * 112 * 112);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 500 - 1;
    const session = await ort.InferenceSession.create(path, {
        intraOpNumThreads: +threads, interOpNumThreads: 1, executionMode: 'sequential',
        graphOptimizationLevel: 'all'});
    const feeds = {input: new ort.Tensor('float32', data, [n, 3, 112, 112])};
    for (let i = 0; i < +warmup; i++) await session.run(feeds);
    const times = [];
    for (let i = 0; i < +steps; i++) {
        const t0 = process.hrtime.bigint();
        await session.run(feeds);
        times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((a, b) => a - b);
    const m = times.length >> 1;
    const med = times.length % 2 ? times[m] : 0.5 * (times[m - 1] + times[m]);
    console.log(JSON.stringify({engine: 'onnxruntime-node ' + require('onnxruntime-node/package.json').version,
        precision: 'fp32', batch: n, threads: +threads, step_median_s: med, step_min_s: times[0],
        images_per_s: n / med, peak_rss_mb: process.resourceUsage().maxRSS / 1024, load_after: os.loadavg()[0]}));
}
main().catch((e) => { console.error('bench_ort: ' + e.message); process.exit(1); });
