"""Vectorised NumPy kernels for N-d convolution, pooling and normalisation.

Pure NumPy, no imports from the rest of the service: the layer catalogue calls these from its
forward passes, and nothing here knows about layers or specs. Arrays are float32, batch first,
channels second (NC + spatial), as in PyTorch. Convolutions and pools are prepared once per
input size (`conv_kernel`, `pool_kernel`) and choose their algorithm then: im2col + GEMM in
cache-sized chunks, or Winograd F(4×4, 3×3) for 3×3 stride-1 convs over enough channels.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from .parallel import pieces, run_all, threads_now


def conv_out_size(length: int, k: int, stride: int, dilation: int, pad_lo: int, pad_hi: int) -> int:
    return (length + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def pad_spatial(x: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """Zero-pad the spatial axes (all but N and C); x itself when there is nothing to pad."""
    if not any(lo) and not any(hi):
        return x
    shape = (*x.shape[:2], *(n + a + b for n, a, b in zip(x.shape[2:], lo, hi, strict=True)))
    # A filled buffer and one slice assignment: several times cheaper than np.pad.
    out = np.zeros(shape, dtype=np.float32)
    inner = (slice(a, a + n) for a, n in zip(lo, x.shape[2:], strict=True))
    out[(slice(None), slice(None), *inner)] = x
    return out


#: Target size of one im2col chunk. Columns built and multiplied while they sit in the CPU's
#: cache run at memory-copy speed; a whole batch's columns spill to DRAM and the copy then costs
#: as much as the GEMM. Measured on ResNet-18's 3×3 convs at batch 8 (2-core EPYC, 32 MiB L3):
#: 56×56 maps 20.8 ms with 64 MiB chunks, 15.3 with 1 MiB, 13.7 with 2-4 MiB.
DEFAULT_SCRATCH_BYTES = 4 * 1024 * 1024
#: Below this many output positions per image, the images of a chunk share one GEMM (their
#: columns side by side) instead of one small GEMM each: a 7×7 map gives only 49 columns
#: (ResNet-18's 512-channel 3×3 conv at batch 8: 14.1 → 12.0 ms); at 28×28 it no longer pays.
MERGE_BELOW = 256
#: Below this many input values a pool runs on one thread: handing out pieces costs more.
MIN_PARALLEL_VALUES = 1 << 16
#: Below this many multiply-adds a conv runs on one thread (handing a piece to another thread
#: costs tens of microseconds; LeNet's convs take a few).
MIN_PARALLEL_MACS = 1 << 22

Epilogue = Callable[[np.ndarray], object]


#: Winograd F(m×m, 3×3) transforms (Lavin & Gray 2016): (Bᵀ, G, Aᵀ), exact in float64.
WINOGRAD_TRANSFORMS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            np.float64,
        ),  # fmt: skip
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ],
            np.float64,
        ),  # fmt: skip
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
            np.float64,
        ),
    ),
}


def winograd_tile(setting: str | None) -> int:
    """CONVSERVE_WINOGRAD: the output tile side m of F(m×m, 3×3), 4 (default) or 2; 0 = off."""
    value = (setting or "4").strip().lower()
    tiles = {"0": 0, "off": 0, "2": 2, "4": 4}
    if value not in tiles:
        raise ValueError(f"CONVSERVE_WINOGRAD must be 4, 2 or 0 (off), got {setting!r}")
    return tiles[value]


#: Output tile side of the Winograd convolutions; 0 turns them off.
WINOGRAD_TILE = winograd_tile(os.environ.get("CONVSERVE_WINOGRAD"))
#: Winograd pays off when the GEMMs it shrinks outweigh its transforms, which grow with the
#: channels: from 64 in and out (measured on ResNet-18's convs, 56×56×64 to 7×7×512).
WINOGRAD_MIN_CHANNELS = 64
#: With fewer tiles than this per call its 4× larger transformed weight is read for too little
#: work (7×7×512 at batch 1: 3.0 ms against 1.9 ms direct), so the direct kernel runs instead.
WINOGRAD_MIN_TILES = 16
WINOGRAD_SCRATCH_BYTES = 16 * 1024 * 1024
#: Largest working set (input tiles, their transform, the products) of one Winograd piece: cut
#: finer than the threads need so it stays in a core's cache. ResNet-18's 56×56×64 conv at batch
#: 1 on one thread: 3.5 ms as one piece (5.4 MB), 1.6 ms in bands of ≤ 1 MiB.
WINOGRAD_PIECE_BYTES = 1024 * 1024


def conv_kernel(
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    pad_lo: Sequence[int],
    pad_hi: Sequence[int],
    groups: int,
    in_spatial: Sequence[int],
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
    epilogue: Epilogue | None = None,
    winograd: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The convolution prepared for one input size, by the best algorithm for its geometry:
    Winograd F(m×m, 3×3) for 3×3 stride-1 convs over enough channels (`winograd` = m, 0 for
    never; default WINOGRAD_TILE), im2col + GEMM for everything else (see _im2col_kernel)."""
    direct = _im2col_kernel(weight, bias, stride, dilation, pad_lo, pad_hi, groups, in_spatial,
                            scratch_bytes, epilogue)  # fmt: skip
    m = WINOGRAD_TILE if winograd is None else winograd
    if (
        m
        and tuple(weight.shape[2:]) == (3, 3)
        and tuple(stride) == tuple(dilation) == (1, 1)
        and groups == 1
        and min(weight.shape[:2]) >= WINOGRAD_MIN_CHANNELS
    ):
        return winograd_kernel(weight, bias, pad_lo, pad_hi, in_spatial, m, direct, epilogue)
    return direct


def winograd_kernel(
    weight: np.ndarray,
    bias: np.ndarray | None,
    pad_lo: Sequence[int],
    pad_hi: Sequence[int],
    in_spatial: Sequence[int],
    m: int,
    direct: Callable[[np.ndarray], np.ndarray],
    epilogue: Epilogue | None = None,
    min_tiles: int = WINOGRAD_MIN_TILES,
    scratch_bytes: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """A 3×3 stride-1 conv as Winograd F(m×m, 3×3): (m+2)² products per m×m outputs instead of
    9·m² (F(4×4): 36 instead of 144, a quarter of the multiply-adds).

    Every transform is a matrix product, so all the arithmetic runs in BLAS: the padded input is
    cut into overlapping (m+2)² tiles (one copy, laid out (α², C·tiles)), transformed by
    kron(Bᵀ, Bᵀ); then one GEMM per tile position with the transformed weight U (α², O, C);
    then kron(Aᵀ, Aᵀ) maps each tile back to m×m outputs, which are copied into place. The
    images go through in groups whose transformed tiles fit `scratch_bytes`, cut into bands of
    tile rows small enough for a core's cache (WINOGRAD_PIECE_BYTES) and many enough for the
    engine's threads to share (see parallel.py). When the output channels outnumber the tiles
    (deep layers on small maps, U larger than the tiles), every tile is transformed once and the
    threads share out the output channels instead, so each reads only its slice of U.

    Float32 error: the transforms' non-integer constants (G has 1/6, 1/24) cost accuracy: on
    ResNet-18's layers the largest difference from a float64 reference, relative to the largest
    output, is ~1e-5 for F(4×4), against ~5e-7 for im2col and F(2×2); tests bound it. U is
    computed on the first call that uses it (batches with fewer than `min_tiles` tiles run
    `direct`), so a server that only sees small batches never holds it.
    """
    bt, g, at = WINOGRAD_TRANSFORMS[m]
    alpha = m + 2
    out_ch, channels = weight.shape[:2]
    height, width = in_spatial
    out_h = height + pad_lo[0] + pad_hi[0] - 2
    out_w = width + pad_lo[1] + pad_hi[1] - 2
    th, tw = -(-out_h // m), -(-out_w // m)  # tiles down and across
    hp, wp = m * th + 2, m * tw + 2  # the padded input the tiles cover (zeros beyond pad_hi)
    tile_pad_hi = (hp - height - pad_lo[0], wp - width - pad_lo[1])
    tiles = th * tw
    macs_per_image = 9 * channels * out_ch * out_h * out_w
    kb = np.kron(bt, bt).astype(np.float32)  # (α², α²) on a tile flattened row-major
    ka = np.kron(at, at).astype(np.float32)  # (m², α²)
    b = None if bias is None else np.asarray(bias, np.float32).reshape(1, 1, out_ch, 1)
    per_image = 4 * alpha * alpha * (channels + out_ch) * tiles
    group = max(1, (scratch_bytes or WINOGRAD_SCRATCH_BYTES) // per_image)
    f = 4  # bytes per float32
    # Tile (i, j) of image k holds xp[k, c, m·i + a, m·j + b]: a view (a, b, c, k, i, j).
    strides = (wp * f, f, hp * wp * f, channels * hp * wp * f, m * wp * f, m * f)
    u: list[np.ndarray] = []  # the transformed weight, once needed

    def transformed_weight() -> np.ndarray:
        if not u:
            w64 = np.asarray(weight, np.float64)
            full = np.einsum("xk,ockl,yl->xyoc", g, w64, g)
            u.append(full.reshape(alpha * alpha, out_ch, channels).astype(np.float32))
        return u[0]

    def tiles_of(xp: np.ndarray, n0: int, n: int, i0: int, i1: int) -> np.ndarray:
        """The transformed input tiles of images n0… (n of them), tile rows i0…i1, as
        (α², C, n·rows·tw)."""
        rows = i1 - i0
        offset = n0 * channels * hp * wp * f + i0 * m * wp * f
        shape = (alpha, alpha, channels, n, rows, tw)
        view = np.ndarray(shape, np.float32, xp, offset, strides)
        d = np.empty((alpha * alpha, channels * n * rows * tw), dtype=np.float32)
        np.copyto(d.reshape(shape), view)
        return np.matmul(kb, d).reshape(alpha * alpha, channels, n * rows * tw)

    def outputs(y: np.ndarray, v: np.ndarray, uw: np.ndarray, n0: int, n: int, i0: int, i1: int,
                o0: int, o1: int) -> None:  # fmt: skip
        """Outputs o0…o1 of those tiles, from their transformed input v, into y."""
        rows, o = i1 - i0, o1 - o0
        prod = np.matmul(uw[:, o0:o1], v).reshape(alpha * alpha, o * n * rows * tw)
        out = np.matmul(ka, prod).reshape(m, m, o, n, rows, tw)
        if b is not None:
            out += b[:, :, o0:o1].reshape(1, 1, o, 1, 1, 1)
        if epilogue is not None:
            epilogue(out)
        target = y[n0 : n0 + n, o0:o1, m * i0 : m * i1]
        target.reshape(n, o, rows, m, tw, m, copy=False)[...] = out.transpose(3, 2, 4, 0, 5, 1)

    def piece(
        xp: np.ndarray, y: np.ndarray, uw: np.ndarray, n0: int, n: int, i0: int, i1: int
    ) -> None:
        outputs(y, tiles_of(xp, n0, n, i0, i1), uw, n0, n, i0, i1, 0, out_ch)

    def by_output_channels(xp: np.ndarray, y: np.ndarray, uw: np.ndarray, n_batch: int,
                            want: int) -> None:  # fmt: skip
        # Every tile transformed once (in bands shared by the threads), then the output channels
        # shared out.
        v = np.empty((alpha * alpha, channels, n_batch, th * tw), dtype=np.float32)

        def transform(k: int, i0: int, i1: int) -> None:
            v[:, :, k, i0 * tw : i1 * tw] = tiles_of(xp, k, 1, i0, i1).reshape(
                alpha * alpha, channels, -1
            )

        step = -(-th // max(1, -(-want // n_batch)))
        run_all([functools.partial(transform, k, i0, min(th, i0 + step))
                 for k in range(n_batch) for i0 in range(0, th, step)])  # fmt: skip
        flat = v.reshape(alpha * alpha, channels, n_batch * th * tw)
        cut = -(-out_ch // threads_now())  # one slice a thread: the GEMMs are small already
        run_all(
            [
                functools.partial(
                    outputs, y, flat, uw, 0, n_batch, 0, th, o0, min(out_ch, o0 + cut)
                )
                for o0 in range(0, out_ch, cut)
            ]
        )

    def conv(x: np.ndarray) -> np.ndarray:
        n_batch = x.shape[0]
        if n_batch * tiles < min_tiles:
            return direct(x)
        uw = transformed_weight()
        y = np.empty((n_batch, out_ch, m * th, m * tw), dtype=np.float32)
        xp = np.ascontiguousarray(pad_spatial(x, pad_lo, tile_pad_hi))
        want = pieces() if n_batch * macs_per_image >= MIN_PARALLEL_MACS else 1
        if want > 1 and out_ch > n_batch * tiles:
            # Deep layers, few tiles: the transformed weight outweighs the tiles, so the threads
            # share out the output channels (each reads its slice of U once) instead of the
            # tiles (each would read all of U).
            by_output_channels(xp, y, uw, n_batch, want)
        else:
            # Pieces: groups of images, and bands of rows of tiles within each group, enough for
            # the threads and small enough to stay in cache.
            per = min(group, -(-n_batch // want))
            split = max(1, -(-want // -(-n_batch // per)))  # bands per group of images
            fit = max(
                1, WINOGRAD_PIECE_BYTES // (per * tw * 4 * alpha * alpha * (channels + out_ch))
            )
            band = min(-(-th // min(split, th)), fit)
            run_all(
                [
                    functools.partial(
                        piece, xp, y, uw, n0, min(per, n_batch - n0), i0, min(th, i0 + band)
                    )
                    for n0 in range(0, n_batch, per)
                    for i0 in range(0, th, band)
                ]
            )
        # Tiles past the output's end computed outputs that are not there: a view without them.
        return y if (out_h, out_w) == y.shape[2:] else y[:, :, :out_h, :out_w]

    conv.nbytes = 4 * alpha * alpha * out_ch * channels  # type: ignore[attr-defined] # U, at most
    return conv


def _im2col_kernel(
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    pad_lo: Sequence[int],
    pad_hi: Sequence[int],
    groups: int,
    in_spatial: Sequence[int],
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
    epilogue: Epilogue | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """N-d grouped, dilated, strided convolution (cross-correlation, as PyTorch) via im2col + GEMM,
    prepared for one input size: everything but the batch is worked out once, here.

    weight is (O, C/groups, *k). The padded input is viewed as (n, groups, C/groups, *k, *out)
    without copying, and the output is made a chunk at a time, each chunk's columns no bigger
    than `scratch_bytes` so that they stay in cache: a few whole images, or a band of output rows
    of one image. For large output maps each image's columns (groups, C/groups·kvol, band) meet
    the weight (groups, O/groups, C/groups·kvol) in a matmul that writes straight into the
    (N, O, outvol) output. For small maps the chunk's images are laid side by side so that one
    GEMM covers them all, and its result is transposed into place. A 1×1 stride-1 conv needs no
    columns at all. The bias and `epilogue` (an in-place function such as a fused ReLU) are
    applied to each chunk of output while it is still in cache. When the engine has several
    threads and a group's output channels outnumber the batch's output positions (deep layers on
    small maps, where the weight outweighs the columns), the columns are gathered once and the
    threads share out the output channels, each reading only its slice of the weight.
    """
    rank = len(in_spatial)
    out_ch, cg = weight.shape[0], weight.shape[1]
    channels, og = cg * groups, out_ch // groups
    kshape = tuple(weight.shape[2:])
    sp = tuple(n + a + b for n, a, b in zip(in_spatial, pad_lo, pad_hi, strict=True))
    out_sp = tuple(
        (sp[i] - dilation[i] * (kshape[i] - 1) - 1) // stride[i] + 1 for i in range(rank)
    )
    kvol, ovol = math.prod(kshape), math.prod(out_sp)
    depth = cg * kvol
    w = np.ascontiguousarray(weight.reshape(groups, og, depth), dtype=np.float32)
    b = None if bias is None else np.asarray(bias, dtype=np.float32).reshape(groups, og, 1)
    padded = any(pad_lo) or any(pad_hi)
    pointwise = kvol == 1 and not padded and all(s == 1 for s in stride)
    # Byte strides of a contiguous (n, C, *sp) float32 array, and of the window view over it.
    s_spatial = [4 * math.prod(sp[i + 1 :]) for i in range(rank)]
    s_channel = 4 * math.prod(sp)
    s_item = s_channel * channels
    view_strides = (
        s_item,
        cg * s_channel,
        s_channel,
        *(s_spatial[i] * dilation[i] for i in range(rank)),
        *(s_spatial[i] * stride[i] for i in range(rank)),
    )
    # Chunking: `images` whole images at a time, or one image in bands of `band` output rows.
    per_item = 4 * (out_ch if pointwise else channels * kvol) * ovol
    images = scratch_bytes // max(per_item, 1)
    rows, row = out_sp[0], ovol // out_sp[0]
    band = rows if images else max(1, scratch_bytes * rows // per_item)
    images = max(1, images)
    merge = ovol < MERGE_BELOW and images > 1 and not pointwise
    first_out_axis = 3 + rank  # in the window view (n, groups, cg, *k, *out)

    def finish(chunk: np.ndarray) -> None:
        if b is not None:
            chunk += b
        if epilogue is not None:
            epilogue(chunk)

    def pointwise_piece(xg: np.ndarray, yg: np.ndarray, n0: int, n: int, o0: int, o1: int) -> None:
        target = yg[n0 : n0 + n, :, o0:o1]
        np.matmul(w[:, o0:o1], xg[n0 : n0 + n], out=target)
        finish_rows(target, o0, o1)

    def finish_rows(chunk: np.ndarray, o0: int, o1: int) -> None:
        if b is not None:
            chunk += b[:, o0:o1]
        if epilogue is not None:
            epilogue(chunk)

    def merged_piece(xp: np.ndarray, yg: np.ndarray, n0: int, n: int) -> None:
        # Columns (groups, depth, n·outvol): the images side by side, one GEMM for all.
        view = np.ndarray((n, groups, cg, *kshape, *out_sp), np.float32, xp, n0 * s_item,
                          view_strides)  # fmt: skip
        cols = np.empty((groups, cg, *kshape, n, *out_sp), dtype=np.float32)
        np.copyto(cols, np.moveaxis(view, 0, 2 + rank))
        prod = np.matmul(w, cols.reshape(groups, depth, n * ovol))
        finish(prod)
        yg[n0 : n0 + n] = np.moveaxis(prod.reshape(groups, og, n, ovol), 2, 0)

    def band_piece(xp: np.ndarray, yg: np.ndarray, n0: int, n: int, r0: int, r1: int) -> None:
        # The windows as a strided view of the padded input; the ndarray constructor costs a
        # fraction of as_strided, which matters for small inputs.
        view = np.ndarray((n, groups, cg, *kshape, *out_sp), np.float32, xp, n0 * s_item,
                          view_strides)  # fmt: skip
        if r1 - r0 < rows:
            view = view[(slice(None),) * first_out_axis + (slice(r0, r1),)]
        cols = view.reshape(n, groups, depth, (r1 - r0) * row)  # the one copy
        target = yg[n0 : n0 + n, :, :, r0 * row : r1 * row]
        np.matmul(w, cols, out=target)
        finish(target)

    def by_output_channels(xp: np.ndarray, yg: np.ndarray, n_batch: int) -> None:
        # The columns of every image gathered once (the threads share the copy by image and
        # channel range), then the output channels shared out: each thread reads its slice of
        # the weight once, where cutting the images or rows would have each read all of it.
        view = np.ndarray((n_batch, groups, cg, *kshape, *out_sp), np.float32, xp, 0,
                          view_strides)  # fmt: skip
        cols = np.empty(view.shape, dtype=np.float32)
        threads = threads_now()
        step = -(-cg // max(1, -(-threads // n_batch)))

        def gather(k: int, c0: int, c1: int) -> None:
            np.copyto(cols[k, :, c0:c1], view[k, :, c0:c1])

        run_all([functools.partial(gather, k, c0, min(cg, c0 + step))
                 for k in range(n_batch) for c0 in range(0, cg, step)])  # fmt: skip
        flat = cols.reshape(n_batch, groups, depth, ovol)
        cut = -(-og // threads)

        def gemm(o0: int, o1: int) -> None:
            target = yg[:, :, o0:o1]
            np.matmul(w[:, o0:o1], flat, out=target)
            finish_rows(target, o0, o1)

        run_all([functools.partial(gemm, o0, min(og, o0 + cut)) for o0 in range(0, og, cut)])

    def conv(x: np.ndarray) -> np.ndarray:
        n_batch = x.shape[0]
        xp = pad_spatial(x, pad_lo, pad_hi) if padded else x
        xp = np.ascontiguousarray(xp, dtype=np.float32)
        y = np.empty((n_batch, out_ch, ovol), dtype=np.float32)
        yg = y.reshape(n_batch, groups, og, ovol)
        # Pieces for the engine's threads: cache-sized groups of whole images, cut smaller (fewer
        # images, bands of rows, ranges of output channels) when there are too few of them.
        want = pieces() if n_batch * out_ch * depth * ovol >= MIN_PARALLEL_MACS else 1
        if want > 1 and not pointwise and og > n_batch * ovol:
            # Deep layers on small maps: the weight outweighs the columns of the whole batch.
            by_output_channels(xp, yg, n_batch)
            return y.reshape(n_batch, out_ch, *out_sp)
        per = max(1, min(images, -(-n_batch // want)))
        chunks = -(-n_batch // per)
        split = -(-want // chunks) if chunks < want else 1  # further cuts of each chunk
        tasks: list[Callable[[], None]] = []
        if pointwise:  # the input already is the columns
            xg = xp.reshape(n_batch, groups, cg, ovol)
            step = -(-og // min(split, og))
            for n0 in range(0, n_batch, per):
                for o0 in range(0, og, step):
                    n, o1 = min(per, n_batch - n0), min(og, o0 + step)
                    tasks.append(functools.partial(pointwise_piece, xg, yg, n0, n, o0, o1))
        elif merge and per > 1:
            for n0 in range(0, n_batch, per):
                tasks.append(functools.partial(merged_piece, xp, yg, n0, min(per, n_batch - n0)))
        else:
            step = min(band, -(-rows // min(split, rows)))
            for n0 in range(0, n_batch, per):
                for r0 in range(0, rows, step):
                    n, r1 = min(per, n_batch - n0), min(rows, r0 + step)
                    tasks.append(functools.partial(band_piece, xp, yg, n0, n, r0, r1))
        run_all(tasks)
        return y.reshape(n_batch, out_ch, *out_sp)

    return conv


def pool_kernel(
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pad_lo: Sequence[int],
    out_sp: Sequence[int],
    mode: str,
    divisor: np.ndarray | None = None,
    dilation: Sequence[int] | None = None,
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES,
) -> Callable[[np.ndarray], np.ndarray]:
    """Max or average pooling as running reductions over strided slices, one axis at a time,
    prepared for one input size.

    A window's max (or sum) is the max (sum) over its rows of each row's max (sum), so each
    spatial axis is reduced in turn: k strided slices per axis instead of k^rank, each pass on a
    smaller array. Nothing is padded: each tap reduces only the outputs whose window has that tap
    inside the input, which is what padding with -inf (max) or 0 (average) amounts to, and the
    same holds for ceil_mode's last windows that reach past the end. Average pooling then divides
    by `divisor` (broadcastable to the spatial output), which carries PyTorch's
    count_include_pad rule. Maps are pooled a cache-sized group at a time, so that each axis'
    pass reads the previous one's result from cache (ResNet-18's stem pool at batch 8: 13.9 ms
    for the batch at once, 7.4 ms in groups of 64 maps).
    """
    taps = _axis_taps(tuple(in_spatial), tuple(kernel), tuple(stride), tuple(pad_lo),
                      tuple(out_sp), tuple(dilation or (1,) * len(kernel)))  # fmt: skip
    scale = None if mode != "avg" else (1.0 / divisor).astype(np.float32)
    group = max(1, scratch_bytes // (4 * math.prod(in_spatial)))
    out_sp = tuple(out_sp)

    def piece(flat: np.ndarray, out: np.ndarray, m0: int, m1: int) -> None:
        out[:, m0:m1] = _pool(flat[:, m0:m1], taps, out_sp, mode, scale)

    def pool(x: np.ndarray) -> np.ndarray:
        maps = x.shape[0] * x.shape[1]
        # Cache-sized groups of maps, and at least as many groups as pieces the threads want
        # when the maps are big enough for the split to pay.
        want = pieces() if maps * math.prod(x.shape[2:]) >= MIN_PARALLEL_VALUES else 1
        step = max(1, min(group, -(-maps // want)))
        if step >= maps:
            return _pool(x, taps, out_sp, mode, scale)
        flat = x.reshape(1, maps, *x.shape[2:])
        out = np.empty((1, maps, *out_sp), dtype=np.float32)
        run_all([functools.partial(piece, flat, out, m0, min(maps, m0 + step))
                 for m0 in range(0, maps, step)])  # fmt: skip
        return out.reshape(*x.shape[:2], *out_sp)

    return pool


def _pool(
    x: np.ndarray, taps: list, out_sp: Sequence[int], mode: str, scale: np.ndarray | None
) -> np.ndarray:
    reduce = np.maximum if mode == "max" else np.add
    acc = x
    for axis, (full, partial) in enumerate(taps):
        src = acc
        if len(full) >= 2:  # the first two taps reach every window: one call makes the array
            acc = reduce(src[full[0]], src[full[1]], dtype=np.float32)
        elif full:
            acc = np.array(src[full[0]], dtype=np.float32, copy=True)
        else:  # no tap is inside the input for every window
            shape = list(src.shape)
            shape[2 + axis] = out_sp[axis]
            acc = np.full(shape, -np.inf if mode == "max" else 0.0, dtype=np.float32)
        for sl in full[2:]:
            reduce(acc, src[sl], out=acc)
        for dst, sl in partial:
            view = acc[dst]
            reduce(view, src[sl], out=view)
    if scale is not None:
        acc *= scale
    return acc


def _axis_taps(
    lengths: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pad_lo: tuple[int, ...],
    out_sp: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[list[tuple], list[tuple[tuple, tuple]]]]:
    """Per spatial axis: the taps inside the input for every window (the input values each
    reads), and for each other tap, (the outputs it reaches, the input values it reads there)."""
    rank = len(kernel)
    axes = []
    for a in range(rank):
        length, s, n = lengths[a], stride[a], out_sp[a]

        def index(sl: slice, a: int = a) -> tuple:
            return (slice(None),) * (2 + a) + (sl,)

        full, partial = [], []
        for j in range(kernel[a]):
            offset = j * dilation[a] - pad_lo[a]  # input position of this tap for output 0
            first = -(offset // s) if offset < 0 else 0  # ceil(-offset / s)
            last = min(n - 1, (length - 1 - offset) // s)
            if last < first:
                continue  # this tap is in the padding for every window
            start = first * s + offset
            src = index(slice(start, start + (last - first) * s + 1, s))
            if first == 0 and last == n - 1:
                full.append(src)
            else:
                partial.append((index(slice(first, last + 1)), src))
        axes.append((full, partial))
    return axes


def avg_pool_divisor(
    lengths: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    out_sp: Sequence[int],
    count_include_pad: bool,
) -> np.ndarray:
    """PyTorch's per-window divisor: padding counts (or not), the ceil_mode overhang never does."""
    per_axis = []
    for length, k, st, p, n in zip(lengths, kernel, stride, padding, out_sp, strict=True):
        start = np.arange(n) * st - p
        end = np.minimum(start + k, length + p)
        if count_include_pad:
            count = end - start
        else:
            count = np.minimum(end, length) - np.maximum(start, 0)
        per_axis.append(count.astype(np.float64))
    div = per_axis[0]
    for c in per_axis[1:]:
        div = np.multiply.outer(div, c)
    return div


def local_response_norm(
    x: np.ndarray, size: int, alpha: float, beta: float, k: float
) -> np.ndarray:
    """torch.nn.LocalResponseNorm: x / (k + alpha/size · Σ x² over `size` channels around)^β."""
    sq = np.square(x)
    channels = x.shape[1]
    lo, hi = size // 2, (size - 1) // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    acc = np.zeros_like(x)
    for i in range(size):
        acc += padded[:, i : i + channels]
    div = acc * np.float32(alpha / size) + np.float32(k)
    return x / np.power(div, np.float32(beta))


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z
