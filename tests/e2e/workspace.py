"""Write a small, realistic distillation workspace into a directory.

make_workspace(root, **knobs) lays out what a training repository holds at
the end of a distillation run: nexus.yaml, a student ONNX (input_ids,
attention_mask -> logits), a teacher ONNX and PyTorch checkpoints, a
WordPiece tokenizer, runtime settings, serving code that still imports the
teacher and training code (without using them), README and LICENSE - and
the teacher/training modules themselves beside the serving code, so a test
can prove they are never packaged.

Runs under /usr/bin/python3 (Debian's onnx 1.12, numpy, torch).
"""
import json
import pathlib
import textwrap

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "free", "money", "click",
         "now", "lunch", "at", "noon", "tomorrow", "win", "prize", "meeting",
         "##s", "##ing", ",", "?", "!", "."]

INFERENCE_PY = '''\
"""Serve the spam classifier."""
import json
import teacher_model
from training_modules import losses, schedulers
import numpy as np

from . import utils


def predict(session, tokenizer, text):
    ids, mask = utils.encode(tokenizer, text)
    (logits,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    return json.dumps({"logits": np.asarray(logits).tolist()})
'''

UTILS_PY = '''\
"""Helpers for inference.py."""
import numpy as np


def encode(tokenizer, text, max_len=32):
    ids = tokenizer.encode(text)[:max_len]
    mask = [1] * len(ids)
    return np.array([ids], dtype=np.int64), np.array([mask], dtype=np.int64)
'''

TEACHER_PY = '''\
"""The 12-layer teacher used during distillation."""
class TeacherModel:
    pass
'''

TRAINING_PY = '''\
"""Losses used to distill the student."""
def soft_targets(logits, temperature):
    return logits / temperature
'''

RUNTIME_YAML = """\
task: classification
labels: [ham, spam]
max_sequence_length: 32
batch_size: 1
threads: 1
integrity: full
python_packages: [numpy, onnxruntime]
"""


def student_onnx(vocab_rows=len(VOCAB), dim=8, seed=0, producer="pytorch"):
    """Embedding (Gather) + masked ReduceMean + MatMul -> logits[batch, 2]."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((vocab_rows, dim), dtype=np.float32)
    w = rng.standard_normal((dim, 2), dtype=np.float32)
    nodes = [
        helper.make_node("Gather", ["embeddings.weight", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_u"]),
        helper.make_node("Mul", ["emb", "mask_u"], ["masked"]),
        helper.make_node("ReduceMean", ["masked"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "classifier.weight"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "student",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(emb, "embeddings.weight"),
         numpy_helper.from_array(w, "classifier.weight"),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")])
    model = helper.make_model(graph, producer_name=producer,
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model.SerializeToString()


def tokenizer_json():
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(VOCAB[:5])],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None,
                       "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
                  "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                  "vocab": {t: i for i, t in enumerate(VOCAB)}},
    }, indent=2, sort_keys=True) + "\n"


def default_config():
    return {
        "bundle_id": "nexus_bundle_v1",
        "architecture": "TinySpamStudent-1L",
        "student": "{model: artifacts/student.onnx}",
        "teacher": "[artifacts/teacher.onnx, checkpoints/teacher.pt]",
        "tokenizer": "artifacts/tokenizer",
        "runtime_config": "config/runtime.yaml",
        "source": "{dir: serving, files: [__init__.py, inference.py, utils.py]}",
        "forbidden_imports": "[teacher_model, training_modules]",
        "selftest": '["free money, click now", "lunch at noon tomorrow?"]',
        "readme": "README.md",
        "license": "LICENSE",
    }


def _torch_save(obj, path):
    try:
        import torch
        torch.save(obj, str(path))
    except ImportError:  # still a PyTorch-like zip, enough for "never copied"
        import zipfile
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


def make_workspace(root, *, config=None, extra_yaml="", inference_py=INFERENCE_PY,
                   utils_py=UTILS_PY, student=None, vocab_rows=None,
                   tokenizer_files=("tokenizer.json", "vocab.txt"),
                   runtime_yaml=RUNTIME_YAML, teacher_modules=True):
    """Create the workspace in root (created if missing) and return its path.

    config: dict of nexus.yaml keys (values as YAML flow text) merged over
    default_config(); a value of None drops the key.  extra_yaml is appended
    verbatim.  student: raw bytes for artifacts/student.onnx (default: a
    valid tiny model; vocab_rows makes its embedding bigger).
    """
    root = pathlib.Path(root)
    for d in ("artifacts/tokenizer", "checkpoints", "config", "serving"):
        (root / d).mkdir(parents=True, exist_ok=True)
    cfg = default_config()
    cfg.update(config or {})
    (root / "nexus.yaml").write_text(
        "".join(f"{k}: {v}\n" for k, v in cfg.items() if v is not None) + extra_yaml)
    if student is None:
        student = student_onnx(vocab_rows or len(VOCAB))
    (root / "artifacts/student.onnx").write_bytes(student)
    (root / "artifacts/teacher.onnx").write_bytes(
        student_onnx(len(VOCAB), dim=32, seed=1, producer="teacher-export"))
    rng = np.random.default_rng(2)
    _torch_save({"state_dict": {"w": rng.standard_normal(16).tolist()}},
                root / "checkpoints/teacher.pt")
    _torch_save({"state": {}, "param_groups": [{"lr": 0.001}]},
                root / "checkpoints/optimizer.pt")
    if "tokenizer.json" in tokenizer_files:
        (root / "artifacts/tokenizer/tokenizer.json").write_text(tokenizer_json())
    if "vocab.txt" in tokenizer_files:
        (root / "artifacts/tokenizer/vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # Things that sit beside the tokenizer in real repositories.
    (root / "artifacts/tokenizer/special_tokens_map.json").write_text("{}\n")
    (root / "config/runtime.yaml").write_text(runtime_yaml)
    (root / "serving/__init__.py").write_text('"""Serving package."""\n')
    (root / "serving/inference.py").write_text(inference_py)
    (root / "serving/utils.py").write_text(utils_py)
    if teacher_modules:
        (root / "serving/teacher_model.py").write_text(TEACHER_PY)
        (root / "serving/training_modules.py").write_text(TRAINING_PY)
    (root / "README.md").write_text(textwrap.dedent("""\
        # Spam classifier

        Run `bin/nexus_cli run --text "free money"`.
        """))
    (root / "LICENSE").write_text("Apache License 2.0\n")
    return root
