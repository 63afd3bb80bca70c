"""SparseRoIAlign against mmcv's compiled RoIAlign kernel: outputs and input
gradients for every sampling rule, boxes across and beyond the border, empty
boxes and batches; and its use as an mmdet RoI extractor's layer."""
import pytest
import torch
from mmcv.ops import RoIAlign
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import vovdet  # noqa: F401
from vovdet.models.layers import SparseRoIAlign, sparse_roi_align


def boxes(num, image_size, num_images, generator, min_size=2.,
          max_size=110.):
    """Random rois (image index, x1 y1 x2 y2); centres up to 20 px outside
    the image, so boxes cross and leave the border."""
    centre = torch.rand(num, 2, generator=generator) * (image_size + 40) - 20
    size = torch.rand(num, 2, generator=generator) * (max_size - min_size)
    size = size + min_size
    index = torch.randint(0, num_images, (num, 1), generator=generator)
    return torch.cat([index.float(), centre - size / 2, centre + size / 2], 1)


@pytest.mark.parametrize('output_size,scale,sampling_ratio,aligned', [
    ((7, 7), 1 / 4, 0, True),     # mmdet's bbox RoI layer
    ((14, 14), 1 / 8, 0, True),   # mmdet's mask RoI layer
    ((7, 5), 1 / 16, 2, True),    # a fixed grid, a non-square output
    ((7, 7), 1 / 4, 0, False),    # legacy boxes (at least one pixel)
    ((3, 3), 1., 1, False),
])
def test_matches_mmcv_outputs_and_gradients(output_size, scale,
                                            sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(0)
    feat = torch.randn(3, 8, 20, 17, generator=generator, requires_grad=True)
    rois = boxes(60, 20 / scale, 3, generator)
    ours = SparseRoIAlign(output_size, scale, sampling_ratio, 'avg', aligned)
    ref = RoIAlign(output_size, scale, sampling_ratio, 'avg', aligned)
    out, expected = ours(feat, rois), ref(feat, rois)
    assert out.shape == expected.shape == (60, 8) + output_size
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn(out.shape, generator=generator)
    grad, = torch.autograd.grad(out, feat, grad_out)
    expected_grad, = torch.autograd.grad(expected, feat, grad_out)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_empty_boxes_and_batches_give_mmcvs_zeros():
    feat = torch.randn(2, 4, 10, 10, requires_grad=True)
    rois = torch.tensor([[0., 5., 5., 5., 5.],       # zero size
                         [1., 2., 2., 2., 9.],       # zero width
                         [1., 50., 50., 60., 60.],   # far outside the map
                         [0., 1., 1., 8., 8.]])
    ours = SparseRoIAlign(7, 1., 0)
    ref = RoIAlign(7, 1., 0)
    out = ours(feat, rois)
    torch.testing.assert_close(out, ref(feat, rois))
    assert out[:3].abs().sum() == 0 and out[3].abs().sum() > 0
    out.sum().backward()
    assert feat.grad.shape == feat.shape
    # only boxes that sample nothing
    torch.testing.assert_close(ours(feat, rois[:2]), ref(feat, rois[:2]))
    assert ours(feat, rois[:2]).abs().sum() == 0
    # a box with x2 < x1: refused, as by mmcv, naming the box
    with pytest.raises(ValueError, match=r'RoI 1 \(\[0.0, 9.0'):
        ours(feat, torch.tensor([[0., 1., 1., 8., 8.], [0., 9., 1., 1., 8.]]))
    with pytest.raises(RuntimeError, match='negative size'):
        ref(feat, torch.tensor([[0., 9., 1., 1., 8.]]))
    assert ours(feat, rois[:0]).shape == (0, 4, 7, 7)
    assert sparse_roi_align(feat, rois[:0], (7, 7)).shape == (0, 4, 7, 7)


def test_tracing_and_max_pooling_use_mmcvs_op():
    ours = SparseRoIAlign(7, 1 / 4, 0, pool_mode='max')
    feat = torch.randn(1, 4, 12, 12)
    rois = torch.tensor([[0., 3., 3., 30., 40.]])
    torch.testing.assert_close(ours(feat, rois),
                               RoIAlign(7, 1 / 4, 0, 'max')(feat, rois))
    # while tracing (TorchScript, ONNX export) the graph holds mmcv's op
    avg = SparseRoIAlign(7, 1 / 4, 0)
    graph = torch.jit.trace(avg, (feat, rois)).graph
    # mmcv's autograd Function (its ONNX symbolic), no sparse product
    assert [node.kind() for node in graph.nodes()] == ['prim::PythonOp']
    assert 'RoIAlignFunction' in str(graph)


def test_an_mmdet_roi_extractor_builds_it_by_name():
    register_all_modules()
    extractor = MODELS.build(
        dict(type='SingleRoIExtractor',
             roi_layer=dict(type='SparseRoIAlign', output_size=7,
                            sampling_ratio=0),
             out_channels=8, featmap_strides=[4, 8]))
    assert all(type(layer) is SparseRoIAlign
               for layer in extractor.roi_layers)
    feats = (torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8))
    rois = torch.tensor([[0., 4., 4., 40., 30.], [1., 0., 0., 63., 63.]])
    reference = MODELS.build(
        dict(type='SingleRoIExtractor',
             roi_layer=dict(type='RoIAlign', output_size=7,
                            sampling_ratio=0),
             out_channels=8, featmap_strides=[4, 8]))
    torch.testing.assert_close(extractor(feats, rois),
                               reference(feats, rois))
