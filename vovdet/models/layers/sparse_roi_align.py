"""RoIAlign for CPU training, as one sparse matrix product per sampling grid.

mmcv's CPU ``RoIAlign`` kernel runs on one thread, forward and backward; in
the shapes demo's Mask R-CNN it is 19 % of a training iteration at one
thread and more at two, where the convolutions get faster and it does not
(``docs/benchmarks.md``, "Where a demo training iteration goes").

RoIAlign is linear in the feature map: every output bin is a fixed weighted
sum of feature pixels (the bilinear weights of its sampling points, averaged).
Written as a sparse matrix ``S`` (output bins x feature pixels), the forward
is ``S @ F`` and the backward ``S^T @ dY``, both sparse-dense products that
PyTorch runs multi-threaded (MKL on x86), with autograd doing the backward.
The weights follow mmcv's kernel (``roi_align_cpu.cpp``, itself Detectron2's):
``aligned`` shifts the box by half a pixel, the adaptive grid is
``ceil(roi_size / output_size)`` samples per bin, a sample more than one pixel
outside the map contributes zero, one within a pixel of the border is
clamped to it, and the bin averages over all its samples. The tests compare
outputs and input gradients with mmcv's kernel
(``tests/test_models/test_layers/test_sparse_roi_align.py``).

CUDA tensors, ``pool_mode='max'`` and ONNX export/tracing use mmcv's op, so a
config that names ``SparseRoIAlign`` trains on GPU and exports exactly as
one that names ``RoIAlign``.
"""
import warnings
from typing import Tuple

import torch
from mmcv.ops import RoIAlign

# torch warns on the first CSR tensor of a process that CSR support is
# "in beta"; the two products used here are tested against mmcv's kernel
warnings.filterwarnings(
    'ignore', message='Sparse CSR tensor support is in beta',
    category=UserWarning)

# A bin's sampling grid is grouped by its (rows, columns) of samples; the key
# packs both into one integer (grids are far smaller than this).
_KEY_BASE = 1 << 20


def _bilinear_matrix(rois: torch.Tensor, grid: Tuple[int, int],
                     output_size: Tuple[int, int], spatial_scale: float,
                     aligned: bool, num_images: int, height: int,
                     width: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """The rows of the sparse (len(rois) * bins, images * height * width)
    matrix that averages the bilinear samples of each bin, every roi sampled
    on the same ``grid`` = (rows, columns) of samples per bin: the column
    index and the weight of every entry, row after row, and the entries per
    row."""
    grid_h, grid_w = grid
    out_h, out_w = output_size
    num = rois.shape[0]
    offset = 0.5 if aligned else 0.
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # mmcv: legacy boxes are at least one pixel
        roi_w = roi_w.clamp(min=1.)
        roi_h = roi_h.clamp(min=1.)
    # sample positions in bin units: bin p, sample i -> p + (i + 0.5) / grid
    steps_y = (torch.arange(out_h, dtype=rois.dtype).view(out_h, 1) +
               (torch.arange(grid_h, dtype=rois.dtype) + 0.5) / grid_h)
    steps_x = (torch.arange(out_w, dtype=rois.dtype).view(out_w, 1) +
               (torch.arange(grid_w, dtype=rois.dtype) + 0.5) / grid_w)
    # (num, out_h, grid_h, 1, 1) and (num, 1, 1, out_w, grid_w)
    ys = (y1.view(num, 1, 1) + (roi_h / out_h).view(num, 1, 1) *
          steps_y).view(num, out_h, grid_h, 1, 1)
    xs = (x1.view(num, 1, 1) + (roi_w / out_w).view(num, 1, 1) *
          steps_x).view(num, 1, 1, out_w, grid_w)

    def axis(pos: torch.Tensor, size: int):
        inside = (pos >= -1.) & (pos <= size)
        pos = pos.clamp(min=0.)
        low = pos.floor().long().clamp(max=size - 1)
        pos = torch.where(low >= size - 1, low.to(pos.dtype), pos)
        high = (low + 1).clamp(max=size - 1)
        frac = pos - low
        return inside, low, high, 1. - frac, frac

    in_y, y_lo, y_hi, wy_lo, wy_hi = axis(ys, height)
    in_x, x_lo, x_hi, wx_lo, wx_hi = axis(xs, width)
    # (4, num, out_h, grid_h, out_w, grid_w): the four neighbours
    base = (rois[:, 0].long() * (height * width)).view(num, 1, 1, 1, 1)
    cols = torch.stack([
        base + y_lo * width + x_lo, base + y_lo * width + x_hi,
        base + y_hi * width + x_lo, base + y_hi * width + x_hi
    ])
    weight = (in_y & in_x).to(rois.dtype) / (grid_h * grid_w)
    vals = torch.stack([
        wy_lo * wx_lo * weight, wy_lo * wx_hi * weight,
        wy_hi * wx_lo * weight, wy_hi * wx_hi * weight
    ])
    # one row per (roi, bin), its 4 * grid_h * grid_w entries contiguous
    order = (1, 2, 4, 0, 3, 5)
    shape = (4, num, out_h, grid_h, out_w, grid_w)
    cols = cols.expand(shape).permute(order).reshape(-1)
    vals = vals.expand(shape).permute(order).reshape(-1)
    return cols, vals, 4 * grid_h * grid_w


class _SparseProduct(torch.autograd.Function):
    """``S @ pixels`` for the CSR matrix ``S`` given by ``crow``, ``cols``
    and ``vals``, differentiable in ``pixels``. The backward builds ``S^T``
    as a CSR matrix itself (a sort of the column indices): PyTorch's own
    backward of a CSR product goes through a CSC transpose that costs
    several times the product."""

    @staticmethod
    def forward(ctx, crow: torch.Tensor, cols: torch.Tensor,
                vals: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        # valid by construction (columns clamped into the map), so the
        # invariant checks are skipped
        matrix = torch.sparse_csr_tensor(
            crow, cols, vals, (crow.numel() - 1, pixels.shape[0]),
            check_invariants=False)
        ctx.save_for_backward(crow, cols, vals)
        ctx.num_pixels = pixels.shape[0]
        return matrix @ pixels

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if not ctx.needs_input_grad[3]:
            return None, None, None, None
        crow, cols, vals = ctx.saved_tensors
        rows = crow.numel() - 1
        order = torch.argsort(cols)
        tcrow = cols.new_zeros(ctx.num_pixels + 1)
        tcrow[1:] = torch.bincount(cols, minlength=ctx.num_pixels).cumsum(0)
        row_of_entry = torch.arange(rows).repeat_interleave(crow.diff())
        transposed = torch.sparse_csr_tensor(
            tcrow, row_of_entry[order], vals[order], (ctx.num_pixels, rows),
            check_invariants=False)
        return None, None, None, transposed @ grad.contiguous()


def sparse_roi_align(input: torch.Tensor,
                     rois: torch.Tensor,
                     output_size: Tuple[int, int],
                     spatial_scale: float = 1.0,
                     sampling_ratio: int = 0,
                     aligned: bool = True) -> torch.Tensor:
    """mmcv's ``roi_align`` (``pool_mode='avg'``) as sparse matrix products.

    Args:
        input (Tensor): (N, C, H, W) feature maps.
        rois (Tensor): (K, 5) boxes, image index then x1 y1 x2 y2 in input
            image pixels.
        output_size (tuple[int, int]): Bins per roi, (height, width).
        spatial_scale (float): Feature-map pixels per input pixel.
        sampling_ratio (int): Samples per bin side; 0 = adaptive,
            ``ceil(roi side / bins)`` (mmcv's rule).
        aligned (bool): Shift boxes by -0.5 pixel (mmcv's ``aligned``).

    Returns:
        Tensor: (K, C, output height, output width), differentiable in
        ``input``.
    """
    num_images, channels, height, width = input.shape
    out_h, out_w = output_size
    if rois.shape[0] == 0:
        return input.new_zeros(0, channels, out_h, out_w)
    rois = rois.detach().to(input.dtype)
    if sampling_ratio > 0:
        keys = torch.full((rois.shape[0], ), sampling_ratio * (_KEY_BASE + 1))
    else:
        side_w = (rois[:, 3] - rois[:, 1]) * spatial_scale
        side_h = (rois[:, 4] - rois[:, 2]) * spatial_scale
        if not aligned:
            side_w, side_h = side_w.clamp(min=1.), side_h.clamp(min=1.)
        elif bool((side_w < 0).any() or (side_h < 0).any()):
            bad = ((side_w < 0) | (side_h < 0)).nonzero()[0, 0].item()
            raise ValueError(
                f'RoI {bad} ({rois[bad].tolist()}) has x2 < x1 or y2 < y1; '
                'with aligned=True RoIs must not have negative size (mmcv '
                'refuses them too)')
        # a side of zero or less samples nothing (mmcv: zeros); clamped, so
        # that the packed key splits back into the same pair
        keys = (torch.ceil(side_h / out_h).long().clamp(min=0) * _KEY_BASE +
                torch.ceil(side_w / out_w).long().clamp(min=0))
    # (N * H * W, C): every image's pixels as rows
    pixels = input.permute(0, 2, 3, 1).reshape(-1, channels)
    # every sampling grid's rows, stacked into one matrix; rois whose grid
    # is empty (a zero-sized roi) get rows without entries, as mmcv's zeros
    all_cols, all_vals, row_lengths, indices = [], [], [], []
    for key in keys.unique().tolist():
        grid = divmod(key, _KEY_BASE)
        index = (keys == key).nonzero().squeeze(1)
        indices.append(index)
        if min(grid) <= 0:
            row_lengths.append(torch.zeros(index.numel() * out_h * out_w,
                                           dtype=torch.long))
            continue
        cols, vals, per_row = _bilinear_matrix(rois[index], grid,
                                               (out_h, out_w), spatial_scale,
                                               aligned, num_images, height,
                                               width)
        all_cols.append(cols)
        all_vals.append(vals)
        row_lengths.append(
            torch.full((index.numel() * out_h * out_w, ), per_row))
    if not all_cols:
        return input.new_zeros(rois.shape[0], channels, out_h, out_w)
    crow = torch.zeros(sum(r.numel() for r in row_lengths) + 1,
                       dtype=torch.long)
    crow[1:] = torch.cat(row_lengths).cumsum(0)
    out = _SparseProduct.apply(crow, torch.cat(all_cols),
                               torch.cat(all_vals),
                               pixels).view(-1, out_h * out_w, channels)
    if len(indices) > 1:  # back to the order of the rois
        out = out[torch.argsort(torch.cat(indices))]
    return out.permute(0, 2, 1).reshape(-1, channels, out_h, out_w)


class SparseRoIAlign(RoIAlign):
    """mmcv's ``RoIAlign``, same arguments and results, computed on CPU by
    :func:`sparse_roi_align` (multi-threaded forward and backward).

    Name it in a config where mmcv's is named, e.g.
    ``roi_layer=dict(type='SparseRoIAlign', output_size=7,
    sampling_ratio=0)``: importing vovdet adds the class to ``mmcv.ops``,
    the namespace mmdet's RoI extractors look ``roi_layer.type`` up in
    (:func:`register_roi_layers`). On CUDA, with ``pool_mode='max'``,
    ``use_torchvision=True`` and while tracing or exporting to ONNX it is
    mmcv's op.
    """

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if (input.is_cuda or self.pool_mode != 'avg'
                or getattr(self, 'use_torchvision', False)
                or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export()):
            return super().forward(input, rois)
        return sparse_roi_align(input, rois, self.output_size,
                                self.spatial_scale, self.sampling_ratio,
                                self.aligned)


def register_roi_layers() -> None:
    """Make ``'SparseRoIAlign'`` a ``roi_layer.type``: mmdet's
    ``BaseRoIExtractor.build_roi_layers`` takes the class of that name from
    ``mmcv.ops`` (its own registry is not consulted), so the class is added
    there, under a name mmcv does not use."""
    import mmcv.ops
    mmcv.ops.SparseRoIAlign = SparseRoIAlign

