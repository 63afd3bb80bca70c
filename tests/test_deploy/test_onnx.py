"""ONNX export of whole detectors (tools/deploy/export_onnx.py): ONNX
Runtime's final detections match PyTorch's ``predict`` for every family at
two input sizes of one dynamic export, and every backbone type exports."""
import os.path as osp

import mmcv
import onnx
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint

from tests.helpers import randomize_norms
from vovdet.apis.export_onnx import main as export_main
from vovdet.deploy import (ExportError, MissingDeployDependency,
                           OnnxDetector, build_detector, export_onnx)
from vovdet.deploy.onnx import (BOX_TOLERANCE, MASK_IOU, SCORE_TOLERANCE,
                                compare_detections, default_shape, require)
from vovdet.deploy.ops import extract_roi_features, paste_masks

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
# Few proposals and detections keep Mask R-CNN cheap on small images.
SMALL_MASK_RCNN = {
    'model.test_cfg.rpn.nms_pre': 200,
    'model.test_cfg.rpn.max_per_img': 50,
    'model.test_cfg.rcnn.score_thr': 0.0,
    'model.test_cfg.rcnn.max_per_img': 20,
}
FAMILIES = {
    'RefineDet': ('vovnet19slim_refinedet192_shapes.py', {}),
    'DSOD': ('vovnet27slim_dsod160_shapes.py', {}),
    'Mask R-CNN': ('vovnet19slim_maskrcnn_shapes.py', SMALL_MASK_RCNN),
}
# one dynamic export, checked at two sizes other than the traced one
# (multiples of 32: Mask R-CNN pads to them, and the image fills the input)
TRACED = (128, 160)
SIZES = ((96, 128), (160, 96))


def build(config, options, seed=0):
    """A seeded, initialised detector: detections with distinct scores."""
    torch.manual_seed(seed)
    model, _ = build_detector(osp.join(CONFIGS, config), cfg_options=options)
    model.init_weights()
    return model.eval()


def shapes_image(shapes_root, index=0):
    path = osp.join(shapes_root, 'VOC2007', 'JPEGImages',
                    f'{index + 1:06d}.jpg')
    return torch.from_numpy(mmcv.imread(path, channel_order='rgb')).permute(
        2, 0, 1)


def predict(model, image, size):
    """PyTorch's ``predict`` on ``image`` resized to ``size``: the
    preprocessed input and the final detections."""
    image = F.interpolate(image[None].float(), size=size,
                          mode='bilinear')[0].round().to(torch.uint8)
    sample = DetDataSample()
    sample.set_metainfo(
        dict(img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), False)
    with torch.no_grad():
        pred = model.predict(data['inputs'],
                             data['data_samples'])[0].pred_instances
    detections = dict(boxes=pred.bboxes, scores=pred.scores,
                      labels=pred.labels)
    if 'masks' in pred:
        detections['masks'] = pred.masks
    return data['inputs'], detections


def assert_parity(expected, actual):
    parity = compare_detections(expected, actual)
    assert parity.counts[0] > 0, 'no detections to compare'
    assert parity.counts[0] == parity.counts[1], parity
    assert parity.unmatched == 0, parity
    assert parity.box_rel_diff <= BOX_TOLERANCE, parity
    assert parity.score_diff <= SCORE_TOLERANCE, parity
    if 'masks' in expected:
        assert parity.mask_iou >= MASK_IOU, parity
    assert parity.ok
    return parity


@pytest.mark.parametrize('family', FAMILIES)
def test_onnx_runtime_matches_predict_at_two_sizes(family, tmp_path,
                                                   shapes_root):
    config, options = FAMILIES[family]
    model = build(config, options)
    ckpt = str(tmp_path / 'model.pth')
    save_checkpoint(dict(meta={}, state_dict=model.state_dict()), ckpt)
    image = shapes_image(shapes_root)
    expected = {size: predict(model, image, size) for size in SIZES}

    out = str(tmp_path / 'model.onnx')
    argv = [osp.join(CONFIGS, config), ckpt, out, '--dynamic', '--shape',
            *map(str, TRACED)]
    if options:
        argv += ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]
    result = export_main(argv)
    assert result.family == family and result.dynamic

    graph = onnx.load(out)
    ops = {node.op_type for node in graph.graph.node}
    assert 'NonMaxSuppression' in ops
    assert ('RoiAlign' in ops) == (family == 'Mask R-CNN')
    assert [i.name for i in graph.graph.input] == ['image']
    assert [o.name for o in graph.graph.output] == result.output_names
    detector = OnnxDetector(out)
    for size in SIZES:
        inputs, detections = expected[size]
        assert tuple(inputs.shape) == (1, 3, *size)
        outputs = detector(inputs)
        if family == 'Mask R-CNN':
            assert outputs['masks'].shape[1:] == size
        assert_parity(detections, outputs)


# Each backbone type (and the OSA-FPN neck) in the shapes Mask R-CNN,
# exported at 64x64: the backbone and neck of the named COCO config, with
# backbone overrides and the neck inputs they need.
BACKBONES = {
    'VoVNet V1 (V-39, residual)': ('vovnet39_maskrcnn_coco.py', {}, None),
    'VoVNet V2 + OSA-FPN-lite': (
        'vovnet2_19slimdw_osafpnlite_maskrcnn_coco.py', {}, 'whole neck'),
    'RepVGG-A0 (branches fused)': ('repvgg_a0_maskrcnn_coco.py', {}, None),
    'EfficientNet-B0': ('efficientnet_b0_maskrcnn_coco.py', {}, None),
    'DenseNet-121': ('densenet201_maskrcnn_coco.py', dict(arch='121'),
                     [256, 512, 1024, 1024]),
}


@pytest.mark.parametrize('name', BACKBONES)
def test_every_backbone_exports(name, tmp_path, shapes_root):
    source, overrides, neck = BACKBONES[name]
    cfg = Config.fromfile(osp.join(CONFIGS, FAMILIES['Mask R-CNN'][0]))
    other = Config.fromfile(osp.join(CONFIGS, source))
    cfg.model.backbone = other.model.backbone
    cfg.model.backbone.update(overrides)
    if neck == 'whole neck':
        other.model.neck.out_channels = cfg.model.neck.out_channels
        cfg.model.neck = other.model.neck
    else:
        cfg.model.neck.in_channels = neck or other.model.neck.in_channels
    config = str(tmp_path / 'swap.py')
    cfg.dump(config)
    model = build(config, SMALL_MASK_RCNN)
    inputs, expected = predict(model, shapes_image(shapes_root), (64, 64))

    out = str(tmp_path / 'swap.onnx')
    result = export_onnx(model, out, (64, 64))
    assert result.inference_form.startswith(
        'inference form: re-parameterised backbone' if name.startswith(
            'RepVGG') else 'inference form: no branches to fuse')
    assert_parity(expected, OnnxDetector(out)(inputs))


def test_repvgg_neck_is_fused_and_the_detector_exports(tmp_path,
                                                      shapes_root):
    # the shapes Mask R-CNN with the re-parameterisable OSA-FPN (BN, RepVGG
    # 3x3 layers): the exporter's inference form folds the neck too
    config = osp.join(CONFIGS,
                      'vovnet19slim_osafpnrep_maskrcnn_shapes_ablation.py')
    model = build(config, SMALL_MASK_RCNN)
    randomize_norms(model.neck)  # statistics that make the fold non-trivial
    inputs, expected = predict(model, shapes_image(shapes_root), (64, 64))
    out = str(tmp_path / 'rep.onnx')
    result = export_onnx(model, out, (64, 64))
    assert result.inference_form.startswith(
        'inference form: re-parameterised neck')
    assert all(block.deploy for block in model.neck.modules()
               if type(block).__name__ == 'RepVGGBlock')
    assert_parity(expected, OnnxDetector(out)(inputs))


def test_paste_masks_equals_mmdets_grid_sample():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 28, 28, generator=gen)
    corner = torch.rand(6, 2, generator=gen) * 60
    boxes = torch.cat([corner, corner + 8 + torch.rand(6, 2, generator=gen)
                       * 60], 1)
    ours = paste_masks(masks, boxes, torch.tensor(96), torch.tensor(128))
    for mask, box, pasted in zip(masks, boxes, ours):
        theirs, (rows, cols) = _do_paste_mask(mask[None, None], box[None],
                                              96, 128, skip_empty=True)
        expected = torch.zeros(96, 128)
        expected[rows, cols] = theirs[0]
        torch.testing.assert_close(pasted[rows, cols], expected[rows, cols],
                                   atol=1e-5, rtol=0)
        # beyond mmdet's window nothing reaches the 0.5 mask threshold
        outside = torch.ones(96, 128, dtype=torch.bool)
        outside[rows, cols] = False
        assert bool((pasted[outside] < 0.5).all())


class RoIFeatures(torch.nn.Module):
    """extract_roi_features with the RoIs as a graph input."""

    def __init__(self, extractor):
        super().__init__()
        self.extractor = extractor

    def forward(self, rois, *feats):
        return extract_roi_features(self.extractor, feats, rois)


def test_roi_features_follow_the_rois_of_the_input_not_the_trace(tmp_path):
    # traced with every RoI on the finest level (the others pool only their
    # dummy RoI), run with RoIs on every level: nothing may keep the traced
    # per-level counts
    cfg = Config.fromfile(osp.join(CONFIGS, FAMILIES['Mask R-CNN'][0]))
    extractor = MODELS.build(cfg.model.roi_head.bbox_roi_extractor).eval()
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, 128, 128 // s, 128 // s, generator=gen)
             for s in (4, 8, 16, 32)]

    def rois(sizes):
        corner = torch.rand(len(sizes), 2, generator=gen) * 10
        size = torch.tensor(sizes, dtype=torch.float32)[:, None]
        return torch.cat([torch.zeros(len(sizes), 1), corner, corner + size],
                         1)

    traced = rois([8, 12, 20, 30])
    out = str(tmp_path / 'roi.onnx')
    torch.onnx.export(
        RoIFeatures(extractor), (traced, *feats), out, dynamo=False,
        opset_version=17, input_names=['rois'] + [f'f{i}' for i in range(4)],
        dynamic_axes={'rois': {0: 'n'}})
    spread = rois([10, 70, 120, 250, 300, 460, 500, 40])
    assert set(extractor.map_roi_levels(spread, 4).tolist()) == {0, 1, 2, 3}
    session = OnnxDetector(out).session
    got = session.run(None, dict(rois=spread.numpy(), **{
        f'f{i}': f.numpy() for i, f in enumerate(feats)}))[0]
    with torch.no_grad():
        expected = extractor(feats, spread)
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5,
                               rtol=1e-4)


def test_mask_rcnn_without_detections_runs(tmp_path):
    """No box above the score threshold: the GroupNorm box and mask heads
    still run (on one padding RoI, dropped), and the graph returns no
    detections and a (0, H, W) mask tensor, as ``predict`` does."""
    options = dict(SMALL_MASK_RCNN, **{'model.test_cfg.rcnn.score_thr': 0.99})
    model = build(*FAMILIES['Mask R-CNN'][:1], options)
    result = export_onnx(model, str(tmp_path / 'm.onnx'), (64, 64),
                         gpu_providers=False)
    assert result.parity.startswith('0 vs 0 detections')
    image = torch.randn(1, 3, 96, 64, generator=torch.Generator()
                        .manual_seed(3))
    with torch.no_grad():
        assert len(predict(model, image[0].clamp(0, 255).byte(),
                           (64, 64))[1]['scores']) == 0
    outputs = OnnxDetector(result.path)(torch.randn(1, 3, 64, 64))
    assert outputs['boxes'].shape == (0, 4)
    assert outputs['masks'].shape == (0, 64, 64)


def test_unsupported_family_and_opset_are_refused(tmp_path):
    ssd = build('vovnet27slim_ssd160_shapes.py', {})
    with pytest.raises(ExportError, match='SingleStageDetector has no ONNX '
                       'export; the exported families are RefineDet, DSOD, '
                       'Mask R-CNN'):
        export_onnx(ssd, str(tmp_path / 'ssd.onnx'), (64, 64))
    model = build(*FAMILIES['Mask R-CNN'])
    with pytest.raises(ExportError, match='Mask R-CNN exports with opset 16 '
                       'to 20, got --opset 13'):
        export_onnx(model, str(tmp_path / 'm.onnx'), (64, 64), opset=13)
    assert not osp.exists(tmp_path / 'ssd.onnx')


def test_default_export_shape_is_the_padded_test_scale():
    shape = {name: default_shape(Config.fromfile(osp.join(CONFIGS, name)))
             for name in ('vovnet39_maskrcnn_coco.py',
                          'vovnet39_refinedet320_coco.py',
                          'vovnet27slim_dsod160_shapes.py')}
    # (1333, 800) with keep_ratio: the largest image, padded to 32
    assert shape == {'vovnet39_maskrcnn_coco.py': (800, 1344),
                     'vovnet39_refinedet320_coco.py': (320, 320),
                     'vovnet27slim_dsod160_shapes.py': (160, 160)}


def test_missing_runtime_names_the_deploy_extra():
    with pytest.raises(MissingDeployDependency,
                       match=r"pip install -e '\.\[deploy\]'"):
        require('onnxruntime_not_installed')
    assert require('onnxruntime').InferenceSession is not None
