"""A small Hugging Face format WordPiece tokenizer, made deterministically,
shared by the runtime and tokenizer-parity tests."""
import json

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a an and or of to in is it you he she we they this that free money "
         "click now lunch at noon tomorrow hello world model bundle student run "
         "un ##able ##ing ##ed ##s ##er ##ly play ##ground token ##izer ##ization "
         "cafe naive resume uber strasse 中 文 日 本 語 國 人 é ü "
         "##a ##b ##c ##d ##e ##f ##g ##h ##i ##j ##k ##l ##m ##n ##o ##p ##q ##r "
         "##t ##u ##v ##w ##x ##y ##z ##0 ##1 ##2 ##3 ##4 ##5 ##6 ##7 ##8 ##9").split()


def vocab():
    out = list(SPECIALS)
    for c in range(33, 127):
        out.append(chr(c).lower())
    for c in "¿¡«»—…“”‘’·§¶€£¥©®°±×÷αβγδεσςωабвгдежзийклмн":
        out.append(c)
    out.extend(WORDS)
    out.extend(["😀", "👍", "##😀", "ß", "##ß", "i̇", "##̇"])
    seen, uniq = set(), []
    for t in out:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    return uniq


def tokenizer_json(lowercase=True, strip_accents=None, max_chars=100):
    v = vocab()
    ids = {t: i for i, t in enumerate(v)}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": ids[s], "content": s, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True} for s in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": strip_accents,
                       "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [ids["[CLS]"]], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [ids["[SEP]"]], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
                  "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": max_chars, "vocab": ids},
    }


def write(dirpath, **kw):
    import os
    os.makedirs(dirpath, exist_ok=True)
    with open(os.path.join(dirpath, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(**kw), f, ensure_ascii=False, indent=2)
    with open(os.path.join(dirpath, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab()) + "\n")
