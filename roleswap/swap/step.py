"""The Step contract: a small object with ``apply`` and ``undo`` and a one-line title.

A plan is an ordered list of steps (data you can print with ``--dry-run``).
Contracts every step keeps:

* ``apply`` returns a short detail string for the status line, or raises.
* ``apply`` and ``undo`` are idempotent and re-read what they need from the
  servers or the journal, so `roleswap recover` can run them in a fresh process
  after a crash at any point.
* ``undo`` of a step that never ran (or failed half-way) is harmless.
* ``ponr`` marks the point of no return: once that step is done, failures are
  no longer rolled back but finished (see :mod:`roleswap.swap.runner`).
* ``intent``: the runner journals "running" before ``apply`` (write-ahead), because
  the step changes a server, Redis or a host.  A step that only reads and waits
  (catch-up, fence-check) sets it False: a crash inside it leaves the same facts as a
  crash just before it, so its record is written with its end, and the pause window
  holds one journal write (a Redis round trip) fewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roleswap.swap.context import SwapContext


class Step:
    name: str = "step"
    ponr: bool = False
    # steps that need no undo say so (printed in the plan)
    reversible: bool = True
    intent: bool = True  # journal "running" before apply (False: it changes nothing)

    def title(self, ctx: SwapContext) -> str:
        return self.name

    def apply(self, ctx: SwapContext) -> str:
        raise NotImplementedError

    def undo(self, ctx: SwapContext) -> str:
        return "nothing to undo"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
