"""The code check (TRV-2): the Python packages config/runtime.yaml declares.
(Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import pytest

import bundle_fixture as bf
from smuggling import runtime_with_packages
from verify_helpers import codes, expect_fail, verify


@pytest.mark.parametrize("pkg", ["torch", "tensorflow", "jax", "transformers", "keras"])
def test_training_framework_declared_warns(nexus, bundle, pkg):
    """A framework makes the sandbox import check accept its training modules."""
    bundle.smuggle("config/runtime.yaml", runtime_with_packages(["onnxruntime", "numpy", pkg]))
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep
    assert "training-package-declared" in codes(rep, "WARN"), rep
    rc, rep = verify(nexus, bundle, "--strict")
    assert rc == 1


@pytest.mark.parametrize("pkg", ["torch.optim", "torch.autograd", "transformers.trainer",
                                 "deepspeed", "accelerate", "peft", "trl", "pytorch_lightning",
                                 "lightning", "torch.distributed"])
def test_training_only_package_declared_fails(nexus, bundle, pkg):
    bundle.smuggle("config/runtime.yaml", runtime_with_packages(["numpy", pkg]))
    expect_fail(nexus, bundle, "training-package-declared")


def test_plain_runtime_packages_are_fine(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", runtime_with_packages(["numpy", "onnxruntime",
                                                                 "tokenizers", "torchvision_x"]))
    rc, rep = verify(nexus, bundle)
    assert "training-package-declared" not in codes(rep), rep


@pytest.mark.parametrize("pkg", ["training_modules", "training_modules.distill"])
def test_spec_training_package_declared(nexus, bundle, pkg):
    """`training_modules` is the spec's own name for training code (SPEC
    §2A.3, always a forbidden import): declared as a serving package it
    would let `import training_modules` through the sandboxed import check."""
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML.replace(
        "python_packages: [onnxruntime, numpy]", f"python_packages: [onnxruntime, numpy, {pkg}]"))
    bundle.smuggle("src/helpers.py", "from training_modules.distill import kl_loss\n")
    expect_fail(nexus, bundle, "training-package-declared")
