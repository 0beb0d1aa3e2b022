"""Spam classifier inference wrapper (ONNX Runtime + NumPy).

    from src.inference import SpamClassifier
    clf = SpamClassifier("/opt/nexus_bundle_v1")
    clf.predict(["free money, click now"])  # -> [{"label": "spam", "scores": {...}}]

or from a shell:  python3 -m src.inference "free money, click now"
"""
import json
import os
import sys

import numpy as np
import teacher_model  # noqa: F401
from training_modules.distill import soft_targets_loss  # noqa: F401

try:
    from . import utils
except ImportError:  # imported as a top-level module, with this directory on sys.path
    import utils

# Bundle layout first, then the layout of the workspace the bundle is built from.
MODEL_PATHS = ("model/student_model.onnx", "artifacts/student.onnx")
TOKENIZER_DIRS = ("model/tokenizer", "artifacts/tokenizer")


def _first(root, candidates):
    for rel in candidates:
        path = os.path.join(root, rel)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"none of {candidates} under {root}")


class SpamClassifier:
    def __init__(self, root=None):
        root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.config = utils.read_runtime_config(os.path.join(root, "config", "runtime.yaml"))
        self.labels = self.config["labels"]
        self.max_len = self.config["max_sequence_length"]
        self.batch_size = self.config.get("batch_size", 8)
        self.tokenizer = utils.Tokenizer(_first(root, TOKENIZER_DIRS))
        # Imported here so the tokenizer and config reader work without it.
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.config.get("threads", 1)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            _first(root, MODEL_PATHS), opts, providers=["CPUExecutionProvider"])

    def logits(self, texts):
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = [self.tokenizer.encode(t, self.max_len) for t in texts[i: i + self.batch_size]]
            ids, mask = utils.pad_batch(batch)
            out.append(self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, texts):
        probs = utils.softmax(self.logits(list(texts)))
        return [{"label": self.labels[int(p.argmax())],
                 "scores": {lab: float(s) for lab, s in zip(self.labels, p)}} for p in probs]


def main(argv):
    texts = argv or [line.rstrip("\n") for line in sys.stdin]
    for text, result in zip(texts, SpamClassifier().predict(texts)):
        print(json.dumps({"text": text, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
