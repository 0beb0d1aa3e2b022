"""The tokenizer parity corpus: a deterministic generator of hard text.

lines(n, seed) gives n lines (str) that mix accents (composed and
decomposed), many scripts, CJK, emoji with skin tones, flags and ZWJ
sequences, control and invisible characters, odd whitespace, very long
words, empty lines, numbers, code and text full of the special-token
strings of BERT, RoBERTa, GPT-2, Llama and Qwen2 tokenizers.  pairs(n, seed)
gives (text, text_pair) tuples drawn the same way.  invalid_utf8(seed)
gives byte strings that are not UTF-8, which nexus must refuse with an error
(Hugging Face's API only takes Unicode strings, so there is no oracle).

Only the standard library: the same seed gives the same corpus everywhere.
"""
import random

ACCENTS = ["Café", "naïve", "RÉSUMÉ", "Über", "Straße", "ÅNGSTRÖM", "İstanbul", "ıi",
           "e\u0301", "a\u0301\u0302", "n\u0303", "Ǆǅǆ", "ﬁﬂ", "Ⅻ", "①②", "ｆｕｌｌ ｗｉｄｔｈ",
           "𝐁𝐨𝐥𝐝", "Ｈｅｌｌｏ", "ß", "ẞ", "Œuvre", "façade", "jalapeño", "crème brûlée",
           "Ωmega", "µ", "K", "Å", "ﾊﾝｶｸ", "㍿", "℡", "½", "x²", "H₂O"]
SCRIPTS = ["ΣΟΦΙΑ σοφία", "Привет мир", "Ѐѐ", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
           "अनुच्छेद", "สวัสดีชาวโลก", "안녕하세요 세계", "こんにちは世界", "カタカナ", "ひらがな",
           "中文字符", "日本語", "國人", "繁體中文", "𠀀𠀁", "\U0002a6d6", "\U00030000", "\uf900",
           "ጤና ይስጥልኝ", "Բարեւ", "გამარჯობა", "ᚠᛇᚻ", "ꦲꦏ꧀ꦱꦫ", "ܫܠܡܐ", "ދިވެހި", "ᠮᠣᠩᠭᠣᠯ",
           "Tiếng Việt", "Ελληνικά", "ئۇيغۇرچە", "ภาษาไทย", "ພາສາລາວ", "ខ្មែរ", "မြန်မာ"]
EMOJI = ["😀", "👍🏽", "🫠", "🧑‍💻", "👩‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "✋🏿", "👨🏻‍🦰",
         "🤷‍♀️", "1️⃣", "©️", "🔥🔥🔥", "🧑🏾‍🤝‍🧑🏼", "🐈‍⬛", "☺", "⌚"]
CONTROL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u200b", "\u200c", "\u200d",
           "\u00ad", "\ufeff", "\ufffd", "\u2028", "\u2029", "\u202e", "\u200e", "\u2066",
           "\x0b", "\x0c", "\t", "\r", "\u3000", "\u00a0", "\u2003", "\u180e", "\ue000",
           "\U000f0000", "\ufffe", "\u0640", "\u0301"]
SPECIAL = ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[cls]", "[ MASK]", "[MASK][MASK]",
           "<s>", "</s>", "<pad>", "<unk>", "<mask>", " <mask>", "<mask> ", "<|endoftext|>",
           "<|im_start|>", "<|im_end|>", "<|endoftext|><|endoftext|>", "<|im_start|>user",
           "<0x41>", "<0xE5>", "<0xZZ>", "▁", "▁▁", "Ġ", "Ċ", "##", "##ing", "</w>", "@@",
           "<s><s>", "< s>", "<|", "|>", "[SEP]x", "x[SEP]", "<ctrl>", "<special>", "<sp>x"]
WORDS = ("the a an and or of to in is it you he she we they this that free money click now "
         "lunch at noon tomorrow hello world model bundle student run unable playing played "
         "tokenization don't I'm we've they're it's ain't e-mail a_b $100 50% #tag @user x^2 "
         "3.14 1,000,000 2024-01-01 12:30 http://example.com/a?b=c&d=e foo.bar() i++ "
         "x=y+z;").split()
PUNCT = list(".,;:!?¿¡«»—–…“”‘’'\"()[]{}<>/\\|~`^_*&%$#@+=§¶·•") + ["...", "?!", "--"]


def _word(rnd):
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüßøåÉÜ0123456789"
    return "".join(rnd.choice(letters) for _ in range(rnd.randint(1, 12)))


def _piece(rnd):
    r = rnd.random()
    if r < 0.30:
        return rnd.choice(WORDS)
    if r < 0.42:
        return _word(rnd)
    if r < 0.50:
        return rnd.choice(ACCENTS)
    if r < 0.58:
        return rnd.choice(SCRIPTS)
    if r < 0.64:
        return rnd.choice(EMOJI)
    if r < 0.69:
        return rnd.choice(CONTROL)
    if r < 0.77:
        return rnd.choice(SPECIAL)
    if r < 0.84:
        return rnd.choice(PUNCT)
    if r < 0.86:  # very long words
        return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(rnd.randint(95, 600)))
    if r < 0.90:
        return str(rnd.randint(0, 10 ** rnd.randint(1, 12)))
    return chr(rnd.choice([rnd.randint(0x21, 0x7e), rnd.randint(0xa0, 0x2fff),
                           rnd.randint(0x3000, 0x9fff), rnd.randint(0xac00, 0xd7a3),
                           rnd.randint(0x1f300, 0x1faff), rnd.randint(0x20000, 0x2a6df)]))


def _line(rnd, i):
    if i % 97 == 0:
        return ""
    if i % 89 == 0:
        return rnd.choice([" ", "  ", "\t", "\u3000", " \n ".strip("\n"), "\u200b"])
    if i % 83 == 0:  # a line of nothing but special-token strings
        return "".join(rnd.choice(SPECIAL) for _ in range(rnd.randint(1, 12)))
    seps = [" ", " ", " ", "", "  ", "\t", " \u3000 ", "   "]
    parts = [_piece(rnd) for _ in range(rnd.randint(1, 30))]
    out = parts[0]
    for p in parts[1:]:
        out += rnd.choice(seps) + p
    if rnd.random() < 0.1:
        out = " " + out
    if rnd.random() < 0.1:
        out += " "
    return out


def lines(n=10000, seed=20261206):
    rnd = random.Random(seed)
    return [_line(rnd, i) for i in range(n)]


def pairs(n=2000, seed=1606):
    rnd = random.Random(seed)
    return [(_line(rnd, 2 * i + 1), _line(rnd, 2 * i + 2)) for i in range(n)]


def invalid_utf8(seed=7):
    """Byte strings that are not UTF-8 (no newline inside)."""
    rnd = random.Random(seed)
    bad = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80",
           b"\xf5\x80\x80\x80", b"\xc3", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80"]
    out = []
    for i in range(60):
        a = _line(rnd, i + 1).encode("utf-8").replace(b"\n", b" ").replace(b"\r", b" ")
        k = rnd.randint(0, len(a))
        out.append(a[:k] + rnd.choice(bad) + a[k:])
    return out
