"""The GPU suite: budget, steps, the CPU dry run of the real script, and the
torchvision stand-in for mmcv.ops that lets it run without compiled ops."""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch

from vovdet.analysis.benchmark import BenchmarkSettings
from vovdet.analysis.gpu_suite import (DRY_RUN_SIZES, Budget, Step,
                                       SuiteContext, run_steps, run_suite)
from vovdet.analysis.gpu_suite_steps import StepSkipped
from vovdet.analysis.paper_table import VARIANTS, parse_entry
from vovdet.utils import mmcv_ops

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'analysis', 'gpu_suite.sh')


def _context(tmp_path):
    return SuiteContext('cpu', DRY_RUN_SIZES, str(tmp_path), ROOT, True)


def test_budget_allows_a_step_that_fits_and_names_why_not():
    budget = Budget(100)
    assert budget.check(50) == ''
    late = Budget(10, start=time.time() - 9)
    reason = late.check(5)
    assert reason.startswith('budget: needs ~5 s')
    assert 's of 10 s left' in reason


def test_budget_scales_estimates_by_the_worst_slowdown():
    budget = Budget(100)
    budget.record(estimate_s=10, actual_s=30)
    budget.record(estimate_s=10, actual_s=5)  # faster steps never lower it
    assert budget.slowdown == 3.0
    assert budget.check(30) == ''
    assert 'slowdown 3.00' in budget.check(40)


def test_optional_step_leaves_room_for_the_required_steps(tmp_path):
    ran = []

    def make(name):
        return lambda ctx: ran.append(name) or dict(summary=[name])

    plan = [
        Step('extra', 'table4', 30, make('extra'), optional=True),
        Step('required', 'maskrcnn', 30, make('required')),
    ]
    records = run_steps(plan, _context(tmp_path), Budget(50), log=print)
    assert ran == ['required']
    assert records[0].status == 'skipped'
    assert 'kept for the required steps after it' in records[0].reason
    assert records[1].status == 'done'
    assert records[1].summary == ['required']


def test_failing_and_skipping_steps_are_recorded_and_the_run_goes_on(
        tmp_path):

    def fail(ctx):
        raise ValueError('broken input')

    def skip(ctx):
        raise StepSkipped('no exporter')

    plan = [Step('a', 'x', 1, fail), Step('b', 'x', 1, skip),
            Step('c', 'x', 1, lambda ctx: dict(summary=['ok']))]
    records = run_steps(plan, _context(tmp_path), Budget(60), log=print)
    assert [r.status for r in records] == ['failed', 'skipped', 'done']
    assert records[0].reason == 'ValueError: broken input'
    assert records[1].reason == 'no exporter'


def test_tiny_budget_skips_every_step_with_a_printed_reason(tmp_path):
    lines = []
    suite = run_suite(str(tmp_path), dry_run=True, budget_min=0.001,
                      log=lines.append)
    assert suite['steps'], 'the plan is empty'
    for step in suite['steps']:
        assert step['status'] == 'skipped'
        assert step['reason'].startswith('budget: needs')
        assert any(line.startswith(f"[suite] skip {step['name']}: budget")
                   for line in lines)
    for name in ('suite.json', 'summary.md', 'report.md'):
        assert osp.isfile(osp.join(tmp_path, name))
    assert 'table4: skipped (budget' in lines[-1]


def test_fp16_variant_is_autocast_inference_only():
    entry = parse_entry('VoVNet-39+fp16', 'backbone')
    assert entry.variants == ['fp16'] and VARIANTS['fp16'] == 'amp'
    with pytest.raises(ValueError, match='AmpOptimWrapper'):
        BenchmarkSettings(part='detector', mode='train', amp=True)


def test_dry_run_script_writes_json_markdown_png_and_summary(tmp_path):
    out = tmp_path / 'suite'
    env = dict(os.environ, PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(
                   p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run(
        ['bash', SCRIPT, '--dry-run', '--out', str(out), '--threads', '1'],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'GPU suite: DRY RUN (CPU, tiny shapes, 1 repeat)' in proc.stdout
    assert 'maskrcnn_train_amp: skipped (AMP training needs CUDA' in \
        proc.stdout
    # the exports run under ONNX Runtime's CPU provider; the GPU providers
    # are reported, not raised
    assert 'could not run under CUDAExecutionProvider: not available' in \
        proc.stdout
    with open(out / 'suite.json') as f:
        suite = json.load(f)
    status = {s['name']: s['status'] for s in suite['steps']}
    for name in ('table4', 'table4_vs_resnet50', 'table4_more',
                 'maskrcnn_inference', 'maskrcnn_train_fp32',
                 'backbones_64x64_b1', 'backbones_64x64_b2'):
        assert status[name] == 'done', name
    for name in ('table4_refinedet320.md', 'table4_refinedet320.png',
                 'table4_refinedet320.json', 'table4_vs_resnet50.png',
                 'maskrcnn_train_fp32.md', 'backbones_64x64_b2.png',
                 'report.md', 'summary.md'):
        assert (out / name).stat().st_size > 0, name
    table4 = next(s for s in suite['steps'] if s['name'] == 'table4')
    # plain FPS with the BN-folded and fp16 speed-ups, per detector
    models = [line for line in table4['summary']
              if not line.startswith('energy:')]
    assert [line.split(':')[0] for line in models] == [
        'ResNet-50', 'VoVNet-39', 'DenseNet-201']
    assert all('FPS' in line and 'fuse' in line and 'fp16' in line
               for line in models)
    assert 'energy' in suite['environment']


# --- the torchvision stand-in for mmcv.ops ---------------------------------

# torchvision.ops.nms and roi_align on mmcv's compiled kernels, for machines
# whose torchvision cannot load them (PyPI's wheel needs a CUDA build of
# torch; the CPU wheels are on download.pytorch.org only). It loads mmcv's
# own nms.py and roi_align.py under private names, so it keeps working while
# mmcv.ops is the stand-in. The kernels being mmcv's, the comparisons below
# then check the stand-in's own logic: score thresholds, per-class offsets,
# max_num, output layout, argument mapping.
TORCHVISION_DOUBLE = """
import importlib.util
import os.path as osp

import mmcv

__version__ = 'test double on mmcv kernels'


def _load(name):
    path = osp.join(osp.dirname(mmcv.__file__), 'ops', name + '.py')
    spec = importlib.util.spec_from_file_location('_mmcv_kernels_' + name,
                                                  path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = 'mmcv.ops'
    spec.loader.exec_module(module)
    return module


_nms, _roi_align = _load('nms'), _load('roi_align')


def nms(boxes, scores, iou_threshold):
    return _nms.nms(boxes, scores, iou_threshold)[1]


def roi_align(input, boxes, output_size, spatial_scale=1.0,
              sampling_ratio=-1, aligned=False):
    return _roi_align.roi_align(input, boxes, output_size, spatial_scale,
                                max(sampling_ratio, 0), 'avg', aligned)
"""


def _torchvision_modules():
    return [k for k in sys.modules
            if k == 'torchvision' or k.startswith('torchvision.')]


@pytest.fixture(scope='module')
def torchvision_dir(tmp_path_factory):
    """A PYTHONPATH entry providing torchvision.ops: '' when the installed
    torchvision's kernels load, else a folder holding the double."""
    pytest.importorskip('mmcv.ops')  # the double's kernels
    try:
        import torchvision.ops
        torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)
        return ''
    except Exception:  # absent, or built for a CUDA torch
        for name in _torchvision_modules():
            del sys.modules[name]
    folder = tmp_path_factory.mktemp('torchvision_double')
    (folder / 'torchvision').mkdir()
    (folder / 'torchvision' / '__init__.py').write_text(
        'from . import ops  # noqa: F401\n')
    (folder / 'torchvision' / 'ops.py').write_text(TORCHVISION_DOUBLE)
    return str(folder)


@pytest.fixture
def torchvision_ops(torchvision_dir, monkeypatch):
    """torchvision.ops importable in this process for one test."""
    if torchvision_dir:
        monkeypatch.syspath_prepend(torchvision_dir)
    import torchvision.ops
    yield torchvision.ops
    if torchvision_dir:
        for name in _torchvision_modules():
            del sys.modules[name]


def _boxes(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 50
    wh = 5 + torch.rand(n, 2, generator=gen) * 20
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=gen)


def test_standin_nms_and_batched_nms_match_mmcv(torchvision_ops):
    import mmcv.ops as ops
    boxes, scores = _boxes(200)
    for kwargs in (dict(iou_threshold=0.5),
                   dict(iou_threshold=0.3, score_threshold=0.2, max_num=20)):
        ref_dets, ref_inds = ops.nms(boxes, scores, **kwargs)
        dets, inds = mmcv_ops.nms(boxes, scores, **kwargs)
        assert torch.equal(inds, ref_inds)
        assert torch.allclose(dets, ref_dets)
    labels = torch.randint(0, 4, (200, ),
                           generator=torch.Generator().manual_seed(1))
    for cfg in (dict(type='nms', iou_threshold=0.5),
                dict(type='nms', iou_threshold=0.5, max_num=30),
                dict(type='nms', iou_threshold=0.6, class_agnostic=True),
                None):
        ref_dets, ref_keep = ops.batched_nms(boxes, scores, labels, cfg)
        dets, keep = mmcv_ops.batched_nms(boxes, scores, labels, cfg)
        assert torch.equal(keep, ref_keep)
        assert torch.allclose(dets, ref_dets)


def test_standin_roi_align_matches_mmcv(torchvision_ops):
    import mmcv.ops as ops
    feats = torch.randn(2, 8, 32, 40,
                        generator=torch.Generator().manual_seed(0))
    boxes, _ = _boxes(16)
    rois = torch.cat([torch.arange(16).remainder(2)[:, None].float(), boxes],
                     1)
    for sampling_ratio in (0, 2):
        ref = ops.RoIAlign(7, 0.25, sampling_ratio)(feats, rois)
        out = mmcv_ops.RoIAlign(7, 0.25, sampling_ratio)(feats, rois)
        assert torch.allclose(out, ref, atol=1e-5)
    ref = ops.roi_align(feats, rois, (14, 14), 1.0, 0, 'avg', True)
    assert torch.allclose(mmcv_ops.roi_align(feats, rois, (14, 14)), ref,
                          atol=1e-5)


def test_standin_op_it_lacks_raises_a_named_error_when_used():
    placeholder = mmcv_ops._missing_attribute('DeformConv2d')
    with pytest.raises(mmcv_ops.MissingMmcvOp, match='MMCV_WITH_OPS=1'):
        placeholder(4, 4, 3)


def test_unknown_mmcv_ops_mode_is_refused():
    with pytest.raises(ValueError, match='choose one of mmcv, torchvision'):
        mmcv_ops.configure_mmcv_ops('compiled')


def test_dry_run_detectors_under_the_torchvision_standin(
        tmp_path, torchvision_dir):
    """RefineDet and Mask R-CNN (inference and a training step) with
    mmcv.ops answered by torchvision, as on a machine without mmcv's
    compiled ops."""
    out = tmp_path / 'suite'
    env = dict(os.environ, PYTHON=sys.executable,
               VOVDET_MMCV_OPS='torchvision',
               PYTHONPATH=os.pathsep.join(
                   p for p in (ROOT, torchvision_dir,
                               os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run(
        ['bash', SCRIPT, '--dry-run', '--out', str(out), '--threads', '1',
         '--only', 'table4_vs_resnet50', 'maskrcnn_inference',
         'maskrcnn_train_fp32'],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / 'suite.json') as f:
        suite = json.load(f)
    assert suite['environment']['mmcv_ops'].startswith('torchvision')
    assert [s['status'] for s in suite['steps']] == ['done'] * 3
