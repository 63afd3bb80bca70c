"""Write the synthetic shapes dataset (COCO + VOC formats):
python tools/generate_shapes.py OUT_DIR [--num-train N] [...]

Defaults are the demo's data set (``vovdet.apis.demo.DEMO_DATA``)."""
import argparse

from vovdet.apis.demo import DEMO_DATA
from vovdet.datasets import generate_shapes_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir')
    for name, value in DEMO_DATA.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value),
                            default=value)
    args = vars(parser.parse_args())
    out_dir = args.pop('out_dir')
    meta = generate_shapes_dataset(out_dir, **args)
    print(f"wrote {meta['num_train']} train and {meta['num_val']} val "
          f'images to {out_dir}')


if __name__ == '__main__':
    main()
