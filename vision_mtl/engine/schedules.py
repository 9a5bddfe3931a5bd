"""Learning-rate schedules rescaled to another run length.

A schedule is written for its config's ``train_cfg.max_iters`` (a warm-up of 50 of 800
iterations, then a decay to 800). A run of another length — a shortened training, a
fine-tuning — needs the same shape over its own length, or it ends at the peak learning rate
(shorter) or decays to zero long before the end (longer). :func:`scale_schedulers` maps every
boundary into the new length without ever collapsing a phase.
"""

from __future__ import annotations

import copy
import logging
from itertools import pairwise

from mmengine.config import Config
from mmengine.logging import print_log


class ScheduleError(ValueError):
    """A schedule that cannot be rescaled (epoch-based, or per optimizer)."""


_LENGTHS = ("T_max", "step_size", "total_steps")  # scheduler lengths in iterations


def _shares(lengths: list[int], iters: int, minimum: int) -> list[int]:
    """``iters`` split over segments in proportion to ``lengths``, each at least ``minimum``.

    Largest remainders first; needs ``iters >= minimum * len(lengths)``.
    """
    ideal = [n * iters / sum(lengths) for n in lengths]
    shares = [max(minimum, int(q)) for q in ideal]
    while sum(shares) < iters:  # hand out what flooring left, largest remainder first
        k = max(range(len(shares)), key=lambda i: ideal[i] - shares[i])
        shares[k] += 1
    while sum(shares) > iters:  # the minimum overspent: take from the most overpaid
        over = [i for i in range(len(shares)) if shares[i] > minimum]
        shares[min(over, key=lambda i: ideal[i] - shares[i])] -= 1
    return shares


def _segments(points: set[int], original: int, iters: int) -> dict[int, int]:
    """Each schedule boundary of the ``original``-iteration run mapped into ``[0, iters]``.

    Consecutive boundaries cut the run into segments; each segment gets a whole number of the
    ``iters`` iterations in proportion to its original length, and at least two: mmengine's
    chainable schedulers take their first value at ``begin`` and their last at ``end - 1``,
    so a one-iteration warm-up applies its start factor and never lifts it (the whole run
    would train at 1% of the rate). With fewer than two iterations per segment, only the
    longest segments (as many as fit) keep iterations; the others get none.
    """
    bounds = sorted(points | {0, original})
    lengths = [b - a for a, b in pairwise(bounds)]
    kept = sorted(range(len(lengths)), key=lambda i: -lengths[i])[: max(1, iters // 2)]
    minimum = 2 if iters >= 2 * len(kept) else 1
    given = dict(zip(kept, _shares([lengths[i] for i in kept], iters, minimum), strict=True))
    mapped, total = {bounds[0]: 0}, 0
    for i, bound in enumerate(bounds[1:]):
        total += given.get(i, 0)
        mapped[bound] = total
    return mapped


def config_schedulers(cfg: Config) -> list:
    """The config's ``param_scheduler`` as a list of scheduler dicts.

    Raises:
        ScheduleError: schedulers per optimizer (a dict of lists): not rescaled here.
    """
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict) and "type" not in schedulers:
        raise ScheduleError(
            "param_scheduler holds schedulers per optimizer (a dict of lists); only a single "
            "list of schedulers can be rescaled to another run length"
        )
    return list(schedulers) if isinstance(schedulers, list) else [schedulers]


def scale_schedulers(schedulers: list, original: int, iters: int) -> list:
    """Iteration schedulers of an ``original``-iteration run rescaled to ``iters`` iterations.

    ``begin``/``end`` go through :func:`_segments`: every scheduler keeps ``end > begin``
    (at least two iterations while ``iters`` allows) within ``[0, iters]``, and schedulers
    that met (one's ``end`` the next one's ``begin``) still meet, however short the run (a
    warm-up of 50 of 800 iterations rounded to 0 before, which mmengine refuses). A scheduler
    left with no iteration (only when ``iters`` is below two per phase) is dropped, with a
    warning, as is one that began after the original run ended. Lengths (``T_max``,
    ``step_size``, ``total_steps``) and ``milestones`` scale with their scheduler's span and stay
    at least 1.

    Raises:
        ScheduleError: a scheduler that counts epochs (mmengine's default ``by_epoch=True``).
    """
    for scheduler in schedulers:
        if scheduler.get("by_epoch", True):
            raise ScheduleError(
                f"param_scheduler {scheduler.get('type')!r} counts epochs (by_epoch is not "
                "False); only an iteration schedule can be rescaled, so set by_epoch=False"
            )

    def clamp(point) -> int:
        return min(max(int(point), 0), original)

    spans = [(clamp(s.get("begin", 0)), clamp(s.get("end", original))) for s in schedulers]
    mapped = _segments({p for span in spans for p in span}, original, iters)
    scaled = []
    for scheduler, (begin, end) in zip(schedulers, spans, strict=True):
        new_begin, new_end = mapped[begin], mapped[end]
        if new_end <= new_begin:
            print_log(
                f"a run of {iters} iteration(s) drops param_scheduler "
                f"{scheduler.get('type')!r} (iterations {begin}-{end} of {original}): "
                "no iteration is left for it",
                logger="current",
                level=logging.WARNING,
            )
            continue
        scheduler = copy.deepcopy(scheduler)
        factor = (new_end - new_begin) / (end - begin)
        if "begin" in scheduler:
            scheduler["begin"] = new_begin
        if scheduler.get("end") is not None:
            scheduler["end"] = new_end
        for key in _LENGTHS:
            if scheduler.get(key) is not None:
                scheduler[key] = max(1, round(scheduler[key] * factor))
        if scheduler.get("milestones") is not None:
            scheduler["milestones"] = [max(1, round(m * factor)) for m in scheduler["milestones"]]
        scaled.append(scheduler)
    return scaled
