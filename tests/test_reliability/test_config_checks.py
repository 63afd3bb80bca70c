"""Config mistakes: syntax errors, malformed or unread --cfg-options, a bad
process count, loader options that cannot work, a neck that does not fit
the backbone and GN groups that do not divide a layer. Each gets a message
that names the file, key or layer and the fix."""
import os.path as osp
import subprocess

import pytest

from tests.helpers import DEMO, ROOT, run_tool, tiny_config
from vovdet.apis import train
from vovdet.apis.common import load_config, parse, run_cli
from vovdet.engine import CheckpointMismatchError
from vovdet.utils import (CheckpointNotFoundError, ConfigOverrideError,
                          ModelConfigError, WorkDirBusyError)


def test_cfg_option_without_equals_is_named():
    # mmengine's DictAction raised a bare "not enough values to unpack"
    proc = run_tool(['tools/train.py', DEMO, '--cfg-options',
                     'train_cfg.max_iters=2', 'train_cfg.val_interval'],
                    check=False)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
    assert ("--cfg-options entry 'train_cfg.val_interval' has no '='"
            in proc.stderr)


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', [DEMO, '0']),
    ('dist_test.sh', [DEMO, 'x.pth', 'two']),
])
def test_dist_scripts_refuse_a_bad_process_count(script, args):
    # torchrun with 0 processes failed on a bare AssertionError
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script)] + args,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'NPROC must be a positive number of processes' in proc.stderr
    assert f"got '{args[-1]}'" in proc.stderr


def test_num_workers_zero_drops_persistent_workers(tmp_path, shapes_root):
    # the demo's loaders have persistent_workers=True; num_workers=0 made
    # torch's DataLoader raise without naming the loader or the key
    cfg = tiny_config(tmp_path, shapes_root, 1, extra={
        'train_dataloader.persistent_workers': True,
        'val_dataloader.persistent_workers': True})
    proc = run_tool(['tools/train.py', cfg, '--work-dir',
                     str(tmp_path / 'w'), '--cfg-options',
                     'train_dataloader.num_workers=0'])
    assert ('train_dataloader.persistent_workers set to False'
            in proc.stderr)
    assert 'val_dataloader.persistent_workers set to False' in proc.stderr
    assert (tmp_path / 'w' / 'iter_1.pth').is_file()


def test_config_syntax_error_names_the_file_and_line(tmp_path):
    # mmengine's own SyntaxError pointed at File "<unknown>"
    bad = tmp_path / 'bad_config.py'
    bad.write_text(f"_base_ = '{DEMO}'\n"
                   "model = dict(backbone=dict(arch='V2-19-slim'\n")
    proc = run_tool(['tools/train.py', str(bad)], check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr and '<unknown>' not in proc.stderr
    assert f'config file {bad}, line 2' in proc.stderr
    assert "'(' was never closed" in proc.stderr


def test_unread_top_level_cfg_options_warn(capsys):
    # mmengine expands top-level variables when it reads the file, so these
    # options were silently ignored
    options = ['max_iters=8', 'max_iter=8', 'norm_cfg.num_groups=8',
               'train_cfg.max_iters=8']
    args = parse(train.build_parser(), [DEMO, '--cfg-options'] + options)
    cfg = load_config(DEMO, args)
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith('[vovdet] warning: --cfg-options')]
    assert len(lines) == 3  # train_cfg.max_iters is read
    max_iters, typo, norm = lines
    assert ('max_iters is a top-level variable of the config' in max_iters
            and 'the option changes nothing' in max_iters)
    assert ('set the keys that hold its value instead: train_cfg.max_iters, '
            'train_cfg.val_interval, param_scheduler.1.end' in max_iters)
    assert 'e.g. --cfg-options train_cfg.max_iters=8' in max_iters
    assert "has no key 'max_iter'" in typo
    assert 'did you mean train_cfg.max_iters?' in typo
    assert ('model.backbone.norm_cfg.num_groups, '
            'model.neck.norm_cfg.num_groups' in norm)
    # ... and they did change nothing
    assert cfg.model.backbone.norm_cfg.num_groups == 16
    assert cfg.train_cfg.val_interval == 600
    assert cfg.train_cfg.max_iters == 8


def test_top_level_data_root_option_is_refused(capsys):
    # data_root, metainfo and num_classes are refused outright
    # (vovdet.utils.config_check), so they get no warning besides
    args = parse(train.build_parser(),
                 [DEMO, '--cfg-options', 'data_root=/datasets/shapes/'])
    with pytest.raises(ConfigOverrideError) as err:
        load_config(DEMO, args)
    assert ("--cfg-options sets top-level data_root = '/datasets/shapes/'"
            in str(err.value))
    assert 'train_dataloader.dataset.data_root' in str(err.value)
    assert 'warning' not in capsys.readouterr().err


def test_neck_in_channels_are_checked_against_the_backbone(tmp_path,
                                                           tiny_run):
    # a wrong neck in_channels after a backbone swap gave a raw conv error
    # at the first forward
    with pytest.raises(ModelConfigError) as err:
        train.main([tiny_run.config, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options',
                    'model.neck.in_channels=[64,128,256,512]'])
    assert str(err.value) == (
        'model.neck.in_channels=[64, 128, 256, 512], but the backbone '
        '(VoVNet V2-19-slim, out_indices=(0, 1, 2, 3)) outputs [112, 256, '
        '384, 512] channels. After a backbone swap set '
        'model.neck.in_channels=[112, 256, 384, 512] (or change '
        'model.backbone.out_indices)')


def test_group_norm_groups_name_the_layer_and_the_key(tmp_path, tiny_run):
    # torch said only "num_channels must be divisible by num_groups"
    with pytest.raises(ModelConfigError) as err:
        train.main([tiny_run.config, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', 'model.backbone.norm_cfg.num_groups=32'])
    message = str(err.value)
    assert message.startswith(
        'model.backbone.norm_cfg.num_groups=32 does not divide the channels '
        'of ')
    # V2-19-slim: 80-channel stage-2 convs, 112-channel stage-1 aggregation
    assert 'model.backbone.stage2.' in message and '(80 channels)' in message
    assert 'e.g. --cfg-options model.backbone.norm_cfg.num_groups=16' \
        in message
    assert 'model.neck' not in message  # its 128-channel GN fits 32


@pytest.mark.parametrize('error', [
    ModelConfigError('model.neck.in_channels=...'),
    CheckpointMismatchError("checkpoint 'x.pth' does not fit ..."),
    CheckpointNotFoundError("'last_checkpoint' is empty ..."),
    WorkDirBusyError("work dir 'w' is in use by another training ..."),
])
def test_tools_exit_1_with_one_line_for_user_errors(error, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as exit_:
        run_cli(main)
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f'error: {error}\n'


@pytest.mark.parametrize('tool,argv,message', [
    ('train', ['missing_config.py'],
     "error: config file 'missing_config.py' does not exist\n"),
    ('test', [DEMO, 'missing.pth'], "checkpoint 'missing.pth' does not exist"),
    ('test', [DEMO, DEMO, '--out', 'preds.json'],
     "--out must name a .pkl file, got 'preds.json'"),
    ('train', [DEMO, '--auto-scale-lr', '--cfg-options', 'auto_scale_lr=None'],
     '--auto-scale-lr needs auto_scale_lr.base_batch_size in the config'),
])
def test_tool_argument_mistakes_get_one_line(tool, argv, message, capsys):
    from vovdet.apis import test as test_tool
    main = train.main if tool == 'train' else test_tool.main
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: main(argv))
    if message.startswith('error: '):  # run_cli's one line, status 1
        assert exit_.value.code == 1
        assert capsys.readouterr().err == message
    else:  # a message Python prints before exiting with status 1
        assert exit_.value.code == message
