"""One preflight line: ok / warn / fail, what was found, and how to fix it.

In a module of its own so that every preflight module (and switch methods) can
import it without importing :mod:`roleswap.swap.preflight` itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """A FAIL refuses the swap and must carry a remedy; a WARN may."""

    name: str
    status: str  # "ok" | "warn" | "fail"
    message: str
    remedy: str = ""

    @classmethod
    def ok(cls, name: str, message: str) -> Check:
        return cls(name, "ok", message)

    @classmethod
    def warn(cls, name: str, message: str, remedy: str = "") -> Check:
        return cls(name, "warn", message, remedy)

    @classmethod
    def fail(cls, name: str, message: str, remedy: str) -> Check:
        return cls(name, "fail", message, remedy)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message,
                "remedy": self.remedy}
