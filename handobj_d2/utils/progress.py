"""Progress of a job made of stages (``make demo``): each stage is logged as it starts and ends
with its number, its planned and spent seconds, and the job's ETA."""

import contextlib
import logging
import time

logger = logging.getLogger(__name__)


def format_seconds(seconds):
    """``125.4`` -> ``"2 min 05 s"``; under a minute ``"42 s"``."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


class StageProgress:
    """Stages planned as ``[(name, seconds), ...]`` in their order of running. The ETA is the
    time still planned: the stages not started, plus what is left of the current one's plan
    (never less than zero), so it corrects itself as stages end early or late.

    Args:
        plan: list of (stage name, planned seconds).
        clock: seconds, monotonic (``time.monotonic``; tests pass a fake one).
    """

    def __init__(self, plan, clock=time.monotonic):
        self.plan = dict(plan)
        self.clock = clock
        self.start = clock()
        self.spent = {}
        self._current = None

    def eta_seconds(self):
        """Seconds still planned from now."""
        left = 0.0
        for name, planned in self.plan.items():
            if name in self.spent:
                continue
            if self._current is not None and name == self._current[0]:
                planned = max(planned - (self.clock() - self._current[1]), 0.0)
            left += planned
        return left

    def _line(self, name):
        number = list(self.plan).index(name) + 1
        return f"[{number}/{len(self.plan)}] {name}"

    def replan(self, name, seconds):
        """Change a stage's planned seconds (e.g. once a training budget is known)."""
        self.plan[name] = seconds

    @contextlib.contextmanager
    def stage(self, name):
        """Log the stage ``name`` (a key of the plan) as it starts and ends; its seconds go
        to ``spent``."""
        self._current = (name, self.clock())
        logger.info(
            f"{self._line(name)}: starting, planned {format_seconds(self.plan[name])}; "
            f"{format_seconds(self.clock() - self.start)} elapsed, job ETA "
            f"{format_seconds(self.eta_seconds())}"
        )
        try:
            yield
        finally:
            self.spent[name] = self.clock() - self._current[1]
            self._current = None
        logger.info(
            f"{self._line(name)}: done in {format_seconds(self.spent[name])}; "
            f"{format_seconds(self.clock() - self.start)} elapsed, job ETA "
            f"{format_seconds(self.eta_seconds())}"
        )
