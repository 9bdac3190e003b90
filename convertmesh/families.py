"""Which of several `--to` formats a file gets: the first one of its own family, judged by the
file name's extension (`convert photo.heic clip.mov --to webp,mp4` sends the photo to webp and
the clip to mp4). A file of no listed family gets the first format; the server then says
whether it can do that."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

OUTPUTS = {
    "image": ("jpg", "png", "webp", "avif", "tiff", "gif", "heif", "svg", "pdf"),
    "video": ("mp4", "webm", "mov"),
    "audio": ("mp3", "wav", "ogg", "m4a", "flac"),
    "archive": ("zip", "tar", "tgz", "7z", "rar", "gz", "bz2", "xz"),
}
ALL_OUTPUTS = tuple(fmt for formats in OUTPUTS.values() for fmt in formats)

_INPUT_EXTENSIONS = {
    "image": "jpg jpeg jpe jfif png apng webp avif heic heif tif tiff gif bmp ico svg svgz pdf",
    "video": "mp4 m4v mov qt webm mkv avi ts mts m2ts mpg mpeg ogv 3gp wmv flv",
    "audio": "mp3 m4a aac wav wave ogg oga opus flac aif aiff",
    "archive": "zip tar tgz gz bz2 tbz2 xz txz 7z rar",
}
FAMILY_OF_EXTENSION = {
    extension: family
    for family, extensions in _INPUT_EXTENSIONS.items()
    for extension in extensions.split()
}
# Where a file's own family has none of the formats, what it may still become.
_FALLBACKS = {
    "image": ("image",),
    "video": ("video", "audio", "image"),
    "audio": ("audio",),
    "archive": ("archive", "image", "video", "audio"),
}


def family_of(name: str) -> str | None:
    path = urlsplit(name).path if "://" in name else name
    suffix = PurePosixPath(path).suffix.lower().lstrip(".")
    return FAMILY_OF_EXTENSION.get(suffix)


def format_for(name: str, formats: Sequence[str]) -> str:
    """The format of `formats` that the file `name` should be converted to."""
    if len(formats) == 1:
        return formats[0]
    family = family_of(name)
    for wanted in _FALLBACKS.get(family or "", ()):
        for fmt in formats:
            if fmt in OUTPUTS[wanted]:
                return fmt
    return formats[0]
