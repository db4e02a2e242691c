"""Drive a running `diva serve` with the official openai client (tests/serve.rs).

    python serve_client.py BASE_URL API_KEY AUDIO.wav

Prints one JSON object: the replies (plain, streamed, text-only), usage, the
model list, and for each provoked error the client's exception class.
"""
import base64
import json
import sys
import threading
import time

import openai

base, key, audio = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=300)
b64 = base64.b64encode(open(audio, "rb").read()).decode()
voice = [{"role": "user", "content": [
    {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]}]
out = {}

r = client.chat.completions.create(model="diva", messages=voice, max_tokens=24, temperature=0)
out["reply"] = r.choices[0].message.content
out["finish_reason"] = r.choices[0].finish_reason
out["usage"] = r.usage.model_dump()
out["id"] = r.id

parts, ids, roles, finishes, usage = [], set(), [], [], None
for chunk in client.chat.completions.create(
        model="diva", messages=voice, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}):
    ids.add(chunk.id)
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finishes.append(c.finish_reason)
out["stream_reply"] = "".join(parts)
out["stream_chunks"] = len(parts)
out["stream_ids"] = len(ids)
out["stream_roles"] = roles
out["stream_finishes"] = finishes
out["stream_usage"] = usage

r = client.chat.completions.create(model="diva", max_tokens=16, messages=[
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"}])
out["text_reply"] = r.choices[0].message.content

url = {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + b64}}
r = client.chat.completions.create(model="diva", max_tokens=24, temperature=0,
                                   messages=[{"role": "user", "content": [url]}])
out["audio_url_reply"] = r.choices[0].message.content

out["models"] = [m.id for m in client.models.list().data]

with open(audio, "rb") as f:
    out["transcription"] = client.audio.transcriptions.create(model="whisper-1", file=f).text
with open(audio, "rb") as f:
    out["transcription_srt"] = client.audio.transcriptions.create(
        model="whisper-1", file=f, response_format="srt")
with open(audio, "rb") as f:
    v = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json")
    out["transcription_duration"] = v.duration


def error_of(fn):
    try:
        fn()
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "message": str(e)}
    return None


errors = {}
wrong = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
errors["401"] = error_of(lambda: wrong.chat.completions.create(model="diva", messages=voice))
junk = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
    "data": base64.b64encode(b"definitely not audio" * 50).decode(), "format": "wav"}}]}]
errors["400"] = error_of(lambda: client.chat.completions.create(model="diva", messages=junk))
huge = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
    "data": "A" * 2_000_000, "format": "wav"}}]}]
def french():
    with open(audio, "rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f, language="fr")
errors["language"] = error_of(french)
errors["413"] = error_of(lambda: client.chat.completions.create(model="diva", messages=huge))

# A full queue: one long reply runs (the server admits one at a time in this
# test), so a second request at once is refused with 429. The long request
# may itself meet the slot still held by the previous request's worker, so it
# retries on 429 until admitted; the probe goes out only once its stream has
# delivered a chunk, and it holds the stream open (unread) until the probe is
# answered, so the slot is still taken whatever the reply's length.
started, probed = threading.Event(), threading.Event()
long_outcome = {"attempts": 0, "chunks": 0, "error": None}
def long_reply():
    try:
        for _ in range(50):
            long_outcome["attempts"] += 1
            try:
                s = client.chat.completions.create(model="diva", messages=voice, max_tokens=200,
                                                   temperature=0, stream=True)
            except openai.RateLimitError:
                time.sleep(0.2)
                continue
            for _ in s:
                long_outcome["chunks"] += 1
                if long_outcome["chunks"] == 1:
                    started.set()
                    probed.wait(60)
            return
    except Exception as e:  # recorded for the Rust side's assertion message
        long_outcome["error"] = repr(e)
    finally:
        started.set()
t = threading.Thread(target=long_reply)
t.start()
started.wait(120)
errors["429"] = error_of(lambda: client.chat.completions.create(model="diva", messages=voice, max_tokens=4))
probed.set()
t.join()
out["long_reply"] = long_outcome
out["errors"] = errors
print(json.dumps(out))
