// ambient captions: follows the captions server's websocket (/ws) and shows what the room says.
// Messages: snapshot, partial, final, status, daemon (see ambient/captions/hub.py).
"use strict";

(() => {
  const finalsEl = document.getElementById("finals");
  const partialEl = document.getElementById("partial");
  const statusEl = document.getElementById("status");
  const emptyEl = document.getElementById("empty");
  const latestEl = document.getElementById("latest");
  const finals = [];            // {id, text, start, end}, in order
  const known = new Set();      // ids already shown (a reconnect's snapshot repeats them)
  let daemon = "down", status = "connecting", detail = "", online = false;
  let follow = true;            // stick to the newest line until the user scrolls up
  let delay = 250;

  const pad = (n) => String(n).padStart(2, "0");
  const clock = (t) => { const d = new Date(t * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
  const atBottom = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48;

  function stick() {
    if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
    latestEl.hidden = follow;
  }
  window.addEventListener("scroll", () => { follow = atBottom(); latestEl.hidden = follow; }, { passive: true });
  latestEl.addEventListener("click", () => { follow = true; stick(); });

  function showStatus() {
    let text, state;
    if (!online) { text = "captions server not reachable; reconnecting…"; state = "down"; }
    else if (daemon !== "connected") { text = "daemon not running"; state = "down"; }
    else if (status === "audio_lost") { text = "audio lost" + (detail ? `: ${detail}` : ""); state = "audio_lost"; }
    else if (["listening", "audio_restored", "reloaded", "event_log_ok"].includes(status)) { text = "listening"; state = "listening"; }
    else { text = status.replace(/_/g, " ") + (detail ? `: ${detail}` : ""); state = "other"; }
    statusEl.textContent = text;
    statusEl.title = detail;  // why, for whoever hovers (the daemon's reason, or why it is unreachable)
    statusEl.dataset.state = state;
  }

  function addFinal(f) {
    if (!f.text || known.has(f.id)) return;
    known.add(f.id);
    finals.push(f);
    const li = document.createElement("li");
    li.className = "final";
    li.dataset.id = f.id;
    const time = document.createElement("time");
    time.dateTime = new Date(f.start * 1000).toISOString();
    time.textContent = clock(f.start);
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = f.text;
    li.append(time, span);
    finalsEl.append(li);
    emptyEl.hidden = true;
  }

  function setPartial(p) {
    if (p && p.text) {
      partialEl.textContent = p.text;
      partialEl.dataset.id = p.id;
      partialEl.hidden = false;
      emptyEl.hidden = true;
    } else {
      partialEl.textContent = "";
      delete partialEl.dataset.id;
      partialEl.hidden = true;
    }
  }

  function handle(msg) {
    switch (msg.type) {
      case "snapshot":
        for (const f of msg.finals) addFinal(f);
        setPartial(msg.partial);
        daemon = msg.daemon; status = msg.status; detail = msg.detail;
        break;
      case "partial": setPartial(msg); break;
      case "final": setPartial(null); addFinal(msg); break;
      case "status": status = msg.state; detail = msg.detail; break;
      case "daemon":
        daemon = msg.state; detail = msg.detail;
        if (daemon === "connected") status = "listening"; else setPartial(null);
        break;
      default: return; // a newer server's message
    }
    showStatus();
    stick();
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = () => { online = true; delay = 250; showStatus(); };
    ws.onmessage = (ev) => { try { handle(JSON.parse(ev.data)); } catch (e) { console.error("captions:", e); } };
    ws.onclose = () => {
      online = false; setPartial(null); showStatus();
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 5000);
    };
  }

  function transcript() { return finals.map((f) => `[${clock(f.start)}] ${f.text}\n`).join(""); }

  document.getElementById("copy").addEventListener("click", async (ev) => {
    const button = ev.currentTarget, text = transcript();
    try { await navigator.clipboard.writeText(text); }
    catch {
      const area = document.createElement("textarea");
      area.value = text; document.body.append(area); area.select(); document.execCommand("copy"); area.remove();
    }
    button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy text"; }, 1500);
  });

  document.getElementById("download").addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([transcript()], { type: "text/plain;charset=utf-8" }));
    const a = document.createElement("a");
    const d = new Date();
    a.href = url;
    a.download = `captions-${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}.txt`;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });

  showStatus();
  connect();
})();
