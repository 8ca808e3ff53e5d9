"""Caffe's update rules against steps worked out by hand (float64, so the arithmetic is exact enough)."""
import math
from types import SimpleNamespace

import pytest
import torch

from runner.train.update_rules import AdaDelta, Adam, make_update_rule

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def solver(**fields):
    defaults = dict(
        momentum=0.0, momentum2=0.999, delta=1e-8, rms_decay=0.99, weight_decay=0.0,
        regularization_type="L2", clip_gradients=-1.0, iter_size=1,
    )
    return SimpleNamespace(**{**defaults, **fields})


def tensor(values, device="cpu"):
    return torch.tensor(values, dtype=torch.float64, device=device)


def param(values, device="cpu"):
    return tensor(values, device).requires_grad_()


def step(rule, grads, lr, iteration=0):
    for (p, grad) in zip(rule.params, grads):
        p.grad = tensor(grad, p.device)
    rule.apply_update(lr, iteration)


def assert_values(p, expected):
    torch.testing.assert_close(p.detach().cpu(), tensor(expected), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_sgd_momentum_keeps_the_learning_rate_in_its_history(device):
    w = param([1.0, -2.0], device)
    rule = make_update_rule("SGD", [(w, 1, 1)], solver(momentum=0.9))
    step(rule, [[0.5, 1.0]], lr=0.1)
    # h = 0.1 * [0.5, 1] = [0.05, 0.1]
    assert_values(w, [0.95, -2.1])
    step(rule, [[0.5, 1.0]], lr=0.05)
    # h = 0.9 * [0.05, 0.1] + 0.05 * [0.5, 1] = [0.07, 0.14]
    assert_values(w, [0.88, -2.24])

    # torch.optim.SGD keeps lr out of the buffer: buf = 0.9 * [0.5, 1] + [0.5, 1] = [0.95, 1.9],
    # w = [0.95, -2.1] - 0.05 * buf, a different point once lr changes.
    theirs = param([1.0, -2.0])
    optimizer = torch.optim.SGD([theirs], lr=0.1, momentum=0.9)
    for lr in (0.1, 0.05):
        optimizer.param_groups[0]["lr"] = lr
        theirs.grad = tensor([0.5, 1.0])
        optimizer.step()
    assert_values(theirs, [0.9025, -2.195])


def test_lr_mult_and_decay_mult():
    decayed, frozen_decay = param([1.0, 2.0]), param([1.0, 2.0])
    rule = make_update_rule("SGD", [(decayed, 1, 1), (frozen_decay, 0.1, 0)], solver(weight_decay=0.1))
    step(rule, [[0.5, 0.5], [0.5, 0.5]], lr=0.1)
    # grad + 0.1 * w = [0.6, 0.7], times 0.1
    assert_values(decayed, [0.94, 1.93])
    # no decay, local rate 0.1 * 0.1 = 0.01
    assert_values(frozen_decay, [0.995, 1.995])


def test_l1_regularization_adds_the_sign_of_the_weights():
    w = param([2.0, -3.0, 0.0])
    rule = make_update_rule("SGD", [(w, 1, 2)], solver(weight_decay=0.5, regularization_type="L1"))
    step(rule, [[0.1, 0.1, 0.1]], lr=0.1)
    # local decay 0.5 * 2 = 1: grad = [0.1 + 1, 0.1 - 1, 0.1 + 0] = [1.1, -0.9, 0.1]
    assert_values(w, [1.89, -2.91, -0.01])


def test_unknown_regularization_type():
    with pytest.raises(ValueError, match="regularization_type 'L3'"):
        make_update_rule("SGD", [(param([0.0]), 1, 1)], solver(regularization_type="L3"))


@pytest.mark.parametrize("clip, expected", [(1.0, ([-0.6, 0.0], [-0.8])), (10.0, ([-3.0, 0.0], [-4.0]))])
def test_clipping_rescales_by_the_global_norm(clip, expected):
    a, b = param([0.0, 0.0]), param([0.0])
    rule = make_update_rule("SGD", [(a, 1, 1), (b, 1, 1)], solver(clip_gradients=clip))
    step(rule, [[3.0, 0.0], [4.0]], lr=1.0)
    # global norm sqrt(9 + 16) = 5; above the clip the grads shrink by clip / 5, below they stay
    assert_values(a, expected[0])
    assert_values(b, expected[1])


def test_iter_size_divides_the_accumulated_gradient():
    w = param([0.0, 0.0])
    rule = make_update_rule("SGD", [(w, 1, 1)], solver(iter_size=4))
    step(rule, [[2.0, 4.0]], lr=0.1)
    assert_values(w, [-0.05, -0.1])


def test_iter_size_comes_after_clipping_and_before_weight_decay():
    clipped = param([0.0, 0.0])
    rule = make_update_rule("SGD", [(clipped, 1, 1)], solver(iter_size=2, clip_gradients=1.0))
    step(rule, [[3.0, 4.0]], lr=1.0)
    # clip the sum (norm 5) to [0.6, 0.8], then halve; halving first would clip [1.5, 2] to [0.6, 0.8]
    assert_values(clipped, [-0.3, -0.4])

    decayed = param([1.0])
    rule = make_update_rule("SGD", [(decayed, 1, 1)], solver(iter_size=2, weight_decay=0.1))
    step(rule, [[2.0]], lr=1.0)
    # 2 / 2 + 0.1 * 1 = 1.1, not (2 + 0.1) / 2
    assert_values(decayed, [-0.1])


def test_missing_grad_counts_as_zero():
    w = param([1.0])
    rule = make_update_rule("SGD", [(w, 1, 1)], solver(momentum=0.5))
    step(rule, [[1.0]], lr=0.1)  # h = 0.1, w = 0.9
    w.grad = None
    rule.apply_update(0.1, 1)  # h = 0.05, momentum alone keeps moving w
    assert_values(w, [0.85])


@pytest.mark.parametrize("device", DEVICES)
def test_nesterov(device):
    w = param([1.0], device)
    rule = make_update_rule("Nesterov", [(w, 1, 1)], solver(momentum=0.9))
    step(rule, [[1.0]], lr=0.1)
    # h = 0.1; update = 1.9 * 0.1 - 0.9 * 0 = 0.19
    assert_values(w, [0.81])
    step(rule, [[1.0]], lr=0.1)
    # h = 0.9 * 0.1 + 0.1 = 0.19; update = 1.9 * 0.19 - 0.9 * 0.1 = 0.271
    assert_values(w, [0.539])


@pytest.mark.parametrize("device", DEVICES)
def test_adagrad(device):
    w = param([1.0, 1.0], device)
    rule = make_update_rule("AdaGrad", [(w, 1, 1)], solver(delta=1.0))
    step(rule, [[3.0, -4.0]], lr=0.1)
    # hist = [9, 16]; update = 0.1 * [3 / (3 + 1), -4 / (4 + 1)] = [0.075, -0.08]
    assert_values(w, [0.925, 1.08])
    step(rule, [[4.0, 0.0]], lr=0.1)
    # hist = [25, 16]; update = 0.1 * [4 / (5 + 1), 0]
    assert_values(w, [0.925 - 0.4 / 6, 1.08])


@pytest.mark.parametrize("device", DEVICES)
def test_rmsprop(device):
    w = param([1.0, 1.0], device)
    rule = make_update_rule("RMSProp", [(w, 1, 1)], solver(delta=0.05))
    step(rule, [[2.0, -1.0]], lr=0.1)
    # rms_decay 0.99: hist = 0.01 * [4, 1] = [0.04, 0.01]; sqrt + delta = [0.25, 0.15]
    assert_values(w, [1 - 0.1 * 2 / 0.25, 1 + 0.1 * 1 / 0.15])


@pytest.mark.parametrize("device", DEVICES)
def test_adadelta(device):
    w = param([1.0], device)
    rule = make_update_rule("AdaDelta", [(w, 1, 1)], solver(momentum=0.75, delta=1 / 3))
    step(rule, [[2.0]], lr=1.0)
    # g_sq = 0.25 * 4 = 1; step = 2 * sqrt((0 + 1/3) / (1 + 1/3)) = 2 * 0.5 = 1; u_sq = 0.25 * 1
    assert_values(w, [0.0])
    step(rule, [[2.0]], lr=1.0)
    # g_sq = 0.75 + 1 = 1.75; step = 2 * sqrt((0.25 + 1/3) / (1.75 + 1/3)) = 2 * sqrt(7/25)
    assert_values(w, [-2 * math.sqrt(7) / 5])
    grad_squares, step_squares = rule.state()
    # u_sq = 0.75 * 0.25 + 0.25 * (4 * 7/25) = 0.1875 + 0.28
    assert_values(grad_squares, [1.75])
    assert_values(step_squares, [0.4675])


@pytest.mark.parametrize("device", DEVICES)
def test_adam(device):
    w = param([1.0], device)
    rule = make_update_rule("Adam", [(w, 1, 1)], solver(momentum=0.5, momentum2=0.75, delta=0.25))
    step(rule, [[2.0]], lr=0.1, iteration=0)
    # t = 1: m = 0.5 * 2 = 1; v = 0.25 * 4 = 1; correction = sqrt(1 - 0.75) / (1 - 0.5) = 1
    # update = 0.1 * 1 / (1 + 0.25) = 0.08
    assert_values(w, [0.92])
    step(rule, [[2.0]], lr=0.1, iteration=1)
    # t = 2: m = 0.5 + 1 = 1.5; v = 0.75 + 1 = 1.75 = 7/4;
    # correction = sqrt(1 - 0.5625) / (1 - 0.25) = (sqrt(7) / 4) / 0.75
    # update = 0.1 * (sqrt(7) / 3) * 1.5 / (sqrt(7) / 2 + 0.25) = 0.1 * sqrt(7) / (sqrt(7) + 0.5)
    assert_values(w, [0.92 - 0.1 * math.sqrt(7) / (math.sqrt(7) + 0.5)])


def test_state_round_trip_continues_identically():
    def rule_with_weights():
        params = [(param([1.0, -1.0, 0.5]), 1, 1), (param([[2.0], [3.0]]), 0.5, 0)]
        return make_update_rule("Adam", params, solver(momentum=0.9, weight_decay=0.01))

    grads = [[0.1, -0.2, 0.3], [[0.4], [-0.5]]]
    original = rule_with_weights()
    step(original, grads, lr=0.01, iteration=0)
    saved = original.state()
    # Caffe's solverstate order: first blob of every parameter, then the second of every parameter
    assert [tuple(t.shape) for t in saved] == [(3,), (2, 1), (3,), (2, 1)]

    restored = rule_with_weights()
    with torch.no_grad():
        for target, source in zip(restored.params, original.params):
            target.copy_(source)
    restored.load_state(saved)
    step(original, grads, lr=0.01, iteration=1)
    step(restored, grads, lr=0.01, iteration=1)
    for a, b in zip(restored.params, original.params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_is_a_copy():
    w = param([1.0])
    rule = make_update_rule("SGD", [(w, 1, 1)], solver(momentum=0.9))
    step(rule, [[1.0]], lr=0.1)
    (saved,) = rule.state()
    step(rule, [[1.0]], lr=0.1)
    assert_values(saved, [0.1])


def test_load_state_rejects_a_mismatch():
    w = param([1.0, 2.0])
    rule = AdaDelta([(w, 1, 1)], solver())
    with pytest.raises(ValueError, match="AdaDelta keeps 2 history blobs for 1 parameters, got 1"):
        rule.load_state([torch.zeros(2)])
    with pytest.raises(ValueError, match=r"history blob 1 has shape \(3,\), expected \(2,\)"):
        rule.load_state([torch.ones(2), torch.zeros(3)])
    assert_values(rule.state()[0], [0.0, 0.0])  # nothing was loaded


def test_registry_uses_caffe_type_names():
    assert isinstance(make_update_rule("Adam", [(param([0.0]), 1, 1)], solver()), Adam)
    valid = "SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam"
    with pytest.raises(ValueError, match=f"unknown solver type 'Adma'; valid: {valid}"):
        make_update_rule("Adma", [(param([0.0]), 1, 1)], solver())
