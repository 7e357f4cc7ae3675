"""Page faults and CPU time of VGG-small training steps with and without refimpl.memory's malloc settings.

Each trial is a fresh Python process (``REFIMPL_RETAIN_MEMORY=0`` or ``1``) that trains VGG-small for
``--steps`` steps of 64 images on one thread, in a worker thread as a sweep's dask worker does, after
``--warmup`` steps; it reports the minor page faults, user and system CPU seconds and wall time of the
timed steps. Trials alternate between the two settings, so a loaded machine slows both alike. A fresh
process shows the smaller effect (its young heap still gets large pages); the 1.5x of a long-running
sweep worker is in the phase times of the committed runs of ``paper_repro/results/unify/vgg_small``
(``state.json``: ``prune-0.5-s0`` / ``prune-0.7-s0`` before the change, ``unify-0.77-s0`` /
``unify-0.99-s0`` after), see ``refimpl/memory.py``.

Usage::

    python paper_repro/bench_memory.py [--steps 20] [--trials 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, threading, time
import numpy as np
from refimpl.models import vgg_small
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.threads import thread_limit
from refimpl.train import SGD

steps, warmup = int(sys.argv[1]), int(sys.argv[2])
out = {}

def work():
    model = vgg_small(in_channels=1, input_size=28, rng=np.random.default_rng(0))
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    with thread_limit(1):
        for i in range(warmup + steps):
            if i == warmup:
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            _, dlogits = softmax_cross_entropy(model.forward(x), y)
            model.backward(dlogits)
            opt.step(model.gradients())
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(minflt=r1.ru_minflt - r0.ru_minflt, user=r1.ru_utime - r0.ru_utime,
               sys=r1.ru_stime - r0.ru_stime, wall=time.perf_counter() - t0,
               max_rss_mb=r1.ru_maxrss / 1024)

thread = threading.Thread(target=work)
thread.start()
thread.join()
print(json.dumps(out))
"""


def trial(retain: bool, steps: int, warmup: int) -> dict:
    env = {**os.environ, "REFIMPL_RETAIN_MEMORY": "1" if retain else "0"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(warmup)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed training steps per trial")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (numba compilation)")
    p.add_argument("--trials", type=int, default=2, help="trials per setting, alternating")
    args = p.parse_args(argv)
    rows = {False: [], True: []}
    for _ in range(args.trials):
        for retain in (False, True):
            r = trial(retain, args.steps, args.warmup)
            rows[retain].append(r)
            print(f"REFIMPL_RETAIN_MEMORY={int(retain)}: {r['minflt'] / args.steps:9.0f} faults/step  "
                  f"user {r['user'] / args.steps * 1e3:6.1f} ms  sys {r['sys'] / args.steps * 1e3:6.1f} ms  "
                  f"wall {r['wall'] / args.steps * 1e3:6.1f} ms per step, peak RSS {r['max_rss_mb']:.0f} MB",
                  flush=True)
    cpu = {k: sum(r["user"] + r["sys"] for r in v) for k, v in rows.items()}
    print(f"CPU time with the settings / without: {cpu[True] / cpu[False]:.3f}")


if __name__ == "__main__":
    main()
