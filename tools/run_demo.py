"""Generate the shapes data (if missing), train the demo Mask R-CNN on it
and evaluate it: python tools/run_demo.py [--work-dir DIR] [...]"""
from vovdet.apis.demo import run_demo

if __name__ == '__main__':
    run_demo()
