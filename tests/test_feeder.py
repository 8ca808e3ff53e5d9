"""HDF5Data feeding as Caffe's HDF5DataLayer reads: one file at a time, files reshuffled per
epoch, rows reshuffled per file, batches across file boundaries, exact reader state, and memory
bounded by the files held, not by the dataset."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import tiny_run, write_h5, write_shards
from runner.errors import UserError
from runner.train.feeder import HDF5Feeder

SHARDS = (13, 13, 13, 13, 12)


def data_layer(source, batch_size=8, shuffle=True):
    return SimpleNamespace(name="data", top=["data", "label"], hdf5_data_param=SimpleNamespace(
        source=str(source), dataset=["Input", "Ground"], batch_size=batch_size, shuffle=shuffle))


def identities(folder, counts):
    """The sharded set, each sample's Input[0, 0, 0] made a unique id: file * 100 + row."""
    import h5py
    paths = write_shards(folder, counts)
    for number, path in enumerate(paths):
        with h5py.File(path, "a") as h5:
            h5["Input"][:, 0, 0, 0] = number * 100 + np.arange(len(h5["Input"]))
    return folder / "train.txt"


def ids(batch):
    return batch["data"][:, 0, 0, 0].to(torch.int64).tolist()


def drawn(feeder, batches):
    return [sample for _ in range(batches) for sample in ids(feeder.next_batch())]


def test_files_are_read_one_at_a_time_in_an_order_reshuffled_per_epoch(tmp_path):
    feeder = HDF5Feeder(data_layer(identities(tmp_path, SHARDS)), seed=3)
    samples = drawn(feeder, 64 * 4 // 8)                   # four epochs of 64 samples
    epochs = [samples[start:start + 64] for start in range(0, len(samples), 64)]
    file_orders = []
    for epoch in epochs:
        assert sorted(epoch) == sorted(number * 100 + row for number, count in enumerate(SHARDS)
                                       for row in range(count))
        files = [sample // 100 for sample in epoch]
        # each file's rows come together (batches span the boundaries), in a shuffled order
        runs = [files[0]] + [after for before, after in zip(files, files[1:]) if after != before]
        assert sorted(runs) == list(range(len(SHARDS)))
        file_orders.append(runs)
        assert [sample % 100 for sample in epoch[:13]] != sorted(epoch[:13])
    assert len({tuple(order) for order in file_orders}) > 1
    assert feeder.epoch == 4 and len(feeder.held) == 1


def test_without_shuffle_the_files_and_rows_come_in_list_order(tmp_path):
    feeder = HDF5Feeder(data_layer(identities(tmp_path, SHARDS), shuffle=False), seed=3)
    assert drawn(feeder, 16) == [number * 100 + row for _ in range(2)
                                 for number, count in enumerate(SHARDS) for row in range(count)]


def test_processes_read_disjoint_slices_of_one_global_batch(tmp_path):
    source = identities(tmp_path, SHARDS)
    whole = drawn(HDF5Feeder(data_layer(source, batch_size=12), seed=5), 20)
    ranks = [drawn(HDF5Feeder(data_layer(source, batch_size=4), seed=5, rank=rank,
                              world_size=3), 20) for rank in range(3)]
    interleaved = [sample for batch in range(20) for rank in ranks
                   for sample in rank[batch * 4:(batch + 1) * 4]]
    assert interleaved == whole


def test_a_restored_state_draws_the_same_batches(tmp_path):
    source = identities(tmp_path, SHARDS)
    straight = HDF5Feeder(data_layer(source), seed=9)
    drawn(straight, 11)
    state = {name: value.copy() if isinstance(value, np.ndarray) else value
             for name, value in straight.state().items()}
    expected = drawn(straight, 30)
    resumed = HDF5Feeder(data_layer(source), seed=1)
    resumed.load_state(state, "run.solverstate")
    assert drawn(resumed, 30) == expected


@pytest.mark.parametrize("change, message", [
    ({"file_order": np.array([0, 1, 1, 3, 4])}, "is not an order of its 5 files"),
    ({"file_order": np.arange(4)}, "orders 4 files but the data now holds 5"),
    ({"file_index": 5}, "is at file 5 of 5"),
    ({"order": np.arange(12)}, "orders 12 samples but the data now holds 13"),
    ({"cursor": 14}, "is at sample 14 of 13"),
])
def test_a_reader_state_that_does_not_fit_the_data_is_one_error(tmp_path, change, message):
    source = identities(tmp_path, SHARDS)
    feeder = HDF5Feeder(data_layer(source), seed=9)
    state = feeder.state() | {"file_order": np.array([2, 0, 1, 3, 4]), "file_index": 0}
    with pytest.raises(UserError, match=message) as error:
        HDF5Feeder(data_layer(source), seed=9).load_state(state | change, "run.solverstate")
    assert str(error.value).startswith("run.solverstate: ")


def test_a_state_saved_before_files_were_read_one_at_a_time_is_the_one_file_state(tmp_path):
    write_h5(tmp_path / "train.h5", 20, seed=1)
    (tmp_path / "train.txt").write_text(f"{tmp_path / 'train.h5'}\n")
    straight = HDF5Feeder(data_layer(tmp_path / "train.txt"), seed=4)
    straight.next_batch()
    old = {name: value for name, value in straight.state().items() if name != "file_order"}
    expected = [straight.next_batch()["data"] for _ in range(6)]
    resumed = HDF5Feeder(data_layer(tmp_path / "train.txt"), seed=0)
    resumed.load_state(old, "old.solverstate")
    assert all(torch.equal(resumed.next_batch()["data"], batch) for batch in expected)


FILE_SAMPLES = 4096                        # 7.7 MiB a file: 7x7 inputs, 21x21 labels
FILES = 16
BATCH = 512


def peak_rss_of_training(forks, folder, shards):
    """The peak resident memory of a `runner train` process (forked from the session's server,
    torch already imported) that trains the tiny net for one epoch over `shards`."""
    iterations = sum(shards) // BATCH
    solver = tiny_run(folder, iterations, 0, shards=shards)
    net = folder / "net.yaml"
    net.write_text(net.read_text().replace("batch_size: 8, shuffle", f"batch_size: {BATCH}, "
                                           "shuffle"))
    solver.write_text(solver.read_text().replace("test_interval: 10", "test_interval: 0"))
    result = forks.run(["train", "--solver", solver], folder, timeout=120)
    assert result.code == 0, result.stderr
    assert f"to {iterations}" in result.stdout and "Optimization Done." in result.stdout
    return result.peak_rss


def test_memory_is_bounded_by_the_files_held_not_by_the_dataset(forks, tmp_path):
    """A training set of 16 files trained on in a budget of 4 files' worth of data: the run
    holds its baseline (the one-file run's peak, one file included) plus the file it reads
    ahead, the one being read and what the allocator keeps of freed files; the whole set in
    memory would need 15 files more."""
    file_bytes = FILE_SAMPLES * (7 * 7 + 21 * 21) * 4
    (tmp_path / "one").mkdir()
    (tmp_path / "sharded").mkdir()
    one_file = peak_rss_of_training(forks, tmp_path / "one", (FILE_SAMPLES,))
    budget = one_file + 3 * file_bytes
    assert FILES * file_bytes >= 4 * (4 * file_bytes)
    peak = peak_rss_of_training(forks, tmp_path / "sharded", (FILE_SAMPLES,) * FILES)
    assert peak < budget, (f"peak {peak / 2**20:.0f} MiB, budget {budget / 2**20:.0f} MiB "
                           f"(one file: {one_file / 2**20:.0f} MiB)")
