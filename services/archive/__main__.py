"""`python -m services.archive`: the archive worker."""

from __future__ import annotations

import asyncio

from mesh import logs, sandbox
from mesh.bus import service
from services.archive import worker
from services.archive.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure("archive", settings.worker.log_level)
    sandbox.preload(worker.PRELOAD)
    asyncio.run(service.serve(settings.worker, worker.handler(settings)))


if __name__ == "__main__":
    main()
