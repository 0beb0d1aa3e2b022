"""Hand-made bundles for the verifier's adversarial tests.

A Bundle writes the bundle tree (docs/FORMAT.md §3) (plus lib/ and config/selftest.json)
without `nexus build`, so that every attack can start from a known-good
bundle and change exactly one thing.  `regen_manifest()` re-hashes the tree
after planting something, so integrity passes and the attack must be caught
by the other checks.

The manifest is written canonically: json.dumps(indent=2, sort_keys=True,
ensure_ascii=False) + "\\n", the form docs/FORMAT.md fixes.
"""
import hashlib
import json
import os
import pathlib
import shutil
import stat

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "free", "money", "click", "now",
         "lunch", "at", "noon", "tomorrow", "?", ","] + [f"w{i}" for i in range(114)]
HIDDEN = 8
LABELS = 2

SOURCES = {
    "src/__init__.py": '"""Spam classifier inference package."""\n',
    "src/inference.py": (
        '"""Inference engine wrapper around onnxruntime."""\n'
        "import json\n"
        "import numpy as np\n"
        "import onnxruntime\n\n"
        "from .utils import softmax\n\n\n"
        "class Engine:\n"
        "    def __init__(self, model_path):\n"
        "        # one session per process\n"
        "        self.session = onnxruntime.InferenceSession(model_path)\n\n"
        "    def run(self, ids):\n"
        '        logits = self.session.run(None, {"input_ids": ids})[0]\n'
        "        return softmax(logits)\n"
    ),
    "src/utils.py": (
        "import numpy as np\n\n\n"
        "def softmax(x):\n"
        "    e = np.exp(x - x.max(axis=-1, keepdims=True))\n"
        "    return e / e.sum(axis=-1, keepdims=True)\n"
    ),
}

RUNTIME_YAML = (
    "task: classification\n"
    "labels: [ham, spam]\n"
    "max_sequence_length: 32\n"
    "batch_size: 1\n"
    "threads: 1\n"
    "integrity: full\n"
    "python_packages: [onnxruntime, numpy]\n"
)


def student_graph(seed=0, vocab=len(VOCAB), extra_initializers=(), extra_nodes=(),
                  doc_string="", graph_name="student"):
    """input_ids[1,N] -> Gather(embedding) -> ReduceMean -> MatMul + Add -> logits."""
    rng = np.random.default_rng(seed)
    emb = numpy_helper.from_array(rng.standard_normal((vocab, HIDDEN)).astype(np.float32),
                                  "embedding")
    w = numpy_helper.from_array(rng.standard_normal((HIDDEN, LABELS)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(LABELS, np.float32), "b")
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["emb"], name="gather"),
        helper.make_node("ReduceMean", ["emb"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["mm"], name="proj"),
        helper.make_node("Add", ["mm", "b"], ["logits"], name="bias"),
    ] + list(extra_nodes)
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, LABELS])],
        [emb, w, b] + list(extra_initializers), doc_string=doc_string)
    return graph


def student_model(graph=None, producer="nexus-test", metadata=None, opsets=None, **kw):
    graph = graph or student_graph(**kw)
    model = helper.make_model(graph, producer_name=producer,
                              opset_imports=opsets or [helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    return model


def parameters(model):
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def human(n):
    """The manifest's human parameter count (DESIGN §4)."""
    if n < 1000:
        return str(n)
    for unit, div in (("K", 1e3), ("M", 1e6), ("B", 1e9), ("T", 1e12)):
        v = n / div
        if round(v, 1) < 1000 or unit == "T":
            if round(v, 1) >= 100:
                return f"{round(v):.0f}{unit}"
            return f"{v:.1f}{unit}"
    return str(n)


def make_runtime(root):
    """A stand-in trusted runtime: small files, so each test copies little."""
    root = pathlib.Path(root)
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "bin" / "nexus_cli").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"nexus_cli stand-in")
    (root / "lib" / "libonnxruntime.so.1").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"ort stand-in")
    return root


class Bundle:
    def __init__(self, root, runtime_dir, model=None):
        self.root = pathlib.Path(root)
        self.runtime_dir = pathlib.Path(runtime_dir)
        self.model = model if model is not None else student_model()
        self.meta = {
            "architecture": "TinyStudent",
            "format": "ONNX",
            "parameters": human(parameters(self.model)),
            "quantization": "none",
        }
        self.signature = ""
        # A teacher outside the bundle, as a deployment gate passes one with
        # --teacher: an unrelated model (other seed), so nothing matches.
        self.teacher = self.root.parent / "teacher_model.onnx"
        self.teacher.write_bytes(student_model(seed=7).SerializeToString())
        self._write_tree()
        # the fixture's own model follows the vocabulary (regen_manifest):
        # a real student's input embedding has a row for every token id
        self.fit_vocabulary = model is None
        self.regen_manifest()

    # -- building -------------------------------------------------------
    def _write_tree(self):
        self.root.mkdir(parents=True)
        for rel in ("bin", "lib"):
            (self.root / rel).mkdir()
            for f in sorted((self.runtime_dir / rel).iterdir()):
                shutil.copyfile(f, self.root / rel / f.name)
        # a real runtime ships its licence notices beside bin/ and lib/
        if (self.runtime_dir / "THIRD_PARTY_NOTICES").is_file():
            shutil.copyfile(self.runtime_dir / "THIRD_PARTY_NOTICES", self.root / "THIRD_PARTY_NOTICES")
        self.write("model/student_model.onnx", self.model.SerializeToString())
        vocab = {t: i for i, t in enumerate(VOCAB)}
        self.write("model/tokenizer/tokenizer.json", json.dumps({
            "version": "1.0",
            "normalizer": {"type": "BertNormalizer", "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": vocab},
        }, indent=1))
        self.write("model/tokenizer/vocab.txt", "\n".join(VOCAB) + "\n")
        self.write("config/runtime.yaml", RUNTIME_YAML)
        self.write("config/selftest.json", json.dumps(
            {"schema": "nexus.selftest.v1", "tolerance": 1e-4,
             "cases": [{"text": "free money, click now", "outputs": {"logits": [0.1, 0.9]}},
                       {"text": "lunch at noon tomorrow?", "outputs": {"logits": [0.8, 0.2]}}]},
            indent=2) + "\n")
        for rel, text in SOURCES.items():
            self.write(rel, text)
        self.write("README.md", "# Spam classifier\n\nRun `bin/nexus_cli run --text hi`.\n")
        self.write("LICENSE", "MIT License\n\nCopyright (c) 2024 Example\n")

    def fit_embedding(self, tokens):
        """Give the model an input embedding of `tokens` rows, rounded up to
        a multiple of 64 as real models pad it: a grown vocabulary's ids are
        then ones the model can embed (verify fails a vocabulary past the
        embedding's rows: vocab-beyond-embedding).  Call regen_manifest after."""
        rows = -(-tokens // 64) * 64
        self.model = student_model(vocab=rows)
        self.meta["parameters"] = human(parameters(self.model))
        fit = self.fit_vocabulary
        self.write("model/student_model.onnx", self.model.SerializeToString())
        self.fit_vocabulary = fit
        return rows

    def _vocabulary_size(self):
        """Token ids the tokenizer files name (0 when they do not parse)."""
        n = 0
        p = self.root / "model/tokenizer/tokenizer.json"
        try:
            vocab = json.loads(p.read_text(encoding="utf-8"))["model"]["vocab"]
            n = (max((v for v in vocab.values() if isinstance(v, int)), default=-1) + 1
                 if isinstance(vocab, dict) else len(vocab))
            # ids that are no dense range (a test's 32-bit words as ids) size
            # nothing: the tokens' count does
            n = n if n <= 2 * len(vocab) + 1024 else len(vocab)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        try:
            with open(self.root / "model/tokenizer/vocab.txt", "rb") as f:
                n = max(n, sum(1 for _ in f))
        except OSError:
            pass
        return n

    def path(self, rel):
        return self.root / rel

    def write(self, rel, data, mode=None):
        p = self.root / rel
        self.unlock()
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() or p.is_symlink():
            p.unlink()
        if isinstance(data, str):
            data = data.encode()
        if rel == "model/student_model.onnx":
            self.fit_vocabulary = False   # a test's own model stays as written
        p.write_bytes(data)
        if mode is not None:
            os.chmod(p, mode)
        return p

    def remove(self, rel):
        self.unlock()
        p = self.root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()

    def files(self):
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in filenames:
                p = pathlib.Path(dirpath) / n
                rel = p.relative_to(self.root).as_posix()
                if rel != "manifest.json" and (p.is_file() and not p.is_symlink()):
                    out.append(rel)
        return sorted(out, key=lambda s: s.encode())

    def manifest_obj(self):
        files = []
        for rel in self.files():
            data = (self.root / rel).read_bytes()
            files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(),
                          "size_bytes": len(data)})
        return {
            "schema_version": "1.0",
            "bundle_id": "nexus_bundle_v1",
            "build_timestamp": "2024-01-01T00:00:00Z",
            "model_metadata": dict(self.meta),
            "invariants": {"teacher_free": True, "training_code_excluded": True},
            "files": files,
            "signature": self.signature,
        }

    @staticmethod
    def canonical(obj):
        return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def write_manifest_text(self, text):
        self.write("manifest.json", text)
        self.lock()

    def regen_manifest(self):
        """Re-hash the whole tree: integrity passes whatever was planted.
        The fixture's own model first grows its embedding to the vocabulary
        (fit_embedding) unless fit_vocabulary was turned off."""
        self.unlock()
        if self.fit_vocabulary and self.model.graph.initializer[0].dims[0] < self._vocabulary_size():
            self.fit_embedding(self._vocabulary_size())
        self.write_manifest_text(self.canonical(self.manifest_obj()))

    # -- modes ----------------------------------------------------------
    def unlock(self):
        """Make the tree writable so it can be changed (root ignores modes,
        other users do not)."""
        if not self.root.exists():
            return
        os.chmod(self.root, 0o755)
        for dirpath, dirnames, filenames in os.walk(self.root):
            for d in dirnames:
                p = pathlib.Path(dirpath) / d
                if not p.is_symlink():
                    os.chmod(p, 0o755)

    def lock(self):
        """Files 0444 (bin/nexus_cli 0555), directories 0555, as DESIGN §3."""
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=False):
            for n in filenames:
                p = pathlib.Path(dirpath) / n
                if p.is_symlink() or not p.is_file():
                    continue
                rel = p.relative_to(self.root).as_posix()
                os.chmod(p, 0o555 if rel == "bin/nexus_cli" else 0o444)
            for d in dirnames:
                p = pathlib.Path(dirpath) / d
                if not p.is_symlink():
                    os.chmod(p, 0o555)
        os.chmod(self.root, 0o555)

    def chmod(self, rel, mode):
        os.chmod(self.root / rel, mode)

    # -- attacks ----------------------------------------------------------
    def tamper(self, rel, data):
        """Change a file after the build: the manifest is left as it was."""
        self.write(rel, data)
        self.lock()

    def smuggle(self, rel, data):
        """Plant a file and re-generate the manifest, so integrity passes."""
        self.write(rel, data)
        self.regen_manifest()
