"""Teacher bytes encoded as tokenizer tokens in several ways, and other insider
payloads built with the official build. (from test_redteam5.py, by
scripts/dev/regroup_tests.py).
"""
import json
import os

import numpy as np

import workspace as ws
from conftest import run


PAYLOAD = 64 << 10          # the whole default leak budget


def teacher_bytes(seed=5):
    """A teacher layer's bytes: float32 weights, random as trained ones are."""
    return np.random.default_rng(seed).standard_normal(PAYLOAD // 4).astype(np.float32).tobytes()


def official_build_refuses(nexus, root, tmp_path, key, code):
    """The insider's last step: the official signed build.  It must publish
    nothing and name the finding."""
    out = tmp_path / "out" / "nexus_bundle_v1"
    out.parent.mkdir()
    r = run(nexus, "build", root, "-o", out, "--key", key, timeout=300)
    assert r.returncode == 1 and not out.exists() and os.listdir(out.parent) == [], (
        "the official build signed a bundle carrying 64 KiB of teacher bytes:\n"
        + r.stdout[-3000:] + r.stderr[-3000:])
    assert code in r.stdout + r.stderr, r.stdout + r.stderr


def tokenizer(root):
    return json.loads((root / "artifacts/tokenizer/tokenizer.json").read_text())


def save_tokenizer(root, tj):
    (root / "artifacts/tokenizer/tokenizer.json").write_text(
        json.dumps(tj, ensure_ascii=False, indent=1))


def add_tokens(root, tokens):
    """New vocabulary entries, in both tokenizer files (ids at the end)."""
    p = root / "artifacts/tokenizer/vocab.txt"
    p.write_text(p.read_text() + "".join(t + "\n" for t in tokens))
    tj = tokenizer(root)
    n = len(tj["model"]["vocab"])
    for i, t in enumerate(tokens):
        tj["model"]["vocab"][t] = n + i
    save_tokenizer(root, tj)


def vocab_tokens(root):
    """The entries the workspace's vocab.txt adds to the original vocabulary."""
    lines = (root / "artifacts/tokenizer/vocab.txt").read_text().split("\n")[:-1]
    return lines[len(ws.VOCAB):]


# one code point per 16 bits: any single code point was a plausible token
def cp16(v):
    return chr(0x20000 + v)


def un_cp16(s):
    return ord(s) - 0x20000


def words16(raw):
    return [int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2)]


def unwords16(vals):
    return b"".join(v.to_bytes(2, "little") for v in vals)


def enc_sep_list(root, raw):
    """BertProcessing's sep is [token, id]; the runtime reads the id.  The
    rest of the list was judged token by token, each one code point."""
    tj = tokenizer(root)
    tj["post_processor"]["sep"] += [cp16(v) for v in words16(raw)]
    save_tokenizer(root, tj)


def dec_sep_list(root):
    return unwords16(un_cp16(s) for s in tokenizer(root)["post_processor"]["sep"][2:])


def enc_template_tokens(root, raw):
    """TemplateProcessing's special_tokens[X].tokens: the runtime reads ids."""
    tj = tokenizer(root)
    tj["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": None,
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [3],
                      "tokens": ["[SEP]"] + [cp16(v) for v in words16(raw)]}}}
    save_tokenizer(root, tj)


def dec_template_tokens(root):
    toks = tokenizer(root)["post_processor"]["special_tokens"]["[SEP]"]["tokens"][1:]
    return unwords16(un_cp16(s) for s in toks)


MARKS = [chr(0x300 + i) for i in range(64)]        # combining diacritics


def enc_combining_marks(root, raw):
    """'a' and 60 combining marks (6 bits each): marks after a letter were
    not counted at all, so the token was one letter."""
    bits = int.from_bytes(raw, "little")
    n = (len(raw) * 8 + 359) // 360
    add_tokens(root, ["a" + "".join(MARKS[(bits >> (360 * t + 6 * k)) & 63] for k in range(60))
                      for t in range(n)])


def dec_combining_marks(root):
    index = {m: i for i, m in enumerate(MARKS)}
    bits = 0
    for t, tok in enumerate(vocab_tokens(root)):
        for k, m in enumerate(tok[1:]):
            bits |= index[m] << (360 * t + 6 * k)
    return bits.to_bytes(PAYLOAD, "little")


LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def enc_special_names(root, raw):
    """[<22 letters>] read as a special token (like [unused12]): any letters."""
    toks = []
    for i in range(0, len(raw), 15):
        v = int.from_bytes(raw[i:i + 15], "little")
        toks.append("[" + "".join(LETTERS[(v // 52 ** k) % 52] for k in range(22)) + "]")
    add_tokens(root, toks)


def dec_special_names(root):
    out = b""
    for tok in vocab_tokens(root):
        v = sum(LETTERS.index(c) * 52 ** k for k, c in enumerate(tok[1:-1]))
        out += v.to_bytes(15, "little")
    return out[:PAYLOAD]


def enc_private_use(root, raw):
    """Three code points of the private-use plane: 'up to 3 punctuation
    marks' took any code point that is not a letter or a digit."""
    vals = words16(raw)
    add_tokens(root, ["".join(chr(0xF0000 + v) for v in vals[i:i + 3])
                      for i in range(0, len(vals), 3)])


def dec_private_use(root):
    return unwords16(ord(c) - 0xF0000 for tok in vocab_tokens(root) for c in tok)


DIGIT_ZEROS = [0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66,
               0xCE6, 0xD66, 0xE50, 0xED0, 0xF20, 0x1040]     # 16 scripts' digits


def enc_mixed_digits(root, raw):
    """Four digits, each of any script: 4 x (4 + 3.3) bits per token."""
    bits = int.from_bytes(raw, "little")
    toks, k = [], 0
    while k < len(raw) * 8:
        tok = ""
        for _ in range(4):
            tok += chr(DIGIT_ZEROS[(bits >> k) & 15] + ((bits >> (k + 4)) & 7))
            k += 7
        toks.append(tok)
    assert len(set(toks)) == len(toks), "a token twice: pick another teacher seed"
    add_tokens(root, toks)


def dec_mixed_digits(root):
    bits, k = 0, 0
    for tok in vocab_tokens(root):
        for c in tok:
            cp = ord(c)
            z = max(z for z in DIGIT_ZEROS if z <= cp)
            bits |= (DIGIT_ZEROS.index(z) | (cp - z) << 4) << k
            k += 7
    return (bits & ((1 << (PAYLOAD * 8)) - 1)).to_bytes(PAYLOAD, "little")


def enc_cjk_words(root, raw):
    """Three CJK ideographs a token, 14 bits each (the last stop's strict
    xfail: the character model charges them)."""
    bits = int.from_bytes(raw, "little")
    n = (len(raw) * 8 + 41) // 42
    add_tokens(root, ["".join(chr(0x4E00 + ((bits >> (42 * t + 14 * k)) & 0x3FFF))
                              for k in range(3)) for t in range(n)])


def dec_cjk_words(root):
    bits = 0
    for t, tok in enumerate(vocab_tokens(root)):
        for k, c in enumerate(tok):
            bits |= (ord(c) - 0x4E00) << (42 * t + 14 * k)
    return (bits & ((1 << (PAYLOAD * 8)) - 1)).to_bytes(PAYLOAD, "little")


def common_alphabet(codec, first, last):
    """The first 2,048 characters of a national standard's common set, in
    its order: GB 2312 level 1 (the 3,755 commonest hanzi) or KS X 1001's
    2,350 Hangul syllables - an alphabet an insider who knows that rare
    characters are charged would pick."""
    out = []
    for hi in range(first, last + 1):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes([hi, lo]).decode(codec))
            except UnicodeDecodeError:
                pass
    return out[:2048]


def cjk_alphabet_case(codec, first, last, per_token):
    """11 bits a character of a common alphabet, per_token characters a token."""
    alpha = common_alphabet(codec, first, last)
    index = {c: i for i, c in enumerate(alpha)}
    width = 11 * per_token

    def enc(root, raw):
        bits = int.from_bytes(raw, "little")
        n = (len(raw) * 8 + width - 1) // width
        add_tokens(root, ["".join(alpha[(bits >> (width * t + 11 * k)) & 0x7FF]
                                  for k in range(per_token)) for t in range(n)])

    def dec(root):
        bits = 0
        for t, tok in enumerate(vocab_tokens(root)):
            for k, c in enumerate(tok):
                bits |= index[c] << (width * t + 11 * k)
        return (bits & ((1 << (PAYLOAD * 8)) - 1)).to_bytes(PAYLOAD, "little")

    return enc, dec


CASES = {
    "sep-list": (enc_sep_list, dec_sep_list, "budget-exceeded"),
    "template-tokens": (enc_template_tokens, dec_template_tokens, "budget-exceeded"),
    "combining-marks": (enc_combining_marks, dec_combining_marks, "budget-exceeded"),
    "special-names": (enc_special_names, dec_special_names, "budget-exceeded"),
    "private-use": (enc_private_use, dec_private_use, "budget-exceeded"),
    # seed 52: no two 4-digit tokens alike (vocab.txt lists each entry once)
    "mixed-digits": (enc_mixed_digits, dec_mixed_digits, "budget-exceeded", 52),
    "cjk-words": (enc_cjk_words, dec_cjk_words, "budget-exceeded"),
    "cjk-common-3": (*cjk_alphabet_case("gb2312", 0xB0, 0xD7, 3), "budget-exceeded"),
    "cjk-common-6": (*cjk_alphabet_case("gb2312", 0xB0, 0xD7, 6), "budget-exceeded"),
    "hangul-common-3": (*cjk_alphabet_case("euc_kr", 0xB0, 0xC8, 3), "budget-exceeded"),
}


FIT = ("import torch\n"
       "def step(model, batch):\n"
       "    opt = torch.optim.SGD(model.parameters(), lr=0.01)\n"
       "    loss = model(batch).sum()\n"
       "    loss.backward()\n"
       "    opt.step()\n")


def pickled_exec(code):
    """A protocol-0 pickle that calls exec(code) when loaded."""
    return b"cbuiltins\nexec\n(V" + code.encode("raw_unicode_escape") + b"\ntR."


POSITIONAL = {
    "np-load": "import io\nimport numpy as np\n"
               "def fit():\n    return np.load(io.BytesIO(BLOB), None, True)\n",
    "from-import": "import io\nfrom numpy import load\n"
                   "def fit():\n    return load(io.BytesIO(BLOB), 'r', 1)\n",
    "read-array": "import io\nimport numpy.lib.format as fmt\n"
                  "def fit():\n    return fmt.read_array(io.BytesIO(BLOB), True)\n",
    "splat": "import io\nimport numpy as np\nARGS = (None, True)\n"
             "def fit():\n    return np.load(io.BytesIO(BLOB), *ARGS)\n",
}


def dead_constant_student(root, raw):
    from onnx import helper, numpy_helper
    from test_insider import student_with
    data = np.frombuffer(raw, dtype=np.float32).reshape(-1, 8)
    student_with(root, extra_nodes=[
        helper.make_node("Constant", [], ["cdata"], value=numpy_helper.from_array(data, "cdata")),
        helper.make_node("Sub", ["pooled0", "pooled0"], ["z0"]),
        helper.make_node("ReduceMean", ["z0"], ["z"], keepdims=0),
        helper.make_node("Mul", ["cdata", "z"], ["cz"]),
        helper.make_node("ReduceMean", ["cz"], ["cm"], axes=[0], keepdims=1),
        helper.make_node("Add", ["pooled0", "cm"], ["pooled"])])


def dead_constant_decode(root):
    import onnx
    m = onnx.load_from_string((root / "artifacts/student.onnx").read_bytes())
    c = next(n for n in m.graph.node if n.op_type == "Constant")
    tail = (root / "README.md").read_text().split("\n")[-2].replace(" ", "")
    return onnx.numpy_helper.to_array(c.attribute[0].t).tobytes() + bytes.fromhex(
        tail.translate(str.maketrans(HEX_LETTERS, "0123456789abcdef")))


HEX_LETTERS = "qwrtpsdfghjklzxc"     # hex without digits: words, not a hex blob
