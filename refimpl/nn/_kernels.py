r"""Low-level kernels behind the convolution, pooling and ReLU layers: ``im2col``, ``col2im``, max pooling.

Every kernel exists twice: a numba version (``@njit(cache=True, parallel=True)``, the fast path) and a NumPy
twin written with strided slices (the readable reference, and the fallback). ``engine="numba" | "numpy"``
selects one. ``im2col``, ``col2im`` and the max-pool forward give bit-identical results in both engines
(the same additions in the same order); the max-pool backward with *overlapping* windows may add a pixel's
gradients in another order, so it agrees to rounding.

The im2col layout
-----------------
For an input ``x`` of shape ``(N, C, H, W)``, a kernel of ``(KH, KW)``, stride ``s`` and zero padding ``p``,
the output has spatial size

.. math:: OH = \left\lfloor \frac{H + 2p - KH}{s} \right\rfloor + 1, \qquad
          OW = \left\lfloor \frac{W + 2p - KW}{s} \right\rfloor + 1 .

``im2col`` returns the matrix ``cols`` of shape ``(C*KH*KW, N*OH*OW)`` with

.. math:: \mathrm{cols}[(c, i, j),\ (n, o_h, o_w)] = x_{\mathrm{pad}}[n, c, s\,o_h + i, s\,o_w + j],

rows ordered ``(c, i, j)`` row-major (the order of ``W.reshape(F, C*KH*KW)``, the *GEMM view* of a conv
weight) and columns ordered ``(n, o_h, o_w)``. A convolution is then one matrix product,
``W.reshape(F, -1) @ cols`` of shape ``(F, N*OH*OW)`` (:func:`refimpl.nn.conv.conv2d_forward_gemm`). Putting
the batch in the columns gives BLAS one large product. Whether that or one product per image (a batched
``np.matmul`` over strided views of the same ``cols``) is faster depends on the layer: the conv module
chooses per layer, image by image when a window set is longer than a GEMM row (``OH·OW >= C·KH·KW``, a
first layer such as LeNet-5's conv1), where the batched products measured 2-3x faster (see
:func:`refimpl.nn.conv._per_image`). An earlier note here called the batched products 2.5x slower: that
was measured on a busy machine before the threading defaults of :mod:`refimpl.threads` and no longer held.

A shape-pruned layer keeps only some GEMM columns of ``W`` (some ``(c, i, j)`` positions), so it needs only
those rows of ``cols``: ``im2col(..., rows=kept)`` builds exactly the rows listed, in the order listed.
``col2im`` is the adjoint (transpose) of ``im2col``: it scatters a ``cols`` matrix back onto an image,
adding up the entries that overlapping windows share. That is the backward pass of im2col.

Threads: numba's parallel loops and OpenBLAS share the machine's cores and run one after the other (the
kernels here never call BLAS). Idle workers of either pool may keep spinning, though, and steal the cores
the other pool needs: on a busy 2-core machine numba's ``omp`` threading layer with libgomp's default
spin made LeNet-5 training 2-3x slower than the ``workqueue`` layer, whose idle workers sleep. Sleeping
has its price too: waking ``workqueue``'s workers costs ~85 µs per parallel kernel (measured on a 2-core
VM), about 2 ms of a 13 ms LeNet-5 step. The best setting measured is the ``omp`` layer with a short
spin, ``NUMBA_THREADING_LAYER=omp GOMP_SPINCOUNT=1000`` (``paper_repro/bench_training.py`` selects it;
step 13 -> 10.5 ms), with a short OpenBLAS spin, ``OPENBLAS_THREAD_TIMEOUT=4``.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit, prange

from refimpl._validation import ENGINES, check_allocation, check_engine, check_ndim, check_positive_int

__all__ = [
    "ENGINES",
    "check_engine",
    "check_float_array",
    "col2im",
    "col2im_rows_last_into",
    "conv_output_size",
    "im2col",
    "im2col_into",
    "maxpool2d_backward_kernel",
    "maxpool2d_forward_kernel",
    "pair",
    "relu_backward_kernel",
    "window_view",
]

# ENGINES ("numba", "numpy") and check_engine: the shared ones of refimpl._validation.


# --- argument helpers shared by conv.py and pool.py ---------------------------------------------------

def pair(value, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Return ``value`` (an int or a pair of ints, each ``>= minimum``) as a ``(rows, cols)`` tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = check_positive_int(value, name, minimum=minimum)
        return v, v
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (check_positive_int(value[0], f"{name}[0]", minimum=minimum),
                check_positive_int(value[1], f"{name}[1]", minimum=minimum))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


#: The dtypes the layers' kernels are compiled for.
LAYER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_array(x, name: str, ndim: int) -> np.ndarray:
    """Return ``x`` as a float32/float64 array with ``ndim`` dimensions, raising ``TypeError``/``ValueError``.

    float16 and extended precision are refused (the numba kernels are compiled for float32 and float64
    only, and failed deep inside numba before); an array in non-native byte order (big-endian data read
    from a file) is converted to native order here, at the boundary, as the kernels cannot read it.
    Unlike :func:`refimpl._validation.as_float_array` this skips the NaN/inf scan: layers sit on the hot
    path of training, and a convolution propagates NaN without having to guess what it means.
    """
    arr = np.asarray(x)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype not in LAYER_DTYPES:
        kind = "a floating-point" if not np.issubdtype(arr.dtype, np.floating) else "a float32 or float64"
        raise TypeError(f"{name} must be {kind} array (the layers compute in float32 or float64), "
                        f"got dtype {arr.dtype}")
    check_ndim(arr, name, ndim)
    return arr


def conv_output_size(size: int, kernel: int, stride: int, padding: int, *, name: str = "kernel") -> int:
    r"""Output length of a sliding window: :math:`\lfloor (size + 2p - k)/s \rfloor + 1`.

    Raises ``ValueError`` (naming ``name``) when the kernel is larger than the padded input.
    """
    padded = size + 2 * padding
    if kernel > padded:
        raise ValueError(
            f"{name} size {kernel} is larger than the padded input size {padded} "
            f"(input {size} + 2*padding {padding})"
        )
    return (padded - kernel) // stride + 1


def _check_rows(rows, n_rows: int) -> np.ndarray:
    """Validate a ``rows=`` selection of GEMM rows; ``None`` means all ``n_rows`` in order."""
    if rows is None:
        return np.arange(n_rows, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"rows must be an integer index array, got dtype {arr.dtype}")
    check_ndim(arr, "rows", 1)
    if arr.size and (arr.min() < 0 or arr.max() >= n_rows):
        raise ValueError(f"rows must lie in [0, {n_rows}) (= C*KH*KW), got min {arr.min()}, max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _window_geometry(x_shape, kh: int, kw: int, stride: int, padding: int):
    """Validate the window parameters against an ``(N, C, H, W)`` shape; return ``(OH, OW)``."""
    kh = check_positive_int(kh, "kh")
    kw = check_positive_int(kw, "kw")
    check_positive_int(stride, "stride")
    check_positive_int(padding, "padding", minimum=0)
    oh = conv_output_size(x_shape[2], kh, stride, padding, name="kernel height kh")
    ow = conv_output_size(x_shape[3], kw, stride, padding, name="kernel width kw")
    return oh, ow


def window_view(a: np.ndarray, i: int, j: int, sh: int, sw: int, oh: int, ow: int) -> np.ndarray:
    r"""Entry ``(i, j)`` of every window, as one strided view of the last two axes of ``a``.

    .. math:: \mathrm{view}[\dots, o_h, o_w] = a[\dots,\ S_H o_h + i,\ S_W o_w + j],
              \qquad 0 \le o_h < OH,\ 0 \le o_w < OW

    Shape ``(..., OH, OW)``. Within one view no entry of ``a`` repeats, so ``view += v`` is an exact
    scatter-add: the NumPy twins loop over the ``KH·KW`` window entries instead of the ``OH·OW`` windows.
    """
    return a[..., i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


# --- im2col -------------------------------------------------------------------------------------------

def im2col(x: np.ndarray, kh: int, kw: int, stride: int = 1, padding: int = 0, *, rows=None,
           engine: str = "numba") -> np.ndarray:
    r"""Unfold the sliding windows of a batch of images into the columns of a matrix.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Floating-point input batch.
    kh, kw : int
        Kernel height and width.
    stride : int, default 1
        Step between windows (same in both directions).
    padding : int, default 0
        Zero padding added on every side.
    rows : array_like of int, shape (R,), optional
        Flat indices ``c*KH*KW + i*KW + j`` of the GEMM rows to build (in this order; repeats allowed).
        Default: all ``C*KH*KW`` rows. A shape-pruned convolution passes its kept columns here.
    engine : {"numba", "numpy"}

    Returns
    -------
    cols : ndarray, shape (R, N*OH*OW), dtype of ``x``
        See the module docstring for the exact layout;
        :math:`\mathrm{cols}[r, (n, o_h, o_w)] = x_{\mathrm{pad}}[n, c_r, s o_h + i_r, s o_w + j_r]`.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> im2col(x, 2, 2, engine="numpy")
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    x = check_float_array(x, "x", 4)
    engine = check_engine(engine)
    oh, ow = _window_geometry(x.shape, kh, kw, stride, padding)
    rows = _check_rows(rows, x.shape[1] * kh * kw)
    n = x.shape[0]
    check_allocation([(rows.size, n * oh * ow), _padded_shape(x.shape, padding)], x.dtype,
                     f"im2col of x {x.shape} with a {kh}x{kw} kernel, stride {stride} and padding {padding}")
    cols = np.empty((rows.size, n * oh * ow), dtype=x.dtype)
    kernel = _im2col_numba if engine == "numba" else _im2col_numpy
    kernel(_pad(np.ascontiguousarray(x), padding), rows, kh, kw, stride, oh, ow, cols.reshape(-1, n, oh, ow))
    return cols


def _padded_shape(x_shape, padding: int) -> tuple[int, ...]:
    """Shape of :func:`_pad`'s copy (empty when ``padding == 0``: no copy is made)."""
    if padding == 0:
        return (0,)
    n, c, h, w = x_shape
    return n, c, h + 2 * padding, w + 2 * padding


def _pad(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial axes (no copy when ``padding == 0``)."""
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def _decode_row(row, kh, kw):
    """Split a flat GEMM row index into its ``(c, i, j)`` position (row-major over ``(C, KH, KW)``)."""
    c = row // (kh * kw)
    rest = row - c * kh * kw
    i = rest // kw
    return c, i, rest - i * kw


_decode_row_jit = njit(cache=True)(_decode_row)


def _im2col_numpy(x_pad, rows, kh, kw, stride, oh, ow, cols4):
    """NumPy twin of :func:`_im2col_numba`: GEMM row ``(c, i, j)`` is one strided slice of the padded input.

    ``cols4`` is ``cols`` viewed as (R, N, OH, OW).
    """
    for r, row in enumerate(rows):
        c, i, j = _decode_row(int(row), kh, kw)
        cols4[r] = window_view(x_pad[:, c], i, j, stride, stride, oh, ow)


@njit(cache=True, nogil=True)
def _im2col_row(x_pad, row, kh, kw, stride, oh, ow, dst3):
    """Fill one GEMM row ``dst3`` (N, OH, OW) of im2col: the body shared by the two kernels below.

    The ``stride == 1`` branch copies contiguous image rows, which LLVM vectorises (measured 1.3-3x faster
    than one strided loop for both cases).
    """
    c, i, j = _decode_row_jit(row, kh, kw)
    for n in range(x_pad.shape[0]):
        for o_h in range(oh):
            dst = dst3[n, o_h]
            if stride == 1:
                src = x_pad[n, c, i + o_h, j:j + ow]
                for o_w in range(ow):
                    dst[o_w] = src[o_w]
            else:
                src = x_pad[n, c, i + stride * o_h]
                for o_w in range(ow):
                    dst[o_w] = src[j + stride * o_w]


@njit(cache=True, parallel=True)
def _im2col_numba(x_pad, rows, kh, kw, stride, oh, ow, cols4):
    """Numba kernel of :func:`im2col`: the same copies as the twin, GEMM rows spread over the threads."""
    for r in prange(rows.shape[0]):
        _im2col_row(x_pad, rows[r], kh, kw, stride, oh, ow, cols4[r])


@njit(cache=True, nogil=True)
def _im2col_serial(x_pad, rows, kh, kw, stride, oh, ow, cols4):
    """Run :func:`_im2col_numba`'s loops on the calling thread alone, without the GIL.

    For callers that run several of them at once on their own threads (``im2col_into(serial=True)``).
    """
    for r in range(rows.shape[0]):
        _im2col_row(x_pad, rows[r], kh, kw, stride, oh, ow, cols4[r])


def im2col_into(x_pad: np.ndarray, kh: int, kw: int, stride: int, cols4: np.ndarray, engine: str, *,
                serial: bool = False) -> None:
    """Write the im2col columns of an already padded batch into ``cols4`` (R, N, OH, OW), every row.

    The unchecked core of :func:`im2col`, for the convolution's image-group tasks
    (:mod:`refimpl.nn.conv`), which build the columns of a few images at a time into a reused buffer.
    ``serial=True`` runs the numba kernel on the calling thread without the GIL, so that several tasks
    can run at once on their own threads.
    """
    rows = np.arange(cols4.shape[0], dtype=np.int64)
    if engine == "numba":
        kernel = _im2col_serial if serial else _im2col_numba
    else:
        kernel = _im2col_numpy
    kernel(x_pad, rows, kh, kw, stride, cols4.shape[2], cols4.shape[3], cols4)


# --- col2im (the adjoint of im2col) -------------------------------------------------------------------

def col2im(cols: np.ndarray, x_shape, kh: int, kw: int, stride: int = 1, padding: int = 0, *, rows=None,
           transposed: bool = False, engine: str = "numba") -> np.ndarray:
    r"""Scatter-add the columns of ``cols`` back onto an image batch: the adjoint of :func:`im2col`.

    .. math:: \langle \mathrm{col2im}(A), X \rangle = \langle A, \mathrm{im2col}(X) \rangle
              \quad \text{for all } A, X,

    so ``col2im(dcols)`` is the gradient with respect to ``x`` of any loss that reads ``im2col(x)``. An
    input pixel covered by several windows receives the sum of their entries; padding entries are dropped.

    Parameters
    ----------
    cols : ndarray, shape (R, N*OH*OW), or (N*OH*OW, R) when ``transposed``
    x_shape : tuple of 4 ints
        ``(N, C, H, W)``, the shape of the image batch ``im2col`` was applied to.
    kh, kw, stride, padding, rows, engine
        As for :func:`im2col` (``rows`` lists which GEMM row each row of ``cols`` is).
    transposed : bool, default False
        ``cols`` is given as its transpose ("rows last": one row per window ``(n, o_h, o_w)``), i.e.
        ``col2im(A.T, ..., transposed=True) == col2im(A, ...)``, bit for bit (the same additions in the
        same order). Why: the convolution's backward pass can then get :math:`\mathrm{dcols}^T` from the
        GEMM :math:`G^T W_g` with ``G^T`` (N·OH·OW, F) and ``W_g`` (F, R), which OpenBLAS runs faster than
        :math:`W_g^T G` (measured on LeNet-5's conv2, float32, 2 threads: 1.05 ms against 1.48 ms), and
        each image's windows then form one contiguous block that stays in cache while it is scattered
        (GEMM + col2im together, transpose of ``dout`` included, 300 alternating repeats: fastest 1.9 ms
        against 2.2 ms, median 2.7 against 2.9 ms).

    Returns
    -------
    x : ndarray, shape ``x_shape``, dtype of ``cols``
    """
    cols = check_float_array(cols, "cols", 2)
    engine = check_engine(engine)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {x_shape!r}")
    x_shape = tuple(int(d) for d in x_shape)
    oh, ow = _window_geometry(x_shape, kh, kw, stride, padding)
    rows = _check_rows(rows, x_shape[1] * kh * kw)
    expected = (rows.size, x_shape[0] * oh * ow)
    if transposed:
        expected = expected[::-1]
    if cols.shape != expected:
        raise ValueError(f"cols must have shape {expected} for x_shape {x_shape}"
                         f"{' (transposed)' if transposed else ''}, got {cols.shape}")
    n, c, h, w = x_shape
    x_pad = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    if transposed:
        kernel = _col2im_rows_last_numba if engine == "numba" else _col2im_rows_last_numpy
        kernel(np.ascontiguousarray(cols).reshape(n, oh, ow, -1), rows, kh, kw, stride, oh, ow, x_pad)
    else:
        kernel = _col2im_numba if engine == "numba" else _col2im_numpy
        kernel(np.ascontiguousarray(cols).reshape(-1, n, oh, ow), rows, kh, kw, stride, oh, ow, x_pad)
    if padding == 0:
        return x_pad
    # the padding entries collected the gradient of the zeros; they are dropped
    return np.ascontiguousarray(x_pad[:, :, padding:padding + h, padding:padding + w])


def _col2im_numpy(cols4, rows, kh, kw, stride, oh, ow, x_pad):
    """NumPy twin of :func:`_col2im_numba`: add each GEMM row onto its strided slice of the padded image."""
    for r, row in enumerate(rows):
        c, i, j = _decode_row(int(row), kh, kw)
        # one GEMM row never hits the same pixel twice, so a slice '+=' is an exact scatter-add
        window_view(x_pad[:, c], i, j, stride, stride, oh, ow)[...] += cols4[r]


@njit(cache=True, parallel=True)
def _col2im_numba(cols4, rows, kh, kw, stride, oh, ow, x_pad):
    """Numba kernel of :func:`col2im`; one parallel task per image, so no two tasks write the same pixel.

    Explicit loops: in numba a slice ``+=`` allocates a temporary (measured several times slower). The
    ``stride == 1`` branch adds into contiguous image rows, which LLVM vectorises (2-3x faster).
    """
    for n in prange(x_pad.shape[0]):
        for r in range(rows.shape[0]):
            c, i, j = _decode_row_jit(rows[r], kh, kw)
            for o_h in range(oh):
                src = cols4[r, n, o_h]
                if stride == 1:
                    dst = x_pad[n, c, i + o_h, j:j + ow]
                    for o_w in range(ow):
                        dst[o_w] += src[o_w]
                else:
                    dst = x_pad[n, c, i + stride * o_h]
                    for o_w in range(ow):
                        dst[j + stride * o_w] += src[o_w]


def col2im_rows_last_into(cols_t4: np.ndarray, kh: int, kw: int, stride: int, x_pad: np.ndarray,
                          engine: str, *, serial: bool = False) -> None:
    """Scatter-add ``cols_t4`` (N, OH, OW, R), every row, onto the padded batch ``x_pad`` in place.

    The unchecked core of ``col2im(..., transposed=True)``, the adjoint of :func:`im2col_into`, with the
    same ``serial`` switch.
    """
    rows = np.arange(cols_t4.shape[3], dtype=np.int64)
    if engine == "numba":
        kernel = _col2im_rows_last_serial if serial else _col2im_rows_last_numba
    else:
        kernel = _col2im_rows_last_numpy
    kernel(cols_t4, rows, kh, kw, stride, cols_t4.shape[1], cols_t4.shape[2], x_pad)


def _col2im_rows_last_numpy(cols_t4, rows, kh, kw, stride, oh, ow, x_pad):
    """NumPy twin of :func:`_col2im_rows_last_numba`: :func:`_col2im_numpy` reading columns of ``cols^T``.

    ``cols_t4`` is ``cols^T`` viewed as (N, OH, OW, R).
    """
    for r, row in enumerate(rows):
        c, i, j = _decode_row(int(row), kh, kw)
        window_view(x_pad[:, c], i, j, stride, stride, oh, ow)[...] += cols_t4[..., r]


@njit(cache=True, nogil=True)
def _col2im_rows_last_image(src, rows, kh, kw, stride, oh, ow, image):
    """Scatter-add one image's windows ``src`` (OH, OW, R) onto its padded image (C, H', W')."""
    for r in range(rows.shape[0]):
        c, i, j = _decode_row_jit(rows[r], kh, kw)
        for o_h in range(oh):
            if stride == 1:
                dst = image[c, i + o_h, j:j + ow]
                for o_w in range(ow):
                    dst[o_w] += src[o_h, o_w, r]
            else:
                dst = image[c, i + stride * o_h]
                for o_w in range(ow):
                    dst[j + stride * o_w] += src[o_h, o_w, r]


@njit(cache=True, parallel=True)
def _col2im_rows_last_numba(cols_t4, rows, kh, kw, stride, oh, ow, x_pad):
    """Numba kernel of ``col2im(..., transposed=True)``; one parallel task per image.

    The loops and the order of the additions are those of :func:`_col2im_numba` (so the results are
    identical); only the reads differ: an image's windows ``cols_t4[n]`` are one contiguous block
    (OH·OW·R entries, 128 KB for LeNet-5's conv2), read with stride R while it sits in cache. The loop
    order "window entry outside, window inside" was measured 1.9x faster than walking each window's
    contiguous row of R entries, whose inner loops (KW = 5 long) do not vectorise.
    """
    for n in prange(x_pad.shape[0]):
        _col2im_rows_last_image(cols_t4[n], rows, kh, kw, stride, oh, ow, x_pad[n])


@njit(cache=True, nogil=True)
def _col2im_rows_last_serial(cols_t4, rows, kh, kw, stride, oh, ow, x_pad):
    """Run :func:`_col2im_rows_last_numba`'s loops on the calling thread alone, without the GIL."""
    for n in range(x_pad.shape[0]):
        _col2im_rows_last_image(cols_t4[n], rows, kh, kw, stride, oh, ow, x_pad[n])


# --- max pooling --------------------------------------------------------------------------------------

def maxpool2d_forward_kernel(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, engine: str,
                             record_argmax: bool = True):
    """Max over every ``(kh, kw)`` window (strides ``sh``, ``sw``, no padding) and the winner's position.

    ``x`` must be a validated (N, C, H, W) float array with windows that fit. Returns ``(out, argmax)``,
    both of shape (N, C, OH, OW); ``argmax`` holds the in-window position ``i*kw + j`` (int32) of the
    **first** maximum in row-major window order (a later entry wins only if it is strictly larger, or NaN;
    so a window holding NaN yields NaN and the position of its last NaN, as in PyTorch).

    With ``record_argmax=False`` (inference: no backward pass will follow) ``argmax`` is ``None`` and is
    neither allocated nor written; ``out`` is the same. The kernels then receive an empty (0, 0, 0, 0)
    ``argmax`` (the same numba signature, so nothing is compiled twice) and skip its stores.
    """
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow) if record_argmax else (0, 0, 0, 0), dtype=np.int32)
    if engine == "numpy":
        kernel = _maxpool_forward_numpy
    elif (kh, kw, sh, sw) == (2, 2, 2, 2):
        kernel = _maxpool2x2_forward_numba  # LeNet's, VGG's pooling: a branch-free special case
    else:
        kernel = _maxpool_forward_numba
    with np.errstate(invalid="ignore"):  # inf - inf in the NaN detector, when run without the JIT
        kernel(np.ascontiguousarray(x), kh, kw, sh, sw, out, argmax)
    return out, (argmax if record_argmax else None)


def _maxpool_forward_numpy(x, kh, kw, sh, sw, out, argmax):
    """NumPy twin: a running maximum over the ``kh*kw`` strided slices, visited in row-major order.

    An empty ``argmax`` (size 0) means "do not record the winners".
    """
    oh, ow = out.shape[2:]
    record = argmax.size > 0
    out[...] = window_view(x, 0, 0, sh, sw, oh, ow)
    if record:
        argmax[...] = 0
    for i in range(kh):
        for j in range(kw):
            if i == 0 and j == 0:
                continue
            v = window_view(x, i, j, sh, sw, oh, ow)
            better = (v > out) | np.isnan(v)  # strict '>': ties keep the earlier position
            out[better] = v[better]
            if record:
                argmax[better] = i * kw + j


@njit(cache=True, parallel=True)
def _maxpool_forward_numba(x, kh, kw, sh, sw, out, argmax):
    """Numba kernel of :func:`maxpool2d_forward_kernel`; one parallel task per (image, channel).

    The scan tests only ``v > best``; a NaN test per entry measured 50% slower. NaN is caught instead by
    a running sum of the window, which is NaN whenever the window holds a NaN (and also, harmlessly, for
    a window holding both +inf and -inf); only then is the window rescanned for its last NaN, which is
    where the twin's rule "replace when larger or NaN" ends.
    """
    n_batch, channels, oh, ow = out.shape
    record = argmax.size > 0  # an empty argmax: inference, the winners are not stored
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        for o_h in range(oh):
            for o_w in range(ow):
                h0 = o_h * sh
                w0 = o_w * sw
                best = x[n, c, h0, w0]
                best_k = 0
                total = best
                for i in range(kh):
                    for j in range(kw):
                        v = x[n, c, h0 + i, w0 + j]
                        total += v
                        if v > best:
                            best = v
                            best_k = i * kw + j
                if total != total:  # NaN somewhere (rare): the last NaN wins
                    for i in range(kh):
                        for j in range(kw):
                            v = x[n, c, h0 + i, w0 + j]
                            if v != v:
                                best = v
                                best_k = i * kw + j
                out[n, c, o_h, o_w] = best
                if record:
                    argmax[n, c, o_h, o_w] = best_k


@njit(cache=True, parallel=True)
def _maxpool2x2_forward_numba(x, kh, kw, sh, sw, out, argmax):
    """:func:`_maxpool_forward_numba` for 2×2 windows with stride 2, written without data-dependent branches.

    Same results bit for bit (its twin is the same :func:`_maxpool_forward_numpy`; ``kh, kw, sh, sw`` are
    2 and unused). Why: after a ReLU a quarter to half of the entries are exact zeros, so the general
    kernel's ``if v > best`` is a coin toss for the branch predictor; here each comparison feeds a select.
    Measured on LeNet-5's pool1 (64×20×24×24 float32, after ReLU): 0.7-1.3 ms general, 0.25 ms here.
    """
    n_batch, channels, oh, ow = out.shape
    record = argmax.size > 0  # the branch on it goes the same way every time: no misprediction
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        for o_h in range(oh):
            top = x[n, c, 2 * o_h]
            bottom = x[n, c, 2 * o_h + 1]
            for o_w in range(ow):
                v0, v1 = top[2 * o_w], top[2 * o_w + 1]
                v2, v3 = bottom[2 * o_w], bottom[2 * o_w + 1]
                best, best_k = v0, 0
                best_k = 1 if v1 > best else best_k  # strict '>': ties keep the earlier position
                best = v1 if v1 > best else best
                best_k = 2 if v2 > best else best_k
                best = v2 if v2 > best else best
                best_k = 3 if v3 > best else best_k
                best = v3 if v3 > best else best
                total = v0 + v0 + v1 + v2 + v3  # NaN iff a NaN (or +inf and -inf) is in the window
                if total != total:  # rare: the last NaN wins, as in the general kernel
                    for k, v in enumerate((v0, v1, v2, v3)):
                        if v != v:
                            best, best_k = v, k
                out[n, c, o_h, o_w] = best
                if record:
                    argmax[n, c, o_h, o_w] = best_k


def maxpool2d_backward_kernel(dout: np.ndarray, argmax: np.ndarray, x_shape, kh: int, kw: int,
                              sh: int, sw: int, engine: str) -> np.ndarray:
    """Route each ``dout`` entry to the input position its window's ``argmax`` names (summing overlaps)."""
    dx = np.zeros(x_shape, dtype=dout.dtype)
    kernel = _maxpool_backward_numba if engine == "numba" else _maxpool_backward_numpy
    kernel(np.ascontiguousarray(dout), argmax, kh, kw, sh, sw, dx)
    return dx


def _maxpool_backward_numpy(dout, argmax, kh, kw, sh, sw, dx):
    """NumPy twin: for every window position, add the gradients of the windows that chose it."""
    oh, ow = dout.shape[2:]
    for i in range(kh):
        for j in range(kw):
            window_view(dx, i, j, sh, sw, oh, ow)[...] += np.where(argmax == i * kw + j, dout, 0)


@njit(cache=True, parallel=True)
def _maxpool_backward_numba(dout, argmax, kh, kw, sh, sw, dx):
    """Numba kernel of :func:`maxpool2d_backward_kernel`; one parallel task per (image, channel)."""
    n_batch, channels, oh, ow = dout.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        for o_h in range(oh):
            for o_w in range(ow):
                k = argmax[n, c, o_h, o_w]
                i = k // kw
                dx[n, c, o_h * sh + i, o_w * sw + k - i * kw] += dout[n, c, o_h, o_w]


# --- ReLU backward ------------------------------------------------------------------------------------

def relu_backward_kernel(dout: np.ndarray, mask: np.ndarray, engine: str) -> np.ndarray:
    r"""Select :math:`dx = dout \cdot [x > 0]`: ``dout`` where ``mask`` holds, exact zeros elsewhere.

    ``dout`` and ``mask`` (bool) must have the same shape. A select, not a product: ``dout * mask`` would
    turn an infinite or NaN gradient behind a closed gate into NaN, where the rectifier's derivative is 0.
    """
    dx = np.empty(dout.shape, dtype=dout.dtype)
    kernel = _relu_backward_numba if engine == "numba" else _relu_backward_numpy
    kernel(np.ascontiguousarray(dout).reshape(-1), np.ascontiguousarray(mask).reshape(-1), dx.reshape(-1))
    return dx


def _relu_backward_numpy(dout, mask, dx):
    """NumPy twin of :func:`_relu_backward_numba`: ``np.where`` (flat arrays)."""
    dx[...] = np.where(mask, dout, np.zeros((), dtype=dout.dtype))


@njit(cache=True)
def _relu_backward_numba(dout, mask, dx):
    """Numba kernel of :func:`relu_backward_kernel`: one branch-free select per entry (flat arrays).

    Why a kernel for so simple a thing: NumPy's ``np.where`` branches on every entry, and a ReLU mask is
    close to a coin toss, so it mispredicts half the time. Measured on LeNet-5's first ReLU (64×20×24×24
    float32): ``np.where`` 2.6 ms, this loop (which LLVM turns into vector blends) 0.07 ms. Serial: it is
    memory-bound and already far below the cost of the layers around it.
    """
    for k in range(dout.size):
        if mask[k]:
            dx[k] = dout[k]
        else:
            dx[k] = 0
