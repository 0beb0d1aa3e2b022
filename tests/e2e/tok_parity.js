// tok_parity.js - encode a JSONL corpus ({"text": ...} per line) with the
// Hugging Face `tokenizers` npm package and print the ids as JSONL, for
// test_tokenizer_parity.py.  usage: node tok_parity.js TOKENIZER.json CORPUS MAXLEN OUT
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
	const [tokPath, corpusPath, maxLen, outPath] = process.argv.slice(2);
	const tok = Tokenizer.fromFile(tokPath);
	tok.setTruncation(parseInt(maxLen, 10));
	const texts = fs.readFileSync(corpusPath, 'utf8').split('\n')
		.filter((l) => l.length > 0).map((l) => JSON.parse(l).text);
	const out = [];
	for (let i = 0; i < texts.length; i += 1000) {
		const encs = await tok.encodeBatch(texts.slice(i, i + 1000));
		for (const e of encs)
			out.push(JSON.stringify(Array.from(e.getIds())));
	}
	fs.writeFileSync(outPath, out.join('\n') + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
