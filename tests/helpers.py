"""Running the real tools on the demo config shrunk to a few iterations;
BatchNorm statistics that make a fold test non-trivial."""
import os
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

from vovdet.analysis.learning import logged_losses

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'vovnet19slim_maskrcnn_shapes.py')


def shrink_loaders(cfg, data_root, size=96, splits=('train', 'val', 'test')):
    """Point ``splits``' dataloaders of ``cfg`` at ``data_root`` with 2
    images per batch and no worker processes, their ``Resize`` at
    ``size`` (None keeps the config's); returns ``cfg``."""
    for split in splits:
        loader = cfg[f'{split}_dataloader']
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
        for t in loader.dataset.pipeline:
            if size is not None and t['type'] == 'Resize':
                t['scale'] = (size, size)
    return cfg


def tiny_config(tmp_path, data_root, max_iters, extra=None, name=None):
    """The demo config shrunk to a few iterations on 96 px images."""
    cfg = Config.fromfile(DEMO)
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=2)
    ]
    shrink_loaders(cfg, data_root)
    ann = osp.join(data_root, 'annotations', 'instances_val.json')
    cfg.val_evaluator.ann_file = ann
    cfg.test_evaluator.ann_file = ann
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.log_processor.window_size = 1
    # an untrained model scores every class below the default 0.05
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.merge_from_dict(extra or {})
    path = str(tmp_path / (name or f'tiny_{max_iters}.py'))
    cfg.dump(path)
    return path


def tiny_demo_data(monkeypatch):
    """Make the demo (and the benchmarks that use its data set) generate a
    tiny data set, 4 training and 2 held-out 96 px images, instead of the
    demo's."""
    from vovdet.apis import demo
    for key, value in dict(num_train=4, num_val=2, image_size=96,
                           max_radius=30.0).items():
        monkeypatch.setitem(demo.DEMO_DATA, key, value)


def run_tool(args, cwd=ROOT, env=None, check=True, umask=-1):
    """Run a tool with this interpreter (under ``umask`` if given); fails
    with its output unless it exits 0 (or ``check`` is False)."""
    proc = subprocess.run(
        [sys.executable] + args, cwd=cwd, capture_output=True, text=True,
        env=dict(os.environ, **(env or {})), timeout=900, umask=umask)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
            f'{proc.stderr[-5000:]}')
    return proc


def logged_iters(work_dir):
    """Iterations at which a training loss was logged under work_dir."""
    return [it for it, _ in logged_losses(work_dir)['loss']]


def randomize_norms(model):
    """Give every BN of ``model`` non-trivial statistics and affine terms, so
    that a test of folding it into a conv really tests the fold."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
