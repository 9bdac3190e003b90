"""The demux loop: every packet of a chosen stream goes to its lane; the rest are skipped."""

from __future__ import annotations

from collections.abc import Mapping

import av.container

from mesh.errors import MeshError, Reason
from services.media.lanes import Lane


def pump(container: av.container.InputContainer, lanes: Mapping[int, Lane]) -> None:
    streams = [container.streams[index] for index in lanes]
    for packet in container.demux(streams):
        if packet.size == 0 and packet.dts is None:
            continue  # the end-of-stream marker; lanes flush themselves below
        lanes[packet.stream.index].push(packet)
    for lane in lanes.values():
        lane.flush()
    if not any(lane.units for lane in lanes.values()):
        raise MeshError(Reason.CORRUPT_INPUT, "The media has no decodable frames.")
