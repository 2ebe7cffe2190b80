"""``tunelab`` with every ``nn.Dropout`` at p = 0 (bench_distributed.py --also-no-dropout): with dropout
off, a data-parallel run and a 1-process run compute the same global-batch gradients, so what remains
between them is float summation order; with dropout on they also draw different masks."""

import sys

import torch

_init = torch.nn.modules.dropout._DropoutNd.__init__


def _no_dropout(self, p=0.5, inplace=False):
    _init(self, 0.0, inplace)


torch.nn.modules.dropout._DropoutNd.__init__ = _no_dropout

if __name__ == "__main__":
    from tunelab.cli import main

    sys.exit(main())
