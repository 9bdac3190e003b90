import av
import pytest

from mesh.errors import MeshError, Reason
from mesh.formats import OUTPUT_FORMATS, Family
from services.media import codecs


def test_every_media_output_format_has_a_target() -> None:
    media = {n for n, f in OUTPUT_FORMATS.items() if f.family in (Family.VIDEO, Family.AUDIO)}
    assert media | {"gif"} <= set(codecs.TARGETS)
    for name in media:
        assert codecs.TARGETS[name].mime_type == OUTPUT_FORMATS[name].mime_type


def test_every_encoder_and_muxer_exists_in_this_ffmpeg_build() -> None:
    for target in codecs.TARGETS.values():
        for codec in (target.video_codec, target.audio_codec, target.lossless_audio):
            if codec:
                assert av.Codec(codec, "w").is_encoder
        assert av.format.ContainerFormat(target.muxer).is_output


def test_default_compression_gives_the_encoders_usual_defaults() -> None:
    assert codecs.x264_options(82, False)["crf"] == "23"
    assert codecs.vp9_options(82, False)["crf"] == "31"
    assert codecs.mp3_vbr_quality(82) == 2


def test_higher_compression_value_means_higher_quality() -> None:
    assert int(codecs.x264_options(100, False)["crf"]) < int(codecs.x264_options(1, False)["crf"])
    assert codecs.audio_bitrate("aac", 100, 2) > codecs.audio_bitrate("aac", 1, 2)


def test_keeping_a_format_nobody_can_write_is_refused() -> None:
    with pytest.raises(MeshError) as caught:
        codecs.target_for("", "avi")
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR
