"""paper_repro/compact_trained.py: compaction of a network with real BatchNorm statistics is lossless."""

import importlib.util
from pathlib import Path

import numpy as np

from refimpl.config import load_config
from refimpl.data import load_dataset
from refimpl.engine.build import build_model_for

SCRIPT = Path(__file__).resolve().parents[1] / "paper_repro" / "compact_trained.py"


def _script():
    spec = importlib.util.spec_from_file_location("compact_trained", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compacting_a_network_with_batchnorm_statistics_keeps_its_outputs(tmp_path, rng):
    config_path = tmp_path / "vgg.toml"
    config_path.write_text('method = "none"\nseed = 0\n[data]\nname = "digits"\n'
                           '[model]\nname = "vgg_small"\noptions = { width = 4 }\n')
    config = load_config(config_path)
    data = load_dataset("digits")
    model = build_model_for(config, data.input_shape, data.num_classes)
    for name, value in model.state_dict().items():  # "trained" statistics and affine parameters
        if name.endswith(("running_mean", "bn1.bias", "bn3.bias")):
            value[...] = rng.normal(0, 0.5, value.shape)
        elif name.endswith(("running_var", "bn2.weight")):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
    weights = tmp_path / "model.npz"
    model.save(weights)
    result = _script().main(["--config", str(config_path), "--weights", str(weights), "--levels", "0.25",
                             "0.5", "--images", "64", "--batch", "16", "--rounds", "1",
                             "--output", str(tmp_path / "out.json")])
    for row in result["rows"]:
        assert row["predictions_agree"]
        assert row["max_abs_logit_difference"] <= 1e-4 * max(1.0, row["largest_logit"])
        assert row["gemm_weights_compact"] < row["gemm_weights_dense"]
        assert row["ideal_speedup"] > 1.0
    assert (tmp_path / "out.json").is_file()
    assert np.isfinite([r["measured_speedup"] for r in result["rows"]]).all()
