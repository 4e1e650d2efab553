"""Print the versions of Python, torch, torchvision and cral_lib, and the device found.

The same table that every notebook prints with ``cral_lib.print_config()``.
"""

from __future__ import annotations

import argparse

from .. import print_config

HELP = "show versions and the compute device (the same as cral_lib.print_config())"
ORDER = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This command takes no options."""


def run(args: argparse.Namespace) -> int:
    print_config()
    return 0
