"""Knowledge-distillation losses (Hinton et al., 2015)."""
import torch.nn.functional as F


def soft_targets_loss(student_logits, teacher_logits, temperature):
    """KL(softmax(teacher/T) || softmax(student/T)), scaled by T^2 so its gradient
    magnitude stays comparable to the hard-label loss as T changes."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
    ) * (t * t)


def distillation_loss(student_logits, teacher_logits, labels, temperature=4.0, alpha=0.7):
    """alpha * soft-target KL + (1 - alpha) * cross-entropy on the true labels."""
    soft = soft_targets_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard
