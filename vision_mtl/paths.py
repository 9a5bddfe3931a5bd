"""Names from data that become file names, kept inside the directory they are written to.

Sample ids come from split files, and file stems from the user's inputs; both end up as output
file names (prediction pictures, boundary PNGs). An id such as ``/etc/x`` or ``../../x`` would
otherwise write outside the output directory the user named. Ids are checked when a split is
read (:func:`check_sample_id`) and every output path is built through :func:`output_path`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath


def check_sample_id(sample_id: str, source: str) -> str:
    """``sample_id`` if it is a plain relative name, else a ValueError naming ``source``.

    Refused: empty ids, absolute paths (POSIX or Windows, drive letters included) and ids with a
    ``..`` component. Sub-folders (``city/stem``) are allowed.
    """
    posix, windows = PurePosixPath(sample_id), PureWindowsPath(sample_id)
    if (
        not sample_id
        or posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in posix.parts
        or ".." in windows.parts
    ):
        raise ValueError(
            f"{source}: sample id {sample_id!r} is not a relative name (absolute paths and '..' "
            "are refused so that no output can be written outside its directory)"
        )
    return sample_id


def output_path(directory: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """``directory/<name><suffix>``, refusing any ``name`` that would leave ``directory``."""
    check_sample_id(str(name), f"output name under {str(directory)!r}")
    root = Path(directory).resolve()
    path = (root / f"{name}{suffix}").resolve()
    if not path.is_relative_to(root):  # e.g. a symlinked sub-folder pointing elsewhere
        raise ValueError(f"output name {name!r} resolves to {str(path)!r}, outside {str(root)!r}")
    return path


def unique_stems(paths: Iterable[str | os.PathLike], what: str = "input") -> dict[str, Path]:
    """``stem → path`` for output naming, refusing two inputs that share a file stem.

    Two files ``a/img.png`` and ``b/img.jpg`` would write the same output name, and the second
    would silently replace the first's outputs.
    """
    stems: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.stem in stems:
            raise ValueError(
                f"{what}s {str(stems[path.stem])!r} and {str(path)!r} share the file stem "
                f"{path.stem!r}, so their outputs would have the same name; rename one"
            )
        stems[path.stem] = path
    return stems
