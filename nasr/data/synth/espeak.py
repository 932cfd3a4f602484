"""eSpeak NG through ctypes, from the library and voices that the `espeakng-loader` wheel ships.

No system package is needed: `espeakng_loader.get_library_path()` names the shared library and
`get_data_path()` the espeak-ng-data folder beside it.  The library is initialised once per process
in synchronous mode: `espeak_Synth` returns only when the text is spoken, and every chunk of int16
samples passes through our callback, which appends it to a per-call buffer.  eSpeak NG keeps
two kinds of state between calls that would make a clip depend on what was spoken before it:

* its noise generator, which we reseed before every call (`espeak_ng_SetRandSeed`);
* the phase of its pitch "flutter" (a function-static counter in wavegen.c that nothing resets).
  We silence flutter instead: the engine runs on a private copy of espeak-ng-data (symlinks into the
  wheel's folder) whose voice variants all end in `flutter 0`, and a plain voice name gets the
  flutter-free variant `steady`.  Callers add their own pitch and rate jitter;
* the double-buffered harmonic spectrum of wavegen.c (`hswitch`), whose parity flips with each
  utterance of odd length.  It cannot be reset through the API, so before each call we speak a short
  probe and compare it with the probe's two possible renderings: when the probe came out as the
  canonical one the state is the canonical one, otherwise one more probe puts it there.

So the same text, parameters and seed give the same samples in any process and in any order.

    >>> x = synthesize("hello world", voice="en+m3", rate=170, pitch=50, pitch_range=50)
    >>> x.dtype, SAMPLE_RATE
    (dtype('float32'), 16000)
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import tempfile
import threading
from functools import lru_cache
from typing import List, Optional

import numpy as np

SAMPLE_RATE = 16000  # every synthetic corpus is 16 kHz, like the real ones

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7
_EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class EspeakError(RuntimeError):
    """eSpeak NG could not be loaded, or refused a voice or a parameter."""


STEADY_VARIANT = "steady"  # our flutter-free variant for voices named without one


PRIVATE_DATA_ENV = "NASR_ESPEAK_DATA"  # the private data folder a process hands to those it starts
_MADE_FROM = "made-from.txt"  # in that folder: the shipped espeak-ng-data it links to


def private_data_dir(shipped: str) -> str:
    """The private espeak-ng-data folder of this process tree (see `_make_private_data_dir`).

    The first process that needs one makes it, removes it when it exits, and names it in
    $NASR_ESPEAK_DATA, so the processes it starts afterwards (the corpus makers' pool workers) use
    the same folder.  They must not make their own: pool workers leave through os._exit, which runs
    no atexit handler, and every worker left a `nasr-espeak-*` folder in TMPDIR."""
    inherited = os.environ.get(PRIVATE_DATA_ENV)
    if inherited:
        with contextlib.suppress(OSError):
            with open(os.path.join(inherited, _MADE_FROM), encoding="utf-8") as f:
                if f.read() == shipped:
                    return inherited
    root = _make_private_data_dir(shipped)
    os.environ[PRIVATE_DATA_ENV] = root
    return root


def share_data_dir() -> str:
    """Make (or find) the private data folder now, in the parent, so that the worker processes
    started next use it instead of each making one of its own."""
    return private_data_dir(_loader().get_data_path())


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakError("the Python package 'espeakng-loader' is not installed "
                          "(fix: pip install espeakng-loader)") from None
    return espeakng_loader


def _remove_if_owner(root: str, owner_pid: int) -> None:
    # A forked child inherits this atexit handler; only the process that made the folder removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(root, ignore_errors=True)


def _make_private_data_dir(shipped: str) -> str:
    """A temp folder holding `espeak-ng-data` that links to `shipped`, with flutter-free variants."""
    root = tempfile.mkdtemp(prefix="nasr-espeak-")
    atexit.register(_remove_if_owner, root, os.getpid())
    data = os.path.join(root, "espeak-ng-data")
    os.makedirs(os.path.join(data, "voices", "!v"))
    for name in os.listdir(shipped):
        if name != "voices":
            os.symlink(os.path.join(shipped, name), os.path.join(data, name))
    shipped_voices = os.path.join(shipped, "voices")
    for name in os.listdir(shipped_voices):
        if name != "!v":
            os.symlink(os.path.join(shipped_voices, name), os.path.join(data, "voices", name))
    shipped_variants = os.path.join(shipped_voices, "!v")
    for name in os.listdir(shipped_variants):
        with open(os.path.join(shipped_variants, name), "rb") as f:
            text = f.read()
        # A later key overrides an earlier one, so appending wins over any flutter line above.
        with open(os.path.join(data, "voices", "!v", name), "wb") as f:
            f.write(text.rstrip(b"\n") + b"\nflutter 0\n")
    with open(os.path.join(data, "voices", "!v", STEADY_VARIANT), "w") as f:
        f.write(f"language variant\nname {STEADY_VARIANT}\nflutter 0\n")
    with open(os.path.join(root, _MADE_FROM), "w", encoding="utf-8") as f:  # last: the folder is complete
        f.write(shipped)
    return root


class _Engine:
    """One initialised eSpeak NG library (a process-wide singleton: the C library has global state)."""

    def __init__(self):
        espeakng_loader = _loader()
        lib_path = espeakng_loader.get_library_path()
        shipped_data = espeakng_loader.get_data_path()
        try:
            self.lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakError(f"cannot load eSpeak NG library '{lib_path}': {e} "
                              "(fix: reinstall espeakng-loader)") from None
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint),
                                     ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        # Voicing uses the C rand(); reseeding before every call is what makes output repeatable.
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

        private_root = private_data_dir(shipped_data)
        self.native_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                 private_root.encode(), 0)
        if self.native_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with data from '{shipped_data}' "
                              "(fix: reinstall espeakng-loader)")
        self.data_path = shipped_data
        self._chunks: List[np.ndarray] = []
        # Keep a reference: ctypes frees a callback object that Python no longer holds.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        lib.espeak_SetSynthCallback(self._callback)
        # Two probes in a row show both renderings the hidden state allows. Which one is canonical
        # is decided by content (not by which came first), so a forked child whose library state
        # was inherited picks the same canonical state as a fresh process.
        first, second = self._speak_probe(), self._speak_probe()
        self._probe_renderings = sorted([first.tobytes(), second.tobytes()])
        self.lock = threading.Lock()  # the C library is not re-entrant

    def _on_samples(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = go on synthesising

    def set_voice(self, voice: str) -> None:
        if "+" not in voice:
            voice = f"{voice}+{STEADY_VARIANT}"
        # Reloaded on every call even when unchanged: loading a voice resets the wave generator,
        # and without it the second clip of a voice differs from the first.
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise EspeakError(f"eSpeak NG has no voice '{voice}' "
                              "(fix: use a name from list_languages()/list_variants(), e.g. 'en+m3')")

    def set_param(self, param: int, value: int) -> None:
        if self.lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
            raise EspeakError(f"eSpeak NG refused parameter {param} = {value}")

    _PROBE = ("en", "a")

    def _speak_probe(self) -> np.ndarray:
        self.set_voice(self._PROBE[0])
        for param, value in ((_PARAM_RATE, 175), (_PARAM_PITCH, 50), (_PARAM_RANGE, 50),
                             (_PARAM_VOLUME, 100), (_PARAM_WORDGAP, 0)):
            self.set_param(param, value)
        return self._speak_raw(self._PROBE[1], 0)

    def reset_state(self) -> None:
        """Bring the wave generator to the canonical state (see the module docstring)."""
        for _ in range(3):
            if self._speak_probe().tobytes() == self._probe_renderings[0]:
                return
        raise EspeakError("eSpeak NG's wave generator did not return to a known state; "
                          "this library build keeps state this module does not know about "
                          "(fix: pin the espeakng-loader version that nasr was tested with)")

    def speak(self, text: str, seed: int) -> np.ndarray:
        return self._speak_raw(text, seed)

    def _speak_raw(self, text: str, seed: int) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        self._chunks = []
        self.lib.espeak_ng_SetRandSeed(seed)
        rc = self.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if rc != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with code {rc} for text {text[:40]!r}")
        self.lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks)


_engine: Optional[_Engine] = None
_engine_pid: Optional[int] = None


def _get_engine() -> _Engine:
    """The process's engine; a forked child builds its own rather than share the parent's state."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        _engine = _Engine()
        _engine_pid = os.getpid()
    return _engine


def data_path() -> str:
    return _get_engine().data_path


def native_sample_rate() -> int:
    return _get_engine().native_rate


@lru_cache(maxsize=None)
def list_languages() -> List[str]:
    """Voice names of the shipped languages, lower case as eSpeak accepts them (e.g. 'en-gb-x-rp')."""
    root = os.path.join(data_path(), "lang")
    names = []
    for dirpath, _, files in os.walk(root):
        names.extend(f.lower() for f in files)
    return sorted(set(names))


@lru_cache(maxsize=None)
def list_variants() -> List[str]:
    """Voice variants shipped in espeak-ng-data/voices/!v (e.g. 'm3', 'f2', 'klatt')."""
    root = os.path.join(data_path(), "voices", "!v")
    return sorted(f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f)))


def _resample_to_16k(x: np.ndarray, native_rate: int) -> np.ndarray:
    from fractions import Fraction

    from scipy.signal import resample_poly

    if native_rate == SAMPLE_RATE:
        return x
    frac = Fraction(SAMPLE_RATE, native_rate)  # 22050 -> 16000 is exactly 320/441
    return resample_poly(x, frac.numerator, frac.denominator).astype(np.float32)


def synthesize_native(text: str, voice: str = "en", rate: int = 175, pitch: int = 50,
                      pitch_range: int = 50, volume: int = 100, word_gap: int = 0, seed: int = 0) -> np.ndarray:
    """Raw int16 samples at `native_sample_rate()` (22050 Hz for the shipped voices)."""
    if not text.strip():
        raise EspeakError("cannot synthesise empty text")
    eng = _get_engine()
    with eng.lock:
        eng.reset_state()
        eng.set_voice(voice)
        # eSpeak would clamp silently; clamping here keeps the values we log the values used.
        eng.set_param(_PARAM_RATE, max(80, min(450, rate)))
        eng.set_param(_PARAM_PITCH, max(0, min(100, pitch)))
        eng.set_param(_PARAM_RANGE, max(0, min(100, pitch_range)))
        eng.set_param(_PARAM_VOLUME, max(0, min(200, volume)))
        eng.set_param(_PARAM_WORDGAP, max(0, word_gap))
        return eng.speak(text, seed)


def synthesize(text: str, voice: str = "en", rate: int = 175, pitch: int = 50,
               pitch_range: int = 50, volume: int = 100, word_gap: int = 0,
               seed: int = 0) -> np.ndarray:
    """Speak `text` and return float32 samples in [-1, 1] at 16 kHz.

    voice: a language name with an optional variant, e.g. 'en', 'en-us+f2', 'cmn+m3'.
    rate: words per minute (80-450); pitch, pitch_range: 0-100 (50 is the voice's default);
    volume: 0-200 (100 is normal); word_gap: extra pause between words in units of 10 ms;
    seed: seeds eSpeak's voicing noise (same seed and arguments -> identical samples).
    """
    raw = synthesize_native(text, voice, rate, pitch, pitch_range, volume, word_gap, seed)
    x = raw.astype(np.float32) / 32768.0
    return _resample_to_16k(x, native_sample_rate())
