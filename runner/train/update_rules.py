"""Caffe's solver update rules (src/caffe/solvers/*_solver.cpp) on PyTorch tensors.

Caffe differs from torch.optim where it matters for reproducing its runs: the learning rate sits
inside the history (SGD's momentum buffer holds lr-scaled steps, so an lr change takes effect
gradually), and every parameter blob has its own lr_mult and decay_mult. One step follows
SGDSolver::ApplyUpdate: clip the gradients by their global L2 norm, divide them by iter_size, add the
weight decay, compute the update value, subtract it from the weights (Net::Update).

The rules work on whole lists of tensors with torch._foreach_* ops, so a step costs a handful of
kernel launches however many blobs the net has, on CPU and CUDA alike.
"""
import math

import torch


class UpdateRule:
    """The part every Caffe solver type shares; a subclass supplies compute_update.

    `params` is a list of (tensor, lr_mult, decay_mult); `solver` any object with Caffe's
    SolverParameter names (momentum, momentum2, delta, rms_decay, weight_decay,
    regularization_type, clip_gradients, iter_size), read at every step.
    """

    history_slots = 1  # history blobs per parameter

    def __init__(self, params, solver):
        if solver.regularization_type not in ("L1", "L2"):
            raise ValueError(f"unknown regularization_type '{solver.regularization_type}'; valid: L1, L2")
        self.params = [tensor for tensor, _, _ in params]
        self.lr_mults = [float(lr_mult) for _, lr_mult, _ in params]
        self.decay_mults = [float(decay_mult) for _, _, decay_mult in params]
        self.solver = solver
        # history[slot][i]: slot-major like Caffe's history_, where AdaDelta and Adam append a second
        # blob per parameter after the first ones. Zero-initialised, as Caffe's blobs are.
        self.history = [[torch.zeros_like(p) for p in self.params] for _ in range(self.history_slots)]

    def apply_update(self, lr, iteration):
        """One Caffe step at learning rate `lr`; `iteration` counts from 0 (Adam's t is iteration + 1).

        Reads each parameter's .grad, the gradient summed over iter_size passes; a missing .grad counts
        as zero, so momentum and weight decay still act as in Caffe. Like Caffe's diff, each .grad is
        overwritten with intermediate values: the caller zeroes the grads before the next accumulation.
        """
        with torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            self._clip(grads)
            self._normalize(grads)
            self._regularize(grads)
            rates = [lr * lr_mult for lr_mult in self.lr_mults]
            torch._foreach_sub_(self.params, self.compute_update(grads, rates, iteration))

    def compute_update(self, grads, rates, iteration):
        """The values to subtract from the weights, given the preprocessed grads (which it may
        overwrite) and each parameter's local rate lr * lr_mult."""
        raise NotImplementedError

    def state(self):
        """A copy of the history in Caffe's solverstate order: every parameter's first blob, then
        (AdaDelta, Adam) every parameter's second blob."""
        return [h.detach().clone() for slot in self.history for h in slot]

    def load_state(self, tensors):
        """Restore what state() returned; checks count and shapes before touching anything."""
        live = [h for slot in self.history for h in slot]
        if len(tensors) != len(live):
            raise ValueError(
                f"{type(self).__name__} keeps {len(live)} history blobs for {len(self.params)} "
                f"parameters, got {len(tensors)}"
            )
        for index, (saved, current) in enumerate(zip(tensors, live)):
            if saved.shape != current.shape:
                raise ValueError(
                    f"history blob {index} has shape {tuple(saved.shape)}, expected {tuple(current.shape)}"
                )
        for saved, current in zip(tensors, live):
            current.copy_(saved)

    def _clip(self, grads):
        # Caffe clips the accumulated gradients, before dividing them by iter_size.
        clip = self.solver.clip_gradients
        if clip < 0:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item()
        if norm > clip:
            torch._foreach_mul_(grads, clip / norm)

    def _normalize(self, grads):
        if self.solver.iter_size != 1:
            torch._foreach_mul_(grads, 1.0 / self.solver.iter_size)

    def _regularize(self, grads):
        # Like Caffe, skip blobs whose decay is zero (all of them under the usual weight_decay 0).
        decays = [self.solver.weight_decay * decay_mult for decay_mult in self.decay_mults]
        chosen = [i for i, decay in enumerate(decays) if decay != 0]
        if not chosen:
            return
        weights = [self.params[i] for i in chosen]
        if self.solver.regularization_type == "L2":
            penalty = weights  # grad += decay * w
        else:
            penalty = torch._foreach_sign(weights)  # grad += decay * sign(w)
        terms = torch._foreach_mul(penalty, [decays[i] for i in chosen])
        torch._foreach_add_([grads[i] for i in chosen], terms)


class SGD(UpdateRule):
    def compute_update(self, grads, rates, iteration):
        # h = momentum * h + local_rate * grad; w -= h
        (h,) = self.history
        torch._foreach_mul_(grads, rates)
        torch._foreach_mul_(h, self.solver.momentum)
        torch._foreach_add_(h, grads)
        return h


class Nesterov(SGD):
    def compute_update(self, grads, rates, iteration):
        # h = momentum * h_prev + local_rate * grad; w -= (1 + momentum) * h - momentum * h_prev
        momentum = self.solver.momentum
        update = torch._foreach_mul(self.history[0], -momentum)
        h = super().compute_update(grads, rates, iteration)
        torch._foreach_add_(update, h, alpha=1 + momentum)
        return update


class AdaGrad(UpdateRule):
    def compute_update(self, grads, rates, iteration):
        # w -= local_rate * grad / (sqrt(hist) + delta), hist accumulated by accumulate()
        (hist,) = self.history
        self.accumulate(hist, grads)
        torch._foreach_div_(grads, _root_plus(hist, self.solver.delta))
        torch._foreach_mul_(grads, rates)
        return grads

    def accumulate(self, hist, grads):
        # hist += grad^2
        torch._foreach_addcmul_(hist, grads, grads)


class RMSProp(AdaGrad):
    def accumulate(self, hist, grads):
        # hist = rms_decay * hist + (1 - rms_decay) * grad^2
        _decay_squares(hist, grads, self.solver.rms_decay)


class AdaDelta(UpdateRule):
    history_slots = 2

    def compute_update(self, grads, rates, iteration):
        # g_sq = m * g_sq + (1 - m) * grad^2;  step = grad * sqrt((u_sq + delta) / (g_sq + delta));
        # u_sq = m * u_sq + (1 - m) * step^2;  w -= local_rate * step   (m = momentum)
        grad_squares, step_squares = self.history
        momentum, delta = self.solver.momentum, self.solver.delta
        _decay_squares(grad_squares, grads, momentum)
        ratio = torch._foreach_add(step_squares, delta)
        torch._foreach_div_(ratio, torch._foreach_add(grad_squares, delta))
        torch._foreach_sqrt_(ratio)
        torch._foreach_mul_(grads, ratio)
        _decay_squares(step_squares, grads, momentum)
        torch._foreach_mul_(grads, rates)
        return grads


class Adam(UpdateRule):
    history_slots = 2

    def compute_update(self, grads, rates, iteration):
        # m = b1 * m + (1 - b1) * grad;  v = b2 * v + (1 - b2) * grad^2;  t = iter + 1;
        # w -= local_rate * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + delta)
        # (b1, b2 = momentum, momentum2)
        m, v = self.history
        beta1, beta2 = self.solver.momentum, self.solver.momentum2
        t = iteration + 1
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, grads, alpha=1 - beta1)
        _decay_squares(v, grads, beta2)
        correction = math.sqrt(1 - beta2**t) / (1 - beta1**t)
        update = torch._foreach_div(m, _root_plus(v, self.solver.delta))
        torch._foreach_mul_(update, [rate * correction for rate in rates])
        return update


def _decay_squares(averages, values, decay):
    # averages = decay * averages + (1 - decay) * values^2
    torch._foreach_mul_(averages, decay)
    torch._foreach_addcmul_(averages, values, values, value=1 - decay)


def _root_plus(squares, delta):
    # sqrt(squares) + delta, as new tensors
    roots = torch._foreach_sqrt(squares)
    torch._foreach_add_(roots, delta)
    return roots


UPDATE_RULES = {
    "SGD": SGD,
    "Nesterov": Nesterov,
    "AdaGrad": AdaGrad,
    "RMSProp": RMSProp,
    "AdaDelta": AdaDelta,
    "Adam": Adam,
}


def make_update_rule(solver_type, params, solver):
    """The update rule of Caffe's solver `type` ("SGD", "Adam", ...) for `params` and `solver`."""
    try:
        rule = UPDATE_RULES[solver_type]
    except KeyError:
        raise ValueError(f"unknown solver type '{solver_type}'; valid: {', '.join(UPDATE_RULES)}") from None
    return rule(params, solver)
