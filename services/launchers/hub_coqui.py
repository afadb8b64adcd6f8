"""Coqui's tts-server, unchanged, plus one guard on its OpenAI route /v1/audio/speech.

That route defaults `response_format` to mp3 and encodes every format but wav and pcm through
torchaudio (TTS/server/server.py), whose encoders depend on libraries the image may lack (no
FFmpeg in the CPU image; torchcodec on torch >= 2.9, coqui-ai-TTS#542). A missing encoder ends
in a 500. So before serving, this asks the server itself for one short sentence in each format
OpenAI documents and keeps the formats that come back as real audio; afterwards a request for any
other format gets a 400 naming the ones that work. Run as: python3 hub_coqui.py <tts-server args>.
"""

import sys

sys.argv = ["tts-server", *sys.argv[1:]]

from flask import jsonify, request  # noqa: E402

# Importing the module parses sys.argv and loads the model, exactly as `tts-server` does.
from TTS.server import server  # noqa: E402

SPEECH_PATH = "/v1/audio/speech"
# OpenAI's documented response formats, in its order; mp3 is its default.
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
DEFAULT_FORMAT = "mp3"
PROBE_TEXT = "Ready."

# None while probing (every request passes); then the formats that produced audio.
available: "frozenset[str] | None" = None


def say(line: str) -> None:
    # Coqui configures only its own "TTS" logger; plain stderr lines land in the container log.
    print(f"hub_coqui: {line}", file=sys.stderr, flush=True)


def looks_like(fmt: str, data: bytes) -> bool:
    """Whether the bytes are the container the format names (their first bytes)."""
    if fmt == "wav":
        return data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    if fmt == "mp3":
        return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    if fmt == "opus":
        return data[:4] == b"OggS"
    if fmt == "flac":
        return data[:4] == b"fLaC"
    if fmt == "aac":
        # The server writes AAC in an MP4 (m4a) container; a raw ADTS stream would also do.
        return data[4:8] == b"ftyp" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0)
    if fmt == "pcm":
        return len(data) >= 2 and len(data) % 2 == 0
    return False


@server.app.before_request
def refuse_unavailable_format():
    if available is None or request.path != SPEECH_PATH or request.method != "POST":
        return None
    payload = request.get_json(force=True, silent=True)
    requested = payload.get("response_format", DEFAULT_FORMAT) if isinstance(payload, dict) else DEFAULT_FORMAT
    fmt = str(requested).lower()
    if fmt in available:
        return None
    working = ", ".join(f for f in OPENAI_FORMATS if f in available)
    message = f"response_format {requested!r} is not available from this hub's text to speech; use one of: {working}."
    body = {"error": {"message": message, "type": "invalid_request_error", "param": "response_format", "code": "unsupported_response_format"}}
    return jsonify(body), 400


def probe_formats() -> "list[str]":
    client = server.app.test_client()
    speakers = server.api.speakers if server.api.is_multi_speaker else None
    voice = {"voice": speakers[0]} if speakers else {}
    working = []
    for fmt in OPENAI_FORMATS:
        try:
            answer = client.post(SPEECH_PATH, json={"input": PROBE_TEXT, "response_format": fmt, **voice})
            ok = answer.status_code == 200 and looks_like(fmt, answer.get_data())
        except Exception:  # a failing encoder may raise through the test client
            ok = False
        if ok:
            working.append(fmt)
        else:
            say(f"response_format {fmt} does not work in this image; it will be refused with 400")
    return working


def main() -> None:
    global available
    working = probe_formats()
    if working:
        available = frozenset(working)
        say(f"response formats available: {', '.join(working)}")
    else:
        # Not even wav: synthesis itself fails, not an encoder. Leave every answer to Coqui.
        say("no response format produced audio; requests pass to Coqui unchecked")
    server.main()


if __name__ == "__main__":
    main()
