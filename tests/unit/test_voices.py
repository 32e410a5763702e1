"""VoiceCatalog: names from the configured voice folders resolve; nothing else does."""

import os
import shutil

import pytest

from deployments.checkpoint import VOICE_NAMES, VOICE_SUFFIX, voice_file, voices_dir
from deployments.engine.voices import VoiceCatalog, VoiceError

FRENCH = "cml-tts/fr/2154_2576_000020.wav"


@pytest.fixture(scope="module")
def catalog(tiny_checkpoint):
    return VoiceCatalog([voices_dir(tiny_checkpoint)], voice_repo=None, suffix=VOICE_SUFFIX)


def test_every_voice_of_the_folder_resolves_to_its_file(catalog, tiny_checkpoint):
    for name in VOICE_NAMES:
        path = catalog.resolve(name)
        assert path == voice_file(tiny_checkpoint, name).resolve() and path.is_file()


def test_a_name_with_the_model_suffix_or_spaces_around_resolves_too(catalog, tiny_checkpoint):
    expected = voice_file(tiny_checkpoint, VOICE_NAMES[0]).resolve()
    assert catalog.resolve(VOICE_NAMES[0] + VOICE_SUFFIX) == expected
    assert catalog.resolve(f"  {VOICE_NAMES[0]} ") == expected


def test_listing_shows_every_voice_with_group_and_language(catalog):
    voices = catalog.list_voices()
    assert [v.id for v in voices] == sorted(VOICE_NAMES)
    for voice in voices:
        assert voice.group == voice.id.split("/")[0]
        assert voice.source == "local"
        assert voice.language == ("fr" if voice.id == FRENCH else "en")
    assert voices[0].to_dict() == {"id": voices[0].id, "group": voices[0].group,
                                   "language": voices[0].language, "source": "local"}


def test_without_a_model_suffix_any_signature_is_listed(tiny_checkpoint):
    # The ingress does not load the model: it lists whatever signature the files carry.
    catalog = VoiceCatalog([voices_dir(tiny_checkpoint)])
    assert [v.id for v in catalog.list_voices()] == sorted(VOICE_NAMES)
    assert catalog.resolve(VOICE_NAMES[2]) == voice_file(tiny_checkpoint, VOICE_NAMES[2]).resolve()


@pytest.mark.parametrize("name", [
    "../voices/" + VOICE_NAMES[1],
    "vctk/../vctk/p225_023.wav",
    "vctk/./p225_023.wav",
    "vctk//p225_023.wav",
    "/etc/passwd",
    "//etc/passwd",
    "~/voice.wav",
    "C:/voices/x.wav",
    "vctk\\p225_023.wav",
    "..\\..\\etc\\passwd",
    "..",
])
def test_paths_are_refused(catalog, name):
    with pytest.raises(VoiceError) as info:
        catalog.resolve(name)
    assert "voice" in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", None, 3, ["vctk/p225_023.wav"], "x" * 300,
                                  "vctk/p225_023.wav\x00", "<script>", "vctk/p225;rm -rf"])
def test_malformed_names_are_refused(catalog, name):
    with pytest.raises(VoiceError):
        catalog.resolve(name)


@pytest.mark.parametrize("name", ["vctk/p999_000.wav", "p225_023.wav", "vctk", "nobody"])
def test_unknown_names_are_refused_with_a_pointer_to_the_list(catalog, name):
    with pytest.raises(VoiceError, match=f"unknown voice '{name}'.*/api/voices"):
        catalog.resolve(name)


def test_symlinks_out_of_the_folder_are_refused(tmp_path, tiny_checkpoint):
    inside, outside = tmp_path / "voices", tmp_path / "secret"
    (inside / "mine").mkdir(parents=True)
    outside.mkdir()
    source = voice_file(tiny_checkpoint, VOICE_NAMES[0])
    shutil.copy(source, inside / "mine" / ("good.wav" + VOICE_SUFFIX))
    shutil.copy(source, outside / ("stolen.wav" + VOICE_SUFFIX))
    # A file link and a folder link, both leading out; and a link that stays inside.
    os.symlink(outside / ("stolen.wav" + VOICE_SUFFIX), inside / "mine" / ("evil.wav" + VOICE_SUFFIX))
    os.symlink(outside, inside / "linked")
    os.symlink(inside / "mine" / ("good.wav" + VOICE_SUFFIX), inside / "mine" / ("alias.wav" + VOICE_SUFFIX))
    catalog = VoiceCatalog([inside], suffix=VOICE_SUFFIX)

    for name in ("mine/evil.wav", "linked/stolen.wav"):
        with pytest.raises(VoiceError, match="outside its voice directory"):
            catalog.resolve(name)
    assert catalog.resolve("mine/good.wav") == (inside / "mine" / ("good.wav" + VOICE_SUFFIX)).resolve()
    assert catalog.resolve("mine/alias.wav") == catalog.resolve("mine/good.wav")
    assert [v.id for v in catalog.list_voices()] == ["mine/alias.wav", "mine/good.wav"]


def test_voice_folders_are_searched_in_order_and_missing_ones_ignored(tmp_path, tiny_checkpoint):
    extra = tmp_path / "extra"
    (extra / "vctk").mkdir(parents=True)
    own = extra / "vctk" / ("p225_023.wav" + VOICE_SUFFIX)
    shutil.copy(voice_file(tiny_checkpoint, VOICE_NAMES[0]), own)
    shutil.copy(voice_file(tiny_checkpoint, VOICE_NAMES[0]), extra / ("narrator.wav" + VOICE_SUFFIX))
    catalog = VoiceCatalog([tmp_path / "missing", extra, voices_dir(tiny_checkpoint)], suffix=VOICE_SUFFIX)
    assert catalog.resolve("vctk/p225_023.wav") == own.resolve()  # the first folder wins
    assert catalog.resolve(VOICE_NAMES[3]) == voice_file(tiny_checkpoint, VOICE_NAMES[3]).resolve()
    listed = {v.id: v for v in catalog.list_voices()}
    assert set(listed) == set(VOICE_NAMES) | {"narrator.wav"}
    assert listed["narrator.wav"].group is None and listed["narrator.wav"].language is None


def test_voice_names_in_any_script_are_valid_but_a_trailing_newline_is_not():
    from deployments.engine.voices import validate_voice_name
    from serve_app.service.speech import voice_header

    assert validate_voice_name("my-voices/张三.wav") == "my-voices/张三.wav"
    assert voice_header("my-voices/张三.wav").isascii()  # fits an HTTP header
    assert validate_voice_name("  vctk/p225_023.wav\n") == "vctk/p225_023.wav"  # surrounding space goes
    for name in ["vctk/p225_023.wav\n.1e68beda@240.safetensors", "vctk\n/p225_023.wav", "a\nb"]:
        with pytest.raises(VoiceError):  # a newline inside the name does not
            validate_voice_name(name)


def test_a_stale_repo_listing_is_served_while_it_refreshes_in_the_background(monkeypatch):
    """Only the first listing of a hub voice repo is waited for: later refreshes never block."""
    import threading

    catalog = VoiceCatalog([], voice_repo="org/voices", suffix=".1e68beda@240.safetensors")
    release = threading.Event()
    calls = []

    def list_repo_files():
        calls.append(1)
        if len(calls) > 1:
            assert release.wait(30)  # the refresh hangs until released (a slow hub)
            return ["new/voice.wav.1e68beda@240.safetensors"]
        return ["old/voice.wav.1e68beda@240.safetensors"]

    monkeypatch.setattr(catalog, "_list_repo_files", list_repo_files)
    assert [v.id for v in catalog.list_voices()] == ["old/voice.wav"]
    catalog._repo_listed_at -= catalog.REPO_LISTING_TTL_S + 1  # make it stale
    assert [v.id for v in catalog.list_voices()] == ["old/voice.wav"]  # answered at once, stale
    release.set()
    for _ in range(300):
        if [v.id for v in catalog.list_voices()] == ["new/voice.wav"]:
            break
        threading.Event().wait(0.05)
    assert [v.id for v in catalog.list_voices()] == ["new/voice.wav"]
    assert len(calls) == 2  # one refresh, not one per call
