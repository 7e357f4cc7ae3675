"""refimpl.testing.torch_twin: the PyTorch twin computes what the refimpl network computes."""

import numpy as np
import pytest

from refimpl.models import lenet5, resnet_small, vgg_small
from refimpl.nn import Module
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.testing.torch_twin import torch_twin


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("build, shape", [
    (lambda: lenet5(dtype=np.float64), (4, 1, 28, 28)),
    (lambda: vgg_small(in_channels=1, input_size=16, width=4, dropout=0.0, dtype=np.float64), (4, 1, 16, 16)),
    (lambda: resnet_small(depth=8, width=4, in_channels=2, input_size=12, dtype=np.float64), (4, 2, 12, 12)),
])
def test_twin_matches_forward_and_gradients(torch, rng, build, shape, training):
    model = build()
    model.train(training)
    if not training:  # make the running statistics non-trivial before evaluating with them
        for name, buffer in model.state_dict().items():
            if name.endswith("running_var"):
                buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)
    twin = torch_twin(model, dtype="float64")
    assert twin.training == training
    x = rng.standard_normal(shape)
    y = rng.integers(0, 10, shape[0])
    logits = model.forward(x)
    tlogits = twin(torch.tensor(x))
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-10, atol=1e-10)
    if not training:
        return  # refimpl's layers keep no backward state in eval mode
    _, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    torch.nn.functional.cross_entropy(tlogits, torch.tensor(y)).backward()
    tgrads = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    assert set(tgrads) == set(model.gradients())
    for name, grad in model.gradients().items():
        np.testing.assert_allclose(grad, tgrads[name], rtol=1e-9, atol=1e-10, err_msg=name)


def test_a_layer_without_twin_is_named(torch):
    class Odd(Module):
        pass

    with pytest.raises(TypeError, match="Odd"):
        torch_twin(Odd())


def test_the_pytorch_peer_of_a_dense_recipe_trains(torch, tmp_path):
    # paper_repro/torch_peer_dense.py on a tiny digits recipe: it runs the config's schedule and learns
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "paper_repro" / "torch_peer_dense.py"
    spec = importlib.util.spec_from_file_location("torch_peer_dense", script)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    config = tmp_path / "dense.toml"
    config.write_text('name = "peer"\nmethod = "none"\nseed = 0\nthreads = 1\n'
                      '[data]\nname = "digits"\nval_fraction = 0.1\n[model]\nname = "lenet5"\n'
                      '[pretrain]\nepochs = 3\nbatch_size = 32\noptimizer = "sgd"\nlr = 0.05\n'
                      'momentum = 0.9\nschedule = "cosine"\n')
    result = peer.main(["--config", str(config), "--output", str(tmp_path / "peer.json")])
    history = result["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[0]["lr"] == 0.05 and history[2]["lr"] < history[1]["lr"] < 0.05  # the cosine schedule
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result["final_test_accuracy"] > 0.8  # digits: a trained LeNet-5, not chance (0.1)
    assert (tmp_path / "peer.json").is_file()
