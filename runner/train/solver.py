"""Caffe's solver loop (solver.cpp): test when due, forward/backward over iter_size batches,
update, display, snapshot when due, until max_iter (or srcaffe's max_seconds of training); resume
from a solverstate exactly.

The update rules live in `runner/train/update_rules.py` and the lr policies in `runner/train/lr_policy.py`;
this module only sequences them.
"""
import collections
import math
import signal
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from runner.config import loading, schema
from runner.errors import UserError
from runner.files import caffe_model, snapshot
from runner.net import devices, fast_paths, prelu_kernel
from runner.net.builder import Net
from runner.net.feeds import train_data_attributes
from runner.net.layers.activation import PReLU
from runner.train import (
    distributed,
    lr_policy,
    moving_average,
    tensorboard,
    train_log,
    update_rules,
)
from runner.train.feeder import HDF5Feeder
from runner.train.train_log import TrainLog


@dataclass
class TrainOptions:
    """What `runner train` flags add to a solver file."""

    device: str = None               # overrides solver_mode/device_id, e.g. "cpu" or "cuda:0"
    # each one of SIGNAL_EFFECTS (runner/train/signals.py)
    sigint_effect: str = "snapshot"  # snapshot then stop | stop | none
    sighup_effect: str = "snapshot"  # snapshot and go on | stop | none
    log: bool = True
    # event files beside the logs (with `log`); SRCAFFE_TENSORBOARD=0 turns them off
    tensorboard: bool = field(default_factory=tensorboard.enabled_by_environment)
    on_test: object = None           # called (iteration, test net, loss, PSNR) after each test


def choose_device(solver, override=None, source=""):
    """solver_mode GPU uses CUDA device `device_id` when there is one, else the CPU (said in
    the log); either is checked to exist here."""
    if override:
        return devices.torch_device(override)
    if solver.solver_mode == "GPU" and torch.cuda.is_available():
        return devices.torch_device(f"cuda:{solver.device_id}", source)
    return torch.device("cpu")


def seed_of(solver):
    """Caffe: a negative random_seed means one drawn from the clock."""
    return solver.random_seed if solver.random_seed >= 0 else time.time_ns() % (2 ** 31)


class Solver:
    """A train net, its test nets, their data, and the update rule, stepping as Caffe does."""

    def __init__(self, setup, options=TrainOptions()):
        self.setup = setup
        self.param = setup.solver
        self.options = options
        self.processes = distributed.Processes(choose_device(self.param, options.device,
                                                             setup.solver_source))
        self.device = self.processes.device
        seed = self.processes.same_on_all(seed_of(self.param))
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        source = setup.net_sources[0][0]
        self.net = fast_paths.preferred_layout(
            Net(setup.train_net, "TRAIN", source, generator).to(self.device), self.device)
        self.test_nets = [fast_paths.preferred_layout(Net(net, "TEST", source).to(self.device),
                                                      self.device)
                          for net in setup.test_nets]
        # kept in every .model: an SRCNN-style net's scale is known only from its data
        self.data_scale = int(train_data_attributes(setup.train_net, source).get("scale", 0))
        self.train_feeders = [HDF5Feeder(layer, seed, self.processes.rank,
                                         self.processes.world_size)
                              for layer in self.net.data_layers]
        self.test_feeders = [[HDF5Feeder(layer, seed) for layer in test_net.data_layers]
                             for test_net in self.test_nets]
        self.update_rule = update_rules.make_update_rule(
            self.param.type,
            [(blob, lr_mult, decay_mult) for _, _, blob, lr_mult, decay_mult
             in self.net.learnable_blobs()],
            self.param)
        self.trainer = self.processes.wrap(self.net)
        # made after wrap, which gives every process rank 0's weights to start the average from
        self.average = moving_average.MovingAverage(
            [(blob, lr_mult) for _, _, blob, lr_mult, _ in self.net.learnable_blobs()],
            self.param.ema_decay) if self.param.ema_decay else None
        self.iteration = 0
        self.last_snapshot = None
        self.requested = None
        self.started_from = None      # a line for the log: where the weights (or their average)
                                      # came from
        self.solver_changes = []      # how this solver differs from a resumed snapshot's
        self.test_example = None      # (input, label, prediction) of the last test's first sample
        self.resumed = False
        self.finished = False         # ran to max_iter or max_seconds (not stopped by a signal)
        self.seconds_before = 0.0     # the training clock at the resumed snapshot
        self.clock_started = None     # perf_counter() when this run's loop started
        self.losses = collections.deque(maxlen=self.param.average_loss)

    # ------------------------------------------------------------------ weights and snapshots

    def shipped_blobs(self):
        """{layer: [blobs]} that the tests use and the .model holds: the weights, or their
        moving average when the solver keeps one."""
        blobs = self.net.blobs_by_layer()
        return self.average.of(blobs) if self.average else blobs

    def model_file(self):
        blobs = {layer: [blob.detach().cpu().numpy() for blob in layer_blobs]
                 for layer, layer_blobs in self.shipped_blobs().items()}
        path, text = self.setup.net_sources[0]
        return snapshot.ModelFile(blobs, text, path, self.iteration, self.data_scale)

    def copy_weights(self, model_path):
        """Fine-tuning (`--weights`): copy every layer whose name matches, shapes checked."""
        model = caffe_model.read_model(model_path, need_net=False)
        tensors = {layer: [torch.from_numpy(blob) for blob in blobs] for layer, blobs
                   in model.read_blobs(self.net.blobs_by_layer(), model_path).items()}
        copied = self.net.copy_from(tensors, model_path)
        if self.average:
            self.average.restart()
        own = sorted(set(self.net.blobs_by_layer()) - set(copied))
        self.started_from = (f"Copied layers {', '.join(copied)} from {model_path}"
                             + (f"; {', '.join(own)} from their fillers" if own else ""))
        return copied

    def snapshot(self):
        model_path, state_path = snapshot.snapshot_paths(self.param.snapshot_prefix,
                                                         self.iteration)
        if self.processes.rank != 0:   # the others hold the same weights and history
            self.last_snapshot = state_path
            return
        snapshot.save_model(model_path, self.model_file())
        state = snapshot.SolverState(
            iteration=self.iteration, learned_net=model_path.name,
            learned_net_sha256=snapshot.file_sha256(model_path),
            current_step=lr_policy.current_step(self.param, self.iteration),
            seconds=self.training_seconds(),
            history=[blob.detach().cpu().numpy() for blob in self.update_rule.state()],
            solver_source=self.setup.solver_source, solver_text=self.setup.solver_text,
            net_files=list(self.setup.net_sources), random_states=self._random_states(),
            readers=self._reader_states(),
            weights=[blob.detach().cpu().numpy() for blob in self.average.blobs]
            if self.average else [])
        snapshot.save_solverstate(state_path, state)
        self.last_snapshot = state_path
        self.log.line(f"Snapshotting to HDF5 file {model_path}")
        self.log.line(f"Snapshotting solver state to HDF5 file {state_path}")
        if self.param.snapshot_keep:
            self._remove_surplus_snapshots()

    def _remove_surplus_snapshots(self):
        """snapshot_keep: the pairs neither among the newest nor the best tested go, each
        .solverstate before its .model (a kill between leaves a .model that is never resumed
        from, which the next start names)."""
        prefix = self.param.snapshot_prefix
        pairs = dict(snapshot.snapshots(prefix, ".solverstate"))
        for iteration in snapshot.surplus_snapshots(list(pairs), self.param.snapshot_keep,
                                                    self.log.psnr_at):
            model_path, state_path = snapshot.snapshot_paths(prefix, iteration)
            state_path.unlink()
            model_path.unlink(missing_ok=True)
            self.log.line(f"Removed snapshot {state_path} and its .model (snapshot_keep "
                          f"{self.param.snapshot_keep})")

    def restore(self, state_path, state):
        """Continue from a solverstate: weights and their average, history, iteration,
        generators, readers; each stored array's shape is checked against this net and data
        before it is read."""
        model = snapshot.load_model(snapshot.model_of(state_path, state))
        expected = self.net.blobs_by_layer()
        if set(model.blobs) != set(expected):
            raise UserError(state_path, "the snapshot is of a different net (layers "
                            f"{sorted(model.blobs)} vs {sorted(expected)})")
        # the .model holds the weights, or their average when the solverstate holds the weights
        self.net.copy_from({layer: [torch.from_numpy(blob) for blob in blobs] for layer, blobs
                            in model.read_blobs(expected, state_path).items()}, state_path)
        if self.average:
            self.average.restart()
        if state.weights:
            learnable = [blob for _, _, blob, _, _ in self.net.learnable_blobs()]
            with torch.no_grad():
                for blob, stored in zip(learnable, self._stored(state_path, state.weights,
                                                                learnable, "weight")):
                    blob.copy_(stored)
        if self.average and not state.weights:
            self.started_from = ("The snapshot holds no moving average of the weights: it "
                                 "starts from the resumed weights")
        elif state.weights and not self.average:
            self.started_from = ("The snapshot's moving average of the weights (its .model) is "
                                 "not continued: this solver's ema_decay is 0")
        self.update_rule.load_state(self._stored(state_path, state.history,
                                                 self.update_rule.state(), "solver history"))
        if "torch" not in state.random_states:
            raise UserError(state_path, "holds no random generator state 'torch'")
        generator = snapshot.read_array(state.random_states["torch"],
                                        tuple(torch.get_rng_state().shape), np.uint8, state_path)
        try:
            torch.set_rng_state(torch.from_numpy(generator))
        except RuntimeError:
            raise UserError(state_path, "its random generator state is invalid") from None
        for key, feeder in self._feeders():
            if key in state.readers:
                feeder.load_state(state.readers[key], state_path)
        self.iteration = state.iteration
        self.seconds_before = state.seconds
        self.resumed = True
        self.solver_changes = self._changes_since(state)

    def _changes_since(self, state):
        """The keys in which this solver differs from the one a snapshot stores (the solver file
        given again, edited, or without the --set keys of the run): resuming takes this one, as
        Caffe's does, so the log says what changed. [] when the stored text does not parse."""
        try:
            stored = loading.parse_upgraded(schema.SolverParameter, state.solver_text,
                                            state.solver_source)[0]
        except UserError:
            return []
        return schema.changed_keys(loading.completed_solver(stored, state.solver_source),
                                   self.param)

    def _stored(self, state_path, arrays, live, what):
        """A solverstate's `arrays` as tensors, as many as the `live` ones and each of its
        shape (checked before it is read)."""
        if len(arrays) != len(live):
            raise UserError(state_path, f"holds {len(arrays)} {what} blobs; this run keeps "
                            f"{len(live)} ({self.param.type} on this net)")
        return [torch.from_numpy(snapshot.read_array(array, tuple(blob.shape), where=state_path))
                for array, blob in zip(arrays, live)]

    def _feeders(self):
        for feeder in self.train_feeders:
            yield f"train:{feeder.tops[0]}", feeder
        for index, feeders in enumerate(self.test_feeders):
            for feeder in feeders:
                yield f"test{index}:{feeder.tops[0]}", feeder

    def _random_states(self):
        return {"torch": torch.get_rng_state().numpy()}

    def _reader_states(self):
        return {key: feeder.state() for key, feeder in self._feeders()}

    # ------------------------------------------------------------------ the loop

    def training_seconds(self):
        """max_seconds's clock: this process's wall time in the solver loop, of this run and
        the runs it resumes."""
        running = time.perf_counter() - self.clock_started if self.clock_started else 0.0
        return self.seconds_before + running

    def _agreed_seconds(self):
        # rank 0's clock on every process, so that they take the same rate and stop together;
        # a broadcast per iteration, only for runs that watch the clock
        return self.processes.same_on_all(self.training_seconds()) \
            if self.param.max_seconds else 0.0

    def _batch(self, feeders):
        blobs = {}
        for feeder in feeders:
            for top, tensor in feeder.next_batch().items():
                blobs[top] = tensor.to(self.device, non_blocking=True)
        return blobs

    def forward_backward(self):
        """Loss averaged over iter_size batches; gradients accumulated (Caffe's ForwardBackward)."""
        total = 0.0
        for _ in range(self.param.iter_size):
            with self._autocast():
                loss = self.net.loss(self.trainer(self._batch(self.train_feeders)))
            loss.backward()
            total += loss.item()
        return total / self.param.iter_size

    def _autocast(self):
        """The context training's forward passes run in: PyTorch's autocast to bfloat16 under
        the solver's `autocast: bfloat16` (autograd's backward follows the forward's types),
        else none. Test passes run outside it, in float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.param.autocast == "bfloat16")

    def step(self, iterations):
        """Caffe's Solver::Step: run `iterations` iterations (fewer if a signal stops it)."""
        stop_at = self.iteration + iterations
        self.losses.clear()
        # a display line times the iterations since the previous one; the first line of a run,
        # the iteration it has just computed (not the test pass before it)
        started, last_displayed = None, self.iteration - 1
        while self.iteration < stop_at:
            seconds = self._agreed_seconds()
            if self.param.max_seconds and seconds >= self.param.max_seconds:
                self.log.line(f"Iteration {self.iteration}: {seconds:.1f} s of training, "
                              f"max_seconds {self.param.max_seconds:g} reached")
                return True
            if self._test_due():
                self.test_all()
            started = started or time.perf_counter()
            self.net.zero_grad(set_to_none=True)
            loss = self.processes.mean(self.forward_backward())
            if not math.isfinite(loss):
                kept = self.last_snapshot or "none was taken"
                raise UserError(self.setup.solver_source, f"iteration {self.iteration}: loss "
                                f"is {loss}; training stopped (last good snapshot: {kept}); "
                                "a lower base_lr or a clip_gradients bound keeps steps finite")
            self.losses.append(loss)
            rate = lr_policy.learning_rate(self.param, self.iteration, seconds)
            if self._display_due():
                self._display(rate, (self.iteration - last_displayed,
                                     time.perf_counter() - started))
                started, last_displayed = time.perf_counter(), self.iteration
            self.update_rule.apply_update(rate, self.iteration)
            if self.average:
                self.average.update(self.iteration)
            self.iteration += 1
            self.log.advance(self.iteration)
            request = self._take_request()
            if (self.param.snapshot and self.iteration % self.param.snapshot == 0) \
                    or request == "snapshot":
                self.snapshot()
            if request == "stop":
                return False
        return True

    def _display_due(self):
        return bool(self.param.display) and self.iteration % self.param.display == 0

    def _display(self, rate, timing=None):
        """Caffe's display lines, of the loss averaged over the last average_loss iterations;
        `timing` is (iterations, seconds) since the previous line. Without it, the one line
        Caffe prints after the last iteration."""
        smoothed_loss = sum(self.losses) / len(self.losses)
        if timing is None:
            self.log.line(f"Iteration {self.iteration}, loss = {smoothed_loss:.6g}")
        else:
            iterations_done, seconds = timing
            per_second = iterations_done / seconds if seconds > 0 else 0.0
            seconds_per_display = self.param.display / per_second if per_second else 0.0
            self.log.line(f"Iteration {self.iteration} ({per_second:.4g} iter/s, "
                          f"{seconds_per_display:.4g}s/{self.param.display} iters), "
                          f"loss = {smoothed_loss:.6g}")
            self.log.line(f"    Train net output #0: loss = {smoothed_loss:.6g} "
                          f"(* 1 = {smoothed_loss:.6g} loss)")
            self.log.line(f"Iteration {self.iteration}, lr = {rate:.6g}")
        self.log.record(iteration=self.iteration, loss=smoothed_loss, lr=rate)

    @torch.no_grad()
    def _last_display(self):
        """Caffe's Solve(): one more forward pass gives the loss at the last iteration."""
        with self._autocast():
            loss = self.net.loss(self.net(self._batch(self.train_feeders)))
        self.losses.append(self.processes.mean(loss.item()))
        self._display(lr_policy.learning_rate(self.param, self.iteration,
                                              self.training_seconds()))

    def _test_due(self):
        interval = self.param.test_interval
        return bool(interval) and self.iteration % interval == 0 and \
            (self.iteration > 0 or self.param.test_initialization)

    @torch.no_grad()
    def test(self, index):
        """One test pass of test net `index`: mean Euclidean loss and PSNR (dB, data in [0,1])."""
        test_net = self.test_nets[index]
        test_net.copy_from(self.shipped_blobs(), "train net")
        loss_sum, squared_error, pixels = 0.0, 0.0, 0
        for batch in range(self.param.test_iter[index]):
            blobs = test_net.forward(self._batch(self.test_feeders[index]))
            if batch == 0 and test_net.loss_bottoms():
                self.test_example = self._first_sample(test_net, blobs)
            loss_sum += test_net.loss(blobs).item()
            for prediction, label in test_net.loss_bottoms():
                squared_error += (blobs[prediction] - blobs[label]).double().pow(2).sum().item()
                pixels += blobs[label].numel()
        loss = loss_sum / self.param.test_iter[index]
        psnr = 10 * math.log10(pixels / squared_error) if squared_error else math.inf
        return loss, psnr

    @staticmethod
    def _first_sample(test_net, blobs):
        """(input, label, prediction) of a test batch's first sample, as 2-D arrays."""
        prediction, label = test_net.loss_bottoms()[0]
        data = test_net.data_layers[0].top[0]
        return tuple(blobs[name][0, 0].detach().cpu().numpy()
                     for name in (data, label, prediction))

    def test_all(self):
        if self.processes.rank != 0:   # as Caffe, which tests on the root solver only
            return
        for index in range(len(self.test_nets)):
            self.log.line(f"Iteration {self.iteration}, Testing net (#{index})")
            loss, psnr = self.test(index)
            self.log.line(f"    Test net output #0: loss = {loss:.6g} (* 1 = {loss:.6g} loss)")
            self.log.line(f"    Test net output #1: psnr = {psnr:.4f}")
            self.log.record(iteration=self.iteration, test_net=index, test_loss=loss,
                            test_psnr=psnr)
            if index == 0 and self.test_example:
                self.log.test_example(self.iteration, *self.test_example, self.data_scale)
            if self.options.on_test:
                self.options.on_test(self.iteration, index, loss, psnr)

    def solve(self):
        """Caffe's Solver::Solve: step to max_iter, then the final snapshot, display and test."""
        self.log = TrainLog(self.param.snapshot_prefix, self.iteration, self.param.max_iter,
                            self.options.log and self.processes.rank == 0,
                            self.options.tensorboard)
        self.log.line(f"Solving {self.setup.train_net.name or 'net'} on "
                      f"{self.processes.describe()}, "
                      f"from iteration {self.iteration} to {self.param.max_iter}"
                      + (f" or to {self.param.max_seconds:g} s of training (done: "
                         f"{self.seconds_before:.1f} s), whichever comes first"
                         if self.param.max_seconds else ""))
        if self.param.solver_mode == "GPU" and self.device.type == "cpu" \
                and not self.options.device:
            self.log.line("solver_mode is GPU, but this machine has no CUDA device: training "
                          "on the CPU")
        if self.param.autocast == "bfloat16":
            self.log.line("autocast bfloat16: convolutions and matrix products in bfloat16, the "
                          "weights, their updates and the tests in float32"
                          + ("" if devices.native_bfloat16(self.device) else
                             f"; this {'GPU' if self.device.type == 'cuda' else 'CPU'} has no "
                             "bfloat16 arithmetic of its own, so PyTorch emulates it, slower "
                             "than float32"))
        if (self.device.type == "cpu" and fast_paths.enabled()
                and any(isinstance(layer, PReLU) for layer in self.net.modules())):
            missing = prelu_kernel.why_unavailable()
            if missing:
                self.log.line("PReLU computed by PyTorch's kernels, slower in training than our "
                              f"own, which cannot be had here: {missing}")
        if self.started_from:
            self.log.line(self.started_from)
        if self.solver_changes:
            self.log.line("Resumed with a solver that differs from the snapshot's: "
                          f"{'; '.join(self.solver_changes)} (`runner train --snapshot FILE` "
                          "without --solver resumes with the snapshot's own)")
        if self.average:
            self.log.line("Testing with the exponential moving average of the weights "
                          f"(ema_decay {self.param.ema_decay:g}), which the .model snapshots "
                          "hold; the .solverstate keeps the weights themselves")
        if self.processes.rank == 0:
            self._clear_after_kill()
        previous = self._install_signal_handlers()
        try:
            self.clock_started = time.perf_counter()
            self.finished = self.step(self.param.max_iter - self.iteration)
            if not self.finished:
                self.log.line("Optimization stopped early.")
                return
            if self.param.snapshot_after_train and \
                    (not self.param.snapshot or self.iteration % self.param.snapshot):
                self.snapshot()
            if self._display_due():
                self._last_display()
            # the clock ends a run at any iteration: its last weights are tested as max_iter's
            # are when it falls on test_interval
            if self.param.test_interval and (self.iteration % self.param.test_interval == 0
                                             or self.param.max_seconds):
                self.test_all()
            self.log.line("Optimization Done.")
        finally:
            self._restore_signal_handlers(previous)
            for _, feeder in self._feeders():
                feeder.settle()
            self.log.close()

    def _clear_after_kill(self):
        """Remove the unfinished snapshot files a killed run of this prefix left, saying so;
        on a resume, name the .model files whose .solverstate was never written."""
        prefix = self.param.snapshot_prefix
        for path in snapshot.remove_leftovers(prefix) + train_log.remove_leftovers(prefix):
            self.log.line(f"Removed {path}: an unfinished file of an interrupted run")
        if self.resumed:
            for path in snapshot.models_without_state(prefix):
                self.log.line(f"{path} has no .solverstate (a run stopped while writing that "
                              f"snapshot): it is not resumed from, and is written again if "
                              f"this run snapshots at its iteration")

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self):
        effects = {signal.SIGINT: self.options.sigint_effect,
                   signal.SIGHUP: self.options.sighup_effect}
        previous = {}
        for number, effect in effects.items():
            if effect != "none":
                previous[number] = signal.signal(number, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous):
        for number, handler in previous.items():
            signal.signal(number, handler)

    def _on_signal(self, number, frame):
        self.requested = number

    def _take_request(self):
        """The action a signal asked for: SIGINT's snapshot means snapshot, then stop."""
        number, self.requested = self.requested, None
        number = self.processes.agreed_signal(number)
        if number is None:
            return None
        effect = (self.options.sigint_effect if number == signal.SIGINT
                  else self.options.sighup_effect)
        if number == signal.SIGINT and effect == "snapshot":
            self.snapshot()
            return "stop"
        return effect


def train(setup, options=TrainOptions(), resume_from=None, weights=None):
    """Build a solver, optionally resume or fine-tune, and run it to max_iter."""
    solver = Solver(setup, options)
    if resume_from is not None:
        path, state = resume_from
        solver.restore(path, state)
    elif weights is not None:
        solver.copy_weights(weights)
    solver.solve()
    solver.processes.close()
    return solver
