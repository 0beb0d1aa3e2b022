"""corpus.py - the King James Bible (Debian's bible-kjv-text, read with the
bible-kjv program) as verses, split by book into train / held-out.

The held-out text is whole books the models never see in training (every
ninth book, starting with Exodus), so the perplexities in results.json
measure generalisation, not memorisation of neighbouring verses."""
import re
import shutil
import subprocess

VERSE = re.compile(r"^\s*(\d+) (.*)$")
CHAPTER = re.compile(r"^(\S.*) (\d+)$")


def verses():
    """[(book, text)] in canonical order, one entry per verse."""
    if not shutil.which("bible"):
        raise SystemExit("corpus: the `bible` program is missing: apt-get install bible-kjv")
    # -l 100000: one line per verse (the default wraps at 80 columns)
    out = subprocess.run(["bible", "-l100000", "-m", "8192", "Ge1:1-Re22:21"],
                         check=True, capture_output=True, text=True).stdout
    book, result = None, []
    for line in out.splitlines():
        m = VERSE.match(line)
        if m and book:
            result.append((book, m.group(2).strip()))
            continue
        m = CHAPTER.match(line)
        if m:
            book = m.group(1)
    if len(result) < 30000:
        raise SystemExit(f"corpus: only {len(result)} verses parsed; is bible-kjv-text complete?")
    return result


def split(vs):
    books = []
    for b, _ in vs:
        if not books or books[-1] != b:
            books.append(b)
    held = {b for i, b in enumerate(books) if i % 9 == 1}
    train = [t for b, t in vs if b not in held]
    test = [t for b, t in vs if b in held]
    return train, test, sorted(held, key=books.index)
