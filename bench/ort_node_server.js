// ort_node_server.js - the Node baseline of bench/serve_bench.py: an http
// server around onnxruntime-node with the batching `nexus_cli serve` does.
//
//   node ort_node_server.js BUNDLE READY_FILE MAX_BATCH THREADS [sorted]
//
// Serves POST /predict {"text": ...} for BUNDLE's model/student_model.onnx,
// tokenized by the npm `tokenizers` package from BUNDLE/model/tokenizer/
// tokenizer.json (truncated to runtime.yaml's max_sequence_length) and
// answered as nexus_cli does: classification {"label", "scores"}, embedding
// {"embedding"} (mean pooling over the mask, L2-normalised).  Batching: one
// Run at a time; requests that arrive while it runs are queued, and the next
// Run takes up to MAX_BATCH of them, sorted by length and padded to the
// longest (what nexus_cli's engine did before it sorted its queue).  With
// "sorted", the next Runs take the whole queue (up to 16 batches), sorted by
// length, MAX_BATCH at a time (what nexus_cli's engine does now).  Listens on 127.0.0.1, a free
// port, written to READY_FILE once the session is loaded.  GET /health.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const ort = require('onnxruntime-node');
const { Tokenizer } = require('tokenizers');

const [bundle, readyFile, maxBatchArg, threadsArg, mode] = process.argv.slice(2);
const maxBatch = parseInt(maxBatchArg, 10);
const yaml = fs.readFileSync(path.join(bundle, 'config/runtime.yaml'), 'utf8');
const field = (k, d) => { const m = yaml.match(new RegExp(`^${k}:\\s*(.+)$`, 'm')); return m ? m[1].trim() : d; };
const task = field('task', 'classification');
const maxLen = parseInt(field('max_sequence_length', '512'), 10);
const labels = (field('labels', '[]').match(/[^\[\],\s]+/g)) || [];
const queue = [];
let busy = false;

function softmax(v) {
	const m = Math.max(...v), e = v.map((x) => Math.exp(x - m)), s = e.reduce((a, b) => a + b, 0);
	return e.map((x) => x / s);
}

async function runBatch(sess, jobs) {
	jobs.sort((a, b) => a.ids.length - b.ids.length);
	const n = jobs.length, L = Math.max(1, ...jobs.map((j) => j.ids.length));
	const ids = new BigInt64Array(n * L), mask = new BigInt64Array(n * L);
	jobs.forEach((j, r) => j.ids.forEach((v, t) => { ids[r * L + t] = BigInt(v); mask[r * L + t] = 1n; }));
	const feeds = { input_ids: new ort.Tensor('int64', ids, [n, L]) };
	if (sess.inputNames.includes('attention_mask'))
		feeds.attention_mask = new ort.Tensor('int64', mask, [n, L]);
	if (sess.inputNames.includes('token_type_ids'))
		feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(n * L), [n, L]);
	const out = await sess.run(feeds);
	const o = out[sess.outputNames[0]], w = o.dims[o.dims.length - 1];
	jobs.forEach((j, r) => {
		let res;
		if (task === 'embedding' && o.dims.length === 3) {
			const e = new Float64Array(w), len = j.ids.length;
			for (let t = 0; t < len; t++)
				for (let h = 0; h < w; h++)
					e[h] += o.data[(r * L + t) * w + h];
			let norm = 0;
			for (let h = 0; h < w; h++) { e[h] /= len; norm += e[h] * e[h]; }
			norm = Math.sqrt(norm) || 1;
			res = { embedding: Array.from(e, (x) => x / norm) };
		} else {
			const logits = Array.from(o.data.slice(r * w, (r + 1) * w));
			const scores = softmax(logits);
			res = { label: labels[scores.indexOf(Math.max(...scores))], scores, outputs: { logits } };
		}
		j.res.writeHead(200, { 'Content-Type': 'application/json' });
		j.res.end(JSON.stringify(res) + '\n');
	});
}

async function pump(sess) {
	if (busy)
		return;
	busy = true;
	while (queue.length) {
		const round = mode === 'sorted' ? queue.splice(0, 16 * maxBatch) : queue.splice(0, maxBatch);
		round.sort((a, b) => a.ids.length - b.ids.length);
		for (let i = 0; i < round.length; i += maxBatch) {
			const jobs = round.slice(i, i + maxBatch);
			try {
				await runBatch(sess, jobs);
			} catch (e) {
				for (const j of jobs) {
					j.res.writeHead(500);
					j.res.end(JSON.stringify({ error: String(e) }) + '\n');
				}
			}
		}
	}
	busy = false;
}

async function main() {
	const tok = Tokenizer.fromFile(path.join(bundle, 'model/tokenizer/tokenizer.json'));
	tok.setTruncation(maxLen);
	const sess = await ort.InferenceSession.create(path.join(bundle, 'model/student_model.onnx'), {
		intraOpNumThreads: parseInt(threadsArg, 10), interOpNumThreads: 1,
		executionMode: 'sequential', graphOptimizationLevel: 'all',
	});
	// one warm-up Run before listening, as nexus_cli serve does before /health
	await sess.run({ input_ids: new ort.Tensor('int64', new BigInt64Array(2), [1, 2]),
		...(sess.inputNames.includes('attention_mask') ?
			{ attention_mask: new ort.Tensor('int64', new BigInt64Array([1n, 1n]), [1, 2]) } : {}),
		...(sess.inputNames.includes('token_type_ids') ?
			{ token_type_ids: new ort.Tensor('int64', new BigInt64Array(2), [1, 2]) } : {}) });
	const server = http.createServer((req, res) => {
		if (req.method === 'GET' && req.url === '/health') {
			res.writeHead(200);
			res.end('{"status":"ok"}\n');
			return;
		}
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', async () => {
			let text;
			try {
				text = JSON.parse(Buffer.concat(chunks).toString('utf8')).text;
			} catch (e) {
				res.writeHead(400);
				res.end('{"error":"bad json"}\n');
				return;
			}
			const enc = await tok.encode(String(text));
			queue.push({ ids: Array.from(enc.getIds()), res });
			pump(sess);
		});
	});
	server.keepAliveTimeout = 30000;
	server.listen(0, '127.0.0.1', () => {
		fs.writeFileSync(readyFile + '.tmp', `${server.address().port}\n`);
		fs.renameSync(readyFile + '.tmp', readyFile);
	});
	const stop = () => server.close(() => process.exit(0));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
