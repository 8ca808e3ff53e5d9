"""Caffe's HDF5Data layer, fed from memory: every dataset is read once, batches are index draws.

The prepared sets are megabytes, so the whole source is loaded into one tensor per top and a
batch is one `index_select` of a seeded permutation: no per-sample file opens, no workers.
The reader position and generator state are saved in every solverstate, so a resumed run
draws exactly the batches the uninterrupted run would have drawn.
"""
import numpy as np
import torch

from runner.errors import UserError
from runner.files.hdf5_data import read_datasets, read_source_list


class HDF5Feeder:
    """Batches of an HDF5Data layer's tops, drawn in Caffe's order from memory.

    With several processes the batch of each is `batch_size` and they read disjoint slices of
    one global batch of `batch_size * world_size`, as Caffe's multi-GPU data layers do.
    """

    def __init__(self, layer, seed, rank=0, world_size=1):
        param = layer.hdf5_data_param
        self.source = param.source
        self.tops = list(layer.top)
        self.dataset_names = list(param.dataset) or self.tops
        if len(self.dataset_names) != len(self.tops):
            raise UserError(self.source, f"layer {layer.name!r}: {len(self.tops)} tops but "
                            f"{len(self.dataset_names)} dataset names")
        self.batch_size = param.batch_size
        self.shuffle = param.shuffle
        self.rank, self.world_size = rank, world_size
        self.files = read_source_list(self.source)
        per_file = [read_datasets(path, self.dataset_names) for path in self.files]
        self._check_shapes(per_file)
        self.tensors = [torch.from_numpy(np.concatenate([arrays[i] for arrays in per_file]))
                        for i in range(len(self.tops))]
        self.generator = torch.Generator().manual_seed(seed)
        self.order = self._new_order()
        self.cursor = 0
        self.epoch = 0

    def _check_shapes(self, per_file):
        for name_index, name in enumerate(self.dataset_names):
            shapes = {arrays[name_index].shape[1:] for arrays in per_file}
            if len(shapes) > 1:
                raise UserError(self.source, f"dataset {name!r} has different sample shapes "
                                f"across files: {sorted(shapes)}")

    @property
    def sample_count(self):
        return len(self.tensors[0])

    def sample_shape(self, top):
        """Shape (C, H, W) of one sample of a top."""
        return tuple(self.tensors[self.tops.index(top)].shape[1:])

    def _new_order(self):
        count = len(self.tensors[0])
        if self.shuffle:
            return torch.randperm(count, generator=self.generator)
        return torch.arange(count)

    def next_batch(self):
        """This process's next batch: {top: tensor}, wrapping into a new epoch like Caffe."""
        wanted = self.batch_size * self.world_size
        pieces, missing = [], wanted
        while missing:
            taken = self.order[self.cursor:self.cursor + missing]
            pieces.append(taken)
            missing -= len(taken)
            self.cursor += len(taken)
            if self.cursor == len(self.order):
                self.order, self.cursor = self._new_order(), 0
                self.epoch += 1
        indices = torch.cat(pieces)[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return {top: tensor.index_select(0, indices) for top, tensor in zip(self.tops, self.tensors)}

    def state(self):
        """Everything needed to continue the same sequence of batches."""
        return {"order": self.order.numpy(), "cursor": self.cursor, "epoch": self.epoch,
                "generator": self.generator.get_state().numpy()}

    def load_state(self, state, where):
        order = torch.from_numpy(np.asarray(state["order"], dtype=np.int64))
        if len(order) != self.sample_count:
            raise UserError(where, f"the reader state of {self.source} covers {len(order)} "
                            f"samples but the data now holds {self.sample_count}")
        self.order = order
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.generator.set_state(torch.from_numpy(np.asarray(state["generator"], dtype=np.uint8)))
