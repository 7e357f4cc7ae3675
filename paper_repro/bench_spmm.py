"""SpMM timings on a conv layer's GEMM: dense BLAS vs own / scipy CSR and BSR, against the ideal FLOP ratio.

The setting (docs/ALGORITHMS.md section 5): a 512×4608 float32 weight (512 filters of 512 channels × 3×3)
times an im2col matrix ``X`` of 4608×1024 (float32, row-major). For each sparsity the script times

* ``dense``      — ``W @ X`` with NumPy's BLAS (the zeros multiplied too);
* ``own_csr``    — :func:`refimpl.sparse.kernels.csr_spmm` (numba) on an unstructured mask;
* ``scipy_csr``  — ``scipy.sparse.csr_matrix @ X`` on the same mask (converted once, outside the timing);
* ``own_bsr``/``scipy_bsr`` — the same for block masks of 4×4 and 8×8 blocks at the same sparsity;
* ``balanced``   — :func:`refimpl.sparse.kernels.balanced_spmm` on a balanced mask at the same sparsity
  (:func:`refimpl.projections.mask_balanced`), with the vector length ``V`` the smallest ``V >= 8`` for
  which ``sparsity · V`` is a whole number (8, 10, 10, 10, 20, 100 for the table's sparsities: balanced
  sparsity can only meet multiples of ``1/V``); its ``scipy`` time is scipy's CSR of the same matrix, and
  it is also set against own CSR on **its own** mask (the same nonzeros), own CSR on the unstructured mask
  and own BSR 4×4 of the same sparsity, and against itself with a single panel (CSR's order: what is
  left is the format, the rest of the gain is the panel tiling). Those are timed **interleaved** (one
  call of each in turn, ``--repeats`` rounds), so that a change in the machine's background load during
  the run affects them alike: their ratios are the ones to read on a shared machine.
* ``vb4x4v4``    — :func:`refimpl.sparse.vector_block_spmm.vector_block_spmm` on Guo et al.'s vector ∧ block
  mask at the same total sparsity (:func:`refimpl.projections.mask_vector_block`, 4×4 blocks, vectors of
  ``V = 4``, the total split evenly in log density by ``vector_block_split``: both masks keep
  ``sqrt(1 - s)``, rounded to whole counts); scipy's time is scipy's CSR of it. It is set against the same
  matrices as balanced, interleaved (own CSR on the unstructured and on its own mask, own BSR 4×4, itself
  with one panel) and against the balanced matrix of the row above.

``unified`` rows (``paper_repro/bench_unified.py``): weight unification's kernel
(:func:`refimpl.sparse.unified.unified_spmm`, 4×4 blocks unified / pruned) against own CSR and BSR 4×4
matrices of the **same storage in bytes**, interleaved, and against dense BLAS.

Each time is the median of ``--repeats`` runs after one warm-up run. Ratios are printed and written to
``paper_repro/results/spmm.json`` with the thread counts and the ideal ratio (dense FLOPs / sparse FLOPs,
from :func:`refimpl.sparse.cost.spmm_cost`) beside them.

**Threads.** numba's pool and OpenBLAS's pool are separate. The kernels are timed one after the other, so
the numba kernels run while BLAS is idle and vice versa (both pools default to all cores); nothing here
runs the two at once. Set ``NUMBA_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` to change them.

Run: ``python paper_repro/bench_spmm.py`` (a few minutes on 2 free cores); ``--smoke`` runs a tiny case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from refimpl.projections import mask_balanced, mask_vector_block
from refimpl.sparse.balanced import BalancedMatrix
from refimpl.sparse.cost import spmm_cost
from refimpl.sparse.formats import BSRMatrix, CSRMatrix
from refimpl.sparse.kernels import DEFAULT_TILE, balanced_spmm, bsr_spmm, csr_spmm
from refimpl.sparse.vector_block import VectorBlockMatrix
from refimpl.sparse.vector_block_spmm import vector_block_spmm
from refimpl.threads import thread_info
from refimpl.timing import median_seconds

RESULTS = Path(__file__).resolve().parent / "results" / "spmm.json"


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call (JIT, caches, page faults)."""
    return 1e3 * median_seconds(fn, repeats)


def unstructured_mask(shape, sparsity: float, rng: np.random.Generator) -> np.ndarray:
    """Keep exactly ``M·K - round(s·M·K)`` entries, chosen uniformly at random."""
    size = shape[0] * shape[1]
    keep = np.zeros(size, dtype=bool)
    keep[rng.permutation(size)[: size - round(sparsity * size)]] = True
    return keep.reshape(shape)


def block_mask(shape, block: int, sparsity: float, rng: np.random.Generator) -> np.ndarray:
    """Keep ``n - round(s·n)`` of the ``n`` block×block tiles, chosen uniformly at random."""
    mb, kb = shape[0] // block, shape[1] // block
    tiles = unstructured_mask((mb, kb), sparsity, rng)
    return np.kron(tiles, np.ones((block, block), dtype=bool))


def interleaved_ms(fns: dict, repeats: int) -> dict:
    """Median wall time (ms) of each function, the calls interleaved round by round after one warm-up each.

    Timed back to back (as :func:`median_ms` does, kernel after kernel), a change in the background load
    between two kernels lands in their ratio; interleaved, every round sees about the same load for all.
    """
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def balanced_vector_size(sparsity: float, smallest: int = 8) -> int:
    """The smallest ``V >= smallest`` with ``sparsity · V`` a whole number (within 1e-9): an exact target."""
    v = smallest
    while abs(sparsity * v - round(sparsity * v)) > 1e-9:
        v += 1
    return v


def _kernel(a):
    return {CSRMatrix: csr_spmm, BSRMatrix: bsr_spmm, BalancedMatrix: balanced_spmm,
            VectorBlockMatrix: vector_block_spmm}[type(a)]


def compare_interleaved(row: dict, a, matrices: dict, one_panel, x, repeats: int, tile: int) -> dict:
    """Time ``a`` interleaved against own CSR (unstructured and on ``a``'s own mask), own BSR 4×4 and
    ``a``'s kernel with a single panel; add the ratios to ``row`` (``over_own_csr`` ... > 1: ``a`` faster)."""
    compared = {"self": a, "csr_same_mask": CSRMatrix.from_dense(a.toarray()), "csr": matrices["csr"]}
    for name in ("bsr4x4", "balanced"):
        if name in matrices:
            compared[name] = matrices[name]
    # Dense BLAS is left out of the rounds: OpenBLAS's threads keep spinning for a while after a GEMM
    # and would slow whichever numba kernel came next (refimpl/threads.py); its ratio is the table's.
    fns = {name: (lambda m=m: _kernel(m)(m, x, tile=tile)) for name, m in compared.items()}
    # The same kernel with one panel: CSR's order on the format. What it gains over CSR without the panels
    # is the format (1-byte offsets, no per-entry column index); with them, the tiling.
    fns["one_panel"] = lambda: _kernel(a)(a, x, tile=tile, panel=one_panel)
    t = interleaved_ms(fns, repeats)
    row.update(interleaved_ms=t, over_own_csr=t["csr"] / t["self"],
               over_own_csr_same_mask=t["csr_same_mask"] / t["self"])
    for name in ("bsr4x4", "balanced"):
        if name in t:
            row[f"over_own_{name}"] = t[name] / t["self"]
    print(f"{'':>8} {'':8} interleaved, {row['format']} {t['self']:.1f} ms: "
          f"{row['over_own_csr']:.2f}x own CSR (unstructured), "
          f"{row['over_own_csr_same_mask']:.2f}x own CSR of the same mask"
          + (f", {row['over_own_bsr4x4']:.2f}x own BSR 4x4" if "over_own_bsr4x4" in row else "")
          + (f", {row['over_own_balanced']:.2f}x balanced" if "over_own_balanced" in row else "")
          + f"; one panel {t['one_panel']:.1f} ms", flush=True)
    return t


def run(m: int, k: int, n: int, sparsities, blocks, repeats: int, tile: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k), dtype=np.float32)
    x = rng.standard_normal((k, n), dtype=np.float32)
    dense_cost = spmm_cost(w, n)
    t_dense = median_ms(lambda: w @ x, repeats)
    setting = {
        "M": m, "K": k, "N": n, "dtype": "float32", "repeats": repeats, "tile": tile, "seed": seed,
        "numba_threads": numba.get_num_threads(), "blas_threads": thread_info()["blas"],
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
        "numpy": np.__version__, "numba": numba.__version__,
        # Other processes compete for the cores: a high load inflates every time, dense BLAS the most.
        "load_average_1min_at_start": os.getloadavg()[0],
    }
    print(f"W {m}x{k} @ X {k}x{n} float32; numba threads {setting['numba_threads']}, "
          f"BLAS threads {setting['blas_threads']}; median of {repeats}; tile {tile}")
    print(f"dense BLAS: {t_dense:.1f} ms ({dense_cost['flops'] / t_dense / 1e6:.1f} GFLOP/s)")
    header = (f"{'format':>8} {'sparsity':>8} {'ideal':>7} {'own ms':>8} {'scipy ms':>9} "
              f"{'own/scipy':>9} {'dense/own':>9} {'dense/scipy':>11}")
    print(header)
    rows = []
    for s in sparsities:
        cases = [("csr", CSRMatrix.from_dense(w, unstructured_mask(w.shape, s, rng)))]
        for b in blocks:
            mask = block_mask(w.shape, b, s, rng)
            cases.append((f"bsr{b}x{b}", BSRMatrix.from_dense(w, mask, block_shape=(b, b))))
        v = balanced_vector_size(s)
        balanced = BalancedMatrix.from_dense(w, mask_balanced(w, v, sparsity=s), vector_size=v)
        cases.append((f"bal{v}", balanced))
        vb = VectorBlockMatrix.from_dense(w, mask_vector_block(w, 4, (4, 4), total_sparsity=s),
                                          block_shape=(4, 4), vector_size=4)
        cases.append(("vb4x4v4", vb))
        for name, a in cases:
            kernel = _kernel(a)
            scipy_a = a.to_scipy()  # converted once: only the product is timed
            # correctness guard: a fast wrong kernel must not produce a speedup
            y_own, y_ref = kernel(a, x, tile=tile), scipy_a @ x
            np.testing.assert_allclose(y_own, y_ref, rtol=1e-3, atol=1e-3)
            t_own = median_ms(lambda a=a, kernel=kernel: kernel(a, x, tile=tile), repeats)
            t_scipy = median_ms(lambda s_a=scipy_a: s_a @ x, repeats)
            ideal = dense_cost["flops"] / max(spmm_cost(a, n)["flops"], 1)
            row = {
                "format": name, "sparsity": s, "density": a.density, "ideal_flop_ratio": ideal,
                "own_ms": t_own, "scipy_ms": t_scipy, "dense_ms": t_dense,
                "own_over_scipy_speedup": t_scipy / t_own, "dense_over_own": t_dense / t_own,
                "dense_over_scipy": t_dense / t_scipy,
            }
            rows.append(row)
            print(f"{name:>8} {s:8.2f} {ideal:7.1f} {t_own:8.1f} {t_scipy:9.1f} {t_scipy / t_own:9.2f} "
                  f"{t_dense / t_own:9.2f} {t_dense / t_scipy:11.2f}", flush=True)
        # The balanced and vector ∧ block rows: set against the other formats of this sparsity, interleaved.
        matrices = dict(cases)
        bal_row, vb_row = rows[-2], rows[-1]
        bal_row.update(vector_size=v, k=balanced.k)
        compare_interleaved(bal_row, balanced, matrices, balanced.n_vectors, x, repeats, tile)
        vb_row.update(block_shape=[4, 4], vector_size=4, k=vb.k, block_density=vb.block_density)
        compare_interleaved(vb_row, vb, {**matrices, "balanced": balanced}, vb.block_grid[1], x, repeats,
                            tile)
    setting["load_average_1min_at_end"] = os.getloadavg()[0]
    print(f"load average (1 min) at start {setting['load_average_1min_at_start']:.1f}, "
          f"at end {setting['load_average_1min_at_end']:.1f} on {os.cpu_count()} cores")
    return {"setting": setting, "dense_ms": t_dense, "results": rows}


def panel_sweep(m, k, n, panels, repeats, tile, seed) -> dict:
    """Balanced 90 % (V = 10) times per panel size in KiB of X: the data behind ``PANEL_BYTES``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k), dtype=np.float32)
    x = rng.standard_normal((k, n), dtype=np.float32)
    a = BalancedMatrix.from_dense(w, mask_balanced(w, 10, sparsity=0.9), vector_size=10)
    vectors = {kib: max(1, kib * 1024 // (10 * min(tile, n) * 4)) for kib in panels}
    out = interleaved_ms({kib: (lambda p=p: balanced_spmm(a, x, tile=tile, panel=p))
                          for kib, p in vectors.items()}, repeats)
    for kib, ms in out.items():
        print(f"panel {kib:6d} KiB ({vectors[kib]:4d} vectors): balanced 90% {ms:7.1f} ms (interleaved)")
    return out


def tile_sweep(m, k, n, tiles, repeats, seed) -> dict:
    """Own CSR (90 %) and BSR 4×4 (80 %) times per tile width: the data behind ``DEFAULT_TILE``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k), dtype=np.float32)
    x = rng.standard_normal((k, n), dtype=np.float32)
    csr = CSRMatrix.from_dense(w, unstructured_mask(w.shape, 0.9, rng))
    bsr = BSRMatrix.from_dense(w, block_mask(w.shape, 4, 0.8, rng), block_shape=(4, 4))
    out = {}
    for t in tiles:
        out[t] = {"csr90_ms": median_ms(lambda t=t: csr_spmm(csr, x, tile=t), repeats),
                  "bsr4x4_80_ms": median_ms(lambda t=t: bsr_spmm(bsr, x, tile=t), repeats)}
        print(f"tile {t:5d}: CSR 90% {out[t]['csr90_ms']:7.1f} ms, "
              f"BSR 4x4 80% {out[t]['bsr4x4_80_ms']:7.1f} ms")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, no results file (CI)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median reported)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="columns of X per cache tile")
    p.add_argument("--tiles", type=int, nargs="*", default=None, help="also sweep these tile widths")
    p.add_argument("--panels", type=int, nargs="*", default=None,
                   help="also sweep these balanced-kernel panel sizes (KiB of X)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.smoke:
        m, k, n, sparsities, blocks = 64, 144, 32, [0.5, 0.9], [4]
    else:
        m, k, n, sparsities, blocks = 512, 4608, 1024, [0.5, 0.7, 0.8, 0.9, 0.95, 0.99], [4, 8]
    report = run(m, k, n, sparsities, blocks, args.repeats, args.tile, args.seed)
    from bench_unified import LEVELS, unified_rows  # this directory: the script's own sys.path entry

    report["unified"] = unified_rows(m, k, n, LEVELS[1:2] + LEVELS[3:4] if args.smoke else LEVELS,
                                     args.repeats, args.tile, args.seed, interleaved_ms)
    if args.tiles:
        report["tile_sweep_ms"] = tile_sweep(m, k, n, args.tiles, args.repeats, args.seed)
    if args.panels:
        report["panel_sweep_ms"] = panel_sweep(m, k, n, args.panels, args.repeats, args.tile, args.seed)
    if not args.smoke:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
