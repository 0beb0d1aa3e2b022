"""Spam classifier: ONNX Runtime inference for short e-mail texts."""
from .inference import SpamClassifier

__all__ = ["SpamClassifier"]
