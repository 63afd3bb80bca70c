"""Write the synthetic shapes dataset (COCO + VOC formats):
python tools/generate_shapes.py OUT_DIR [--num-train N] [...]"""
import argparse

from vovdet.datasets import generate_shapes_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir')
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--image-size', type=int, default=192)
    parser.add_argument('--max-objects', type=int, default=4)
    parser.add_argument('--min-radius', type=float, default=14)
    parser.add_argument('--max-radius', type=float, default=48)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    meta = generate_shapes_dataset(
        args.out_dir, num_train=args.num_train, num_val=args.num_val,
        image_size=args.image_size, max_objects=args.max_objects,
        min_radius=args.min_radius, max_radius=args.max_radius,
        seed=args.seed)
    print(f"wrote {meta['num_train']} train and {meta['num_val']} val "
          f'images to {args.out_dir}')


if __name__ == '__main__':
    main()
