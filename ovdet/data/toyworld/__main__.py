"""``python -m ovdet.data.toyworld --out DIR --split SPLIT --num-images N --seed S``"""
from __future__ import annotations

import argparse
import time

from .writer import DEFAULT_IMAGE_SIZE, default_seed, write_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ovdet.data.toyworld",
                                     description="Generate a split of the toy world as COCO files.")
    parser.add_argument("--out", required=True, help="root folder (e.g. datasets/toyworld)")
    parser.add_argument("--split", default="train", help="split name: train, val, ... (default train)")
    parser.add_argument("--num-images", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--seed", type=int, default=None,
                        help="world seed (default: train 1, val 2, test 3, other names hashed)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help=f"image side in pixels (default {DEFAULT_IMAGE_SIZE})")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num-images must be at least 1, got {args.num_images}")
    if args.image_size < 32:
        parser.error(f"--image-size must be at least 32, got {args.image_size}")
    seed = default_seed(args.split) if args.seed is None else args.seed
    start = time.perf_counter()
    path = write_split(args.out, args.split, args.num_images, seed, args.image_size)
    elapsed = time.perf_counter() - start
    print(f"wrote {args.num_images} images (seed {seed}) to {args.out} in {elapsed:.1f} s "
          f"({args.num_images / elapsed:.0f} images/s); instances: {path}")


if __name__ == "__main__":
    main()
