"""Contact-pressure settings as a Dagster resource: the global cap and quiet hours; each program's own cap comes
from its config."""

from __future__ import annotations

from datetime import time as dtime

import dagster as dg
from pydantic import Field

from engage_assets.domain.config import ProgramBase
from engage_assets.domain.pressure import PressurePolicy, program_cap


class ContactPressureResource(dg.ConfigurableResource):
    """Global contact-pressure settings; each program's own cap comes from its config."""

    global_cap: int = Field(default=5, ge=1, description="Touches per customer per window, every program.")
    global_window_days: int = Field(default=7, ge=1)
    quiet_start: str = Field(default="21:00", description="Local quiet hours start (HH:MM).")
    quiet_end: str = Field(default="08:00", description="Local quiet hours end (HH:MM).")

    def policy(self, programs: list[ProgramBase]) -> PressurePolicy:
        def hhmm(v: str) -> dtime:
            h, m = v.split(":")
            return dtime(int(h), int(m))

        caps = {p.programId: c for p in programs if (c := program_cap(p)) is not None}
        return PressurePolicy(
            global_cap=self.global_cap,
            global_window_days=self.global_window_days,
            quiet_start=hhmm(self.quiet_start),
            quiet_end=hhmm(self.quiet_end),
            program_caps=caps,
        )
