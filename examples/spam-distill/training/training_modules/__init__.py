"""Training-only helpers (losses). Never needed at serving time."""
from .distill import distillation_loss, soft_targets_loss

__all__ = ["distillation_loss", "soft_targets_loss"]
