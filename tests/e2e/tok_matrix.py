"""The tokenizers of the parity matrix (test_tok_matrix.py), made at test time.

Trained by the npm `tokenizers` trainers on the bundled corpus (tok_corpus.py)
through tok_oracle.js, then configured as the real model families configure
them (the npm binding has no trainer options, so specials, post-processors,
decoders and model flags are set on the saved JSON, which is the format a
distilled student ships anyway):

    wp_uncased, wp_cased     BERT / DistilBERT (BertNormalizer, cased or not)
    bpe_gpt2, bpe_roberta    byte-level BPE as GPT-2 / distilgpt2 and RoBERTa
    bpe_llama                TinyLlama: Prepend+Replace normalizer, byte_fallback,
                             fuse_unk, Sequence[Replace, ByteFallback, Fuse, Strip]
    bpe_metaspace            Llama/Mistral (legacy=false): Metaspace prepend first
    bpe_qwen2, bpe_llama3    byte-level BPE behind Qwen2's / Llama-3's Split regex
                             (llama3: ignore_merges)
    unigram_xlmr             Unigram converted from a SentencePiece model as
                             transformers' SpmConverter does: Precompiled
                             normalizer (the real nmt_nfkc charsmap that
                             spm_train writes), Metaspace, XLM-R specials
    wordlevel                WordLevel + Whitespace
    hand_wp, hand_bpe        hand-written: configurations no trainer produces

The Unigram model and its charsmap come from `spm_train` (Debian package
`sentencepiece`): the npm Unigram trainer takes minutes on this corpus and
cannot produce a Precompiled normalizer, while converting a SentencePiece
model is exactly how T5, ALBERT and XLM-R tokenizer.json files were made.

Every tokenizer.json also says "truncation": max_length MAXLEN, which
nexus_cli gets as --max-length, so both sides truncate alike.
Results are cached under build/tokmatrix/<hash of these sources>.
"""
import hashlib
import json
import os
import pathlib
import shutil
import struct
import subprocess

import tok_corpus

HERE = pathlib.Path(__file__).parent
MAXLEN = 128
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TRAIN_LINES = 3000


def bytes_to_unicode():
    """GPT-2's byte -> printable char table (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def added(content, id_, special=True, normalized=False, lstrip=False, rstrip=False,
          single_word=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def append_vocab(vocab, tokens):
    """Add tokens missing from a {token: id} vocab with the next ids; their ids."""
    nxt = max(vocab.values(), default=-1) + 1
    for t in tokens:
        if t not in vocab:
            vocab[t] = nxt
            nxt += 1
    return [vocab[t] for t in tokens]


def template(single, pair, specials):
    def items(spec):
        out = []
        for part in spec.split():
            name, _, tid = part.partition(":")
            tid = int(tid or 0)
            if name.startswith("$"):
                out.append({"Sequence": {"id": name[1:], "type_id": tid}})
            else:
                out.append({"SpecialToken": {"id": name, "type_id": tid}})
        return out
    return {"type": "TemplateProcessing", "single": items(single), "pair": items(pair),
            "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in specials.items()}}


def truncation():
    return {"direction": "Right", "max_length": MAXLEN, "strategy": "LongestFirst", "stride": 0}


def finish(j):
    j["truncation"] = truncation()
    j["padding"] = None
    j.setdefault("version", "1.0")
    return j


# --- the trained families -------------------------------------------------

def wordpiece(raw, cased):
    j = json.loads(json.dumps(raw))
    v = j["model"]["vocab"]
    ids = dict(zip(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                   append_vocab(v, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])))
    j["added_tokens"] = [added(t, i) for t, i in ids.items()]
    if cased:
        j["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", ids["[SEP]"]],
                               "cls": ["[CLS]", ids["[CLS]"]]}
        j["decoder"] = {"type": "WordPiece", "prefix": "##", "cleanup": False}
    else:
        j["post_processor"] = template("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1",
                                       {"[CLS]": ids["[CLS]"], "[SEP]": ids["[SEP]"]})
        j["decoder"] = {"type": "WordPiece", "prefix": "##", "cleanup": True}
    return finish(j)


def byte_level_bpe(raw, flavour):
    j = json.loads(json.dumps(raw))
    m = j["model"]
    v = m["vocab"]
    append_vocab(v, sorted(set(bytes_to_unicode().values())))
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    j["normalizer"] = None
    j["pre_tokenizer"] = dict(bl)
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True}
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True}
    m.update({"continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
              "byte_fallback": False, "unk_token": None})
    if flavour == "gpt2":
        (eot,) = append_vocab(v, ["<|endoftext|>"])
        j["added_tokens"] = [added("<|endoftext|>", eot)]
    elif flavour == "roberta":
        names = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        ids = dict(zip(names, append_vocab(v, names)))
        j["added_tokens"] = [added(t, i, lstrip=(t == "<mask>")) for t, i in ids.items()]
        j["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", ids["</s>"]],
                               "cls": ["<s>", ids["<s>"]], "trim_offsets": True,
                               "add_prefix_space": False}
    else:  # qwen2, llama3
        names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        ids = append_vocab(v, names)
        j["added_tokens"] = [added(t, i) for t, i in zip(names, ids)]
        j["added_tokens"].append(added("<think>", append_vocab(v, ["<think>"])[0], special=False))
        j["normalizer"] = {"type": "NFC"} if flavour == "qwen2" else None
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_RE if flavour == "qwen2" else LLAMA3_RE},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]}
        if flavour == "llama3":
            m["ignore_merges"] = True
            bos = append_vocab(v, ["<|begin_of_text|>"])[0]
            j["added_tokens"].append(added("<|begin_of_text|>", bos))
            j["post_processor"] = {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                 "use_regex": True},
                template("<|begin_of_text|> $A", "<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                         {"<|begin_of_text|>": bos})]}
    return finish(j)


def byte_fallback_bpe(raw, flavour):
    j = json.loads(json.dumps(raw))
    m = j["model"]
    v = m["vocab"]
    names = ["<unk>", "<s>", "</s>"]
    ids = dict(zip(names, append_vocab(v, names)))
    append_vocab(v, ["<0x%02X>" % b for b in range(256)])
    m.update({"unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
              "continuing_subword_prefix": None, "end_of_word_suffix": None})
    j["added_tokens"] = [added(t, i) for t, i in ids.items()]
    j["post_processor"] = template("<s> $A", "<s> $A <s>:1 $B:1", {"<s>": ids["<s>"]})
    if flavour == "llama":  # TinyLlama's tokenizer.json
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        j["pre_tokenizer"] = None
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:  # Metaspace, as newer Llama / Mistral conversions write it
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                              "split": False}
        j["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                        "split": False}
    return finish(j)


def wordlevel(raw):
    j = json.loads(json.dumps(raw))
    v = j["model"]["vocab"]
    (unk,) = append_vocab(v, ["<unk>"])
    j["model"]["unk_token"] = "<unk>"
    j["added_tokens"] = [added("<unk>", unk)]
    j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}
    j["post_processor"] = None
    j["decoder"] = None
    return finish(j)


# --- Unigram from a SentencePiece model -----------------------------------

def _varint(b, i):
    out = shift = 0
    while True:
        c = b[i]
        i += 1
        out |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return out, i


def _fields(b):
    """(field number, wire type, value) of a protobuf message's fields."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(b, i)
        elif wt == 1:
            val, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            val, i = b[i:i + n], i + n
        elif wt == 5:
            val, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wt}")
        yield f, wt, val


def spm_model(path):
    """pieces [(piece, score, type)] and the precompiled charsmap of a .model
    (sentencepiece_model.proto: ModelProto.pieces = 1, .normalizer_spec = 3,
    NormalizerSpec.precompiled_charsmap = 2)."""
    pieces, charsmap = [], b""
    for f, _, val in _fields(pathlib.Path(path).read_bytes()):
        if f == 1:
            p = {1: b"", 2: b"\0\0\0\0", 3: 1}
            for pf, _, pv in _fields(val):
                p[pf] = pv
            pieces.append((p[1].decode("utf-8"), struct.unpack("<f", p[2])[0], p[3]))
        elif f == 3:
            for nf, _, nv in _fields(val):
                if nf == 2:
                    charsmap = nv
    return pieces, charsmap


def unigram_xlmr(model_path):
    import base64
    pieces, charsmap = spm_model(model_path)
    assert charsmap, "the SentencePiece model has no precompiled_charsmap"
    vocab = [[p, 0.0 if t in (2, 3) else s] for p, s, t in pieces]  # unk/control: score 0
    ids = {p: i for i, (p, _, _) in enumerate(pieces)}
    mask = len(vocab)
    vocab.append(["<mask>", 0.0])
    j = {
        "added_tokens": [added("<s>", ids["<s>"]), added("</s>", ids["</s>"]),
                         added("<unk>", ids["<unk>"]), added("<mask>", mask, lstrip=True)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()},
            {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "▁"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                          "split": True},
        "post_processor": template("<s> $A </s>", "<s> $A </s> </s>:1 $B:1 </s>:1",
                                   {"<s>": ids["<s>"], "</s>": ids["</s>"]}),
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "Unigram", "unk_id": ids["<unk>"], "vocab": vocab, "byte_fallback": False},
    }
    return finish(j)


# --- hand-written ------------------------------------------------------------

def hand_wp(raw_uncased):
    j = wordpiece(raw_uncased, cased=False)
    v = j["model"]["vocab"]
    j["model"]["max_input_chars_per_word"] = 12
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"},
        {"type": "Replace", "pattern": {"String": "’"}, "content": "'"},
        {"type": "Strip", "strip_left": True, "strip_right": True}]}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "Isolated"},
        {"type": "Digits", "individual_digits": True}]}
    extra = ["hello world", "free money", "don't"]
    for t, i in zip(extra, append_vocab(v, extra)):
        j["added_tokens"].append(added(t, i, special=False, normalized=True,
                                       single_word=(t == "free money"), rstrip=(t == "don't")))
    return j


def hand_bpe(lines):
    """BPE with an end-of-word suffix, CharDelimiterSplit and BPEDecoder: merges
    of the most frequent adjacent pairs of a lower-cased ASCII sample."""
    from collections import Counter
    words = Counter(w for line in lines[:2000] for w in line.lower().split("-")
                    if w and w.isascii() and w.isalpha())
    vocab = {"<unk>": 0}
    append_vocab(vocab, [chr(c) for c in range(97, 123)] + [chr(c) + "</w>" for c in range(97, 123)])
    segs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
    merges = []
    for _ in range(300):
        pairs = Counter()
        for w, s in segs.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        merges.append([a, b])
        append_vocab(vocab, [a + b])
        for w, s in segs.items():
            out, k = [], 0
            while k < len(s):
                if k + 1 < len(s) and s[k] == a and s[k + 1] == b:
                    out.append(a + b)
                    k += 2
                else:
                    out.append(s[k])
                    k += 1
            segs[w] = out
    return finish({
        "added_tokens": [added("<unk>", 0)],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "CharDelimiterSplit", "delimiter": "-"},
        "post_processor": None,
        "decoder": {"type": "BPEDecoder", "suffix": "</w>"},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": "</w>",
                  "fuse_unk": True, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges}})


# --- building the set ----------------------------------------------------------

def _sources_hash(extra):
    h = hashlib.sha256(extra.encode())
    for f in ("tok_corpus.py", "tok_matrix.py", "tok_oracle.js"):
        h.update((HERE / f).read_bytes())
    return h.hexdigest()[:16]


def build(cache_root, node_modules):
    """{name: tokenizer dir} of every tokenizer of the matrix, built once
    into cache_root/<hash> (node and spm_train needed)."""
    ver = json.loads((pathlib.Path(node_modules) / "tokenizers/package.json").read_text())["version"]
    out = pathlib.Path(cache_root) / _sources_hash(ver + (shutil.which("spm_train") or ""))
    done = out / "done.json"
    if done.exists():
        return {k: out / k for k in json.loads(done.read_text())}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    lines = tok_corpus.lines()
    corpus = out / "train.txt"
    # no U+0000 in the trained vocabularies: jansson cannot hold it in an object key
    # (test_tok_matrix.py::test_nul_in_vocab tracks that on its own)
    corpus.write_text("\n".join(l.replace("\r", " ").replace("\u2028", " ").replace("\u2029", " ")
                                .replace("\x85", " ").replace("\x0b", " ").replace("\x0c", " ")
                                .replace("\x00", " ") for l in lines[:TRAIN_LINES]) + "\n",
                      encoding="utf-8")
    env = dict(os.environ, NODE_PATH=str(node_modules), RAYON_NUM_THREADS="2")
    subprocess.run(["node", str(HERE / "tok_oracle.js"), "train", str(out), str(corpus)],
                   env=env, check=True, capture_output=True, timeout=900)
    raw = {n: json.loads((out / f"raw_{n}.json").read_text(encoding="utf-8"))
           for n in ("wp_uncased", "wp_cased", "bpe_bytelevel", "bpe_metaspace", "wordlevel")}
    toks = {
        "wp_uncased": wordpiece(raw["wp_uncased"], cased=False),
        "wp_cased": wordpiece(raw["wp_cased"], cased=True),
        "bpe_gpt2": byte_level_bpe(raw["bpe_bytelevel"], "gpt2"),
        "bpe_roberta": byte_level_bpe(raw["bpe_bytelevel"], "roberta"),
        "bpe_qwen2": byte_level_bpe(raw["bpe_bytelevel"], "qwen2"),
        "bpe_llama3": byte_level_bpe(raw["bpe_bytelevel"], "llama3"),
        "bpe_llama": byte_fallback_bpe(raw["bpe_metaspace"], "llama"),
        "bpe_metaspace": byte_fallback_bpe(raw["bpe_metaspace"], "metaspace"),
        "wordlevel": wordlevel(raw["wordlevel"]),
        "hand_wp": hand_wp(raw["wp_uncased"]),
        "hand_bpe": hand_bpe(lines),
    }
    if shutil.which("spm_train"):
        subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={out / 'spm'}",
                        "--vocab_size=8000", "--character_coverage=0.9995", "--model_type=unigram",
                        "--normalization_rule_name=nmt_nfkc", "--hard_vocab_limit=false",
                        "--num_threads=2", "--minloglevel=2"],
                       check=True, capture_output=True, timeout=600)
        toks["unigram_xlmr"] = unigram_xlmr(out / "spm.model")
    for name, j in toks.items():
        (out / name).mkdir()
        (out / name / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False),
                                                   encoding="utf-8")
    done.write_text(json.dumps(sorted(toks)))
    return {k: out / k for k in toks}
