"""The image conversion pipeline, as a fixed list of small steps.

1. pick the output format and check the pair;
2. read the source header and check the pixel/frame limits (nothing decoded yet);
3. plan the resize from the preset's box and check the output size;
4. load through libvips `thumbnail` (shrink-on-load, EXIF orientation, ICC → sRGB);
5. shape: pad for `contain`, reset the orientation tag, flatten alpha the output cannot hold;
6. write once: a raster encoder, the target-size search, the SVG tracer or the PDF writer.

Page sets: an animation keeps every frame into gif/webp/pdf and gives its first frame to
still outputs; a multi-page TIFF gives every page to pdf (one PDF page each, at its own size)
and page 0 to every other output.

A compress job keeping the format (no `format`) writes with the encoders' compress settings
(`encode.compress_quality`, `Encoding.thorough`) and hands back the source itself when the
result is not smaller, unless a resize or `stripMetadata` asked for something the source is
not.

Pure and synchronous: the worker runs `convert` in a sandboxed child process. Each step is a
span of the task's trace (`mesh.tracing.stage`): decode (the header read and its checks, then
the load), process, encode. libvips is lazy: "decode" and "process" build the pipeline and the
pixels flow during "encode".
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeGuard

import pyvips

from mesh import tracing
from mesh.errors import MeshError, Reason
from mesh.formats import Family, outputs_of
from mesh.options import DEFAULT_COMPRESSION, ConversionOptions, Mode, box_for
from mesh.outcome import Outcome, smaller_or_original
from services.image import encode, pdfwrite, sourcequality, svgtrace, targetsize
from services.image.decode import has_field, open_source
from services.image.limits import ImageLimits, check_output, check_source, guard_pillow
from services.image.resize import Plan, per_page, plan
from services.image.sources import Source, VipsFile, corrupt

__all__ = ["ImageLimits", "convert"]

# What this worker writes: raster formats through `encode`, svg by tracing, pdf by pdfwrite.
OUTPUTS = frozenset(outputs_of(Family.IMAGE, Family.SVG, Family.PDF))
_MULTI_FRAME_OUTPUTS = encode.ANIMATED_OUTPUTS | {"pdf"}
_ORIENTATION_FIELDS = ("orientation", "exif-ifd0-Orientation")
_LOSSLESS_OUTPUTS = frozenset({"png", "tiff"})
_EIGHT_BIT = frozenset({"uchar", "char"})


def convert(
    source: Path,
    output: Path,
    source_format: str,
    options: ConversionOptions,
    limits: ImageLimits,
) -> Outcome:
    """Converts one image file; raises MeshError with the reason for every failure."""
    guard_pillow(limits)
    target = _output_format(options.format or source_format, source_format)
    # Reading the header and checking the limits, then loading: one span (two would add a
    # span's cost per image for a header read that takes a millisecond).
    with tracing.stage("decode", source_format=source_format) as step:
        opened = open_source(source, source_format, limits, animate=target in _MULTI_FRAME_OUTPUTS)
        tracing.set_attributes(step, {"convertmesh.frames": opened.frames})
        try:
            pages = opened if target == "pdf" and _multipage_tiff(opened) else None
            if pages is None:
                resize = plan(box_for(options), *opened.oriented_size(options.auto_orient))
                check_output(resize.width, resize.height, opened.frames, limits)
                tracing.set_attributes(
                    step, {"convertmesh.width": resize.width, "convertmesh.height": resize.height}
                )
                image = opened.load(resize, options.auto_orient)
        except pyvips.Error as error:
            raise corrupt() from error
    try:
        if pages is not None:
            with tracing.stage("encode", output_format="pdf", pages=pages.pages):
                return _tiff_pages_to_pdf(source, output, pages, options, limits)
        with tracing.stage("process"):
            image = shape(image, resize, opened, target, options)
        with tracing.stage("encode", output_format=target):
            outcome = _write(
                image,
                source=source,
                output=output,
                target=target,
                options=options,
                opened=opened,
                resize=resize,
            )
    except pyvips.Error as error:
        raise corrupt() from error
    if _compressing(options) and options.resize == "original" and not options.strip_metadata:
        lost = target in _LOSSLESS_OUTPUTS and _deeper_than(source, image)
        return smaller_or_original(source, output, outcome, lost_detail=lost)
    return outcome


def _deeper_than(source: Path, image: pyvips.Image) -> bool:
    """The source holds more bits per sample than what was written (16-bit or float pixels
    end as 8-bit sRGB): a lossless compress must then keep the source."""
    try:
        header = pyvips.Image.new_from_file(str(source), access="sequential")
    except pyvips.Error:
        return False
    return bool(header.format not in _EIGHT_BIT and image.format in _EIGHT_BIT)


def _compressing(options: ConversionOptions) -> bool:
    """A compress job keeping the input's format reaches the worker without a format."""
    return not options.format


def _encoding(
    source: Path, target: str, options: ConversionOptions, opened: Source
) -> encode.Encoding:
    keep = not options.strip_metadata
    if not _compressing(options):
        quality = encode.quality_for(target, options.compression)
        return encode.Encoding(target, quality, lossless=options.lossless, keep_metadata=keep)
    source_quality = sourcequality.jpeg_quality(source) if opened.format == "jpg" else None
    quality = encode.compress_quality(
        target, options.compression, source_quality, DEFAULT_COMPRESSION
    )
    lossless = options.lossless or (target == "webp" and sourcequality.webp_is_lossless(source))
    return encode.Encoding(target, quality, lossless=lossless, keep_metadata=keep, thorough=True)


def _multipage_tiff(opened: Source) -> TypeGuard[VipsFile]:
    return isinstance(opened, VipsFile) and opened.format == "tiff" and opened.pages > 1


def _tiff_pages_to_pdf(
    source: Path, output: Path, first: VipsFile, options: ConversionOptions, limits: ImageLimits
) -> Outcome:
    """Every page of a multi-page TIFF, each resized on its own, one PDF page each."""
    check_source(first.width, first.page_height, first.pages, limits)  # before the headers
    pages = [first] + [
        open_source(source, "tiff", limits, animate=False, page=index)
        for index in range(1, first.pages)
    ]
    check_source(
        max(page.width for page in pages),
        max(page.page_height for page in pages),
        len(pages),
        limits,
    )
    images = []
    for page in pages:
        resize = plan(box_for(options), *page.oriented_size(options.auto_orient))
        check_output(resize.width, resize.height, len(pages), limits)
        image = page.load(resize, options.auto_orient)
        images.append(shape(image, resize, page, "pdf", options))
    quality = pdfwrite.write(images, output, options.compression, passthrough=None)
    return Outcome(
        "pdf", "application/pdf", images[0].width, images[0].height, applied_quality=quality
    )


def _output_format(target: str, source_format: str) -> str:
    if target not in OUTPUTS or (target == "svg" and source_format == "svg"):
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"A {source_format} image cannot be converted to '{target}'.",
            source=source_format,
            target=target,
        )
    return target


def shape(
    image: pyvips.Image, resize: Plan, opened: Source, target: str, options: ConversionOptions
) -> pyvips.Image:
    if options.auto_orient:
        image = image.copy()
        for name in _ORIENTATION_FIELDS:
            if has_field(image, name):
                image.remove(name)
    keeps_alpha = target in encode.ENCODERS and encode.ENCODERS[target].alpha
    if image.hasalpha() and not keeps_alpha and not (target == "svg" and not options.mono):
        image = image.flatten(background=_white(image))
    if resize.pad:
        image = _pad(image, resize, opened.frames, transparent=keeps_alpha)
    return image


def _white(image: pyvips.Image) -> list[float]:
    peak = 65535.0 if image.format == "ushort" else 1.0 if image.format == "float" else 255.0
    return [peak] * (image.bands - (1 if image.hasalpha() else 0))


def _pad(image: pyvips.Image, resize: Plan, frames: int, transparent: bool) -> pyvips.Image:
    if transparent and not image.hasalpha():
        image = image.bandjoin_const([_white(image)[0]])
    background = [0.0] * image.bands if transparent else _white(image)
    return per_page(
        image,
        frames,
        lambda page: page.gravity(
            "centre", resize.width, resize.height, extend="background", background=background
        ),
    )


def _write(
    image: pyvips.Image,
    *,
    source: Path,
    output: Path,
    target: str,
    options: ConversionOptions,
    opened: Source,
    resize: Plan,
) -> Outcome:
    page_height = image.height // opened.frames if opened.frames > 1 else image.height
    if target == "svg":
        width, height = svgtrace.trace(image, output, options.compression, options.mono)
        return Outcome("svg", "image/svg+xml", width, height, applied_quality=options.compression)
    if target == "pdf":
        passthrough = source if _jpeg_untouched(opened, resize, options) else None
        pages = pdfwrite.frames_of(image, opened.frames)
        quality = pdfwrite.write(pages, output, options.compression, passthrough)
        return Outcome("pdf", "application/pdf", image.width, page_height, applied_quality=quality)
    encoder = encode.ENCODERS[target]
    encoding = _encoding(source, target, options, opened)
    width = image.width
    if options.mode is Mode.TARGET_SIZE:
        fitted = targetsize.search(image, output, opened.frames, encoding, options.target_bytes)
        encoding, width, page_height = fitted.encoding, fitted.width, fitted.height
    else:
        encode.save(image, output, encoding)
    lossless = encoding.lossless or not encoder.lossy
    quality = None if lossless else encoding.quality
    return Outcome(target, encoder.mime_type, width, page_height, applied_quality=quality)


def _jpeg_untouched(opened: Source, resize: Plan, options: ConversionOptions) -> bool:
    """A JPEG whose pixels the pipeline would not change can go into a PDF as it is."""
    return (
        isinstance(opened, VipsFile)
        and opened.format == "jpg"
        and opened.bands in (1, 3)
        and not opened.has_icc
        and (opened.orientation == 1 or not options.auto_orient)
        and (resize.width, resize.height) == (opened.width, opened.page_height)
        and resize.thumbnail_width == resize.thumbnail_height  # no box at all
    )
