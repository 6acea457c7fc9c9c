"""What the routes work with, made once per app and reached through FastAPI's dependencies: the settings,
the Triton side, the voice library, the response formats that work here, and the admission of speech
requests. Tests hand the app a stand-in for Triton (the SpeechServer interface) through the same place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from gateway.admission import Admission
from gateway.settings import Settings
from gateway.triton import SpeechServer
from gateway.voice_library import VoiceLibrary


@dataclass
class Services:
    settings: Settings
    triton: SpeechServer
    library: VoiceLibrary
    formats: dict[str, str | None]  # response_format -> None where it can be produced here, else why not
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_concurrency)
        self.aliases = dict(self.settings.voice_aliases)

    @property
    def working_formats(self) -> list[str]:
        return [name for name, why in self.formats.items() if why is None]


def services(request: Request) -> Services:
    """The dependency every route takes: the app's Services (create_app puts them on app.state)."""
    return request.app.state.services


# A route's parameter `svc: ServicesDep` is the app's Services.
ServicesDep = Annotated[Services, Depends(services)]
