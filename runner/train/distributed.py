"""Data-parallel training over several processes, as in Caffe's multi-GPU training.

Every process holds the whole net and reads its own `batch_size` slice of each global batch of
`world_size * batch_size` samples (`HDF5Feeder`); DistributedDataParallel averages the gradients
before the update, as Caffe's P2PSync does, so N processes at batch B step exactly like one
process at batch N x B (each process's EuclideanLoss divides by its own B; the average over N
then divides the summed squares by N x B). Only rank 0 logs, tests and writes snapshots.

The processes are started by torchrun (or by `runner train --procs N`, which runs torchrun's
own launcher in this process) and joined here from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo on the CPU, NCCL on CUDA.
"""
import os
import signal

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from runner.errors import UserError


def launched():
    """Whether this process was started by torchrun (or another launcher of torch's env://)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


class Processes:
    """This process's place among the training processes: rank 0 of 1 when not launched."""

    def __init__(self, device):
        self.device, self.rank, self.world_size = device, 0, 1
        # launched, even as one process, the collectives below run (`--procs 1` on one GPU
        # checks the NCCL path); alone, they are skipped
        self.joined = launched()
        if not self.joined:
            return
        if device.type == "cuda":
            # one GPU per process, as torchrun intends: the local rank picks it
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def describe(self):
        if not self.joined:
            return f"{self.device}"
        processes = "process" if self.world_size == 1 else "processes"
        return f"{self.device}, {self.world_size} {processes} over {dist.get_backend()}"

    def wrap(self, net):
        """The module the train net runs as: DDP around it when launched (DDP also copies rank
        0's weights to the others here)."""
        if not self.joined:
            return net
        return DistributedDataParallel(net, device_ids=[self.device]
                                       if self.device.type == "cuda" else None)

    def same_on_all(self, number):
        """Rank 0's value of an int or a float, on every process (a seed drawn from the clock,
        the training clock)."""
        if not self.joined:
            return number
        dtype = torch.float64 if isinstance(number, float) else torch.int64
        value = torch.tensor([number], dtype=dtype, device=self.device)
        dist.broadcast(value, src=0)
        return type(number)(value.item())

    def mean(self, number):
        """The mean of a float over the processes: the loss of the whole global batch (a NaN
        on any process is a NaN on all, so they all stop together)."""
        if not self.joined:
            return number
        value = torch.tensor([number], dtype=torch.float64, device=self.device)
        dist.all_reduce(value)
        return value.item() / self.world_size

    def agreed_signal(self, number):
        """The signal any process has received (SIGINT before SIGHUP) or None, the same on
        every process, so that they snapshot and stop at the same iteration instead of one
        waiting forever for another that has left."""
        if not self.joined:
            return number
        received = torch.tensor([number == signal.SIGINT, number == signal.SIGHUP],
                                dtype=torch.int32, device=self.device)
        dist.all_reduce(received, op=dist.ReduceOp.MAX)
        if received[0]:
            return signal.SIGINT
        return signal.SIGHUP if received[1] else None

    def close(self):
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(procs, argv):
    """Run `runner ARGV` in `procs` processes on this machine through torchrun's own launcher:
    `torchrun --standalone --nproc_per_node=PROCS -m runner ARGV`."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    try:
        torchrun.run(torchrun.parse_args(["--standalone", f"--nproc_per_node={procs}",
                                          "-m", "runner", *argv]))
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        raise UserError("runner train", f"process {rank} of {procs} failed with exit code "
                        f"{failure.exitcode} (its error is above)") from None
    except SignalException as error:
        # torchrun has passed the signal on to the processes and waited for them to end
        # (TORCH_ELASTIC_SHUTDOWN_TIMEOUT, 30 s, then SIGKILL): a SIGINT stops them cleanly
        if error.sigval != signal.SIGINT:
            raise UserError("runner train", f"{error.sigval.name}: torchrun passed it on to "
                            f"the {procs} processes and ended them") from None
