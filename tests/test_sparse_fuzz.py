"""Fuzz every SpMM kernel with malformed CSR / BSR / vector ∧ block input: an error or the right product.

A malformed matrix used to reach the numba kernels and read or write out of bounds (issue 14: an index of
``10**8`` crashed the interpreter with a segfault; other cases returned garbage). Now the constructors
establish the full invariant and own frozen copies of the arrays, so the kernels never see a bad matrix.

The fuzz starts from a valid matrix, applies random mutations (out-of-range, negative, unsorted or duplicate
indices; a broken ``indptr``; wrong lengths, dtypes, byte orders, shapes and block shapes; NaN data; nonzero
padding; lists and strided views; the caller's arrays changed after construction; for the vector ∧ block
format also offsets out of range, unsorted or duplicate, and vector lengths that do not divide the block
width), and a random right-hand side and tile. Either construction (or the call) raises
``ValueError``/``TypeError``, or every engine of :func:`spmm`, :func:`csr_spmm` / :func:`bsr_spmm` /
:func:`vector_block_spmm` returns the product of the matrix that an independent, loop-by-loop reading of
its arrays (which re-checks the invariant) defines.

**It runs in a child process**, so that a segfault fails the test (with the crashing case, written to a
log before each example) instead of killing pytest. The child is this file run as a script.
``REFIMPL_HYPOTHESIS_PROFILE`` sets the number of examples (``ci``: 600, ``thorough``: 10,000).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# The block shapes of test_sparse_kernels.py: each is its own compiled numba kernel (cached on disk).
BLOCK_SHAPES = [(1, 4), (2, 3), (4, 4)]
# The vector ∧ block format's vector lengths: divisors of the block widths (V = bw, 1 and a proper one).
VECTOR_SIZES = {4: (1, 2, 4), 3: (1, 3)}

INDEX_MUTATIONS = ("index_value", "index_swap", "index_dup", "indptr_value", "indptr_swap")
ARRAY_MUTATIONS = ("truncate", "extend", "dtype", "data_value", "data_shape", "list", "strided")
MATRIX_MUTATIONS = ("shape", "block_shape", "padding", "mutate_after", "offset_value", "offset_order",
                    "vector_size")
MUTATIONS = INDEX_MUTATIONS + ARRAY_MUTATIONS + MATRIX_MUTATIONS

BAD_INDEX_VALUES = (-1, -2**31, 10**8, 2**31 - 1)
INDEX_DTYPES = ("int16", "uint32", "uint64", "int64", "int32", ">i4", ">i8", "float64", "bool")
DATA_DTYPES = ("int64", "float16", "complex128", ">f8", ">f4", "float32", "float64", "object", "bool")
X_DTYPES = ("float64", "float32", "int64", "float16", ">f8", "complex128", "bool", "object")


# --------------------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------------------


def _valid_arrays(fmt, w, block_shape, vector_size):
    from refimpl.sparse.formats import BSRMatrix, CSRMatrix
    from refimpl.sparse.vector_block import VectorBlockMatrix

    if fmt == "csr":
        a = CSRMatrix.from_dense(w)
    elif fmt == "bsr":
        a = BSRMatrix.from_dense(w, block_shape=block_shape)
    else:
        a = VectorBlockMatrix.from_dense(w, block_shape=block_shape, vector_size=vector_size)
        return {"shape": a.shape, "data": np.array(a.data), "indices": np.array(a.indices),
                "indptr": np.array(a.indptr), "offsets": np.array(a.offsets), "vector_size": vector_size}
    return {"shape": a.shape, "data": np.array(a.data), "indices": np.array(a.indices),
            "indptr": np.array(a.indptr)}


@st.composite
def malformed_cases(draw):
    """A valid CSR/BSR/vector ∧ block matrix with 0-3 mutations, a right-hand side ``x`` and a ``tile``."""
    fmt = draw(st.sampled_from(["csr", "bsr", "vb"]))
    m, k = draw(st.integers(0, 7)), draw(st.integers(0, 9))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = np.where(rng.random((m, k)) < draw(st.sampled_from([0.2, 0.6, 1.0])),
                 rng.standard_normal((m, k)), 0.0).astype(dtype)
    block_shape = draw(st.sampled_from(BLOCK_SHAPES))
    vector_size = draw(st.sampled_from(VECTOR_SIZES[block_shape[1]]))
    case = {"fmt": fmt, **_valid_arrays(fmt, w, block_shape, vector_size), "block_shape": block_shape,
            "mutations": [],
            "mutate_after": None, "n_cols": k if fmt == "csr" else -(-k // block_shape[1]), "mk": (m, k)}

    for name in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        _mutate(draw, case, name)
        case["mutations"].append(name)

    n = draw(st.integers(0, 5))
    rows = k if draw(st.integers(0, 9)) else draw(st.integers(0, 11))
    x_kind = draw(st.sampled_from(["2d"] * 6 + ["1d", "3d", "fortran", "strided"]))
    x = rng.standard_normal((rows, n))
    if x_kind == "1d":
        x = rng.standard_normal(rows)
    elif x_kind == "3d":
        x = rng.standard_normal((rows, n, 2))
    elif x_kind == "fortran":
        x = np.asfortranarray(x)
    elif x_kind == "strided":
        x = rng.standard_normal((rows, 2 * n + 1))[:, ::2]
    x_dtype = draw(st.sampled_from(X_DTYPES)) if draw(st.integers(0, 3)) == 0 else "float64"
    case["x"] = (x * 3).astype(x_dtype) if x_dtype != "object" else x.astype(object)
    case["tile"] = draw(st.sampled_from([512, 1, 3] * 3 + [0, -1, 2.5, True]))
    return case


def _mutate(draw, case, name):  # noqa: C901 - one branch per mutation, read top to bottom
    def pick(arr):
        return draw(st.integers(0, arr.size - 1)) if arr.size else None

    indices, indptr, data = case["indices"], case["indptr"], case["data"]
    if name == "index_value" and isinstance(indices, np.ndarray) and indices.size:
        n_cols = case["n_cols"]  # columns (CSR) or block columns (BSR) of the unmutated matrix
        value = draw(st.sampled_from((*BAD_INDEX_VALUES, n_cols, n_cols + 1)))
        with np.errstate(over="ignore"):
            indices[pick(indices)] = np.array(value).astype(indices.dtype)
    elif name == "index_swap" and isinstance(indices, np.ndarray) and indices.size >= 2:
        p = draw(st.integers(0, indices.size - 2))
        indices[p], indices[p + 1] = indices[p + 1], indices[p]
    elif name == "index_dup" and isinstance(indices, np.ndarray) and indices.size >= 2:
        p = draw(st.integers(0, indices.size - 2))
        indices[p + 1] = indices[p]
    elif name == "indptr_value" and isinstance(indptr, np.ndarray) and indptr.size:
        nnz = indices.size if hasattr(indices, "size") else len(indices)
        value = draw(st.sampled_from((-1, 0, nnz, nnz + 1, 10**8, -2**31)))
        with np.errstate(over="ignore"):
            indptr[pick(indptr)] = np.array(value).astype(indptr.dtype)
    elif name == "indptr_swap" and isinstance(indptr, np.ndarray) and indptr.size >= 3:
        p = draw(st.integers(0, indptr.size - 2))
        indptr[p], indptr[p + 1] = indptr[p + 1], indptr[p]
    elif name in ("truncate", "extend", "dtype", "list", "strided"):
        fields = ["data", "indices", "indptr"] + (["offsets"] if "offsets" in case else [])
        field = draw(st.sampled_from(fields))
        arr = np.asarray(case[field])
        if name == "truncate" and arr.size:
            case[field] = arr[:-1]
        elif name == "extend":
            case[field] = np.concatenate([arr, arr[-1:] if arr.size else np.zeros((1, *arr.shape[1:]),
                                                                                      arr.dtype)])
        elif name == "dtype":
            to = draw(st.sampled_from(DATA_DTYPES if field == "data" else (*INDEX_DTYPES, "uint8", "int8")))
            with np.errstate(invalid="ignore", over="ignore"):
                case[field] = arr.astype(to)
        elif name == "list":
            case[field] = arr.tolist()
        elif name == "strided":
            case[field] = np.repeat(arr, 2, axis=0)[::2]  # same values, a non-contiguous view
    elif name == "data_value" and isinstance(data, np.ndarray) and data.size and data.dtype.kind == "f":
        data.reshape(-1)[pick(data.reshape(-1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    elif name == "data_shape" and isinstance(data, np.ndarray):
        case["data"] = data.reshape(-1) if data.ndim != 1 else data.reshape(-1, 1)
    elif name == "shape":
        m, k = case["mk"]
        case["shape"] = draw(st.sampled_from([(m + 1, k), (m, k + 1), (max(m - 1, 0), k), (m, max(k - 1, 0)),
                                              (m,), (m, k, 1), (-1, k), (m, 2.5), (True, k), [m, k]]))
    elif name == "block_shape":
        case["block_shape"] = draw(st.sampled_from([*BLOCK_SHAPES, (0, 1), (1,), (2.0, 3), (-1, 4),
                                                    np.array([2, 3]), "2x3"]))
    elif name == "padding" and case["fmt"] != "csr" and isinstance(data, np.ndarray) and data.size:
        data.reshape(-1)[-1] = 1.5  # the last entry of the last block: padding unless the shape divides
    elif name == "offset_value" and isinstance(case.get("offsets"), np.ndarray) and case["offsets"].size:
        offsets = case["offsets"]
        value = draw(st.sampled_from((case["vector_size"], 255, -1, 10**8)))
        with np.errstate(over="ignore"):
            offsets.reshape(-1)[pick(offsets.reshape(-1))] = np.array(value).astype(offsets.dtype)
    elif name == "offset_order" and isinstance(case.get("offsets"), np.ndarray) and case["offsets"].size:
        offsets = case["offsets"]
        if offsets.shape[-1] >= 2:
            flat = offsets.reshape(-1, offsets.shape[-1])
            row = flat[pick(flat[:, 0])]
            row[0], row[1] = (row[1], row[0]) if draw(st.booleans()) else (row[1], row[1])
    elif name == "vector_size" and "vector_size" in case:
        case["vector_size"] = draw(st.sampled_from([1, 2, 3, 4, 5, 0, -1, 2.0, True, "2"]))
    elif name == "mutate_after":
        case["mutate_after"] = draw(st.sampled_from(["indices", "indptr", "data"]
                                                    + (["offsets"] if "offsets" in case else [])))


# --------------------------------------------------------------------------------------------------------
# the oracle
# --------------------------------------------------------------------------------------------------------


def _reference_dense(a) -> np.ndarray:
    """The matrix ``a`` stands for, read entry by entry, asserting the documented invariant on the way."""
    from refimpl.sparse.formats import CSRMatrix
    from refimpl.sparse.vector_block import VectorBlockMatrix

    m, k = a.shape
    assert a.data.dtype in (np.float32, np.float64) and a.data.dtype.isnative
    assert a.indices.dtype == a.indptr.dtype and a.indices.dtype in (np.int32, np.int64)
    arrays = (a.data, a.indices, a.indptr) + ((a.offsets,) if isinstance(a, VectorBlockMatrix) else ())
    for arr in arrays:
        assert not arr.flags.writeable and arr.flags.c_contiguous
    assert np.all(np.isfinite(a.data))
    ptr = a.indptr.tolist()
    bh, bw = (1, 1) if isinstance(a, CSRMatrix) else a.block_shape
    mb, kb = -(-m // bh), -(-k // bw)
    assert len(ptr) == mb + 1 and ptr[0] == 0 and ptr[-1] == a.indices.size == a.data.shape[0]
    grid = np.zeros((mb * bh, kb * bw))
    for i in range(mb):
        assert ptr[i] <= ptr[i + 1]
        previous = -1
        for p in range(ptr[i], ptr[i + 1]):
            c = int(a.indices[p])
            assert previous < c < kb, (i, p, c)
            previous = c
            if isinstance(a, VectorBlockMatrix):
                grid[i * bh:(i + 1) * bh, c * bw:(c + 1) * bw] = _vector_block_tile(a, p)
            else:
                grid[i * bh:(i + 1) * bh, c * bw:(c + 1) * bw] = a.data[p]
    assert not np.any(grid[m:]) and not np.any(grid[:, k:]), "nonzero padding"
    return grid[:m, :k]


def _vector_block_tile(a, p) -> np.ndarray:
    """Block ``p`` of a vector ∧ block matrix as a dense ``bh × bw`` tile, read slot by slot and checked."""
    bh, bw = a.block_shape
    v = a.vector_size
    assert bw % v == 0 and a.data.shape[1:3] == (bh, bw // v) and a.offsets.shape == a.data.shape
    tile = np.zeros((bh, bw))
    for r in range(bh):
        for j in range(bw // v):
            previous = -1
            for s in range(a.data.shape[3]):
                off = int(a.offsets[p, r, j, s])
                assert previous < off < v, (p, r, j, s, off)
                previous = off
                tile[r, j * v + off] = a.data[p, r, j, s]
    return tile


def _good_rhs(x, k, tile) -> bool:
    """Whether ``spmm`` must accept ``x`` and ``tile`` (the documented argument rules)."""
    x = np.asarray(x)
    real = x.dtype.kind in "iuf"
    tile_ok = isinstance(tile, int) and not isinstance(tile, bool) and tile >= 1
    return real and x.ndim in (1, 2) and x.shape[0] == k and tile_ok


def run_case(case) -> str:
    """Build the matrix and run every kernel; return ``"rejected"``, ``"x rejected"`` or ``"ok"``."""
    from refimpl.sparse.formats import BSRMatrix, CSRMatrix
    from refimpl.sparse.kernels import ENGINES, bsr_spmm, csr_spmm, spmm
    from refimpl.sparse.vector_block import VectorBlockMatrix
    from refimpl.sparse.vector_block_spmm import vector_block_spmm

    arrays = {key: case[key] for key in ("shape", "data", "indices", "indptr")}
    try:
        if case["fmt"] == "csr":
            a, kernel = CSRMatrix(**arrays), csr_spmm
        elif case["fmt"] == "bsr":
            a, kernel = BSRMatrix(**arrays, block_shape=case["block_shape"]), bsr_spmm
        else:
            a = VectorBlockMatrix(**arrays, offsets=case["offsets"], block_shape=case["block_shape"],
                                  vector_size=case["vector_size"])
            kernel = vector_block_spmm
    except (ValueError, TypeError):
        return "rejected"
    if case["mutate_after"] is not None:  # the caller changes its arrays: the matrix must not notice
        own = case[case["mutate_after"]]
        if isinstance(own, np.ndarray) and own.size and own.flags.writeable:
            with np.errstate(over="ignore"):
                own.reshape(-1)[...] = np.array(10**8).astype(own.dtype)

    x, tile = case["x"], case["tile"]
    outcomes = []
    for engine in ENGINES:  # the kernels run first: a crash here is what the child process guards against
        for fn in (spmm, kernel):
            try:
                outcomes.append(fn(a, x, engine=engine, tile=tile))
            except (ValueError, TypeError) as err:
                outcomes.append(type(err))
    w = _reference_dense(a)
    if not _good_rhs(x, a.shape[1], tile):
        assert all(isinstance(o, type) for o in outcomes), "a bad x or tile was accepted"
        assert len(set(outcomes)) == 1, f"engines disagree on a bad x: {outcomes}"
        return "x rejected"
    x64 = np.asarray(x, dtype=np.float64)
    ref, scale = w @ x64, np.abs(w) @ np.abs(x64)
    for y in outcomes:
        assert isinstance(y, np.ndarray), f"a valid product raised {y}"
        assert y.shape == ref.shape and y.dtype in (np.float32, np.float64)
        rtol = 1e-5 if y.dtype == np.float32 else 1e-12
        assert np.all(np.abs(y - ref) <= rtol * (scale + 1e-30))
    return "ok"


# The issue's reproduction: an index of 10**8 in a 3 x 4 CSR matrix (a segfault before).
ISSUE_CASE = {"fmt": "csr", "shape": (3, 4), "data": np.ones(3), "indices": np.array([0, 1, 10**8], np.int32),
              "indptr": np.array([0, 1, 2, 3], np.int32), "block_shape": (1, 4), "mutations": ["issue"],
              "mutate_after": None, "n_cols": 4, "mk": (3, 4), "x": np.ones((4, 8)),
              "tile": 512}


def fuzz(max_examples: int, derandomize: bool, log: Path) -> None:
    """Run the fuzz (in this process); write each case to ``log`` before running it."""
    counts: dict[str, int] = {}

    @settings(max_examples=max_examples, derandomize=derandomize, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(malformed_cases())
    @example(ISSUE_CASE)
    def body(case):
        with np.printoptions(threshold=50):
            log.write_text(repr(case))
        outcome = run_case(case)
        counts[outcome] = counts.get(outcome, 0) + 1

    body()
    print("outcomes:", dict(sorted(counts.items())))


# --------------------------------------------------------------------------------------------------------
# the test: the fuzz in a child process
# --------------------------------------------------------------------------------------------------------


def test_kernels_survive_malformed_formats(tmp_path):
    profile = os.environ.get("REFIMPL_HYPOTHESIS_PROFILE", "ci")
    examples = {"thorough": 10_000, "dev": 100}.get(profile, 600)
    log = tmp_path / "case.txt"
    cmd = [sys.executable, __file__, str(examples), str(int(profile != "thorough")), str(log)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        how = (f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit code {proc.returncode}")
        last = log.read_text() if log.exists() else "(none)"
        raise AssertionError(f"the fuzz child failed ({how}); last case:\n{last}\n"
                             f"stderr:\n{proc.stderr[-6000:]}")
    outcomes = proc.stdout.strip().splitlines()[-1]
    # The fuzz is only meaningful if it reached the kernels with valid matrices and rejected bad ones.
    assert "'ok'" in outcomes and "'rejected'" in outcomes, outcomes


if __name__ == "__main__":
    fuzz(int(sys.argv[1]), bool(int(sys.argv[2])), Path(sys.argv[3]))
