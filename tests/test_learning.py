"""End-to-end learning: the trainer, layers and data together reach the accuracy the README promises.

The full Fashion-MNIST recipe (>= 90.5 % in 15 epochs) is `paper_repro/lenet5_fashion_dense.py`; it takes
minutes, so CI runs its `--smoke` version (.ci/run). Digits is small enough to train to the end here.
"""

import numpy as np

from refimpl.data import load_dataset
from refimpl.models import lenet5
from refimpl.threads import thread_limit
from refimpl.train import Adam, Trainer, evaluate


def test_lenet5_reaches_97_percent_on_digits():
    """The demo's dense recipe (Adam 2e-3, batch 64, 20 epochs, seed 0) on the 1,437/360 digits split."""
    data = load_dataset("digits")
    model = lenet5(input_size=8, rng=np.random.default_rng(0))
    trainer = Trainer(model, Adam(model.parameters(), lr=2e-3), (data.x_train, data.y_train),
                      batch_size=64, epochs=20, seed=0, progress=False)
    with thread_limit(1):
        trainer.fit()
        test = evaluate(model, data.x_test, data.y_test)
    assert test["accuracy"] >= 0.97, test
