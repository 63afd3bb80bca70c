"""Generate the shapes data (if missing), train the demo Mask R-CNN on it,
evaluate it and draw its loss/AP curves and predictions:
python tools/run_demo.py [--work-dir DIR] [--val-interval N] [...]"""
from vovdet.apis.demo import run_demo

if __name__ == '__main__':
    run_demo()
