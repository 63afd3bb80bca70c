"""Re-parameterise a trained detector: python tools/reparameterize.py
CONFIG CHECKPOINT OUT [--out-config F] (see docs/reparameterize.md)."""
from vovdet.apis.common import run_cli
from vovdet.apis.reparameterize import main

if __name__ == '__main__':
    run_cli(main)
