"""The exponential moving average of the weights (the solver's `ema_decay`; not Caffe's): what
a run tests and writes to its `.model` snapshots, while training goes on from the weights
themselves (kept in the `.solverstate`).

After the update of iteration `iter` (counted from 0), each learned blob's average moves
towards it: average = d * average + (1 - d) * blob, d = min(ema_decay, (1 + iter) / (10 + iter)).
The warm-up keeps the first averages from being dominated by the weights the run started from.
A blob that is not learned (lr_mult 0: BatchNorm's statistics, a frozen blob) is its own
"average": statistics must describe the net as it computes, and a frozen blob never changes.
"""
import torch


def decay_at(ema_decay, iteration):
    """d of the average's update after iteration `iteration` (from 0), warm-up included."""
    return min(ema_decay, (1 + iteration) / (10 + iteration))


class MovingAverage:
    """The average of each blob in `learnable`: (blob, lr_mult) of every parameter blob of a
    net, each shared blob once (Net.learnable_blobs)."""

    def __init__(self, learnable, ema_decay):
        self.ema_decay = ema_decay
        self.blobs = [blob for blob, _ in learnable]
        self.averages = [blob.detach().clone() if lr_mult else blob for blob, lr_mult in learnable]
        self.learned = [index for index, (_, lr_mult) in enumerate(learnable) if lr_mult]

    @torch.no_grad()
    def restart(self):
        """Start from the blobs as they are now (the weights a run starts or resumes from)."""
        if self.learned:      # torch's list ops refuse empty lists
            torch._foreach_copy_(*self._learned_pairs())

    @torch.no_grad()
    def update(self, iteration):
        if self.learned:
            decay = decay_at(self.ema_decay, iteration)
            averages, blobs = self._learned_pairs()
            torch._foreach_mul_(averages, decay)
            torch._foreach_add_(averages, blobs, alpha=1 - decay)

    def _learned_pairs(self):
        return ([self.averages[index] for index in self.learned],
                [self.blobs[index] for index in self.learned])

    def of(self, blobs_by_layer):
        """`blobs_by_layer` (Net.blobs_by_layer) with each blob's average in its place."""
        average_of = {id(blob): average for blob, average in zip(self.blobs, self.averages)}
        return {layer: [average_of[id(blob)] for blob in blobs]
                for layer, blobs in blobs_by_layer.items()}
