"""Many inputs through one model side by side: one input per thread the model computes on, every
op of each on one thread, results in the inputs' order. The inputs are a folder's images, a
video's frames or one plane's tiles (runner/infer/tiles.py).

On few cores this beats splitting each input's ops over the threads: those stall at every
barrier whenever another thread of the process (decoding, encoding) holds a core, while inputs
side by side never wait for each other. Only where the engine's model may run from several
threads at once (torch on the CPU; OpenCV, each pass with a cv2.dnn.Net of its own); otherwise
one input at a time, its ops on every thread.
"""
import collections
import contextlib
from concurrent.futures import ThreadPoolExecutor


def count(model, inputs=None):
    """How many inputs go side by side: one per thread of the model's (at most `inputs`, when
    their number is known), or 1 where its engine runs one forward pass at a time."""
    if not model.concurrent_runs:
        return 1
    return max(1, min(model.threads(), inputs or model.threads()))


@contextlib.contextmanager
def one_thread_each(model, inputs=None):
    """count(model, inputs), with the model computing on one thread meanwhile when that is more
    than one; its threads are restored afterwards."""
    side_by_side, threads = count(model, inputs), model.threads()
    if side_by_side == 1:
        yield side_by_side
        return
    model.use_threads(1)
    try:
        yield side_by_side
    finally:
        model.use_threads(threads)


def in_order(function, inputs, side_by_side):
    """function(input) of each input, in order, `side_by_side` computed at once in threads (and
    one more submitted, so that a thread never waits for the next input); `inputs` is iterated
    in this thread."""
    with ThreadPoolExecutor(side_by_side) as pool:
        pending = collections.deque()
        for item in inputs:
            pending.append(pool.submit(function, item))
            if len(pending) > side_by_side:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
