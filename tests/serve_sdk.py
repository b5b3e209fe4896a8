"""The official OpenAI Python SDK against `sonora serve`: the whole Videos API flow.

Usage: serve_sdk.py BASE_URL KEY OTHER_USERS_KEY OUT_DIR
Run by tests/serve_api.rs; prints `ok` and exits 0 when every check passes.
"""

import json
import subprocess
import sys
from pathlib import Path

import openai
from openai import OpenAI

base, key, other_key, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
other = OpenAI(base_url=base + "/v1", api_key=other_key, max_retries=0)


def probe(path):
    """ffprobe's streams and duration of an MP4."""
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(r.stdout)
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    return codecs, float(info["format"]["duration"])


def check_mp4(video, seconds):
    path = out / f"{video.id}.mp4"
    client.videos.download_content(video.id).write_to_file(path)
    codecs, duration = probe(path)
    assert codecs.get("video") == "h264", codecs
    assert "audio" in codecs, codecs
    assert abs(duration - seconds) < 0.15, (duration, seconds)
    return path


# create and poll: a 2-second clip from a 1-second model (chained extension)
v = client.videos.create_and_poll(prompt="a red ball falls and bounces", seconds="2", poll_interval_ms=100)
assert v.status == "completed", v
assert v.object == "video" and v.progress == 100 and v.seconds == "2", v
assert v.size == "16x16" and v.model.startswith("tiny-test"), v
mp4 = check_mp4(v, 2.0)

# thumbnail and spritesheet variants
thumb = client.videos.download_content(v.id, variant="thumbnail").read()
assert thumb[:8] == b"\x89PNG\r\n\x1a\n", thumb[:8]
sheet = client.videos.download_content(v.id, variant="spritesheet").read()
assert sheet[:8] == b"\x89PNG\r\n\x1a\n"

# remix: a new video from the source, remixed_from_video_id set
r = client.videos.remix(v.id, prompt="a blue ball falls and bounces")
assert r.remixed_from_video_id == v.id and r.status == "queued", r
r = client.videos.poll(r.id, poll_interval_ms=100)
assert r.status == "completed", r
check_mp4(r, 2.0)

# edit and extend: the SDK uploads the clip's bytes
e = client.videos.edit(prompt="the same ball at night", video=mp4.read_bytes())
e = client.videos.poll(e.id, poll_interval_ms=100)
assert e.status == "completed", e
check_mp4(e, 2.0)
x = client.videos.extend(prompt="it rolls away", seconds="1", video=("clip.mp4", mp4.read_bytes(), "video/mp4"))
x = client.videos.poll(x.id, poll_interval_ms=100)
assert x.status == "completed" and x.seconds == "3", x  # the stitched total
check_mp4(x, 3.0)

# first frame from an uploaded image
png = Path(out / "first.png")
png.write_bytes(client.videos.download_content(v.id, variant="thumbnail").read())
i = client.videos.create_and_poll(prompt="a ball", input_reference=png, poll_interval_ms=100)
assert i.status == "completed", i

# list with pagination: pages of 2 walk all five videos, newest first
made = [i.id, x.id, e.id, r.id, v.id]
page = client.videos.list(limit=2)
assert len(page.data) == 2 and page.has_more
walked = [video.id for video in client.videos.list(limit=2)]  # auto-pagination
assert walked == made, (walked, made)
asc = [video.id for video in client.videos.list(limit=100, order="asc")]
assert asc == list(reversed(made)), asc

# another user sees none of it
assert [video.id for video in other.videos.list()] == []
try:
    other.videos.retrieve(v.id)
    raise AssertionError("another user's video was readable")
except openai.NotFoundError:
    pass

# delete: later reads are 404 (the SDK's NotFoundError)
d = client.videos.delete(r.id)
assert d.deleted and d.id == r.id and d.object == "video.deleted", d
try:
    client.videos.retrieve(r.id)
    raise AssertionError("a deleted video was readable")
except openai.NotFoundError as err:
    assert err.status_code == 404

# errors arrive as the SDK's own exception classes, with OpenAI's error body
try:
    client.videos.create(prompt="   ")
    raise AssertionError("an empty prompt was accepted")
except openai.BadRequestError as err:
    assert "prompt" in err.message, err.message
    assert err.body["param"] == "prompt", err.body
try:
    client.videos.create(prompt="a ball", size="1280x720")
    raise AssertionError("a size the model cannot make was accepted")
except openai.BadRequestError as err:
    assert "16x16" in err.message, err.message
try:
    client.videos.create(prompt="a ball", model="sora-2")
    raise AssertionError("a model not served was accepted")
except openai.BadRequestError as err:
    assert "tiny-test" in err.message, err.message
try:
    OpenAI(base_url=base + "/v1", api_key="sk-sonora-wrong", max_retries=0).videos.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as err:
    assert err.status_code == 401
try:
    client.videos.remix("video_nope", prompt="x")
    raise AssertionError("a remix of an unknown id was accepted")
except openai.NotFoundError:
    pass

# characters: registered from a clip (the SDK uploads it), read back, cast through
# extra_body, and kept from other users (only_me by default)
ch = client.videos.create_character(name="pip", video=mp4.read_bytes())
assert ch.id.startswith("char_") and ch.name == "pip" and ch.created_at > 0, ch
got = client.videos.get_character(ch.id)
assert got.id == ch.id and got.name == "pip", got
cast = client.videos.create_and_poll(prompt="pip falls", extra_body={"characters": [ch.id]}, poll_interval_ms=100)
assert cast.status == "completed", cast
assert client.videos.retrieve(cast.id).model_extra["characters"] == [ch.id]
by_name = client.videos.create_and_poll(prompt="@pip bounces", poll_interval_ms=100)
assert by_name.model_extra["characters"] == [ch.id], by_name
try:
    other.videos.create(prompt="@pip falls")
    raise AssertionError("another user cast an only_me character")
except openai.PermissionDeniedError as err:
    assert "pip" in err.message, err.message
try:
    other.videos.get_character(ch.id)
    raise AssertionError("another user read an only_me character")
except openai.NotFoundError:
    pass

print("ok")
