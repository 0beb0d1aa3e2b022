// gen_batch.js - one prompt at a time, or the prompts as one left-padded
// batch?  The measurement behind docs/DESIGN-NOTES.md ("Text generation",
// batching), on onnxruntime-node with the same with-past decoder as
// bench/run.py's `generate` row.
//
//   node gen_batch.js MODEL.onnx HEADS HEAD_DIM THREADS NEW LEN1,LEN2,... [REPEATS]
//
// Prompts of the given lengths (made-up ids) are continued greedily by NEW
// tokens each, (a) one after the other with batch 1, (b) together as one
// batch, left-padded: attention_mask 0 on the padding, position_ids counting
// from each prompt's first real token (Hugging Face's cumsum(mask) - 1), the
// cache of the padded batch fed back each step.  Prints, per way, the median
// wall time over REPEATS (default 3) and the new tokens per second, and how
// many of the batch's ids equal the one-at-a-time ids.
'use strict';
const ort = require('onnxruntime-node');

function i64(v, dims) { return new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), dims); }

function argmaxRows(logits, rows) {
	const [B, T, V] = logits.dims, out = [];
	for (let r = 0; r < rows; r++) {
		const row = logits.data.subarray((r * T + T - 1) * V, (r * T + T) * V);
		let best = 0;
		for (let i = 1; i < V; i++)
			if (row[i] > row[best])
				best = i;
		out.push(best);
	}
	return out;
}

// prompts: lists of ids; all continued by `steps` tokens in one batch
async function greedyBatch(sess, pastNames, heads, headDim, prompts, steps) {
	const B = prompts.length, L = Math.max(...prompts.map((p) => p.length));
	const ids = [], mask = [], pos = [];
	for (const p of prompts) {
		const pad = L - p.length;
		for (let j = 0; j < L; j++) {
			ids.push(j < pad ? 0 : p[j - pad]);
			mask.push(j < pad ? 0 : 1);
			pos.push(j < pad ? 1 : j - pad);
		}
	}
	const masks = prompts.map((_, r) => mask.slice(r * L, (r + 1) * L));
	const next = prompts.map((p) => p.length);        // position of each row's next token
	let past = {}, feeds = { input_ids: i64(ids, [B, L]), attention_mask: i64(mask, [B, L]),
				 position_ids: i64(pos, [B, L]) };
	for (const n of pastNames)
		past[n] = new ort.Tensor('float32', new Float32Array(0), [B, heads, 0, headDim]);
	const out = prompts.map(() => []);
	for (let s = 0; s < steps; s++) {
		const r = await sess.run(Object.assign(feeds, past));
		const best = argmaxRows(r.logits, B);
		best.forEach((t, i) => out[i].push(t));
		for (const n of pastNames)
			past[n] = r[n.replace('past_key_values', 'present')];
		masks.forEach((m) => m.push(1));
		feeds = { input_ids: i64(best, [B, 1]), attention_mask: i64(masks.flat(), [B, masks[0].length]),
			  position_ids: i64(next.map((x) => x), [B, 1]) };
		next.forEach((_, i) => next[i]++);
		past = Object.fromEntries(pastNames.map((n) => [n, past[n]]));
	}
	return out;
}

function median(xs) { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }

async function main() {
	const [model, heads, headDim, threads, steps, lens, repeats] = process.argv.slice(2);
	const sess = await ort.InferenceSession.create(model,
		{ intraOpNumThreads: +threads, interOpNumThreads: 1 });
	const pastNames = sess.inputNames.filter((n) => n.startsWith('past_key_values.'));
	const prompts = lens.split(',').map((n, k) =>
		Array.from({ length: +n }, (_, j) => 10 + ((j * 7 + k * 13) % 200)));
	const seqT = [], batT = [];
	let seqIds, batIds;
	for (let rep = 0; rep < (+repeats || 3); rep++) {
		let t = process.hrtime.bigint();
		seqIds = [];
		for (const p of prompts)
			seqIds.push((await greedyBatch(sess, pastNames, +heads, +headDim, [p], +steps))[0]);
		seqT.push(Number(process.hrtime.bigint() - t) / 1e6);
		t = process.hrtime.bigint();
		batIds = await greedyBatch(sess, pastNames, +heads, +headDim, prompts, +steps);
		batT.push(Number(process.hrtime.bigint() - t) / 1e6);
	}
	const tokens = prompts.length * +steps;
	let same = 0;
	seqIds.forEach((row, i) => row.forEach((t, j) => { same += t === batIds[i][j]; }));
	console.log(JSON.stringify({
		prompts: prompts.map((p) => p.length), new_tokens: +steps, threads: +threads,
		one_at_a_time_ms: median(seqT), batch_ms: median(batT),
		one_at_a_time_tok_s: tokens / (median(seqT) / 1e3), batch_tok_s: tokens / (median(batT) / 1e3),
		batch_over_one: median(seqT) / median(batT), ids_equal: same, ids_total: tokens,
	}));
}

main().catch((e) => { console.error(e); process.exit(1); });
