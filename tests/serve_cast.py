"""Casting through the official OpenAI SDK: register a character from a clip of it, then
make the same prompt at each seed with and without it cast. The caller (tests/
serve_characters.rs) scores the downloads with the eval's character-identity metric.

usage: serve_cast.py BASE_URL API_KEY CHARACTER_MP4 OUT_DIR SEED...
"""
import pathlib
import sys

from openai import OpenAI

base, key, mp4, out = sys.argv[1:5]
seeds = [int(s) for s in sys.argv[5:]]
out = pathlib.Path(out)
out.mkdir(parents=True, exist_ok=True)
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)

ch = client.videos.create_character(name="pip", video=pathlib.Path(mp4).read_bytes())
assert client.videos.get_character(ch.id).name == "pip"
# the prompt names no character: what the clip shows of pip comes from the cast references
prompt = "A character in the middle falls onto a wooden floor and bounces."
for seed in seeds:
    for cast in (True, False):
        extra = {"seed": seed}
        if cast:
            extra["characters"] = [ch.id]
        v = client.videos.create_and_poll(prompt=prompt, extra_body=extra, poll_interval_ms=100)
        assert v.status == "completed", v
        assert v.model_extra["characters"] == ([ch.id] if cast else []), v
        name = f"{'cast' if cast else 'plain'}-{seed}.mp4"
        client.videos.download_content(v.id).write_to_file(out / name)
print("ok")
