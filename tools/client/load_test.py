"""Load test and batching benchmark for `diva serve` (scripts/load-test).

    python load_test.py --diva DIVA_BIN --audio CLIP.wav [--clients 64] [--seconds 600]
                        [--streams 8] [--max-tokens 32] [-- extra `diva serve` flags]

Starts `diva serve --port 0` itself, then:
1. batching: one greedy stream alone, then `--streams` at once, each asked for
   128 tokens of a long answer, in three interleaved rounds; the median
   aggregate decode tokens/s of each, and their ratio;
2. load: `--clients` threads, each sending streamed requests back to back for
   `--seconds` (alternately the audio clip and a text question): statuses,
   dropped connections (a connection error or a stream cut before
   `data: [DONE]`), time to first token p50/p99 (200s), and the server's peak
   RSS (VmHWM) and RSS sampled each second.

Prints one JSON object on stdout; progress goes to stderr. Exit status 1 when
the load phase saw a 5xx or a dropped connection.
"""
import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import http.client
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--diva", required=True)
ap.add_argument("--audio", required=True)
ap.add_argument("--clients", type=int, default=64)
ap.add_argument("--seconds", type=float, default=600)
ap.add_argument("--streams", type=int, default=8)
ap.add_argument("--max-tokens", type=int, default=32)
ap.add_argument("serve_args", nargs="*")
a = ap.parse_args()


def log(msg):
    print(f"load-test: {msg}", file=sys.stderr, flush=True)


server = subprocess.Popen([a.diva, "serve", "--port", "0", *a.serve_args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
addr, ready = None, False
for line in server.stderr:
    m = re.search(r"listening on (http://\S+)", line)
    if m:
        addr = m.group(1)
    if "ready: model loaded" in line:
        ready = True
        break
if addr is None or not ready:
    sys.exit("load-test: diva serve exited before it was ready")
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
log(f"diva serve (pid {server.pid}) at {addr}")

b64 = base64.b64encode(open(a.audio, "rb").read()).decode()
AUDIO = [{"role": "user", "content": [
    {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]}]
TEXT = [{"role": "user", "content": "Explain how a bicycle works."}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


class Client:
    """One keep-alive HTTP/1.1 connection (the standard library's; a new one
    after an error)."""

    def __init__(self, timeout=600):
        u = urllib.parse.urlparse(addr)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.conn:
            self.conn.close()

    def post(self, path, body):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("POST", path, body=json.dumps(body),
                              headers={"content-type": "application/json"})
            return self.conn.getresponse()
        except Exception:
            self.conn.close()
            self.conn = None
            raise


def stream(client, messages, max_tokens):
    """One streamed request: (status, ttft_s, total_s, completion_tokens,
    first_token_at, end_at, saw_done)."""
    body = {"model": "diva", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.monotonic()
    first, tokens, done = None, 0, False
    r = client.post("/v1/chat/completions", body)
    if r.status != 200:
        r.read()
        return r.status, None, time.monotonic() - t0, 0, None, None, True
    try:
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk["choices"]:
                if c["delta"].get("content") and first is None:
                    first = time.monotonic()
        r.read()
    except Exception:
        client.conn.close()
        client.conn = None
        raise
    end = time.monotonic()
    return 200, (first - t0) if first else None, end - t0, tokens, first, end, done


def batching(rounds=3, tokens=128):
    """Aggregate decode tokens/s of one stream and of `--streams` at once,
    in interleaved rounds; the medians and their ratio."""
    out = {"rounds": rounds, "max_tokens": tokens}
    with Client() as c:
        stream(c, TEXT, 4)  # warm-up
    rates = {1: [], a.streams: []}
    for r in range(rounds):
        for n in (1, a.streams):
            results = [None] * n
            def one(i):
                with Client() as c:
                    results[i] = stream(c, LONG, tokens)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            got = sum(x[3] for x in results)
            span = max(x[5] for x in results) - min(x[4] for x in results)
            # Decode tokens: each stream's first token comes from its prefill.
            rate = (got - n) / span if span > 0 else 0.0
            rates[n].append(rate)
            log(f"round {r + 1}: {n} stream(s), {got} tokens, {rate:.1f} decode tok/s aggregate")
    for n, xs in rates.items():
        out[f"streams_{n}"] = {"decode_tokens_per_s": [round(x, 2) for x in xs],
                               "median": round(statistics.median(xs), 2)}
    out["ratio"] = round(out[f"streams_{a.streams}"]["median"]
                         / max(out["streams_1"]["median"], 1e-9), 2)
    log(f"{a.streams} streams / 1 stream: {out['ratio']}x (medians)")
    return out


def rss_kib(key):
    try:
        for line in open(f"/proc/{server.pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def load():
    stats = {"status": {}, "dropped": 0, "ttft": [], "e2e": []}
    lock = threading.Lock()
    deadline = time.monotonic() + a.seconds
    rss = []
    stop = threading.Event()

    def sampler():
        while not stop.wait(1.0):
            v = rss_kib("VmRSS")
            if v:
                rss.append(v)

    def client(i):
        n = 0
        with Client() as c:
            while time.monotonic() < deadline:
                msgs = AUDIO if (i + n) % 2 == 0 else TEXT
                n += 1
                try:
                    status, ttft, total, _, _, _, done = stream(c, msgs, a.max_tokens)
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        stats["dropped"] += 1
                        stats.setdefault("errors", []).append(repr(e)[:200])
                    continue
                with lock:
                    stats["status"][str(status)] = stats["status"].get(str(status), 0) + 1
                    if status == 200:
                        if not done:
                            stats["dropped"] += 1
                        if ttft is not None:
                            stats["ttft"].append(ttft)
                        stats["e2e"].append(total)
                if status == 429:
                    time.sleep(0.5)

    threading.Thread(target=sampler, daemon=True).start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    last = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.monotonic() - last > 30:
            last = time.monotonic()
            with lock:
                log(f"load: {dict(stats['status'])}, dropped {stats['dropped']}")
    for t in threads:
        t.join()
    stop.set()

    def pct(xs, p):
        if not xs:
            return None
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 3)

    u = urllib.parse.urlparse(addr)
    hc = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    hc.request("GET", "/health")
    health = hc.getresponse().status
    return {
        "clients": a.clients,
        "seconds": a.seconds,
        "status": stats["status"],
        "five_xx": sum(v for k, v in stats["status"].items() if k.startswith("5")),
        "dropped": stats["dropped"],
        "errors": stats.get("errors", [])[:5],
        "ttft_p50_s": pct(stats["ttft"], 50),
        "ttft_p99_s": pct(stats["ttft"], 99),
        "e2e_p50_s": pct(stats["e2e"], 50),
        "e2e_p99_s": pct(stats["e2e"], 99),
        "answered_200": len(stats["e2e"]),
        "rss_peak_mib": round((rss_kib("VmHWM") or 0) / 1024, 1),
        "rss_last_mib": round(rss[-1] / 1024, 1) if rss else None,
        "rss_first_mib": round(rss[0] / 1024, 1) if rss else None,
        "health_after": health,
    }


try:
    result = {"server_args": a.serve_args, "batching": batching() if a.streams > 0 else None}
    log(f"load: {a.clients} clients for {a.seconds:.0f} s")
    result["load"] = load()
    if server.poll() is not None:
        result["load"]["server_exited"] = server.returncode
finally:
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
print(json.dumps(result, indent=1))
bad = result["load"]["five_xx"] or result["load"]["dropped"] or result["load"].get("server_exited") is not None
sys.exit(1 if bad else 0)
