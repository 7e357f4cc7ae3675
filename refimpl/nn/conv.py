r"""2-D convolution (cross-correlation, as in PyTorch) computed as one GEMM over an im2col matrix.

For an input ``x`` (N, C, H, W), weights ``W`` (F, C, KH, KW), bias ``b`` (F,), stride ``s`` and zero
padding ``p``:

.. math:: y_{n f o_h o_w} = b_f + \sum_{c=0}^{C-1} \sum_{i=0}^{KH-1} \sum_{j=0}^{KW-1}
          W_{f c i j}\; x^{\mathrm{pad}}_{n,\, c,\, s o_h + i,\, s o_w + j}

With ``cols = im2col(x)`` (see :mod:`refimpl.nn._kernels`) of shape (C·KH·KW, N·OH·OW) and the *GEMM view*
``W_g = W.reshape(F, C·KH·KW)``, this is the matrix product ``Y_g = W_g @ cols + b`` of shape (F, N·OH·OW),
whose columns are then rearranged to (N, F, OH, OW). Backpropagation is two more products and the adjoint
of im2col:

.. math:: \frac{\partial L}{\partial W_g} = G_g\, \mathrm{cols}^T, \qquad
          \frac{\partial L}{\partial b} = G_g \mathbf{1}, \qquad
          \frac{\partial L}{\partial x} = \mathrm{col2im}\!\left(W_g^T G_g\right),

where ``G_g`` is the upstream gradient ``dout`` (N, F, OH, OW) rearranged to (F, N·OH·OW).

**Reading order for students**, three steps, all public and all tested equal (``tests/test_nn_conv.py``):

1. the *loop versions* at the end of the module, :func:`conv2d_forward_naive` and
   :func:`conv2d_backward_naive`: the formula above and its derivative, one window at a time; the
   definition everything else is tested against (exercise 2 of ``notebooks/08_exercises`` asks for the
   backward pass);
2. the *textbook GEMM versions*, :func:`conv2d_forward_gemm` and :func:`conv2d_backward_gemm`: the three
   formulas above written literally, im2col + one matrix product (+ col2im), a few lines each;
3. the *tuned versions* :func:`conv2d_forward` and :func:`conv2d_backward`: the same products, grouped
   for BLAS (image by image for a first layer, operand order, a transposed col2im) with numba kernels.
   Their docstrings explain the rearrangements; the timings quoted in :func:`_weight_gradient` only
   justify how a sum is grouped (they change the rounding, never the mathematics).
"""

from __future__ import annotations

import numbers

import numpy as np

from refimpl._validation import check_allocation, check_positive_int
from refimpl.nn import parallel
from refimpl.nn._kernels import (
    _pad,
    check_engine,
    check_float_array,
    col2im,
    col2im_rows_last_into,
    conv_output_size,
    im2col,
    im2col_into,
    pair,
)
from refimpl.nn.init import uniform_fan_in
from refimpl.nn.module import Module

__all__ = ["Conv2d", "conv2d_backward", "conv2d_backward_gemm", "conv2d_backward_naive", "conv2d_forward",
           "conv2d_forward_gemm", "conv2d_forward_naive"]


def _check_conv_args(x, w, b, stride, padding):
    """Validate a convolution's arguments; return them as arrays/ints (shared by fast and naive code)."""
    x = check_float_array(x, "x", 4)
    w = check_float_array(w, "w", 4)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but w expects {w.shape[1]} "
                         f"(x shape {x.shape}, w shape {w.shape})")
    if b is not None:
        b = check_float_array(b, "b", 1)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b must have shape ({w.shape[0]},) (one entry per filter), got {b.shape}")
    stride = check_positive_int(stride, "stride")
    padding = check_positive_int(padding, "padding", minimum=0)
    f, c, kh, kw = w.shape
    oh = conv_output_size(x.shape[2], kh, stride, padding, name="kernel height (w.shape[2])")
    ow = conv_output_size(x.shape[3], kw, stride, padding, name="kernel width (w.shape[3])")
    # Refuse sizes no machine here can hold (padding=10**6 asked for 116 TiB) before allocating anything:
    # the padded input, the im2col matrix and the output exist at the same time.
    n = x.shape[0]
    padded = (n, c, x.shape[2] + 2 * padding, x.shape[3] + 2 * padding) if padding else (0,)
    check_allocation([padded, (c * kh * kw, n * oh * ow), (n, f, oh, ow)], np.result_type(x, w),
                     f"a convolution of x {x.shape} with w {w.shape}, stride {stride} and padding {padding}")
    return x, w, b, stride, padding, oh, ow


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, padding: int = 0,
                   engine: str = "numba"):
    r"""Convolve a batch of images with a bank of filters (one im2col GEMM), tuned.

    The same numbers as the textbook :func:`conv2d_forward_gemm` (read that first), with the product
    grouped for BLAS and numba's im2col.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, KH, KW)
    b : ndarray, shape (F,) or None
    stride : int, default 1
        Step between windows, in both directions.
    padding : int, default 0
        Zeros added on every side of every image.
    engine : {"numba", "numpy"}
        Kernel used for im2col (the GEMM is BLAS either way).

    Returns
    -------
    out : ndarray, shape (N, F, OH, OW), C-contiguous
        :math:`OH = \lfloor (H + 2p - KH)/s \rfloor + 1`, likewise ``OW``. dtype: ``result_type(x, w)``
        (float32 in, float32 out). Computed as one GEMM over the batch, or image by image when
        :math:`OH \cdot OW \ge C \cdot KH \cdot KW` (faster for BLAS; see :func:`_per_image`).
    cache : tuple
        What :func:`conv2d_backward` needs, including the im2col matrix (inside
        :func:`refimpl.nn.parallel.split_gemms`, for the image-by-image layers, the padded input instead:
        see :func:`_forward_image_groups`).

    Raises
    ------
    ValueError
        Wrong ``ndim``, channel mismatch between ``x`` and ``w``, a bias of the wrong length, a kernel
        larger than the padded input, ``stride < 1``, ``padding < 0`` or an unknown ``engine``.
    TypeError
        Non-floating ``x``/``w``/``b`` or non-integer ``stride``/``padding``.

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> conv2d_forward(x, w, None, stride=2)[0]
    array([[[[10., 18.],
             [42., 50.]]]])
    """
    x, w, b, stride, padding, oh, ow = _check_conv_args(x, w, b, stride, padding)
    engine = check_engine(engine)
    n = x.shape[0]
    f, c, kh, kw = w.shape
    if parallel.split_workers() > 1 and _per_image(oh, ow, c * kh * kw):
        return _forward_image_groups(x, w, b, stride, padding, oh, ow, engine)
    cols = im2col(x, kh, kw, stride, padding, engine=engine)
    w_gemm = w.reshape(f, -1)
    r = cols.shape[0]
    if _per_image(oh, ow, r):
        # N products (F, R) @ (R, OH*OW), one batched matmul over strided views of cols, written straight
        # into NCHW order: no transpose copy. LeNet-5's conv1 (R=25, OH*OW=576), float32, 2 threads:
        # 0.38 ms, against 0.43 ms GEMM + 0.09 ms transpose alone, and 1-3 ms in a training step, where
        # the two large fresh arrays of that path also cost page faults.
        cols_per_image = cols.reshape(r, n, oh * ow).transpose(1, 0, 2)
        out = parallel.matmul(w_gemm, cols_per_image, split="batch")  # (N, F, OH*OW)
        if b is not None:
            out += b[:, None]
        out = out.reshape(n, f, oh, ow)
    else:
        out_gemm = parallel.matmul(w_gemm, cols, split="cols")  # (F, N*OH*OW), one call (or one per thread)
        if b is not None:
            out_gemm += b[:, None]
        # (F, N, OH, OW) -> (N, F, OH, OW); the copy is small next to the GEMM and keeps NCHW contiguous
        out = np.ascontiguousarray(out_gemm.reshape(f, n, oh, ow).transpose(1, 0, 2, 3))
    cache = (x.shape, w, b is not None, stride, padding, cols, engine)
    return out, cache


def conv2d_backward(dout: np.ndarray, cache, *, input_grad: bool = True):
    r"""Gradients of :func:`conv2d_forward` with respect to ``x``, ``w`` and ``b``, tuned.

    The same numbers as the textbook :func:`conv2d_backward_gemm` (read that first), grouped for BLAS.

    Parameters
    ----------
    dout : ndarray, shape (N, F, OH, OW)
        Upstream gradient :math:`\partial L / \partial y`.
    cache : tuple
        From :func:`conv2d_forward`.
    input_grad : bool, default True
        ``False`` skips :math:`\partial L/\partial x` (returned as ``None``): a network's first layer does
        not need it, and it costs a GEMM and a col2im.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
        ``col2im(W_g^T G_g)``, computed as ``col2im((G_g^T W_g)^T)`` (the transposed layout, faster; see
        :func:`refimpl.nn._kernels.col2im`).
    dw : ndarray, shape (F, C, KH, KW)
        ``(G_g cols^T)`` reshaped (how the sum is grouped for BLAS: :func:`_weight_gradient`).
    db : ndarray, shape (F,), or None when the forward pass had no bias
        ``sum over n, o_h, o_w`` of ``dout``.
    """
    x_shape, w, has_bias, stride, padding, saved, engine = cache
    dout = check_float_array(dout, "dout", 4)
    n, _, oh, ow = dout.shape
    f, _, kh, kw = w.shape
    expected = (x_shape[0], f, (x_shape[2] + 2 * padding - kh) // stride + 1,
                (x_shape[3] + 2 * padding - kw) // stride + 1)
    if dout.shape != expected:
        raise ValueError(f"dout has shape {dout.shape}, the forward pass produced {expected}")
    # einsum, not dout.sum(axis=(0, 2, 3)): the same sum, as accurate in float32 (relative error 3e-7 on
    # LeNet-5's conv1), 3-4x faster (0.14 -> 0.04 ms there): NumPy's multi-axis reduction is slow on it
    db = np.einsum("nfk->f", dout.reshape(n, f, -1)) if has_bias else None
    if saved.ndim == 4:  # the image-group path kept the padded input, not the columns
        dx, dw = _backward_image_groups(dout, saved, w, stride, padding, x_shape, engine, input_grad)
        return dx, dw, db
    cols = saved
    dw = _weight_gradient(dout, cols).reshape(w.shape)
    dx = None
    if input_grad:
        # dcols^T = G_g^T W_g, with G_g^T = dout as (N*OH*OW, F): "rows last", see col2im(transposed=True)
        dout_rows = np.ascontiguousarray(dout.transpose(0, 2, 3, 1)).reshape(-1, f)
        dcols_t = parallel.matmul(dout_rows, w.reshape(f, -1), split="rows")
        dx = col2im(dcols_t, x_shape, kh, kw, stride, padding, transposed=True, engine=engine)
    return dx, dw, db


# --- image groups on threads (inside refimpl.nn.parallel.split_gemms) ----------------------------------

#: Bytes of im2col columns an image-group task builds at a time: about what a core's L2 cache holds, so
#: the columns are still there when the GEMM reads them.
CHUNK_BYTES = 1 << 21


def _chunks(lo: int, hi: int, image_bytes: int):
    """Consecutive ranges covering ``lo..hi-1`` of about :data:`CHUNK_BYTES` of columns each."""
    step = max(1, CHUNK_BYTES // image_bytes)
    return [(start, min(hi, start + step)) for start in range(lo, hi, step)]


def _forward_image_groups(x, w, b, stride, padding, oh, ow, engine):
    r"""Run the image-by-image forward pass with the batch split into one group of images per thread.

    Each thread builds the columns of its images a chunk at a time (a serial, GIL-free im2col into its
    own buffer) and multiplies them right away with single-threaded BLAS, so the columns are still in
    its cache, and the threads never synchronise inside a kernel. Every image's product is the same
    (F, R) x (R, OH·OW) GEMM as in :func:`conv2d_forward`'s batched version. The cache keeps the padded
    input (N·C·H'·W' entries) instead of the columns (R·N·OH·OW, 9x larger for a 3x3 kernel): backward
    rebuilds them the same way.
    """
    n = x.shape[0]
    f, c, kh, kw = w.shape
    r, p = c * kh * kw, oh * ow
    w_gemm = w.reshape(f, r)
    x_pad = _pad(np.ascontiguousarray(x), padding)
    out = np.empty((n, f, p), dtype=np.result_type(x, w))

    def task(lo: int, hi: int) -> None:
        chunks = _chunks(lo, hi, r * p * x_pad.itemsize)
        buf = np.empty((r, chunks[0][1] - chunks[0][0], oh, ow), dtype=x_pad.dtype)
        for start, stop in chunks:
            cols4 = buf[:, :stop - start]
            im2col_into(x_pad[start:stop], kh, kw, stride, cols4, engine, serial=True)
            np.matmul(w_gemm, cols4.reshape(r, stop - start, p).transpose(1, 0, 2), out=out[start:stop])

    parallel.map_ranges(task, n)
    if b is not None:
        out += b[:, None]
    return out.reshape(n, f, oh, ow), (x.shape, w, b is not None, stride, padding, x_pad, engine)


def _backward_image_groups(dout, x_pad, w, stride, padding, x_shape, engine, input_grad):
    r"""``(dx, dw)`` of :func:`_forward_image_groups`, with the same groups, chunks and serial kernels.

    :math:`\partial L/\partial W_g = \sum_n G_n \mathrm{cols}_n^T`: every thread writes its images' terms
    into one (N, F, R) array, summed over the images afterwards in image order, so the sum is the one
    :func:`_weight_gradient` computes and does not depend on the number of threads;
    :math:`\mathrm{dcols}_n^T = G_n^T W_g` is scattered back by a serial col2im into the thread's own
    images of ``dx``.
    """
    n, f, oh, ow = dout.shape
    _, c, kh, kw = w.shape
    r, p = c * kh * kw, oh * ow
    dtype = np.result_type(dout, x_pad)
    dout3 = np.ascontiguousarray(dout).reshape(n, f, p)
    w_gemm = w.reshape(f, r)
    terms = np.empty((n, f, r), dtype=dtype)
    dx_pad = np.zeros(x_pad.shape, dtype=dtype) if input_grad else None

    def task(lo: int, hi: int) -> None:
        chunks = _chunks(lo, hi, r * p * x_pad.itemsize)
        buf = np.empty((r, chunks[0][1] - chunks[0][0], oh, ow), dtype=x_pad.dtype)
        for start, stop in chunks:
            m = stop - start
            cols4 = buf[:, :m]
            im2col_into(x_pad[start:stop], kh, kw, stride, cols4, engine, serial=True)
            np.matmul(dout3[start:stop], cols4.reshape(r, m, p).transpose(1, 2, 0), out=terms[start:stop])
            if input_grad:
                # dcols^T = G^T W_g with G^T = dout as (m*OH*OW, F): "rows last", see col2im(transposed=True)
                dout_rows = np.ascontiguousarray(dout[start:stop].transpose(0, 2, 3, 1)).reshape(-1, f)
                col2im_rows_last_into((dout_rows @ w_gemm).reshape(m, oh, ow, r), kh, kw, stride,
                                      dx_pad[start:stop], engine, serial=True)

    parallel.map_ranges(task, n)
    dw = terms.sum(axis=0).reshape(w.shape)
    dx = None
    if input_grad:
        h, wd = x_shape[2:]
        dx = dx_pad if padding == 0 else np.ascontiguousarray(
            dx_pad[:, :, padding:padding + h, padding:padding + wd])
    return dx, dw


def _per_image(oh: int, ow: int, r: int) -> bool:
    r"""Whether the GEMMs over the batch are better done image by image: when :math:`OH \cdot OW \ge R`.

    One product over all N·OH·OW windows gives BLAS the largest matrices, which is best when the GEMM
    rows ``R = C·KH·KW`` are long (LeNet-5's conv2: R=500, OH·OW=64). A first layer has few input
    channels, so short rows and many windows per image (conv1: R=25, OH·OW=576); its single product is
    skinny, and N ordinary products of (F, R) x (R, OH·OW) run 2-3x faster (see the two uses).
    """
    return oh * ow >= r


def _weight_gradient(dout: np.ndarray, cols: np.ndarray) -> np.ndarray:
    r"""Return the GEMM view of dL/dW, :math:`G_g\, \mathrm{cols}^T` (F, R), in the faster of two groupings.

    ``dout`` is (N, F, OH, OW), ``cols`` (R, N·OH·OW). The product sums over all N·OH·OW windows; how that
    sum is split changes only the rounding, but BLAS speed a lot (OpenBLAS, float32, 2 threads, measured):

    * **one image at a time** when a window set is longer than a GEMM row (``OH·OW >= R``):
      :math:`\sum_n G_n\, \mathrm{cols}_n^T` as one batched ``matmul`` over (F, OH·OW) @ (OH·OW, R)
      products, which also reads ``dout`` as it is. LeNet-5's conv1 (F=20, R=25, N·OH·OW=36,864): 0.38 ms,
      against 1.04 ms for the single skinny product, whose long reduction OpenBLAS does not split well;
    * otherwise **one product** for the whole batch, computed as :math:`(\mathrm{cols}\, G_g^T)^T` (the
      operand order OpenBLAS runs fastest here). LeNet-5's conv2 (F=50, R=500, N·OH·OW=4,096): 1.27 ms,
      against 1.74 ms for :math:`G_g\, \mathrm{cols}^T` and 2.95 ms image by image.
    """
    n, f, oh, ow = dout.shape
    r = cols.shape[0]
    if _per_image(oh, ow, r):
        cols_per_image = cols.reshape(r, n, oh * ow).transpose(1, 2, 0)  # (N, OH*OW, R), a view
        dout_per_image = np.ascontiguousarray(dout).reshape(n, f, oh * ow)
        return parallel.matmul(dout_per_image, cols_per_image, split="batch").sum(axis=0)
    # (N, F, OH, OW) -> (F, N*OH*OW), the column order of cols
    dout_gemm = np.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(f, -1)
    return parallel.matmul(cols, dout_gemm.T, split="rows").T


def conv2d_forward_gemm(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1,
                        padding: int = 0) -> np.ndarray:
    r"""Textbook version of :func:`conv2d_forward`: im2col, one matrix product, back to NCHW.

    The middle step between the loops of :func:`conv2d_forward_naive` and the tuned
    :func:`conv2d_forward`: unfold every window into a column (:func:`~refimpl.nn._kernels.im2col`), and
    the convolution becomes :math:`Y_g = W_g\, \mathrm{cols} + b` with the GEMM view
    :math:`W_g` = ``w.reshape(F, C·KH·KW)``; the columns of :math:`Y_g` (F, N·OH·OW) are ordered
    ``(n, o_h, o_w)``, so a reshape and a transpose give (N, F, OH, OW). Same arguments, checks and
    output as :func:`conv2d_forward` (without the cache).
    """
    x, w, b, stride, padding, oh, ow = _check_conv_args(x, w, b, stride, padding)
    n, f = x.shape[0], w.shape[0]
    cols = im2col(x, w.shape[2], w.shape[3], stride, padding, engine="numpy")  # (C·KH·KW, N·OH·OW)
    y_gemm = w.reshape(f, -1) @ cols                                             # (F, N·OH·OW)
    if b is not None:
        y_gemm = y_gemm + b[:, None]
    return np.ascontiguousarray(y_gemm.reshape(f, n, oh, ow).transpose(1, 0, 2, 3))


def conv2d_backward_gemm(dout: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                         stride: int = 1, padding: int = 0):
    r"""Textbook version of :func:`conv2d_backward`: the three products of the module docstring, literally.

    With :math:`G_g` = ``dout`` rearranged to (F, N·OH·OW) (the layout of :math:`Y_g`):
    :math:`\partial L/\partial W_g = G_g\, \mathrm{cols}^T`, :math:`\partial L/\partial b = G_g \mathbf 1`,
    :math:`\partial L/\partial x = \mathrm{col2im}(W_g^T G_g)` (col2im, the adjoint of im2col, adds up
    what overlapping windows share). Returns ``(dx, dw, db)`` like :func:`conv2d_backward_naive` (same
    arguments; ``db`` is ``None`` when ``b`` is ``None``).
    """
    x, w, b, stride, padding, oh, ow = _check_conv_args(x, w, b, stride, padding)
    n, f = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    dout = check_float_array(dout, "dout", 4)
    if dout.shape != (n, f, oh, ow):
        raise ValueError(f"dout must have shape {(n, f, oh, ow)}, got {dout.shape}")
    cols = im2col(x, kh, kw, stride, padding, engine="numpy")       # (C·KH·KW, N·OH·OW)
    g = dout.transpose(1, 0, 2, 3).reshape(f, -1)                    # G_g: (F, N·OH·OW)
    w_gemm = w.reshape(f, -1)                                        # W_g: (F, C·KH·KW)
    dw = (g @ cols.T).reshape(w.shape)
    db = g.sum(axis=1) if b is not None else None
    dx = col2im(w_gemm.T @ g, x.shape, kh, kw, stride, padding, engine="numpy")
    return dx, dw, db


def conv2d_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1,
                         padding: int = 0) -> np.ndarray:
    r"""Teaching version of :func:`conv2d_forward`: the definition, one output pixel at a time.

    .. math:: y_{n f o_h o_w} = b_f + \sum_{c, i, j} W_{f c i j}\;
              x^{\mathrm{pad}}_{n,\, c,\, s o_h + i,\, s o_w + j}

    For every image ``n``, filter ``f`` and output pixel ``(o_h, o_w)``: take the ``C x KH x KW`` window
    of the zero-padded input that starts at ``(s o_h, s o_w)``, multiply it entry by entry with the
    filter and add the bias. Four nested loops and nothing else, so it is slow (use it on small inputs)
    and easy to check by hand. It is the reference the fast im2col version is tested against
    (``tests/test_nn_conv.py``, ``tests/test_sparse_engine.py``).

    Same arguments, checks and output as :func:`conv2d_forward` (without the cache).
    """
    x, w, b, stride, padding, oh, ow = _check_conv_args(x, w, b, stride, padding)
    n, f = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.zeros((n, f, oh, ow), dtype=np.result_type(x, w))
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for c in range(ow):
                    window = x_pad[i, :, r * stride:r * stride + kh, c * stride:c * stride + kw]
                    out[i, k, r, c] = np.sum(window * w[k]) + (b[k] if b is not None else 0.0)
    return out


def conv2d_backward_naive(dout: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                          stride: int = 1, padding: int = 0):
    r"""Teaching version of :func:`conv2d_backward`: each output pixel sends its gradient back to its window.

    Differentiating the formula of :func:`conv2d_forward_naive`, the output pixel :math:`y_{nfo_ho_w}` with
    upstream
    gradient :math:`g = \partial L / \partial y_{nfo_ho_w}` contributes

    .. math:: \frac{\partial L}{\partial W_f} \mathrel{+}= g \cdot x^{\mathrm{pad}}_{n,\,:,\,\text{window}},
              \qquad
              \frac{\partial L}{\partial x^{\mathrm{pad}}_{n,\,:,\,\text{window}}} \mathrel{+}= g \cdot W_f,
              \qquad \frac{\partial L}{\partial b_f} \mathrel{+}= g .

    Windows overlap when the stride is smaller than the kernel, so the input gradient *adds up* the
    contributions of every window that read a pixel; the padding is cut off at the end. Loops only, for
    reading and for testing the fast version (``tests/test_nn_conv.py`` checks both against finite
    differences); exercise 2 of ``notebooks/08_exercises`` asks a student to derive it.

    Returns ``(dx, dw, db)`` like :func:`conv2d_backward` (``db`` is ``None`` when ``b`` is ``None``).
    """
    x, w, b, stride, padding, oh, ow = _check_conv_args(x, w, b, stride, padding)
    n, f = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for c in range(ow):
                    g = dout[i, k, r, c]
                    rows, cols = slice(r * stride, r * stride + kh), slice(c * stride, c * stride + kw)
                    dw[k] += g * x_pad[i, :, rows, cols]
                    dx_pad[i, :, rows, cols] += g * w[k]
    dx = dx_pad[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]
    db = dout.sum(axis=(0, 2, 3)) if b is not None else None
    return dx, dw, db


class Conv2d(Module):
    r"""2-D convolution layer holding ``weight`` (F, C, KH, KW) and optionally ``bias`` (F,).

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``F``.
    kernel_size : int or (int, int)
        ``(KH, KW)``; an int means a square kernel.
    stride : int, default 1
    padding : int, default 0
    bias : bool, default True
    rng : numpy.random.Generator, optional
        Source of the initial weights (default ``default_rng(0)``).
    dtype : numpy dtype, default float32

    Notes
    -----
    Weights and bias start as :math:`U(-1/\sqrt{C K_H K_W},\ 1/\sqrt{C K_H K_W})`, PyTorch's default.
    Attribute ``engine`` (``"numba"`` or ``"numpy"``) selects the im2col kernels. Setting
    ``input_grad = False`` (e.g. on a network's first layer) makes :meth:`backward` skip dL/dx and
    return ``None``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding: int = 0,
                 bias: bool = True, *, rng: np.random.Generator | None = None, dtype=np.float32) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = check_positive_int(stride, "stride")
        self.padding = check_positive_int(padding, "padding", minimum=0)
        if not isinstance(bias, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.params["weight"] = uniform_fan_in(shape, fan_in, rng, dtype)
        if bias:
            self.params["bias"] = uniform_fan_in((self.out_channels,), fan_in, rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.engine = "numba"
        self.input_grad = True
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) -> (N, F, OH, OW)."""
        out, cache = conv2d_forward(x, self.params["weight"], self.params.get("bias"),
                                    self.stride, self.padding, engine=self.engine)
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Write ``grads['weight']`` (and ``grads['bias']``); return dL/dx (None unless input_grad)."""
        dx, dw, db = conv2d_backward(dout, self._saved(), input_grad=self.input_grad)
        self.grads["weight"][...] = dw
        if db is not None:
            self.grads["bias"][...] = db
        return dx

    def extra_repr(self) -> str:
        """Describe the layer's settings (shown by ``repr``)."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params}")
