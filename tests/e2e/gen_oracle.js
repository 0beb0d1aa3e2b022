// gen_oracle.js - the reference greedy loop for test_generate.py, on
// onnxruntime-node: the same model, fed as Optimum's generate feeds it.
//
//   node gen_oracle.js MODEL.onnx PROMPT_IDS MAX_NEW EOS_IDS HEADS HEAD_DIM [THREADS]
//
// PROMPT_IDS and EOS_IDS are JSON lists.  With past_key_values inputs the
// cache starts empty ([1, HEADS, 0, HEAD_DIM]) and present.N is fed back as
// past_key_values.N, one new token per step; without, every step runs the
// whole sequence.  Prints {"ids": the new ids (the EOS included), "ttft_ms",
// "tokens_per_s"} (bench/run.py's baseline for `generate`; THREADS: 0 all).
'use strict';
const ort = require('onnxruntime-node');

function ints(v) { return new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [1, v.length]); }

async function main() {
	const [model, promptJson, maxNew, eosJson, heads, headDim, threads] = process.argv.slice(2);
	const sess = await ort.InferenceSession.create(model,
		{ intraOpNumThreads: threads === undefined ? 1 : +threads, interOpNumThreads: 1 });
	const ids = JSON.parse(promptJson), eos = JSON.parse(eosJson), out = [];
	const pastNames = sess.inputNames.filter((n) => n.startsWith('past_key_values.'));
	let past = {};
	for (const n of pastNames)
		past[n] = new ort.Tensor('float32', new Float32Array(0), [1, +heads, 0, +headDim]);
	let from = 0, t1 = 0;
	const t0 = process.hrtime.bigint();
	while (out.length < +maxNew) {
		const cache = pastNames.length > 0;
		const fresh = ids.slice(cache ? from : 0);
		const feeds = { input_ids: ints(fresh), attention_mask: ints(ids.map(() => 1)) };
		if (sess.inputNames.includes('position_ids'))
			feeds.position_ids = ints(fresh.map((_, i) => (cache ? from : 0) + i));
		Object.assign(feeds, past);
		const r = await sess.run(feeds);
		const logits = r.logits, V = logits.dims[2], T = logits.dims[1];
		const row = logits.data.subarray((T - 1) * V, T * V);
		let best = 0;
		for (let i = 1; i < V; i++)
			if (row[i] > row[best])
				best = i;
		for (const n of pastNames)
			past[n] = r[n.replace('past_key_values', 'present')];
		if (!out.length)
			t1 = process.hrtime.bigint();
		from = ids.length;
		ids.push(best);
		out.push(best);
		if (eos.includes(best))
			break;
	}
	const t2 = process.hrtime.bigint();
	console.log(JSON.stringify({ ids: out, ttft_ms: Number(t1 - t0) / 1e6,
		tokens_per_s: out.length > 1 ? (out.length - 1) / (Number(t2 - t1) / 1e9) : 0 }));
}

main().catch((e) => { console.error(e); process.exit(1); });
