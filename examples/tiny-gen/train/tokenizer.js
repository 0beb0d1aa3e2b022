// tokenizer.js - a byte-level BPE tokenizer trained with Hugging Face's
// `tokenizers` (the npm binding setup.sh installs into ~/.cache/nexus).
//
//   node tokenizer.js CORPUS.txt VOCAB_SIZE OUT/tokenizer.json
//   node tokenizer.js --encode TOKENIZER.json IN.txt OUT.json
//       the ids of each line of IN.txt, as a JSON list of lists
//
// The binding's train() takes no trainer options (vocabulary size, initial
// alphabet), so the trained model is cut afterwards: BPE training is greedy,
// merge by merge, and its first N merges are what a trainer stopped at N
// would have produced.  The vocabulary is then the 256 byte symbols (all of
// them, so that any UTF-8 text encodes), those merges in order, and the
// special tokens of the chat template.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const T = require('tokenizers');

const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];

// GPT-2's byte -> printable symbol table (what ByteLevel pre-tokenizes to)
function byteSymbols() {
	const bs = [];
	for (let b = 33; b <= 126; b++) bs.push(b);
	for (let b = 161; b <= 172; b++) bs.push(b);
	for (let b = 174; b <= 255; b++) bs.push(b);
	const cs = bs.slice();
	let n = 0;
	for (let b = 0; b < 256; b++) {
		if (!bs.includes(b)) {
			bs.push(b);
			cs.push(256 + n++);
		}
	}
	const sym = new Array(256);
	bs.forEach((b, i) => { sym[b] = String.fromCodePoint(cs[i]); });
	return sym;
}

function main() {
	const [corpus, vocabSize, out] = process.argv.slice(2);
	const tok = new T.Tokenizer(T.BPE.empty());
	tok.setPreTokenizer(T.byteLevelPreTokenizer(false, true));
	tok.train([corpus]);
	const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tinygen-')), 'raw.json');
	tok.save(tmp);
	const raw = JSON.parse(fs.readFileSync(tmp, 'utf8'));
	const nmerges = Number(vocabSize) - 256 - SPECIALS.length;
	const vocab = {};
	byteSymbols().forEach((s, i) => { vocab[s] = i; });
	const merges = [];
	for (const m of raw.model.merges) {
		if (merges.length === nmerges) break;
		const [a, b] = Array.isArray(m) ? m : m.split(' ');
		if (!(a in vocab) || !(b in vocab)) throw new Error(`merge ${a} ${b} uses an unknown symbol`);
		if (a + b in vocab) continue;
		vocab[a + b] = Object.keys(vocab).length;
		merges.push([a, b]);
	}
	const json = {
		version: '1.0', truncation: null, padding: null,
		added_tokens: SPECIALS.map((s, i) => ({
			id: Object.keys(vocab).length + i, content: s, single_word: false,
			lstrip: false, rstrip: false, normalized: false, special: true,
		})),
		normalizer: null,
		pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
		post_processor: null,
		decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
		model: {
			type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
			end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
			vocab, merges,
		},
	};
	SPECIALS.forEach((s, i) => { vocab[s] = json.added_tokens[i].id; });
	// round trip through the library: it must load what we wrote
	const back = T.Tokenizer.fromString(JSON.stringify(json));
	const probe = 'In the beginning God created the heaven and the earth. \u00e9\u4e2d';
	back.encode(probe).then((enc) => back.decode(Array.from(enc.getIds()), false)).then((text) => {
		if (text !== probe) throw new Error(`round trip: ${JSON.stringify(text)}`);
		fs.writeFileSync(out, JSON.stringify(json, null, 1) + '\n');
		console.log(`tokenizer: ${Object.keys(vocab).length} entries, ${merges.length} merges -> ${out}`);
	});
}
async function encode(tokPath, inPath, outPath) {
	const tok = T.Tokenizer.fromFile(tokPath);
	const lines = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.length > 0);
	const ids = [];
	for (let i = 0; i < lines.length; i += 1000) {
		const encs = await tok.encodeBatch(lines.slice(i, i + 1000));
		for (const e of encs) ids.push(Array.from(e.getIds()));
	}
	fs.writeFileSync(outPath, JSON.stringify(ids));
}

if (process.argv[2] === '--encode') encode(...process.argv.slice(3));
else main();
