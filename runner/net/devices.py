"""Where nets run: a device named by a user (`cpu`, `cuda`, `cuda:N`), checked to exist on this
machine before anything is built on it."""
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
    return chosen
