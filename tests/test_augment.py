"""Data augmentation (refimpl.train.augment): the shift and the flip by their definition, reproducible
draws, the trainer applying it to training batches only and resuming an augmented run exactly."""

import numpy as np
import pytest

from refimpl.config import load_config
from refimpl.models import lenet5
from refimpl.train import SGD, Trainer
from refimpl.train.augment import RandomShiftFlip, make_augmentation


def _shift_by_definition(image, dh, dw):
    c, h, w = image.shape
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            if 0 <= i + dh < h and 0 <= j + dw < w:
                out[:, i, j] = image[:, i + dh, j + dw]
    return out


@pytest.mark.parametrize("pad, flip", [(0, True), (2, False), (3, True)])
def test_each_image_is_shifted_and_mirrored_by_the_drawn_amounts(rng, pad, flip):
    x = rng.standard_normal((9, 2, 5, 6)).astype(np.float32)
    before = x.copy()
    seed = 123
    out = RandomShiftFlip(pad, flip)(x, np.random.default_rng(seed))
    np.testing.assert_array_equal(x, before)  # the input is not modified
    assert out.shape == x.shape and out.dtype == x.dtype
    draws = np.random.default_rng(seed)  # the documented order of the draws
    shifts = draws.integers(-pad, pad + 1, size=(9, 2)) if pad else np.zeros((9, 2), int)
    flips = draws.random(9) < 0.5 if flip else np.zeros(9, bool)
    for k in range(9):
        expected = _shift_by_definition(x[k], *shifts[k])
        np.testing.assert_array_equal(out[k], expected[:, :, ::-1] if flips[k] else expected)
    if pad:
        assert np.abs(shifts).max() <= pad and len({tuple(s) for s in shifts}) > 1


def test_no_pad_no_flip_is_the_identity(rng):
    x = rng.standard_normal((4, 1, 3, 3))
    np.testing.assert_array_equal(RandomShiftFlip(0, False)(x, rng), x)


def test_bad_arguments_are_named(rng):
    with pytest.raises(ValueError, match="pad"):
        RandomShiftFlip(-1)
    with pytest.raises(TypeError, match="flip"):
        RandomShiftFlip(2, flip="yes")
    with pytest.raises(ValueError, match="x must be a batch"):
        RandomShiftFlip()(np.zeros((3, 4)), rng)
    with pytest.raises(TypeError, match="rng"):
        RandomShiftFlip()(np.zeros((1, 1, 3, 3)), 0)
    with pytest.raises(ValueError, match="augment must be one of"):
        make_augmentation("rotate")
    assert make_augmentation("none") is None
    assert repr(make_augmentation("crop", 3)) == "RandomShiftFlip(pad=3, flip=False)"


def _trainer(data, out_dir=None, epochs=2, augment=None):
    model = lenet5(input_size=8, rng=np.random.default_rng(0))
    return Trainer(model, SGD(model.parameters(), lr=0.05, momentum=0.9), data, batch_size=16,
                   epochs=epochs, seed=3, out_dir=out_dir, progress=False, augment=augment)


def _digits(rng):
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    return x, (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64)


def test_the_trainer_augments_training_batches_and_resumes_exactly(rng, tmp_path):
    data = _digits(rng)
    seen = []

    def recording(x, r):
        seen.append(x.shape)
        return RandomShiftFlip(1, True)(x, r)

    plain, augmented = _trainer(data), _trainer(data, augment=RandomShiftFlip(1, True))
    plain.fit()
    augmented.fit()
    assert not np.array_equal(plain.model.parameters()["conv1.weight"],
                              augmented.model.parameters()["conv1.weight"])
    counting = _trainer(data, augment=recording)
    counting.fit()
    assert len(seen) == 2 * 4 and all(s[0] == 16 for s in seen)  # every training batch, no evaluation

    # one run of 2 epochs against 1 epoch, checkpoint, a new trainer, resume: the same weights, bit for bit
    whole = _trainer(data, epochs=2, augment=RandomShiftFlip(1, True))
    whole.fit()
    first = _trainer(data, tmp_path / "run", epochs=1, augment=RandomShiftFlip(1, True))
    first.fit()
    second = _trainer(data, tmp_path / "run", epochs=2, augment=RandomShiftFlip(1, True))
    second.fit(resume=True)
    for name, value in whole.model.parameters().items():
        np.testing.assert_array_equal(second.model.parameters()[name], value, err_msg=name)
    # resuming with another augmentation is refused
    other = _trainer(data, tmp_path / "run", epochs=3, augment=RandomShiftFlip(2, True))
    with pytest.raises(ValueError, match="augment"):
        other.fit(resume=True)


def test_configs_name_the_augmentation(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('method = "none"\n[pretrain]\naugment = "crop_flip"\naugment_pad = 3\n')
    config = load_config(path)
    assert (config.pretrain.augment, config.pretrain.augment_pad) == ("crop_flip", 3)
    path.write_text('method = "none"\n[pretrain]\naugment = "rotate"\n')
    with pytest.raises(ValueError, match="pretrain.augment"):
        load_config(path)
