"""The unified-block format and its SpMM (issue 11): products against dense, the validator, a fuzz."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refimpl.metrics import weight_storage
from refimpl.projections import project_unified
from refimpl.sparse.unified import UnifiedBlockMatrix, check_unified, unified_spmm

BLOCK_SHAPES = [(1, 4), (2, 3), (4, 4), (3, 1)]


def unified_weight(m, k, block_shape, seed=0, dtype=np.float64, unify=0.5, prune=0.25):
    w = np.random.default_rng(seed).standard_normal((m, k)).astype(dtype)
    return project_unified(w, block_shape, unify=unify, prune=prune)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("block_shape", BLOCK_SHAPES)
@pytest.mark.parametrize(("m", "k"), [(12, 16), (13, 17), (5, 3), (1, 1)])
def test_product_equals_dense(engine, block_shape, m, k):
    if block_shape[0] > m or block_shape[1] > k:
        w = np.random.default_rng(1).standard_normal((m, k))
    else:
        w = unified_weight(m, k, block_shape)
    a = UnifiedBlockMatrix.from_dense(w, block_shape=block_shape)
    np.testing.assert_array_equal(a.toarray(), w)
    x = np.random.default_rng(2).standard_normal((k, 37))
    np.testing.assert_allclose(unified_spmm(a, x, engine=engine, tile=8), w @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(unified_spmm(a, x[:, 0], engine=engine), w @ x[:, 0], rtol=1e-12, atol=1e-12)


def test_blocks_are_classified_like_the_storage_accounting():
    w = unified_weight(40, 48, (4, 4), unify=0.6, prune=0.2)
    a = UnifiedBlockMatrix.from_dense(w, block_shape=(4, 4))
    s = weight_storage(w, (4, 4))
    assert (a.n_unified, a.n_free) == (s["unified_blocks"], s["free_blocks"])
    assert a.n_unified == round(0.6 * 120) and a.n_free == 120 - 72 - 24
    assert np.all(a.magnitudes > 0)


def test_float32_and_mixed_dtypes():
    w = unified_weight(16, 24, (2, 4), dtype=np.float32)
    a = UnifiedBlockMatrix.from_dense(w, block_shape=(2, 4))
    assert a.dtype == np.float32
    x32 = np.random.default_rng(3).standard_normal((24, 9)).astype(np.float32)
    y = unified_spmm(a, x32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, w @ x32, rtol=1e-5, atol=1e-5)
    assert unified_spmm(a, x32.astype(np.float64)).dtype == np.float64
    assert unified_spmm(a, np.ones((24, 2), dtype=np.int64)).dtype == np.float64


def test_mask_and_storage_is_smaller_than_bsr():
    from refimpl.sparse import BSRMatrix

    w = unified_weight(64, 64, (4, 4), unify=0.7, prune=0.2)
    mask = np.ones_like(w, dtype=bool)
    mask[:4] = False
    a = UnifiedBlockMatrix.from_dense(w, mask, block_shape=(4, 4))
    np.testing.assert_array_equal(a.toarray(), np.where(mask, w, 0))
    b = BSRMatrix.from_dense(np.where(mask, w, 0), block_shape=(4, 4))
    assert a.nbytes < b.data.nbytes + b.indices.nbytes + b.indptr.nbytes


def valid_arrays(a):
    return {
        "shape": a.shape,
        "block_shape": a.block_shape,
        **{
            n: np.array(getattr(a, n))
            for n in ("magnitudes", "signs", "indices", "indptr", "free_data", "free_indices", "free_indptr")
        },
    }


def base():
    w = np.array([[0.5, -0.5, 1.0, 2.0, 0.0], [-0.5, 0.5, 3.0, 4.0, 0.0], [1.0, 1.0, 0.0, 0.0, 7.0]])
    return valid_arrays(UnifiedBlockMatrix.from_dense(w, block_shape=(2, 2)))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"magnitudes": np.array([0.5, np.nan])}, "magnitudes contains NaN"),
        ({"magnitudes": np.array([1, 1])}, "magnitudes must be a 1-D float32 or float64"),
        ({"signs": np.zeros((2, 2), np.uint8)}, "signs must be uint8 of shape"),
        ({"signs": np.array([[96], [1]], np.uint8)}, "signs: the bits of padding"),
        ({"indices": np.array([0, 5], np.int32)}, r"indices must lie in \[0, 3\)"),
        ({"free_indices": np.array([1, 0], np.int32)}, "free_indices must lie|free_.*stored both|free_"),
        ({"indptr": np.array([0, 2, 1], np.int32)}, "indptr"),
        ({"free_data": np.ones((2, 2, 2))}, "free_data: padding entries|stored both"),
        ({"free_data": np.ones((2, 2, 2), np.float32)}, "free_data must have the dtype of magnitudes"),
        ({"block_shape": (2, 0)}, "block_shape"),
        ({"shape": (3, -1)}, "shape must hold two non-negative integers"),
    ],
)
def test_malformed_matrices_are_value_errors(change, match):
    with pytest.raises(ValueError, match=match):
        UnifiedBlockMatrix(**{**base(), **change})


def test_a_block_both_free_and_unified_is_refused():
    arrays = base()
    arrays["free_indices"] = np.array([0, 2], np.int32)  # block (0, 0) is the unified one
    with pytest.raises(ValueError, match=r"block \(0, 0\) is stored both as unified"):
        UnifiedBlockMatrix(**arrays)


def test_bad_arguments_of_the_product():
    a = UnifiedBlockMatrix(**base())
    with pytest.raises(TypeError, match="a must be a UnifiedBlockMatrix"):
        unified_spmm(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="engine"):
        unified_spmm(a, np.ones(5), engine="scipy")
    with pytest.raises(ValueError, match=r"x must have 5 rows \(the columns of a, shape \(3, 5\)\)"):
        unified_spmm(a, np.ones(4))
    with pytest.raises(ValueError, match=r"x must have 1 or 2 dimensions"):
        unified_spmm(a, np.ones((5, 1, 1)))
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        unified_spmm(a, np.ones(5, complex))
    with pytest.raises(ValueError, match="tile must be a positive integer"):
        unified_spmm(a, np.ones(5), tile=0)
    with pytest.raises(TypeError, match="a must be a UnifiedBlockMatrix"):
        check_unified("a")


def test_frozen_copies():
    arrays = base()
    a = UnifiedBlockMatrix(**arrays)
    arrays["indices"][0] = 10**8  # the caller's array changes afterwards: the matrix does not
    assert a.indices[0] == 0 and not a.indices.flags.writeable


MUTATIONS = ("index", "indptr", "swap", "magnitude", "sign", "free_value", "truncate", "dtype", "block_shape")
#: Integer values a mutation writes into an index array: negative, zero, in range, past the end, huge.
BAD_INTEGERS = (-1, -(2**31), 0, 1, 7, 255, 10**6)


@st.composite
def malformed(draw):
    m, k = draw(st.integers(1, 7)), draw(st.integers(1, 9))
    block_shape = draw(st.sampled_from([(1, 2), (2, 2), (2, 3), (3, 1)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((m, k))
    if block_shape[0] <= m and block_shape[1] <= k:
        w = project_unified(
            w,
            block_shape,
            unify=draw(st.sampled_from([0.0, 0.5, 0.75])),
            prune=draw(st.sampled_from([0.0, 0.25])),
        )
    arrays = valid_arrays(UnifiedBlockMatrix.from_dense(w, block_shape=block_shape))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        name = draw(
            st.sampled_from(
                ["magnitudes", "signs", "indices", "indptr", "free_data", "free_indices", "free_indptr"]
            )
        )
        arr = arrays[name]
        if mutation == "truncate" and arr.size:
            arrays[name] = arr.reshape(-1)[:-1] if arr.ndim == 1 else arr[:-1]
        elif mutation == "dtype":
            with np.errstate(invalid="ignore"):  # a float array cast to an integer type may hold NaN
                arrays[name] = arr.astype(
                    draw(st.sampled_from(["int16", "int64", "float32", "uint8", ">f8"]))
                )
        elif mutation == "block_shape":
            arrays["block_shape"] = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        elif arr.size:
            flat = arr.reshape(-1).copy()
            i = draw(st.integers(0, flat.size - 1))
            if mutation == "swap" and flat.size > 1:
                flat[[i, i - 1]] = flat[[i - 1, i]]
            elif np.issubdtype(flat.dtype, np.integer):
                info = np.iinfo(flat.dtype)  # negative values stay negative where the dtype holds them
                flat[i] = min(max(draw(st.sampled_from(BAD_INTEGERS)), info.min), info.max)
            else:
                flat[i] = draw(st.sampled_from([np.nan, np.inf, 0.0, 3.0]))
            arrays[name] = flat.reshape(arr.shape)
    x = rng.standard_normal((k, draw(st.integers(0, 4))))
    return arrays, x


def reference_dense(a) -> np.ndarray:
    """The dense matrix an accepted ``a`` stands for, read block by block from its arrays (not toarray).

    Re-checks what the kernels rely on while reading (pointers, block columns in range, a padded edge
    holds zeros in free blocks and sign bit 0 in unified ones), so a validator gap shows up as a failed
    assertion here rather than as an out-of-bounds read in the kernel.
    """
    (m, k), (bh, bw) = a.shape, a.block_shape
    mb, kb = -(-m // bh), -(-k // bw)
    free = np.zeros((mb * bh, kb * bw))
    signs = np.zeros((mb * bh, kb * bw), dtype=np.uint8)
    unified = np.zeros((mb * bh, kb * bw))
    streams = ((a.indptr, a.indices, a.n_unified), (a.free_indptr, a.free_indices, a.n_free))
    for indptr, indices, count in streams:
        assert len(indptr) == mb + 1 and indptr[0] == 0 and indptr[-1] == count == len(indices)
        assert all(indptr[i] <= indptr[i + 1] for i in range(mb))
    for i in range(mb):
        rows = slice(i * bh, (i + 1) * bh)
        for p in range(a.indptr[i], a.indptr[i + 1]):
            c = int(a.indices[p])
            assert 0 <= c < kb
            bits = np.unpackbits(a.signs[p])[: bh * bw].reshape(bh, bw)
            signs[rows, c * bw : (c + 1) * bw] |= bits
            unified[rows, c * bw : (c + 1) * bw] += a.magnitudes[p] * (1.0 - 2.0 * bits)
        for p in range(a.free_indptr[i], a.free_indptr[i + 1]):
            c = int(a.free_indices[p])
            assert 0 <= c < kb
            free[rows, c * bw : (c + 1) * bw] += a.free_data[p]
    for padded in (free, signs):
        assert not padded[m:].any() and not padded[:, k:].any()
    return (free + unified)[:m, :k]


def fuzz(max_examples: int, log: Path) -> None:
    """Run the fuzz in this process; each case is written to ``log`` before it runs (see the test)."""
    counts: dict[str, int] = {}

    @settings(
        max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(malformed())
    def body(case):
        arrays, x = case
        with np.printoptions(threshold=50):
            log.write_text(repr(case))
        try:
            a = UnifiedBlockMatrix(**arrays)
        except (ValueError, TypeError):
            counts["rejected"] = counts.get("rejected", 0) + 1
            return
        want = reference_dense(a) @ x
        for engine in ("numba", "numpy"):
            np.testing.assert_allclose(
                unified_spmm(a, x, engine=engine, tile=3), want, rtol=1e-12, atol=1e-12
            )
        counts["ok"] = counts.get("ok", 0) + 1

    body()
    print("outcomes:", dict(sorted(counts.items())))


def test_fuzz_malformed_input_is_an_error_or_the_right_product(tmp_path):
    """Malformed arrays: a ValueError/TypeError or the right product, never a crash (in a child process,
    so a segfault fails this test instead of killing pytest; issue 14's rule for every sparse kernel)."""
    examples = {"thorough": 10_000, "dev": 50}.get(os.environ.get("REFIMPL_HYPOTHESIS_PROFILE", "ci"), 300)
    log = tmp_path / "case.txt"
    proc = subprocess.run(
        [sys.executable, __file__, str(examples), str(log)],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=Path(__file__).resolve().parents[1],
    )
    if proc.returncode != 0:
        how = (
            f"killed by signal {signal.Signals(-proc.returncode).name}"
            if proc.returncode < 0
            else f"exit code {proc.returncode}"
        )
        last = log.read_text() if log.exists() else "(none)"
        raise AssertionError(
            f"the fuzz child failed ({how}); last case:\n{last}\nstderr:\n{proc.stderr[-6000:]}"
        )
    outcomes = proc.stdout.strip().splitlines()[-1]
    assert "'ok'" in outcomes and "'rejected'" in outcomes, outcomes  # both outcomes were reached


if __name__ == "__main__":
    fuzz(int(sys.argv[1]), Path(sys.argv[2]))
