// ort_node_bench.js - the onnxruntime-node baseline for bench/run.py.
//
//   node ort_node_bench.js throughput MODEL IDS.jsonl BATCH THREADS OUT.json
//   node ort_node_bench.js cold MODEL IDS.jsonl THREADS OUT.json
//
// With NEXUS_BENCH_POOL=mean a [batch, seq, hidden] output is mean-pooled
// over each row's tokens and L2-normalised (what an embedding user needs,
// and what nexus_cli prints for task: embedding) instead of sliced.
//
// IDS.jsonl holds one JSON list of token ids per line (what
// `nexus_cli tokenize` prints), so both sides run the same tensors.  Batches
// are padded to their longest row with id 0 and attention_mask 0, as the
// nexus runtime does.  OUT.json receives the timings and the logits (for the
// correctness check), written after the clock stops.
'use strict';
const fs = require('fs');
const t0 = process.hrtime.bigint();
const ort = require('onnxruntime-node');

function ms(a, b) { return Number(b - a) / 1e6; }

function feeds(rows, names) {
	const L = Math.max(1, ...rows.map((r) => r.length));
	const ids = new BigInt64Array(rows.length * L);
	const mask = new BigInt64Array(rows.length * L);
	rows.forEach((r, i) => r.forEach((v, t) => {
		ids[i * L + t] = BigInt(v);
		mask[i * L + t] = 1n;
	}));
	const f = { input_ids: new ort.Tensor('int64', ids, [rows.length, L]) };
	if (names.includes('attention_mask'))
		f.attention_mask = new ort.Tensor('int64', mask, [rows.length, L]);
	if (names.includes('token_type_ids'))
		f.token_type_ids = new ort.Tensor('int64', new BigInt64Array(rows.length * L), [rows.length, L]);
	return f;
}

async function main() {
	const [mode, model, idsPath] = process.argv.slice(2, 5);
	const batch = mode === 'throughput' ? parseInt(process.argv[5], 10) : 1;
	const threads = parseInt(process.argv[mode === 'throughput' ? 6 : 5], 10);
	const outPath = process.argv[mode === 'throughput' ? 7 : 6];
	const rows = fs.readFileSync(idsPath, 'utf8').split('\n')
		.filter((l) => l.length > 0).map((l) => JSON.parse(l));
	const sess = await ort.InferenceSession.create(model, {
		intraOpNumThreads: threads, interOpNumThreads: 1,
		executionMode: 'sequential', graphOptimizationLevel: 'all',
	});
	const t1 = process.hrtime.bigint();
	const logits = [];
	const n = mode === 'cold' ? 1 : rows.length;
	for (let i = 0; i < n; i += batch) {
		const out = await sess.run(feeds(rows.slice(i, Math.min(n, i + batch)), sess.inputNames));
		const o = out[sess.outputNames[0]];
		const w = o.dims[o.dims.length - 1];
		const rows_ = rows.slice(i, Math.min(n, i + batch));
		if (process.env.NEXUS_BENCH_POOL === 'mean' && o.dims.length === 3) {
			const L = o.dims[1];
			for (let r = 0; r < o.dims[0]; r++) {
				const e = new Float64Array(w), len = rows_[r].length;
				for (let t = 0; t < len; t++)
					for (let h = 0; h < w; h++)
						e[h] += o.data[(r * L + t) * w + h];
				let norm = 0;
				for (let h = 0; h < w; h++) {
					e[h] /= len;
					norm += e[h] * e[h];
				}
				norm = Math.sqrt(norm);
				logits.push(Array.from(e, (x) => x / norm));
			}
			continue;
		}
		for (let r = 0; r < o.dims[0]; r++)
			logits.push(Array.from(o.data.slice(r * w, (r + 1) * w)));
	}
	const t2 = process.hrtime.bigint();
	fs.writeFileSync(outPath, JSON.stringify({ load_ms: ms(t0, t1), run_ms: ms(t1, t2), logits }));
}

main().catch((e) => { console.error(e); process.exit(1); });
