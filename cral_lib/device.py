"""The compute device and the precision, chosen once at the edge and passed down.

The chapters (through :func:`cral_lib.book.setup`), the command line, the trainer and the
benchmarks all ask this module:

- :func:`resolve_device`: ``auto`` means CUDA, then Apple MPS, then the CPU;
- :func:`native_bf16`: whether a GPU or the CPU computes in bfloat16 natively;
- :func:`amp_settings`: the autocast dtype of training and whether it needs a gradient scaler;
- :func:`eval_precision`: the autocast dtype of predictions of a run trained with a given ``amp``;
- :func:`autocast`: ``torch.autocast`` for a dtype, or nothing for full precision.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from .errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Pick the compute device: ``auto`` means CUDA, then Apple MPS, then the CPU.

    Args:
        device: ``auto``, or a torch device (string or :class:`torch.device`).

    Returns:
        The :class:`torch.device`.

    Raises:
        ConfigError: not a device name, or a device this machine does not have (a GPU asked
            for where torch finds none).
    """
    if str(device) != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise ConfigError(
                f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N (a GPU's number) or mps"
            ) from None
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
                raise ConfigError(
                    f"--device {device} asks for a GPU, but torch finds none on this machine (torch "
                    f"{torch.__version__}, built with {built}): use --device cpu, or auto"
                )
            if dev.index is not None and dev.index >= count:
                raise ConfigError(f"--device {device}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
        elif dev.type == "mps":
            if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
                raise ConfigError(f"--device {device}: Apple's MPS is not available here; use --device cpu, or auto")
        elif dev.type not in ("cpu", "meta"):
            raise ConfigError(f"--device {device}: cral_lib runs on auto, cpu, cuda, cuda:N or mps")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: Any) -> bool:
    """Whether a device computes in bfloat16 natively.

    A CUDA GPU does from Ampere (compute capability 8.0) on: ``torch.cuda.is_bf16_supported()``
    also says True where bfloat16 is only emulated (a T4 or a V100, compute capability 7.x): it
    runs there, but far slower than float16, so mixed precision must not choose it. ROCm GPUs
    count as native. A CPU does when it has the AVX512-BF16 or AMX instructions (recent Xeons
    and EPYCs): measured on a 2-core AVX512-BF16 machine, a training step of the book's fast
    model took 0.64 times as long under bfloat16 autocast as in float32, 0.47 times in the
    channels-last format (``benchmarks/results/fast_backbone_cpu.json``), and six epochs ended at
    the same test AUC, 0.748 (``synthetic_auc_cpu_2000img_fp32.json`` and ``..._bf16.json``).
    Other CPUs would emulate it, slowly.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return _cpu_has("_is_avx512_bf16_supported") or _cpu_has("_is_amx_tile_supported")
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def _cpu_has(query: str) -> bool:
    """One of torch.cpu's instruction-set queries (False where this torch has none)."""
    ask = getattr(torch.cpu, query, None)
    try:
        return bool(ask()) if ask is not None else False
    except Exception:  # a query that cannot run says nothing
        return False


def amp_settings(amp: str, device: Any) -> tuple[torch.dtype | None, bool]:
    """Return (autocast dtype or None, whether a gradient scaler is needed) for training.

    ``auto``: bfloat16 where the device computes it natively (:func:`native_bf16`: GPUs from
    Ampere on, CPUs with AVX512-BF16 or AMX), float16 with a gradient scaler on older GPUs
    (Colab's T4), full precision on other CPUs and on Apple's MPS.

    Raises:
        ConfigError: ``amp="fp16"`` on a CPU.
    """
    device = torch.device(device)
    if amp == "off":
        return None, False
    if amp == "auto":
        if native_bf16(device):
            return torch.bfloat16, False
        return (torch.float16, True) if device.type == "cuda" else (None, False)
    if amp == "bf16":
        if device.type == "cuda" and not native_bf16(device):
            name = torch.cuda.get_device_name(device)
            warnings.warn(
                f"amp='bf16' on {name}, which has no native bfloat16 (compute capability "
                f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}): it is emulated and slow; "
                "amp='fp16' or 'auto' is much faster there",
                stacklevel=2,
            )
        return torch.bfloat16, False
    if device.type == "cpu":
        raise ConfigError(f"amp='fp16' needs a GPU (device {device}); on the CPU use amp='bf16' or 'off'")
    return torch.float16, True


def eval_precision(amp: str, device: Any) -> torch.dtype | None:
    """The autocast dtype for predictions of a run trained with ``amp``, on ``device``.

    The training precision on a GPU, except bfloat16 where the GPU only emulates it (float16
    then, which needs no gradient scaler for predictions). On a CPU: bfloat16 for a run trained
    with ``auto`` or ``bf16`` where the CPU computes it natively (as its validation during
    training did; measured on the 2-core AVX512-BF16 machine, with the channels-last format of
    the fast recipe, predicting the book's 2,283 test images took 3.8 s instead of 9.7 s and
    moved the test mean AUC by 1e-4),
    else full precision, so that a run trained with ``fp16`` on a GPU can be evaluated anywhere.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return torch.bfloat16 if amp in ("auto", "bf16") and native_bf16(device) else None
    if device.type != "cuda":
        return None
    if amp == "bf16" and not native_bf16(device):
        amp = "auto"
    return amp_settings(amp, device)[0]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` in ``dtype``, or a no-op context for full precision (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


__all__ = ["amp_settings", "autocast", "eval_precision", "native_bf16", "resolve_device"]
