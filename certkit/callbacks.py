"""The callables passed down through certkit, named once.

Progress lines go to an ``Echo`` (``print``, ``click.echo``, a test's list);
subprocesses start through a ``Runner`` (:func:`certkit.runner.run` or a
test's recorder); time comes from a ``Clock`` in the code that schedules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from certkit.runner import Result

Echo = Callable[[str], None]
Runner = Callable[..., Result]
Clock = Callable[[], dt.datetime]
