"""Convert an ImageNet checkpoint of timm / RepVGG / torchvision for vovdet.

python tools/convert_weights.py --from {timm,repvgg-official,torchvision}
    --model NAME IN OUT

IN may be a ``.pth``/``.bin`` state dict (also under ``state_dict`` or
``model``) or a ``.safetensors`` file. OUT holds the backbone weights and, in
``meta['backbone']``, the backbone config that reproduces the source model;
load it with ``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` on that
backbone. The mapping rules are in :mod:`vovdet.models.converters`.
"""
import argparse
import sys

from vovdet.models.converters import (SOURCES, SUPPORTED_MODELS,
                                      WeightConversionError,
                                      convert_checkpoint)


def parse_args(argv=None):
    models = '; '.join(f"{source}: {', '.join(names)}"
                       for source, names in SUPPORTED_MODELS.items())
    parser = argparse.ArgumentParser(
        description='Rename the keys of an ImageNet checkpoint into a '
        'vovdet backbone (classifier dropped, every other key checked)',
        epilog=f'models: {models}')
    parser.add_argument(
        '--from', dest='source', required=True, choices=SOURCES,
        help='where the checkpoint comes from')
    parser.add_argument(
        '--model', required=True,
        help="the source model's name, e.g. ese_vovnet39b, repvgg_b1g4, "
        'efficientnet_b3, RepVGG-A0, densenet201')
    parser.add_argument('input', help='source checkpoint')
    parser.add_argument('output', help='converted checkpoint to write')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        result = convert_checkpoint(args.source, args.model, args.input,
                                    args.output)
    except (WeightConversionError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(1) from None
    print(f'converted {len(result.state_dict)} tensors -> {args.output}')
    print(f"dropped (classifier): {', '.join(result.dropped_keys) or '-'}")
    if result.filled_keys:
        print(f'{len(result.filled_keys)} BN num_batches_tracked counters '
              f'absent from the source were set to 0')
    print(f'backbone: {result.backbone_cfg}')


if __name__ == '__main__':
    main()
