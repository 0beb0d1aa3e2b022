// tok_oracle.js - the Hugging Face `tokenizers` npm package as the oracle of
// the tokenizer parity matrix (test_tok_matrix.py, tok_matrix.py).
//
//   node tok_oracle.js train OUTDIR CORPUS.txt
//       train the models its trainers can make (default trainers: the npm
//       binding exposes no trainer options) and save OUTDIR/raw_NAME.json
//   node tok_oracle.js encode TOKENIZER.json IN.jsonl OUT.jsonl
//       IN: {"text": ..., "text_pair"?: ...} per line; OUT per line: ids,
//       type_ids, attention_mask, special_tokens_mask, tokens, and the decode
//       of the ids with and without skip_special_tokens (or {"error": ...})
//   node tok_oracle.js decode TOKENIZER.json IN.jsonl OUT.jsonl
//       IN: a JSON list of ids per line; OUT: {"text", "text_skip"} per line
'use strict';
const fs = require('fs');
const path = require('path');
const T = require('tokenizers');

function readJsonl(p) {
	return fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

function train(outDir, corpus) {
	const jobs = {
		wp_uncased: [T.WordPiece.empty(), (t) => {
			t.setNormalizer(T.bertNormalizer({ lowercase: true }));
			t.setPreTokenizer(T.bertPreTokenizer());
		}],
		wp_cased: [T.WordPiece.empty(), (t) => {
			t.setNormalizer(T.bertNormalizer({ lowercase: false, stripAccents: false }));
			t.setPreTokenizer(T.bertPreTokenizer());
		}],
		bpe_bytelevel: [T.BPE.empty(), (t) => {
			t.setPreTokenizer(T.byteLevelPreTokenizer(false, true));
		}],
		bpe_metaspace: [T.BPE.empty(), (t) => {
			t.setPreTokenizer(T.metaspacePreTokenizer('▁', 'first', true));
		}],
		wordlevel: [T.WordLevel.empty(), (t) => {
			t.setPreTokenizer(T.whitespacePreTokenizer());
		}],
	};
	for (const [name, [model, setup]] of Object.entries(jobs)) {
		const tok = new T.Tokenizer(model);
		setup(tok);
		tok.train([corpus]);
		tok.save(path.join(outDir, `raw_${name}.json`));
	}
}

function record(e) {
	return {
		ids: Array.from(e.getIds()), type_ids: Array.from(e.getTypeIds()),
		attention_mask: Array.from(e.getAttentionMask()),
		special_tokens_mask: Array.from(e.getSpecialTokensMask()), tokens: e.getTokens(),
	};
}

// encodeBatch/decodeBatch by chunks (fast); a chunk that fails goes line by line
async function encode(tokPath, inPath, outPath) {
	const tok = T.Tokenizer.fromFile(tokPath);
	const items = readJsonl(inPath);
	const out = [];
	for (let i = 0; i < items.length; i += 500) {
		const chunk = items.slice(i, i + 500);
		const inputs = chunk.map((it) => (it.text_pair === undefined ? it.text : [it.text, it.text_pair]));
		let recs;
		try {
			recs = (await tok.encodeBatch(inputs)).map(record);
		} catch (err) {
			recs = [];
			for (const x of inputs) {
				try {
					recs.push(record(await (Array.isArray(x) ? tok.encode(x[0], x[1]) : tok.encode(x))));
				} catch (e2) {
					recs.push({ error: String(e2) });
				}
			}
		}
		const ok = recs.filter((r) => !r.error);
		const dec = await tok.decodeBatch(ok.map((r) => r.ids), false);
		const skip = await tok.decodeBatch(ok.map((r) => r.ids), true);
		ok.forEach((r, k) => { r.decoded = dec[k]; r.decoded_skip = skip[k]; });
		for (const r of recs)
			out.push(JSON.stringify(r));
	}
	fs.writeFileSync(outPath, out.join('\n') + '\n');
}

async function decode(tokPath, inPath, outPath) {
	const tok = T.Tokenizer.fromFile(tokPath);
	const out = [];
	for (const ids of readJsonl(inPath)) {
		let r;
		try {
			r = { text: await tok.decode(ids, false), text_skip: await tok.decode(ids, true) };
		} catch (err) {
			r = { error: String(err) };
		}
		out.push(JSON.stringify(r));
	}
	fs.writeFileSync(outPath, out.join('\n') + '\n');
}

async function main() {
	const [mode, a, b, c] = process.argv.slice(2);
	if (mode === 'train')
		train(a, b);
	else if (mode === 'encode')
		await encode(a, b, c);
	else if (mode === 'decode')
		await decode(a, b, c);
	else
		throw new Error(`unknown mode ${mode}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
