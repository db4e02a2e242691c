// The microphone side shared by the talk page and the A/B page: hold a
// button to record, get 16 kHz mono WAV bytes on release.
"use strict";
// 16 kHz mono 16-bit WAV from Float32 samples at `rate`.
async function toWav16k(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const c of chunks) { all.set(c, o); o += c.length; }
  let pcm = all;
  if (rate !== 16000 && n > 0) {
    const ctx = new OfflineAudioContext(1, Math.ceil(n * 16000 / rate), 16000);
    const buf = ctx.createBuffer(1, n, rate);
    buf.copyToChannel(all, 0);
    const src = ctx.createBufferSource();
    src.buffer = buf; src.connect(ctx.destination); src.start();
    pcm = (await ctx.startRendering()).getChannelData(0);
  }
  const out = new DataView(new ArrayBuffer(44 + pcm.length * 2));
  const str = (p, s) => { for (let i = 0; i < s.length; i++) out.setUint8(p + i, s.charCodeAt(i)); };
  str(0, "RIFF"); out.setUint32(4, 36 + pcm.length * 2, true); str(8, "WAVE"); str(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, 16000, true); out.setUint32(28, 32000, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); str(36, "data"); out.setUint32(40, pcm.length * 2, true);
  for (let i = 0; i < pcm.length; i++) {
    const s = Math.max(-1, Math.min(1, pcm[i]));
    out.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Uint8Array(out.buffer);
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}


// Hold-to-talk on `button`: raw samples from the microphone while it is
// down; on release `onWav(bytes)` gets the WAV (too-short presses are
// reported through `onStatus`).
function holdToTalk(button, onWav, onStatus) {
  const idle = button.textContent;
  let rec = null, held = false;
  async function start() {
    held = true;
    if (rec) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(stream);
      const proc = ctx.createScriptProcessor(4096, 1, 1);
      const chunks = [];
      proc.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
      src.connect(proc); proc.connect(ctx.destination);
      rec = { stream, ctx, proc, chunks };
      button.classList.add("rec"); button.textContent = "Listening… release to send";
      if (!held) stop(); // released while the microphone was opening
    } catch (e) {
      onStatus("microphone: " + e.message);
    }
  }
  async function stop() {
    held = false;
    if (!rec) return;
    const { stream, ctx, proc, chunks } = rec; rec = null;
    proc.disconnect(); stream.getTracks().forEach((t) => t.stop());
    button.classList.remove("rec"); button.textContent = idle;
    const wav = await toWav16k(chunks, ctx.sampleRate);
    await ctx.close();
    if (wav.length <= 44 + 3200) { onStatus("too short: hold the button while you speak"); return; }
    await onWav(wav);
  }
  button.addEventListener("pointerdown", (e) => { e.preventDefault(); start(); });
  button.addEventListener("pointerup", stop);
  button.addEventListener("pointerleave", stop);
}
