"""Command-line pieces shared by the developer benchmarks in ``tools/analysis_tools/``.

``benchmark_boundary.py``, ``benchmark_pipeline.py`` and ``benchmark_synthscenes.py`` measure
this code on the current machine and write JSON under ``work_dirs/benchmarks/``. They share:
a parser with ``--out`` (:func:`analysis_parser`), ``HxW`` sizes (:func:`parse_size`) and, for
per-core figures, thread pools limited to one thread (:func:`single_thread_environment`), which
must run before numpy is imported. This module imports nothing but the standard library, so a
tool can import it first.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["THREAD_VARIABLES", "analysis_parser", "parse_size", "single_thread_environment"]

#: Environment variables sizing the BLAS/OpenMP thread pools; each pool reads its own once,
#: when it starts.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def single_thread_environment() -> None:
    """Set every :data:`THREAD_VARIABLES` to 1; call before numpy (or torch) is imported."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"


def parse_size(text: str) -> tuple[int, int]:
    """``'96x128'`` -> ``(96, 128)``: height first, as everywhere in vision_mtl.

    Raises:
        argparse.ArgumentTypeError: not two positive integers joined by ``x``.
    """
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be HxW, two positive integers such as 96x128, got {text!r}"
        ) from None
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(
            f"size must be HxW, two positive integers such as 96x128, got {text!r}"
        )
    return height, width


def analysis_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """A parser described by ``doc`` with ``--out`` defaulting to
    ``work_dirs/benchmarks/<name>.json``."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument(
        "--out",
        default=f"work_dirs/benchmarks/{name}.json",
        help="write the figures as JSON here (default: %(default)s)",
    )
    return parser
