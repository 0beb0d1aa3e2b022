"""Plain-Python greedy generation with the bundled student (onnxruntime + numpy)."""
