"""Caffe's learning-rate policies (SGDSolver::GetLearningRate) as plain functions, srcaffe's
policy over the training clock (`poly_seconds`, not Caffe's), and srcaffe's linear warm-up on top
of any of them (`warmup_iter`, not Caffe's).

Each of Caffe's policies takes `solver`, any object with Caffe's SolverParameter names (base_lr,
lr_policy, gamma, power, stepsize, stepvalue, max_iter; and warmup_iter, max_seconds), and the
iteration, and returns the learning rate: a pure function of the solver file and the iteration,
so a resumed run with an edited solver file picks up the new schedule, as Caffe does. A clock
policy takes the training seconds instead (the solver loop's wall time, stored in every
solverstate), so that a schedule fills a time budget whatever the machine's speed; its runs are
as repeatable as the machine's speed is.
"""
import math


def fixed(solver, iteration):
    # base_lr
    return solver.base_lr


def step(solver, iteration):
    # base_lr * gamma ^ floor(iter / stepsize)
    return solver.base_lr * solver.gamma ** (iteration // solver.stepsize)


def exp(solver, iteration):
    # base_lr * gamma ^ iter
    return solver.base_lr * solver.gamma ** iteration


def inv(solver, iteration):
    # base_lr * (1 + gamma * iter) ^ (-power)
    return solver.base_lr * (1 + solver.gamma * iteration) ** -solver.power


def multistep(solver, iteration):
    # base_lr * gamma ^ (number of stepvalues passed)
    return solver.base_lr * solver.gamma ** _passed_stepvalues(solver, iteration)


def poly(solver, iteration):
    # base_lr * (1 - iter / max_iter) ^ power
    # math.pow: past max_iter the base is negative, and Python's ** would return a complex rate.
    return solver.base_lr * math.pow(1 - iteration / solver.max_iter, solver.power)


def sigmoid(solver, iteration):
    # base_lr / (1 + exp(-gamma * (iter - stepsize)))
    x = solver.gamma * (iteration - solver.stepsize)
    # Two equal forms, so that exp() never overflows when a steep negative gamma decays the rate.
    if x >= 0:
        return solver.base_lr / (1 + math.exp(-x))
    return solver.base_lr * math.exp(x) / (1 + math.exp(x))


def poly_seconds(solver, seconds):
    # base_lr * (1 - seconds / max_seconds) ^ power, and 0 past max_seconds: poly over the clock
    return solver.base_lr * math.pow(max(0.0, 1 - seconds / solver.max_seconds), solver.power)


POLICIES = {
    "fixed": fixed,
    "step": step,
    "exp": exp,
    "inv": inv,
    "multistep": multistep,
    "poly": poly,
    "sigmoid": sigmoid,
}
# srcaffe's, not Caffe's: functions of the training seconds
CLOCK_POLICIES = {
    "poly_seconds": poly_seconds,
}


def learning_rate(solver, iteration, seconds=0.0):
    """The learning rate of `solver.lr_policy` at `iteration`, `seconds` into training, ramped
    up over the first `solver.warmup_iter` iterations (srcaffe's key; 0: the policy's rate)."""
    if solver.lr_policy in CLOCK_POLICIES:
        rate = CLOCK_POLICIES[solver.lr_policy](solver, seconds)
    elif solver.lr_policy in POLICIES:
        rate = POLICIES[solver.lr_policy](solver, iteration)
    else:
        raise ValueError(f"unknown lr_policy '{solver.lr_policy}'; valid: "
                         f"{', '.join([*POLICIES, *CLOCK_POLICIES])}")
    return rate * warmup_factor(solver, iteration)


def warmup_factor(solver, iteration):
    # min(1, (iter + 1) / warmup_iter): the first update already moves the weights.
    if not solver.warmup_iter:
        return 1.0
    return min(1.0, (iteration + 1) / solver.warmup_iter)


def current_step(solver, iteration):
    """Caffe's `current_step_` as stored in a solverstate: the step count of step and multistep, else 0."""
    if solver.lr_policy == "step":
        return iteration // solver.stepsize
    if solver.lr_policy == "multistep":
        return _passed_stepvalues(solver, iteration)
    return 0


def _passed_stepvalues(solver, iteration):
    # Caffe advances current_step each iteration that reaches stepvalue[current_step]; for increasing
    # stepvalues that counts the ones reached, and it never counts past one not yet reached.
    count = 0
    while count < len(solver.stepvalue) and iteration >= solver.stepvalue[count]:
        count += 1
    return count
