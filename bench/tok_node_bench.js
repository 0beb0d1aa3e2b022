// tok_node_bench.js - the Hugging Face `tokenizers` npm baseline for
// bench/run.py: encode a JSONL corpus ({"text": ...} per line) with
// encodeBatch in chunks of 1000 (its fastest path; run with
// RAYON_NUM_THREADS=1 for one thread) and, if OUT is given, write the ids as
// JSONL so run.py can check them against `nexus_cli tokenize`.  With
// NEXUS_TOK_MODE=line it awaits encode() once per text instead (the per-line
// baseline: what a server tokenizing one request at a time gets).
//   node tok_node_bench.js TOKENIZER.json CORPUS.jsonl MAXLEN [OUT]
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
	const [tokPath, corpusPath, maxLen, outPath] = process.argv.slice(2);
	const tok = Tokenizer.fromFile(tokPath);
	tok.setTruncation(parseInt(maxLen, 10));
	const texts = fs.readFileSync(corpusPath, 'utf8').split('\n')
		.filter((l) => l.length > 0).map((l) => JSON.parse(l).text);
	const out = outPath ? [] : null;
	let total = 0;
	const perLine = process.env.NEXUS_TOK_MODE === 'line';
	for (let i = 0; i < texts.length; i += 1000) {
		const chunk = texts.slice(i, i + 1000);
		const encs = [];
		if (perLine)
			for (const t of chunk)
				encs.push(await tok.encode(t));
		else
			encs.push(...await tok.encodeBatch(chunk));
		for (const e of encs) {
			const ids = e.getIds();
			total += ids.length;
			if (out)
				out.push(JSON.stringify(Array.from(ids)));
		}
	}
	if (out)
		fs.writeFileSync(outPath, out.join('\n') + '\n');
	process.stderr.write(`${texts.length} texts, ${total} ids\n`);
}

main().catch((e) => { console.error(e); process.exit(1); });
