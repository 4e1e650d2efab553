"""On a CUDA GPU: mixed precision, a training step that never waits for the GPU, training there
and evaluating anywhere, torch.compile.

Skipped without CUDA, like the CUDA case of the loader tests; every other test runs on the CPU.
On a GPU machine run ``python -m pytest tests/test_gpu.py`` before its benchmarks.
``CRAL_GPU_TESTS_DEVICE=cpu`` runs the parts that do not need CUDA on the CPU (to check the tests
themselves).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cral_lib.device import amp_settings
from cral_lib.train import evaluate_run, make_optimizer, train

from conftest import train_config

DEVICE = torch.device(os.environ.get("CRAL_GPU_TESTS_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"
pytestmark = pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device")

def config(release: Path, out: Path, **changes):
    """The training tests' small recipe (conftest.TRAIN_SMALL), one epoch, on this file's device."""
    return train_config(release, out, device=str(DEVICE), **{"epochs": 1, **changes})


@pytest.mark.skipif(not ON_CUDA, reason="about a GPU's precision")
def test_auto_precision_fits_this_gpu():
    major, minor = torch.cuda.get_device_capability()
    dtype, scaler = amp_settings("auto", DEVICE)
    assert dtype == (torch.bfloat16 if major >= 8 else torch.float16), (major, minor)
    assert scaler == (dtype == torch.float16)


@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_a_training_step_never_waits_for_the_gpu(train_release, amp):
    """Batch, augmentation, forward, loss, backward and optimizer step, with CUDA's sync check on.

    A step that waits for the GPU (``.item()``, a tensor made on the GPU from Python data, a
    gradient scaler reading its overflow flag on the CPU) leaves the GPU idle while the CPU
    prepares the next batch; ``torch.cuda.set_sync_debug_mode("error")`` makes any such wait raise.
    """
    import torch.nn.functional as F

    from cral_lib.data import BatchLoader, ImageCache, TrainTransform
    from cral_lib.models import build_model
    from cral_lib.device import autocast

    if amp == "fp16" and not ON_CUDA:
        pytest.skip("fp16 needs a GPU")
    cfg = config(train_release, Path("unused"), amp=amp)
    cache = ImageCache.open(train_release, size=cfg.cache_size)
    rows = np.arange(len(cache.images))
    labels = np.zeros((len(rows), 14), dtype=np.float32)
    labels[::3, 2] = 1
    loader = BatchLoader(cache, rows, labels, cfg.batch_size, shuffle=True, drop_last=True, device=DEVICE)
    tf = TrainTransform(size=cfg.image_size, channels_last=ON_CUDA)
    model = build_model(backbone="resnet18", attention="att1", weights=None).to(DEVICE)
    model = model.to(memory_format=torch.channels_last) if ON_CUDA else model
    optimizer = make_optimizer(model, cfg)
    dtype, use_scaler = amp_settings(amp, DEVICE)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=use_scaler)
    loss_sum = torch.zeros((), device=DEVICE)

    def step(x, y, seed):
        nonlocal loss_sum
        x = tf(x, generator=torch.Generator().manual_seed(seed))
        with autocast(DEVICE, dtype):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach()

    batches = iter(loader)
    step(*next(batches)[:2], 0)  # first calls: lazy initialization, allocations
    if ON_CUDA:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        for seed in (1, 2, 3):
            step(*next(batches)[:2], seed)
    finally:
        if ON_CUDA:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss_sum).item()


@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_train_on_the_device_and_evaluate_on_the_cpu(train_release, tmp_path, amp):
    """A run trained with mixed precision on the GPU: finite losses, a checkpoint that evaluates on
    the CPU (full precision) to the GPU's probabilities."""
    if amp == "fp16" and not ON_CUDA:
        pytest.skip("fp16 needs a GPU")
    out = tmp_path / amp
    result = train(config(train_release, out, amp=amp), progress=False, verbose=False)
    row = result.history.iloc[-1]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) and row["images_per_s"] > 0
    on_device = evaluate_run(out, "test", n_boot=0, device=str(DEVICE), progress=False, write=False)
    on_cpu = evaluate_run(out, "test", n_boot=0, device="cpu", progress=False, write=False)
    assert list(on_cpu.predictions["Image Index"]) == list(on_device.predictions["Image Index"])
    # bf16 keeps about 3 significant digits, fp16 about 4
    np.testing.assert_allclose(on_cpu.probs, on_device.probs, atol=2e-2)


@pytest.mark.skipif(not ON_CUDA, reason="compiling for the CPU is covered in test_models_runtime")
def test_compiled_training_on_the_gpu(train_release, tmp_path):
    plain = train(config(train_release, tmp_path / "eager"), progress=False, verbose=False)
    compiled = train(config(train_release, tmp_path / "compiled", compile=True), progress=False, verbose=False)
    # the same batches and initialization; kernels differ only in rounding
    np.testing.assert_allclose(compiled.history["train_loss"], plain.history["train_loss"], rtol=0.05)
