"""``tools/test.py``: evaluate a checkpoint on a config's test set."""
import argparse
import os.path as osp
from typing import List, Optional

from vovdet.engine import CheckpointFitHook
from vovdet.utils import check_dataset_files, check_num_classes

from .common import add_common_args, build_runner, load_config, parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--show', action='store_true', help='show predictions in a window')
    parser.add_argument(
        '--show-dir', help='save images with drawn predictions to '
        '<work_dir>/<timestamp>/<show_dir>')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument(
        '--deploy', action='store_true', help='test the inference form of '
        'the loaded model (RepVGG branches fused into single convs, '
        'BatchNorms folded into convs; vovdet.deploy)')
    add_common_args(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> dict:
    """Test as ``tools/test.py`` would; returns the metrics dict."""
    from mmdet.engine.hooks.utils import trigger_visualization_hook
    from mmdet.evaluation import DumpDetResults

    args = parse(build_parser(), argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f"--out must name a .pkl file, got '{args.out}'")
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f"checkpoint '{args.checkpoint}' does not exist")
    cfg = load_config(args.config, args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    check_dataset_files(cfg, splits=('test', ))
    check_num_classes(cfg, splits=('test', ))
    runner = build_runner(cfg)
    runner.register_hook(
        CheckpointFitHook(args.checkpoint, refuse_mismatch=True))
    if args.deploy:
        from vovdet.deploy import InferenceFormHook
        runner.register_hook(InferenceFormHook())
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    return runner.test()
