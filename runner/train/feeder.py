"""Caffe's HDF5Data layer, fed from memory: every dataset is read once, batches are index draws.

The prepared sets are megabytes, so the whole source is loaded into one tensor per top and a
batch is one `index_select` of a seeded permutation: no per-sample file opens, no workers.
Every file's shapes are checked, and their total against the machine's memory, before any
data is read. The reader position and generator state are saved in every solverstate, so a
resumed run draws exactly the batches the uninterrupted run would have drawn.
"""
import math

import numpy as np
import torch

from runner.config import memory
from runner.errors import UserError
from runner.files import snapshot
from runner.files.hdf5_data import dataset_shapes, read_datasets, read_source_list


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
        per_file = [dataset_shapes(path, self.dataset_names) for path in self.files]
        self._check_shapes(per_file)
        self.tensors = self._read(per_file)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = self._new_order()
        self.cursor = 0
        self.epoch = 0

    def _check_shapes(self, per_file):
        """Samples of one shape in every file, and all of them within memory."""
        first = per_file[0]
        for path, shapes in zip(self.files, per_file):
            for name in self.dataset_names:
                if shapes[name][1:] != first[name][1:]:
                    raise UserError(path, f"dataset {name!r} has samples of shape "
                                    f"{shapes[name][1:]}, but {self.files[0]} has "
                                    f"{first[name][1:]}")
        values = sum(math.prod(shape) for shapes in per_file for shape in shapes.values())
        memory.check_fits(values * memory.FLOAT32_BYTES, self.source,
                          f"the training data of its {len(self.files)} file(s)")

    def _read(self, per_file):
        """One float32 tensor per top holding every file's samples, in list order."""
        counts = [shapes[self.dataset_names[0]][0] for shapes in per_file]
        tensors = [torch.empty((sum(counts), *per_file[0][name][1:]))
                   for name in self.dataset_names]
        start = 0
        for path, shapes, count in zip(self.files, per_file, counts):
            arrays = read_datasets(path, self.dataset_names, shapes)
            for tensor, array in zip(tensors, arrays):
                tensor[start:start + count] = torch.from_numpy(array)
            start += count
        return tensors

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
        """Continue from a state() saved in the solverstate `where`, checked to fit this data
        (an order of every sample, a cursor within it) before it is taken."""
        if state["order"].shape != (self.sample_count,):
            raise UserError(where, f"the reader state of {self.source} covers "
                            f"{math.prod(state['order'].shape)} samples but the data now holds "
                            f"{self.sample_count}")
        order = snapshot.read_array(state["order"], (self.sample_count,), np.int64, where)
        if not np.array_equal(np.sort(order), np.arange(self.sample_count)):
            raise UserError(where, f"the reader state of {self.source} is not an order of its "
                            f"{self.sample_count} samples")
        if not 0 <= state["cursor"] <= self.sample_count:
            raise UserError(where, f"the reader state of {self.source} is at sample "
                            f"{state['cursor']} of {self.sample_count}")
        generator = snapshot.read_array(state["generator"], self.generator.get_state().shape,
                                        np.uint8, where)
        try:
            self.generator.set_state(torch.from_numpy(generator))
        except RuntimeError:
            raise UserError(where, f"the reader state of {self.source} holds an invalid random "
                            "generator state") from None
        self.order = torch.from_numpy(order)
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
