"""`python -m services.media`: the media worker."""

from __future__ import annotations

from mesh.bus import service
from services.media import worker
from services.media.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    service.main(settings.worker, lambda: worker.handler(settings), worker.PRELOAD)


if __name__ == "__main__":
    main()
