"""The archive service: wrap, repack, recompress and safely extract archives."""

from services.archive.limits import ArchiveLimits
from services.archive.members import Entry
from services.archive.pipeline import convert, extract, pack_directory

__all__ = ["ArchiveLimits", "Entry", "convert", "extract", "pack_directory"]
