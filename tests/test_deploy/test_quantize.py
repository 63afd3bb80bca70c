"""Scoring exported detectors on a test set (tools/deploy/test_onnx.py) and
their INT8 quantization (tools/deploy/quantize_onnx.py), through the real
CLIs: the FP32 graph scores what PyTorch scores, image by image in the
original image's pixels; the INT8 graph quantizes every conv and fully
connected layer and nothing of the post-processing, and runs."""
import os.path as osp

import onnx
import pytest
import torch
from mmengine.runner.checkpoint import save_checkpoint

from tests.test_deploy.test_onnx import CONFIGS, SMALL_MASK_RCNN, build
from vovdet.apis.export_onnx import main as export_main
from vovdet.apis.quantize_onnx import main as quantize_main
from vovdet.apis.test_onnx import main as evaluate_main
from vovdet.deploy import OnnxDetector
from vovdet.deploy.evaluate import (evaluate, onnx_predict,
                                    preprocessed_images, pytorch_predict)
from vovdet.deploy.onnx import compare_detections, load_config
from vovdet.deploy.quantize import QUANTIZED_OPS, prediction_layers

DSOD = osp.join(CONFIGS, 'vovnet27slim_dsod160_shapes.py')
MASK_RCNN = osp.join(CONFIGS, 'vovnet19slim_maskrcnn_shapes.py')


def data_options(root, mask_rcnn=False):
    """The shapes fixture as test and training data (96 px images: DSOD's
    test Resize makes them 160x160, the Mask R-CNN's 192x192)."""
    root = root + '/'
    options = {'test_dataloader.dataset.data_root': root,
               'train_dataloader.dataset.data_root': root}
    if mask_rcnn:
        ann = osp.join(root, 'annotations', 'instances_val.json')
        options['test_evaluator.ann_file'] = ann
        options.update(SMALL_MASK_RCNN)
    return options


def export(tmp_path, config, options, shape, dynamic=False):
    """A seeded detector's checkpoint and its ONNX export via the CLI."""
    model = build(config, options)
    ckpt = str(tmp_path / 'model.pth')
    save_checkpoint(dict(meta={}, state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'model.onnx')
    argv = [config, ckpt, out, '--shape', *map(str, shape)]
    argv += ['--dynamic'] if dynamic else []
    export_main(argv + (cli_options(options) if options else []))
    return model, out


def cli_options(options):
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def test_fp32_graph_scores_what_pytorch_scores(tmp_path, shapes_root):
    options = data_options(shapes_root)
    model, path = export(tmp_path, DSOD, options, (160, 160))
    cfg = load_config(DSOD, options)
    runtime = OnnxDetector(path)
    onnx_fn, torch_fn = onnx_predict(runtime), pytorch_predict(model)
    compared = 0
    for image, sample in preprocessed_images(cfg, model.data_preprocessor):
        # the 96 px shapes images are resized to 160: boxes go back by
        # the scale factor, as mmdet's predict(rescale=True) does
        assert sample.scale_factor == pytest.approx((160 / 96, 160 / 96))
        expected = torch_fn(image, sample)
        actual = onnx_fn(image, sample)
        assert len(expected) > 0
        assert float(actual.bboxes.max()) <= 96.0
        parity = compare_detections(
            dict(boxes=expected.bboxes, scores=expected.scores,
                 labels=expected.labels),
            dict(boxes=actual.bboxes, scores=actual.scores,
                 labels=actual.labels))
        assert parity.ok, parity
        compared += 1
    assert compared == 4
    expected = evaluate(torch_fn, cfg, model.data_preprocessor)
    metrics = evaluate_main([DSOD, path, '--threads', '1'] +
                             cli_options(options))
    assert set(metrics) == set(expected) and 'pascal_voc/mAP' in metrics
    assert metrics == pytest.approx(expected, abs=1e-6)


def test_fixed_size_graph_refuses_other_test_size(tmp_path, shapes_root):
    options = data_options(shapes_root)
    _, path = export(tmp_path, DSOD, options, (128, 128))
    with pytest.raises(SystemExit, match=r'takes 128x128 images, the test '
                       r'pipeline gives 160x160 .*export with --dynamic'):
        evaluate_main([DSOD, path] + cli_options(options))


@pytest.fixture(scope='module')
def int8_graph(tmp_path_factory, shapes_root):
    tmp = tmp_path_factory.mktemp('int8')
    options = data_options(shapes_root, mask_rcnn=True)
    _, fp32 = export(tmp, MASK_RCNN, options, (192, 192))
    out = str(tmp / 'model_int8.onnx')
    result = quantize_main([MASK_RCNN, fp32, out, '--calib-images', '4'] +
                           cli_options(options))
    return result, fp32, out, options


PREDICTIONS = {
    '/rpn_head/rpn_cls/Conv', '/rpn_head/rpn_reg/Conv',
    '/bbox_head/fc_cls/Gemm', '/bbox_head/fc_reg/Gemm',
    '/mask_head/conv_logits/Conv'} | {
        f'/rpn_head/rpn_{k}_{i}/Conv' for k in ('cls', 'reg')
        for i in range(1, 5)}


def check_post_processing_is_float(graph):
    """Boxes, scores and the separable mask pasting (MatMul) never read a
    dequantized tensor; RoiAlign reads its boxes in float."""
    dequantized = {o for n in graph.node if n.op_type == 'DequantizeLinear'
                   for o in n.output}
    for node in graph.node:
        if node.op_type in ('NonMaxSuppression', 'MatMul', 'Softmax',
                            'Sigmoid', 'TopK'):
            assert not set(node.input) & dequantized, node.op_type
        if node.op_type == 'RoiAlign':
            assert node.input[1] not in dequantized
    return dequantized


def test_int8_quantizes_the_network_and_not_the_post_processing(int8_graph):
    result, fp32, out, _ = int8_graph
    assert result.calibration_images == 4 and result.per_channel
    assert result.scheme == 'QOperator U8S8'
    graph = onnx.load(out).graph
    convs = sum(n.op_type == 'Conv' for n in onnx.load(fp32).graph.node)
    # integer convs and fully connected layers (uint8 activations)
    assert sum(n.op_type == 'QLinearConv' for n in graph.node) == convs - 11
    assert sum(n.op_type == 'QGemm' for n in graph.node) == 1
    # the heads' prediction layers stay in float: the RPN's objectness and
    # deltas at its 5 levels, the box head's scores and deltas, the masks
    assert {n.name for n in graph.node
            if n.op_type in QUANTIZED_OPS} == PREDICTIONS
    assert result.quantized == {'Conv': convs - 11, 'Gemm': 1}
    assert result.float_nodes == {'Conv': 11, 'Gemm': 2}
    assert result.float_predictions == 13
    check_post_processing_is_float(graph)
    assert result.size_mb[1] < result.size_mb[0] / 3


def test_qdq_format_for_accelerators(int8_graph, tmp_path):
    _, fp32, _, options = int8_graph
    out = str(tmp_path / 'qdq.onnx')
    result = quantize_main([MASK_RCNN, fp32, out, '--calib-images', '2',
                            '--format', 'QDQ', '--activation-type', 'int8'] +
                           cli_options(options))
    assert result.scheme == 'QDQ S8S8'
    graph = onnx.load(out).graph
    dequantized = check_post_processing_is_float(graph)
    ops = [n for n in graph.node if n.op_type in QUANTIZED_OPS]
    assert {n.name for n in ops if n.input[1] not in dequantized} == \
        PREDICTIONS
    assert result.float_nodes == {'Conv': 11, 'Gemm': 2}
    assert OnnxDetector(out)(torch.zeros(1, 3, 192, 192))['boxes'].ndim == 2


def test_prediction_layers_of_single_stage_heads(tmp_path, shapes_root):
    """RefineDet: the ARM's and ODM's class and box convs (the ARM's boxes
    reach the ODM only as refined anchors); the TCB convs are features."""
    options = {}
    _, path = export(tmp_path, osp.join(
        CONFIGS, 'vovnet19slim_refinedet192_shapes.py'), options, (96, 96))
    names = prediction_layers(onnx.load(path).graph)
    convs = [n.name for n in onnx.load(path).graph.node
             if n.op_type == 'Conv']
    assert names and all(('arm' in n or 'odm' in n) for n in names), names
    assert len(names) == 16  # cls and reg of 4 levels, ARM and ODM
    assert not [n for n in convs if 'tcb' in n and n in names]


def test_int8_graph_runs_and_is_scored(int8_graph):
    _, fp32, out, options = int8_graph
    image = torch.randn(1, 3, 192, 192, generator=torch.Generator()
                        .manual_seed(0))
    outputs = OnnxDetector(out)(image)
    assert outputs['masks'].shape[1:] == (192, 192)
    assert len(outputs['scores']) == len(OnnxDetector(fp32)(image)['scores'])
    metrics = evaluate_main([MASK_RCNN, out] + cli_options(options))
    assert {'coco/bbox_mAP_50', 'coco/segm_mAP_50'} <= set(metrics)


def test_quantize_refuses_too_few_calibration_images(int8_graph, tmp_path):
    _, fp32, _, options = int8_graph
    with pytest.raises(SystemExit, match='has 8 images, fewer than the 50 '
                       'asked for calibration'):
        quantize_main([MASK_RCNN, fp32, str(tmp_path / 'q.onnx'),
                       '--calib-images', '50'] + cli_options(options))
    with pytest.raises(SystemExit, match="model 'missing.onnx' does not"):
        quantize_main([MASK_RCNN, 'missing.onnx', str(tmp_path / 'q.onnx')])
