"""Caffe's HDF5Data layer: the files of its source list read one at a time, as Caffe reads them.

Caffe's HDF5DataLayer holds one file in memory: it walks the files in an order reshuffled every
epoch (with `shuffle`), the rows of the current file in an order reshuffled whenever the file
is loaded, and moves to the next file when the current one is used up, so a batch can span a
file boundary. Here the same, with the next file read by a background thread while training
runs: memory holds at most the current file and the next, never the whole dataset. With one
file (the prepared sets of the shipped models) that file stays in memory and a batch is one
`index_select` of a seeded permutation: no per-sample file opens, no workers, no re-reading.

Every file's shapes are checked before any data is read, and the two largest files together
against the machine's memory. The reader position (file order, file, row order, cursor, epoch,
generator) is saved in every solverstate, so a resumed run draws exactly the batches the
uninterrupted run would have drawn, across file boundaries too.
"""
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from runner.config import memory
from runner.errors import UserError
from runner.files import snapshot
from runner.files.hdf5_data import dataset_shapes, read_datasets, read_source_list


class HDF5Feeder:
    """Batches of an HDF5Data layer's tops, drawn in Caffe's order, one file at a time.

    With several processes the batch of each is `batch_size` and they read disjoint slices of
    one global batch of `batch_size * world_size`, as Caffe's multi-GPU data layers do: every
    process walks the same files in the same order and keeps its own rows of each batch.
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
        self.shapes = [dataset_shapes(path, self.dataset_names) for path in self.files]
        self._check_shapes()
        self.row_counts = [shapes[self.dataset_names[0]][0] for shapes in self.shapes]
        self.generator = torch.Generator().manual_seed(seed)
        self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hdf5-read-ahead")
        self.next_read = None          # (file number, Future of its tensors), or None
        self.held = {}                 # file number -> its tensors: the current file only
        self.epoch = 0
        self.file_order = self._new_file_order(self.generator)
        self.file_index = 0
        self._enter_file()

    def _check_shapes(self):
        """Samples of one shape in every file; the two largest files (what is held at once)
        within memory."""
        first = self.shapes[0]
        for path, shapes in zip(self.files, self.shapes):
            for name in self.dataset_names:
                if shapes[name][1:] != first[name][1:]:
                    raise UserError(path, f"dataset {name!r} has samples of shape "
                                    f"{shapes[name][1:]}, but {self.files[0]} has "
                                    f"{first[name][1:]}")
        sizes = sorted(sum(math.prod(shape) for shape in shapes.values()) * memory.FLOAT32_BYTES
                       for shapes in self.shapes)
        memory.check_fits(sum(sizes[-2:]), self.source,
                          f"the training data of its largest file(s), held at once "
                          f"({len(self.files)} file(s) in all)")

    @property
    def file_number(self):
        """The position in the source list of the file being read."""
        return int(self.file_order[self.file_index])

    def _new_file_order(self, generator):
        """Caffe's file permutation: reshuffled per epoch with `shuffle` (with one file there
        is nothing to draw, so one-file runs draw exactly the rows they always drew)."""
        if self.shuffle and len(self.files) > 1:
            return torch.randperm(len(self.files), generator=generator)
        return torch.arange(len(self.files))

    def _new_row_order(self):
        count = self.row_counts[self.file_number]
        if self.shuffle:
            return torch.randperm(count, generator=self.generator)
        return torch.arange(count)

    def _read(self, number):
        """One float32 tensor per top: the whole of file `number`."""
        path = self.files[number]
        return [torch.from_numpy(array) for array in
                read_datasets(path, self.dataset_names, self.shapes[number])]

    def _tensors_of(self, number):
        """File `number`'s tensors: held, read ahead (waited for) or read now."""
        if number in self.held:
            return self.held[number]
        if self.next_read is not None and self.next_read[0] == number:
            tensors = self.next_read[1].result()
            self.next_read = None
            return tensors
        self._drop_read_ahead()
        return self._read(number)

    def _drop_read_ahead(self):
        """Forget a read-ahead that is no longer wanted, once it is done (its memory freed
        before another file is read)."""
        if self.next_read is not None:
            self.next_read[1].exception()
            self.next_read = None

    def settle(self):
        """Wait for a read-ahead in flight and forget it: when training ends no file of the
        source list is still open (a file rewritten next, as by prep, is free to be). The
        feeder stays usable."""
        self._drop_read_ahead()

    def _following_file(self):
        """The file read after the current one. At an epoch's last file, the first of the next
        epoch's order: the generator's next draw is that order, so a copy of it tells which."""
        if self.file_index + 1 < len(self.file_order):
            return int(self.file_order[self.file_index + 1])
        peek = torch.Generator()
        peek.set_state(self.generator.get_state())
        return int(self._new_file_order(peek)[0])

    def _enter_file(self, row_order=None):
        """Make file_order[file_index] the current file, its rows in `row_order` (default: a
        fresh one), and start reading the file after it."""
        number = self.file_number
        self.held = {number: self._tensors_of(number)}
        self.order = self._new_row_order() if row_order is None else row_order
        self.cursor = 0
        following = self._following_file()
        if following != number and (self.next_read is None or self.next_read[0] != following):
            self._drop_read_ahead()
            self.next_read = (following, self.reader.submit(self._read, following))

    def _advance(self):
        """The current file is used up: the next one, or a new epoch (Caffe's Next())."""
        self.file_index += 1
        if self.file_index == len(self.file_order):
            self.file_index = 0
            self.epoch += 1
            self.file_order = self._new_file_order(self.generator)
        self._enter_file()

    def next_batch(self):
        """This process's next batch: {top: tensor}, continuing into the next file (and epoch)
        when the current one runs out, like Caffe."""
        wanted = self.batch_size * self.world_size
        mine = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        pieces, drawn = [], 0
        while drawn < wanted:
            taken = min(wanted - drawn, len(self.order) - self.cursor)
            # the part of this stretch of the global batch that is this process's
            low, high = max(mine.start, drawn), min(mine.stop, drawn + taken)
            if low < high:
                indices = self.order[self.cursor + low - drawn:self.cursor + high - drawn]
                pieces.append([tensor.index_select(0, indices)
                               for tensor in self.held[self.file_number]])
            drawn += taken
            self.cursor += taken
            if self.cursor == len(self.order):
                self._advance()
        return {top: parts[0] if len(parts) == 1 else torch.cat(parts)
                for top, parts in zip(self.tops, zip(*pieces))}

    def state(self):
        """Everything needed to continue the same sequence of batches."""
        return {"file_order": self.file_order.numpy(), "file_index": self.file_index,
                "order": self.order.numpy(), "cursor": self.cursor, "epoch": self.epoch,
                "generator": self.generator.get_state().numpy()}

    def load_state(self, state, where):
        """Continue from a state() saved in the solverstate `where`, checked to fit this data
        (an order of every file, a file within it, an order of that file's rows, a cursor
        within them) before it is taken. A state without a file order (saved before files
        were read one at a time) is the one-file state."""
        files = len(self.files)
        file_order = self._read_permutation(state.get("file_order", np.zeros(1, np.int64)),
                                            files, "files", where)
        if not 0 <= state["file_index"] < files:
            raise UserError(where, f"the reader state of {self.source} is at file "
                            f"{state['file_index']} of {files}")
        file_index = int(state["file_index"])
        rows = self.row_counts[int(file_order[file_index])]
        order = self._read_permutation(state["order"], rows, "samples", where)
        if not 0 <= state["cursor"] <= rows:
            raise UserError(where, f"the reader state of {self.source} is at sample "
                            f"{state['cursor']} of {rows}")
        generator = snapshot.read_array(state["generator"], self.generator.get_state().shape,
                                        np.uint8, where)
        try:
            self.generator.set_state(torch.from_numpy(generator))
        except RuntimeError:
            raise UserError(where, f"the reader state of {self.source} holds an invalid random "
                            "generator state") from None
        self.file_order, self.file_index = torch.from_numpy(file_order), file_index
        self.epoch = int(state["epoch"])
        self._enter_file(torch.from_numpy(order))
        self.cursor = int(state["cursor"])

    def _read_permutation(self, stored, count, what, where):
        """A stored order of `count` things, checked to be one before it is used."""
        if tuple(stored.shape) != (count,):
            raise UserError(where, f"the reader state of {self.source} orders "
                            f"{math.prod(stored.shape)} {what} but the data now holds {count}")
        order = snapshot.read_array(stored, (count,), np.int64, where)
        if not np.array_equal(np.sort(order), np.arange(count)):
            raise UserError(where, f"the reader state of {self.source} is not an order of its "
                            f"{count} {what}")
        return order
