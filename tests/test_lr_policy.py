"""Caffe's lr policies against rates worked out by hand."""
import math
from types import SimpleNamespace

import pytest

from runner.train.lr_policy import current_step, learning_rate


def solver(lr_policy, **fields):
    defaults = dict(base_lr=0.01, gamma=0.1, power=1.0, stepsize=100, stepvalue=[], max_iter=1000,
                    warmup_iter=0, max_seconds=600.0)
    return SimpleNamespace(lr_policy=lr_policy, **{**defaults, **fields})


@pytest.mark.parametrize("iteration", [0, 1, 999_999])
def test_fixed(iteration):
    assert learning_rate(solver("fixed"), iteration) == 0.01


@pytest.mark.parametrize(
    "iteration, expected",
    [(0, 0.01), (99, 0.01), (100, 0.001), (250, 0.0001)],  # floor(250 / 100) = 2 -> 0.01 * 0.1^2
)
def test_step(iteration, expected):
    assert learning_rate(solver("step"), iteration) == pytest.approx(expected)


@pytest.mark.parametrize(
    "iteration, expected",
    [(9, 0.01), (10, 0.001), (19, 0.001), (20, 0.0001), (25, 0.0001)],
)
def test_multistep(iteration, expected):
    assert learning_rate(solver("multistep", stepvalue=[10, 20]), iteration) == pytest.approx(expected)


def test_exp():
    # 0.01 * 0.99^2 = 0.01 * 0.9801
    assert learning_rate(solver("exp", gamma=0.99), 2) == pytest.approx(0.009801)


def test_inv():
    # 0.01 * (1 + 0.01 * 1500)^-0.75 = 0.01 * 16^-0.75 = 0.01 / 8
    assert learning_rate(solver("inv", gamma=0.01, power=0.75), 1500) == pytest.approx(0.00125)


@pytest.mark.parametrize(
    "iteration, power, expected",
    [
        (0, 2.0, 0.01),
        (500, 2.0, 0.0025),  # 0.01 * (1 - 500/1000)^2 = 0.01 * 0.25
        (750, 0.5, 0.005),  # 0.01 * (1 - 750/1000)^0.5 = 0.01 * 0.5
        (1000, 2.0, 0.0),
    ],
)
def test_poly(iteration, power, expected):
    assert learning_rate(solver("poly", power=power), iteration) == pytest.approx(expected)


@pytest.mark.parametrize(
    "gamma, iteration, expected",
    [
        (0.01, 100, 0.005),  # at iter == stepsize: 0.01 / (1 + e^0)
        (math.log(3) / 100, 200, 0.0075),  # 0.01 / (1 + e^-ln3) = 0.01 / (4/3)
        (-math.log(3) / 100, 200, 0.0025),  # 0.01 / (1 + e^ln3) = 0.01 / 4
    ],
)
def test_sigmoid(gamma, iteration, expected):
    assert learning_rate(solver("sigmoid", gamma=gamma), iteration) == pytest.approx(expected)


def test_sigmoid_steep_decay_does_not_overflow():
    # exp(1 * 999_900) overflows a float; the rate is 0 to within any precision.
    assert learning_rate(solver("sigmoid", gamma=-1.0), 1_000_000) == pytest.approx(0.0, abs=1e-300)


@pytest.mark.parametrize(
    "seconds, power, expected",
    [
        (0.0, 2.0, 0.01),
        (300.0, 2.0, 0.0025),  # 0.01 * (1 - 300/600)^2
        (450.0, 0.5, 0.005),   # 0.01 * (1 - 450/600)^0.5
        (600.0, 1.0, 0.0),
        (615.0, 1.0, 0.0),     # past the budget (the last display after the clock stops a run)
    ],
)
def test_poly_seconds_decays_over_the_clock_not_the_iterations(seconds, power, expected):
    for iteration in (0, 999, 50_000):
        assert learning_rate(solver("poly_seconds", power=power), iteration, seconds) == \
            pytest.approx(expected)


def test_warmup_ramps_up_a_clock_policy_by_the_iteration():
    # 0.01 * (1 - 60/600) * 2/4
    assert learning_rate(solver("poly_seconds", warmup_iter=4), 1, 60.0) == pytest.approx(0.0045)


@pytest.mark.parametrize(
    "policy, iteration, expected",
    [
        ("fixed", 0, 0.0025),       # 0.01 * 1/4
        ("fixed", 2, 0.0075),       # 0.01 * 3/4
        ("fixed", 3, 0.01),         # the ramp's end: the policy's rate
        ("fixed", 500, 0.01),
        ("poly", 1, 0.01 * 0.999 * 0.5),     # poly's own decay, times 2/4
        ("step", 250, 0.01 * 0.1 ** 2),      # past the ramp: step's rate unchanged
    ],
)
def test_warmup_ramps_up_to_any_policys_rate(policy, iteration, expected):
    assert learning_rate(solver(policy, warmup_iter=4), iteration) == pytest.approx(expected)


def test_unknown_policy_lists_the_valid_ones():
    valid = "fixed, step, exp, inv, multistep, poly, sigmoid, poly_seconds"
    with pytest.raises(ValueError, match=f"unknown lr_policy 'stpe'; valid: {valid}"):
        learning_rate(solver("stpe"), 0)


@pytest.mark.parametrize(
    "policy, iteration, expected",
    [("step", 250, 2), ("step", 99, 0), ("multistep", 9, 0), ("multistep", 10, 1), ("multistep", 25, 2),
     ("fixed", 500, 0), ("poly", 500, 0)],
)
def test_current_step(policy, iteration, expected):
    assert current_step(solver(policy, stepvalue=[10, 20]), iteration) == expected
