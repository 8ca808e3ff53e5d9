"""Where nets run: a device named by a user (`cpu`, `cuda`, `cuda:N`), checked to exist on this
machine before anything is built on it. On CUDA the arithmetic is Caffe's: fp32 throughout and
the same result from the same inputs (see `exact_cuda_arithmetic`)."""
import torch

from runner.errors import UserError


def torch_device(name, where="--device"):
    """A torch device from a name (cpu, cuda, cuda:N), checked to exist here; errors name
    `where` (the flag or file that chose it)."""
    try:
        chosen = torch.device(name)
    except RuntimeError as error:
        raise UserError(where, f"{name!r} is not a device ({error})") from None
    if chosen.type not in ("cpu", "cuda"):
        raise UserError(where, f"{name!r}: only cpu, cuda and cuda:N are supported")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise UserError(where, f"{name}: no such CUDA device (this machine has "
                        f"{torch.cuda.device_count()})")
    if chosen.type == "cuda":
        exact_cuda_arithmetic()
    return chosen


def exact_cuda_arithmetic():
    """fp32 convolutions and matmuls, by algorithms that give the same bits run after run.
    PyTorch lets cuDNN round convolution inputs to TF32 (10-bit mantissas) by default, which
    parts CUDA's losses from the CPU's at the third digit, and lets it pick among algorithms by
    timing, some of which sum in a varying order: a resumed run would then not retrace the
    uninterrupted one. Caffe computes in fp32; so do we."""
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def native_bfloat16(device):
    """Whether `device` computes bfloat16 in hardware (a CPU with avx512_bf16 or AMX, a GPU of
    compute capability 8 or later); elsewhere PyTorch emulates it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()     # oneDNN's own check of the CPU
