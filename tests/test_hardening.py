"""Issue 14, hardening: no crash, no silent wrong result, one clear line for every bad input.

One section per item of the issue; each test failed on the code before the fix. The sparse kernels' fuzz
(malformed formats, in a child process) is tests/test_sparse_fuzz.py.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import struct
import warnings

import numpy as np
import pytest

import refimpl.projections as P
from refimpl import _validation
from refimpl.cli import main
from refimpl.data import CorruptDatasetError, load_dataset, parse_idx
from refimpl.nn import Linear, conv2d_forward, linear_backward, linear_forward, maxpool2d_forward
from refimpl.nn._kernels import im2col
from refimpl.projections.unify import unification_costs
from refimpl.sparse import BSRMatrix, CSRMatrix, csr_spmm, spmm
from refimpl.sparse import compile as sparse_compile
from refimpl.threads import available_cpus, thread_limit

# --------------------------------------------------------------------------------------------------------
# Crashes: sparse matrices are valid by construction and own frozen copies of their arrays
# --------------------------------------------------------------------------------------------------------


def test_issue_sparse_reproduction_is_a_value_error():
    # Was: exit 139 (segfault) in csr_spmm.
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\) \(columns\), found 100000000"):
        CSRMatrix((3, 4), np.ones(3), np.array([0, 1, 10**8], np.int32), np.array([0, 1, 2, 3], np.int32))


def test_sparse_matrix_ignores_later_changes_to_the_callers_arrays():
    data, indices, indptr = np.ones(3), np.array([0, 1, 3], np.int32), np.array([0, 1, 2, 3], np.int32)
    a = CSRMatrix((3, 4), data, indices, indptr)
    indices[:] = 10**8  # was: the matrix was a view of these arrays, so this reached the kernel
    indptr[1] = 3
    data[:] = np.nan
    x = np.arange(8.0).reshape(4, 2)
    expected = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]) @ x
    for engine in ("numba", "numpy", "scipy"):
        np.testing.assert_array_equal(csr_spmm(a, x, engine=engine), expected)


@pytest.mark.parametrize("field", ["data", "indices", "indptr"])
def test_sparse_matrix_arrays_cannot_be_made_writable_again(field):
    a = BSRMatrix.from_dense(np.arange(12.0).reshape(3, 4), block_shape=(2, 2))
    arr = getattr(a, field)
    with pytest.raises(ValueError):
        arr[...] = 0
    with pytest.raises(ValueError):  # was: a read-only *view* of a writable array, flag switchable back on
        arr.flags.writeable = True


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda a: pickle.loads(pickle.dumps(a))])
def test_sparse_matrix_copies_are_validated_and_frozen(clone):
    for a in (CSRMatrix.from_dense(np.eye(3)), BSRMatrix.from_dense(np.eye(5), block_shape=(2, 2))):
        b = clone(a)
        np.testing.assert_array_equal(b.toarray(), a.toarray())
        assert not b.indices.flags.writeable and not b.data.flags.writeable


def test_sparse_matrix_converts_big_endian_and_refuses_unsigned_indices():
    a = CSRMatrix((1, 3), np.array([2.0], ">f8"), np.array([1], ">i4"), np.array([0, 1], ">i4"))
    assert a.data.dtype == np.float64 and a.indices.dtype == np.int32 and a.indices.dtype.isnative
    np.testing.assert_array_equal(spmm(a, np.ones((3, 2))), [[2.0, 2.0]])
    with pytest.raises(ValueError, match="indices must be int32 or int64, got dtype uint32"):
        CSRMatrix((1, 3), np.ones(1), np.array([1], np.uint32), np.array([0, 1], np.uint32))


# --------------------------------------------------------------------------------------------------------
# Silent wrong results
# --------------------------------------------------------------------------------------------------------

W = np.arange(1.0, 17.0).reshape(4, 4)
PROJECTIONS = {
    "unstructured": lambda w: P.project_unstructured(w, sparsity=0.5),
    "unstructured_global": lambda w: P.project_unstructured_global({"a": w}, sparsity=0.5),
    "filters": lambda w: P.project_filters(w, sparsity=0.5),
    "channels": lambda w: P.project_channels(w, sparsity=0.5),
    "kernels": lambda w: P.project_kernels(w, sparsity=0.5),
    "shapes": lambda w: P.project_shapes(w, sparsity=0.5),
    "blocks": lambda w: P.project_blocks(w, (2, 2), sparsity=0.5),
    "nm": lambda w: P.project_nm(w, 2, 4),
    "balanced": lambda w: P.project_balanced(w, 2, sparsity=0.5),
    "vector_block": lambda w: P.project_vector_block(w, 2, (2, 2), vector_sparsity=0.5, block_sparsity=0.5),
    "unified": lambda w: P.project_unified(w, (2, 2), sparsity=0.5),
}


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_projections_reject_complex_input(name):
    # Was: a ComplexWarning and the imaginary part silently dropped.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=r"must be a real array, got dtype complex128"):
            PROJECTIONS[name](W + 1j)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_projections_reject_integers_that_float64_would_round(name):
    w = W.astype(np.int64)
    w[0, 0] = 2**53 + 1  # was: silently 2**53
    match = r"holds the integer 9007199254740993, which float64 cannot represent"
    with pytest.raises(ValueError, match=match):
        PROJECTIONS[name](w)


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**60, 7])
def test_integers_that_float64_holds_exactly_are_accepted(value):
    w = W.astype(np.int64)
    w[0, 0] = value
    z = P.project_unstructured(w, keep=16)
    assert z.dtype == np.float64 and int(z[0, 0]) == value


@pytest.mark.parametrize("arr", [np.array([2**63 - 1]), np.array([2**64 - 1], np.uint64),
                                 np.array([-(2**63) + 1])])
def test_extreme_integers_are_refused_not_wrapped(arr):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value in cast" either
        with pytest.raises(ValueError, match="float64 cannot represent exactly"):
            _validation.as_float_array(arr, "w")


@pytest.mark.parametrize(("args", "match"), [
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones(1)), r"b must have shape \(4,\)"),  # was: broadcast
    ((np.ones((2, 2, 3)), np.ones((4, 3)), None), "x must have 2 dimensions"),  # was: batched silently
    ((np.ones((2, 5)), np.ones((4, 3)), None), r"x must have shape \(N, 3\)"),
    ((np.ones((2, 3)), np.ones((4, 3, 1)), None), "w must have 2 dimensions"),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 1))), "b must have 1 dimensions"),
])
def test_linear_forward_checks_shapes_like_linear(args, match):
    with pytest.raises(ValueError, match=match):
        linear_forward(*args)


def test_linear_forward_and_backward_check_dtypes_and_gradient_shape():
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        linear_forward(np.ones((2, 3), np.int64), np.ones((4, 3)), None)
    _, cache = linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 4\)"):
        linear_backward(np.ones((2, 5)), cache)


def test_threads_above_the_cpu_count_are_capped_with_a_warning():
    import numba
    from threadpoolctl import threadpool_info

    cpus = available_cpus()
    with pytest.warns(RuntimeWarning, match=f"threads=100000 is more than the {cpus} CPUs available"):
        with thread_limit(100000):
            assert numba.get_num_threads() <= cpus
            blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
            assert all(n <= cpus for n in blas)  # was: OpenBLAS started 64 threads on 2 cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with thread_limit(cpus):  # no warning at the CPU count
            pass


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_load_dataset_refuses_dtypes_the_layers_cannot_use(dtype):
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        load_dataset("digits", dtype=dtype)


def test_load_dataset_gives_native_arrays_for_a_big_endian_dtype():
    ds = load_dataset("digits", dtype=">f4")
    assert ds.x_train.dtype == np.float32 and ds.x_train.dtype.isnative


@pytest.mark.parametrize("dtype", ["f2", "g"])
def test_layers_refuse_float16_and_long_double_in_one_line(dtype):
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    x = np.ones((1, 1, 6, 6), dtype)
    match = f"x must be a float32 or float64 array .* got dtype {np.dtype(dtype)}"
    with pytest.raises(TypeError, match=match):
        conv2d_forward(x, np.ones((2, 1, 3, 3), np.float32), None)  # was: a 36-frame numba traceback
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        maxpool2d_forward(x, 2)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_layers_convert_big_endian_input(engine):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    expected, _ = conv2d_forward(x, w, None, padding=1, engine=engine)
    out, _ = conv2d_forward(x.astype(">f8"), w.astype(">f8"), None, padding=1, engine=engine)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(maxpool2d_forward(x.astype(">f8"), 2, engine=engine)[0],
                                  maxpool2d_forward(x, 2, engine=engine)[0])


def test_idx_header_sizes_are_multiplied_in_python_integers():
    # 65536**4 = 2**64 wraps to 0 in int64: the old check passed and numpy's reshape failed.
    header = bytes([0, 0, 8, 4]) + struct.pack(">4I", *([65536] * 4))
    with pytest.raises(CorruptDatasetError, match=r"header says shape .* \(18446744073709551616 bytes\), "
                                                   r"file holds 0"):
        parse_idx(header)
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", *([2**32 - 1] * 3))
    with pytest.raises(CorruptDatasetError, match=f"\\({(2**32 - 1) ** 3} bytes\\), file holds 3"):
        parse_idx(header + b"abc")


def test_conv2d_forward_refuses_unallocatable_padding_before_allocating(monkeypatch):
    calls = []
    monkeypatch.setattr(np, "pad", lambda *a, **k: calls.append(a))  # nothing may be allocated
    with pytest.raises(ValueError, match=r"padding 1000000 needs .* TiB of buffers .* more than this "
                                         r"machine's .* of memory"):
        conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), None, padding=10**6)
    with pytest.raises(ValueError, match="padding 1000000 needs"):
        im2col(np.ones((1, 1, 4, 4)), 2, 2, padding=10**6)
    assert calls == []


def test_layers_too_large_for_memory_are_refused():
    with pytest.raises(ValueError, match=r"initial weights of shape \(1000000, 1000000\) needs"):
        Linear(10**6, 10**6)


def test_reasonable_sizes_pass_the_allocation_check():
    _validation.check_allocation([(1000, 1000)], np.float64, "a test")  # 8 MB
    out, _ = conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), None, padding=3)
    assert out.shape == (1, 1, 9, 9)


# --------------------------------------------------------------------------------------------------------
# Clear errors: the layers' argument checks, the same weight check everywhere
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((0, 3), {}, ValueError, "in_features must be >= 1, got 0"),
    ((-1, 3), {}, ValueError, "in_features must be >= 1, got -1"),
    ((2.7, 3), {}, TypeError, "in_features must be an integer, got 2.7"),
    (([2], 3), {}, TypeError, r"in_features must be an integer, got \[2\]"),
    ((2, 0), {}, ValueError, "out_features must be >= 1, got 0"),
    ((2, 3), {"bias": "yes"}, TypeError, "bias must be a bool"),
    ((2, 3), {"rng": 0}, TypeError, "rng must be a numpy.random.Generator"),
])
def test_linear_checks_its_arguments_like_conv2d(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        Linear(*args, **kwargs)


def test_linear_accepts_list_input_and_refuses_a_wrong_width():
    layer = Linear(2, 3, dtype=np.float64)
    np.testing.assert_array_equal(layer.forward([[1.0, 2.0]]), layer.forward(np.array([[1.0, 2.0]])))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        layer.forward([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("name", sorted(set(PROJECTIONS) - {"unstructured", "unstructured_global"}))
def test_every_structured_projection_refuses_an_empty_weight_alike(name):
    # project_unified used numpy's "cannot reshape array of size 0" message.
    with pytest.raises(ValueError, match=r"^w must not have a zero-length axis, got shape \(0, 4\)$"):
        PROJECTIONS[name](np.ones((0, 4)))


# --------------------------------------------------------------------------------------------------------
# One validator per argument
# --------------------------------------------------------------------------------------------------------

BLOCK_SHAPE_USERS = {
    "project_blocks": lambda bs: P.project_blocks(W, bs, sparsity=0.5),
    "mask_blocks": lambda bs: P.mask_blocks(W, bs, sparsity=0.5),
    "project_vector_block": lambda bs: P.project_vector_block(W, 2, bs, vector_sparsity=0.5,
                                                              block_sparsity=0.5),
    "project_unified": lambda bs: P.project_unified(W, bs, sparsity=0.5),
    "unification_costs": lambda bs: unification_costs(W, bs),
    "BSRMatrix.from_dense": lambda bs: BSRMatrix.from_dense(W, block_shape=bs),
    "BSRMatrix": lambda bs: BSRMatrix((4, 4), np.zeros((0, 2, 2)), np.zeros(0, np.int32),
                                      np.zeros(3, np.int32), bs),
    "sparse.compile": lambda bs: sparse_compile(Linear(4, 4), "bsr", block_shape=bs, input_shape=(4,)),
}


def _error(call):
    try:
        call()
    except (ValueError, TypeError) as err:
        return type(err), str(err)
    raise AssertionError("no error")


@pytest.mark.parametrize("bad", [np.array([2, 2]), (2,), (2, 2, 2), "22", (0, 2), (2, -1), (2, 1.5),
                                 (True, 2), None])
def test_a_bad_block_shape_gets_the_same_message_everywhere(bad):
    # Was: four validators; project_blocks accepted an ndarray, project_unified said "must lie in [1, rows]".
    errors = {name: _error(lambda call=call: call(bad)) for name, call in BLOCK_SHAPE_USERS.items()}
    assert len(set(errors.values())) == 1, errors


def test_a_block_larger_than_the_weight_gets_the_same_message_in_every_projection():
    names = ["project_blocks", "mask_blocks", "project_vector_block", "project_unified", "unification_costs"]
    errors = {name: _error(lambda name=name: BLOCK_SHAPE_USERS[name]((5, 2))) for name in names}
    assert len(set(errors.values())) == 1, errors
    assert errors["project_blocks"][1].startswith("block_shape must satisfy 1 <= bh <= 4 and 1 <= bw <= 4")


def test_a_bad_engine_gets_the_same_message_everywhere():
    dense_engine_users = [
        lambda: P.project_filters(W, sparsity=0.5, engine="cuda"),
        lambda: P.project_unified(W, (2, 2), sparsity=0.5, engine="cuda"),
        lambda: conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), None, engine="cuda"),
        lambda: maxpool2d_forward(np.ones((1, 1, 4, 4)), 2, engine="cuda"),
    ]
    assert len({_error(call) for call in dense_engine_users}) == 1
    sparse_engine_users = [
        lambda: spmm(CSRMatrix.from_dense(np.eye(2)), np.ones((2, 1)), engine="cuda"),
        lambda: sparse_compile(Linear(4, 4), "csr", engine="cuda", input_shape=(4,)),
    ]
    assert len({_error(call) for call in sparse_engine_users}) == 1


def test_one_helper_each():
    import refimpl.nn._kernels as nn_kernels
    import refimpl.projections._select as select
    import refimpl.projections.groups as groups
    import refimpl.sparse.kernels as sparse_kernels
    import refimpl.sparse.layers as sparse_layers

    assert nn_kernels.check_engine is select.check_engine is _validation.check_engine
    assert groups.as_weight is _validation.as_weight
    assert sparse_kernels.ENGINES == sparse_layers.ENGINES == _validation.SPARSE_ENGINES
    assert nn_kernels.ENGINES == select.ENGINES == _validation.ENGINES


# --------------------------------------------------------------------------------------------------------
# Clear errors: the command line
# --------------------------------------------------------------------------------------------------------


def _train_argv(out, *extra):
    return ["train", "--dataset", "digits", "--model", "lenet300_100", "--limit-train", "200",
            "--epochs", "2", "--out", str(out), "--no-progress", *extra]


def _one_error_line(capsys, command="train"):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"refimpl {command}: error: "), err
    return err


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """A run directory whose pretrain phase stopped after epoch 1 of 2 (its checkpoint is on disk)."""
    from refimpl.train import Trainer

    class Interrupted(Exception):
        pass

    original = Trainer._run_epoch

    def crash_after_one_epoch(self, epoch):
        original(self, epoch)
        if self.epoch == 1:
            raise Interrupted

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_run_epoch", crash_after_one_epoch)
        with pytest.raises(Interrupted):
            main(_train_argv(out, "--debug"))
    assert (out / "pretrain" / "checkpoint.npz").is_file()
    return out


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _replace_by_directory(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("corrupt", [_truncate, _flip_a_byte, lambda p: p.write_bytes(b""),
                                     lambda p: p.write_bytes(b"not a zip" * 50), _replace_by_directory])
def test_a_corrupt_checkpoint_is_one_line_saying_what_to_do(interrupted_run, corrupt, capsys):
    checkpoint = interrupted_run / "pretrain" / "checkpoint.npz"
    corrupt(checkpoint)
    capsys.readouterr()
    assert main(_train_argv(interrupted_run, "--resume")) == 1  # was: a 20-52 line traceback
    err = _one_error_line(capsys)
    assert f"checkpoint {checkpoint} is corrupt (" in err
    assert err.endswith("delete it to restart this phase from its first epoch, or restore it")


def test_debug_shows_the_traceback(interrupted_run, capsys):
    from refimpl.train.checkpoint import CheckpointError

    _truncate(interrupted_run / "pretrain" / "checkpoint.npz")
    with pytest.raises(CheckpointError, match="is corrupt"):
        main(_train_argv(interrupted_run, "--resume", "--debug"))
    with pytest.raises(CheckpointError, match="is corrupt"):
        main(["--debug", *_train_argv(interrupted_run, "--resume")])


def test_deleting_the_corrupt_checkpoint_restarts_the_phase(interrupted_run, capsys):
    checkpoint = interrupted_run / "pretrain" / "checkpoint.npz"
    _truncate(checkpoint)
    checkpoint.unlink()  # what the message says to do
    assert main(_train_argv(interrupted_run, "--resume")) == 0
    log = (interrupted_run / "pretrain" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [0, 1]


def test_a_corrupt_output_of_a_finished_phase_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_argv(out)) == 0
    state = json.loads((out / "state.json").read_text())
    state["finished"] = False  # an interrupted run after pretrain, e.g. a killed compaction
    (out / "state.json").write_text(json.dumps(state))
    _truncate(out / "pretrain" / "model.npz")
    capsys.readouterr()
    assert main(_train_argv(out, "--resume")) == 1
    err = _one_error_line(capsys)
    assert "pretrain/model.npz is corrupt or unreadable" in err and "restore it" in err


def test_out_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(_train_argv(tmp_path / "file" / "run")) == 1
    err = _one_error_line(capsys)
    assert "Not a directory" in err and str(tmp_path / "file") in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_under_an_unwritable_directory_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert main(_train_argv(locked / "run")) == 1
        err = _one_error_line(capsys)
        assert "Permission denied" in err and "choose another --out" in err
    finally:
        locked.chmod(0o700)


def test_out_under_a_missing_unwritable_path_is_one_line(capsys):
    assert main(_train_argv("/proc/refimpl-no-such-dir/run")) == 1
    assert "/proc/refimpl-no-such-dir" in _one_error_line(capsys)


@pytest.mark.parametrize("name", ["run.lock", "pretrain/checkpoint.npz"])
def test_a_directory_named_like_a_refimpl_file_is_one_line(tmp_path, capsys, name):
    out = tmp_path / "run"
    if name == "run.lock":
        (out / name).mkdir(parents=True)  # was: IsADirectoryError traceback
        assert main(_train_argv(out)) == 1
        assert "Is a directory" in _one_error_line(capsys)
    else:
        assert main(_train_argv(out)) == 0
        checkpoint = out / name
        _replace_by_directory(checkpoint)
        state = json.loads((out / "state.json").read_text())
        state["finished"], state["phases"] = False, {}
        (out / "state.json").write_text(json.dumps(state))
        capsys.readouterr()
        assert main(_train_argv(out, "--resume")) == 1  # was: trained afresh, then crashed saving
        assert "not a regular file" in _one_error_line(capsys)


def test_an_internal_error_is_one_line_that_says_it_is_a_bug(tmp_path, monkeypatch, capsys):
    import refimpl.engine

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr(refimpl.engine, "run_experiment", broken)
    assert main(_train_argv(tmp_path / "run")) == 1
    err = _one_error_line(capsys)
    assert "internal error: AttributeError:" in err and "rerun with --debug" in err
    with pytest.raises(AttributeError):
        main(_train_argv(tmp_path / "run", "--debug"))


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    import refimpl.engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(refimpl.engine, "run_experiment", interrupted)
    assert main(_train_argv(tmp_path / "run")) == 130
    assert capsys.readouterr().err.strip() == "refimpl train: interrupted"
