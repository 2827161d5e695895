"""`python -m tinygrad_rnn`: the same as the `tinygrad-rnn` command."""
import sys

from .cli import console

console()
