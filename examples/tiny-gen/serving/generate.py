"""Greedy continuation with the student's key/value cache: the same loop as
`nexus_cli generate`, for hosts that prefer Python.  Needs onnxruntime and
numpy; the ids come from the bundle's tokenizer (nexus_cli tokenize)."""
import numpy as np


def greedy(session, ids, max_new_tokens, eos_ids=()):
    names = [i.name for i in session.get_inputs()]
    past = [n for n in names if n.startswith("past_key_values.")]
    shapes = {i.name: i.shape for i in session.get_inputs()}
    feed = {n: np.zeros((1, shapes[n][1], 0, shapes[n][3]), dtype=np.float32) for n in past}
    tokens = list(ids)
    step = np.array([tokens], dtype=np.int64)
    out = []
    for _ in range(max_new_tokens):
        total = len(tokens)
        feed["input_ids"] = step
        feed["attention_mask"] = np.ones((1, total), dtype=np.int64)
        feed["position_ids"] = np.arange(total - step.shape[1], total, dtype=np.int64)[None, :]
        results = session.run(None, feed)
        nxt = int(np.argmax(results[0][0, -1]))
        if nxt in eos_ids:
            break
        out.append(nxt)
        tokens.append(nxt)
        for name, value in zip(session.get_outputs()[1:], results[1:]):
            feed[name.name.replace("present.", "past_key_values.")] = value
        step = np.array([[nxt]], dtype=np.int64)
    return out
