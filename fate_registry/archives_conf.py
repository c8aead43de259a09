"""The conf's ``archives:`` section: how export and store write an archive's entries (see party_agent.deflate)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as section

from fate_registry.schema import SECTION, Section


@section(frozen=True, config=SECTION)
class ArchivesConf(Section):
    # auto: each entry deflated when a sample of it shrinks by at least min_saving, else stored; stored: all stored.
    compression: Literal["auto", "stored"] = "auto"
    # ISA-L's level: 1 is within 2 % of 3's size at twice its speed; 0 leaves a quarter more.
    deflate_level: Annotated[int, Field(strict=True, ge=0, le=3)] = 1
    min_saving: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    # Threads an export or a store compresses on (ISA-L releases the GIL).
    threads: Annotated[int, Field(strict=True, ge=1)] = 2

    @property
    def stored(self) -> ArchivesConf:
        """These settings with every entry stored."""
        return ArchivesConf("stored", self.deflate_level, self.min_saving, self.threads)
