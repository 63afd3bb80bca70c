"""The training profiler: its bucket rules, a profiled step of real layers,
and a real run of tools/analysis/profile_train.py on a tiny shapes set."""
import re
import time

import pytest
import torch
import torch.nn as nn
from mmcv.ops import RoIAlign

from tests.helpers import run_tool, tiny_config
from vovdet.analysis.profile_buckets import (BUCKETS, PYTHON_BUCKET,
                                             bucket_of, summarize)
from vovdet.analysis.profile_train import main
from vovdet.models.layers import SparseRoIAlign
from vovdet.apis.demo import data_root_overrides

NAMES = [name for name, _ in BUCKETS]


@pytest.mark.parametrize('event, bucket', [
    ('aten::conv2d', 'convolution forward'),
    ('aten::convolution_backward', 'convolution backward'),
    ('autograd::engine::evaluate_function: ConvolutionBackward0',
     'convolution backward'),
    ('aten::native_group_norm', 'GroupNorm/BatchNorm forward'),
    ('NativeGroupNormBackward0', 'GroupNorm/BatchNorm backward'),
    ('RoIAlignFunction', 'RoIAlign forward (mmcv)'),
    ('autograd::engine::evaluate_function: RoIAlignFunctionBackward',
     'RoIAlign backward (mmcv)'),
    ('NMSop', 'NMS (mmcv)'),
    ('autograd::engine::evaluate_function: _SparseProductBackward',
     'RoIAlign backward (SparseRoIAlign)'),
    ('vovdet/models/layers/sparse_roi_align.py(176): sparse_roi_align',
     'RoIAlign forward (SparseRoIAlign)'),
    ('mmdet/models/task_modules/assigners/max_iou_assigner.py(110): assign',
     'losses, targets, anchors, assign, sample'),
    ('mmdet/structures/mask/mask_target.py(11): mask_target',
     'losses, targets, anchors, assign, sample'),
    ('Optimizer.step#SGD.step', 'optimizer step, grad clipping, zero_grad'),
    ('torch/nn/utils/clip_grad.py(195): clip_grad_norm_',
     'optimizer step, grad clipping, zero_grad'),
    ('enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__',
     'data loading (waiting for the loader)'),
    ('mmengine/runner/loops.py(165): __next__',
     'data loading (waiting for the loader)'),
    ('mmdet/models/data_preprocessors/data_preprocessor.py(120): forward',
     'data preprocessor (normalise, pad, stack)'),
    ('aten::index', 'other forward operators'),
])
def test_bucket_rules_name_the_events_of_a_training_iteration(event, bucket):
    assert NAMES[bucket_of(event)] == bucket


def test_bucket_rules_leave_plain_python_frames_unbucketed():
    assert bucket_of('mmdet/models/roi_heads/standard_roi_head.py(70): '
                     'loss') is None


def test_summarize_splits_a_profiled_step_into_buckets_adding_to_the_window():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16))
    roi_align = RoIAlign(7, 1.0, 0)
    sparse = SparseRoIAlign(7, 1.0, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    rois = torch.tensor([[0, 2., 2., 20., 20.], [0, 5., 5., 30., 25.]])
    x = torch.randn(1, 3, 32, 32)
    with torch.profiler.profile(with_stack=True) as profiler:
        start = time.time_ns()
        feat = model(x)
        loss = (roi_align(feat, rois).square().mean() +
                sparse(feat, rois).square().mean())
        loss.backward()
        optimizer.step()
        end = time.time_ns()
    buckets, top = summarize(profiler, (start, end), iters=1, top=5)
    assert set(buckets) == set(NAMES) | {PYTHON_BUCKET}
    assert sum(buckets.values()) == pytest.approx((end - start) / 1e9,
                                                  rel=1e-3)
    for bucket in ('convolution forward', 'convolution backward',
                   'GroupNorm/BatchNorm forward', 'RoIAlign forward (mmcv)',
                   'RoIAlign backward (mmcv)',
                   'RoIAlign forward (SparseRoIAlign)',
                   'RoIAlign backward (SparseRoIAlign)',
                   'optimizer step, grad clipping, zero_grad'):
        assert buckets[bucket] > 0, bucket
    assert len(top) == 5
    assert all(op.calls_per_iter >= 1 and op.self_s_per_iter > 0
               for op in top)
    assert [op.self_s_per_iter for op in top] == sorted(
        (op.self_s_per_iter for op in top), reverse=True)


def test_data_root_points_every_loader_and_evaluator_at_the_folder():
    ann = '/data/shapes/annotations/instances_val.json'
    assert data_root_overrides('/data/shapes') == {
        'train_dataloader.dataset.data_root': '/data/shapes/',
        'val_dataloader.dataset.data_root': '/data/shapes/',
        'test_dataloader.dataset.data_root': '/data/shapes/',
        'val_evaluator.ann_file': ann,
        'test_evaluator.ann_file': ann,
    }


def test_profile_train_refuses_no_warmup():
    with pytest.raises(SystemExit) as e:
        main(['configs/vovnet19slim_maskrcnn_shapes.py', '--warmup', '0'])
    assert e.value.code == 2


def test_profile_train_tool_reports_where_a_tiny_demo_iteration_goes(
        tmp_path, shapes_root):
    # no checkpoint inside the profiled iterations
    config = tiny_config(tmp_path, shapes_root, 6,
                         extra={'default_hooks.checkpoint.interval': 100})
    out = tmp_path / 'profile.md'
    run_tool(['tools/analysis/profile_train.py', config, '--iters', '2',
              '--warmup', '2', '--threads', '1', '--out', str(out)])
    report = out.read_text()
    unprofiled = re.search(r's/iter without profiler: ([\d.]+) s wall, '
                           r'([\d.]+) s CPU', report)
    profiled = re.search(r's/iter profiled: ([\d.]+) s wall', report)
    assert float(unprofiled[1]) > 0 and float(unprofiled[2]) > 0
    assert float(profiled[1]) > 0
    rows = dict(re.findall(r'^\| ([^|`]+) \| [\d.]+ \| ([\d.]+) \|$', report,
                           re.M))
    assert set(rows) == set(NAMES) | {PYTHON_BUCKET, 'total'}
    shares = {name: float(share) for name, share in rows.items()}
    assert sum(v for k, v in shares.items() if k != 'total') == \
        pytest.approx(100, abs=1)
    assert shares['convolution forward'] > 0
    assert shares['convolution backward'] > 0
    # the demo config's RoI layers are SparseRoIAlign
    assert shares['RoIAlign forward (SparseRoIAlign)'] > 0
    assert shares['RoIAlign forward (mmcv)'] == 0
    ops = re.findall(r'^\| `([^`]+)` \|', report, re.M)
    assert len(ops) == 15 and 'aten::convolution_backward' in ops
