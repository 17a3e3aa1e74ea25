// The live queue: rows come from the page's snapshot, then from the server-sent event stream.
(function () {
  "use strict";
  var boot = PBH.boot, W = boot.words;
  var incidents = new Map();
  var ORDER = { new: 0, acknowledged: 1, dispatched: 2, on_scene: 3, resolved: 4, cancelled: 5 };
  var OPEN = { new: 1, acknowledged: 1, dispatched: 1, on_scene: 1 };
  var fresh = new Set();
  var audio = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function pad(n) { return ("0" + (n || 0)).slice(-2); }
  function area(d) { return "RT " + pad(d.rt) + " / RW " + pad(d.rw) + " · " + (d.kelurahan || "—"); }

  function row(inc) {
    var d = inc.device || {}, tr = el("tr", "st-" + inc.state);
    tr.dataset.inc = inc.id;
    if (fresh.has(inc.id)) tr.classList.add("fresh");
    var age = el("span", "age");
    age.dataset.press = inc.press_ms;
    // Once someone is on scene the clock stops: green when the promise was kept.
    if (inc.on_scene_ms) { age.dataset.stop = inc.on_scene_ms; age.dataset.scene = "1"; }
    else if (!OPEN[inc.state]) age.dataset.stop = inc.resolved_ms || inc.cancelled_ms || inc.updated_ms;
    var c = el("td"); c.appendChild(age); tr.appendChild(c);
    c = el("td"); c.appendChild(el("span", "chip chip-" + inc.state, W["state_" + inc.state]));
    if (inc.kind === "test") { c.appendChild(document.createTextNode(" ")); c.appendChild(el("span", "chip chip-test", W.kind_test)); }
    tr.appendChild(c);
    c = el("td", "holder-cell"); c.appendChild(el("b", null, d.holder || inc.dev)); c.appendChild(el("small", null, inc.dev));
    var flags = el("div", "flags");
    if (inc.escalated) flags.appendChild(el("span", "chip chip-esc", W.flag_escalated));
    if (inc.cancel_requested_ms && inc.state !== "cancelled") flags.appendChild(el("span", "chip chip-cancel-req", W.flag_cancel_requested));
    if (inc.repeat_false) {
      var f = el("span", "chip chip-false", W.flag_false.replace("{n}", inc.false_alarms));
      if (inc.flag) f.title = inc.flag;
      flags.appendChild(f);
    }
    if (flags.childNodes.length) c.appendChild(flags);
    tr.appendChild(c);
    c = el("td");
    if (d.phone) { var a = el("a", "phone-link", d.phone); a.href = "tel:" + d.phone; c.appendChild(a); } else c.textContent = "—";
    tr.appendChild(c);
    tr.appendChild(el("td", null, area(d)));
    tr.appendChild(el("td", null, d.address || "—"));
    tr.appendChild(el("td", "pos", (inc.lat6 / 1e6).toFixed(5) + ", " + (inc.lon6 / 1e6).toFixed(5) + " ±" + inc.acc + "m"));
    c = el("td"); if (inc.unit) c.appendChild(el("span", "unit", inc.unit)); tr.appendChild(c);
    c = el("td");
    if (boot.can_ack && inc.state === "new") {
      var b = el("button", "btn act act-acknowledge act-small", W.act_acknowledge);
      b.type = "button"; b.dataset.ack = inc.id;
      c.appendChild(b);
    }
    tr.appendChild(c);
    return tr;
  }

  function render() {
    var all = Array.from(incidents.values());
    var open = all.filter(function (i) { return OPEN[i.state]; });
    // Most urgent first: by stage, then the one waiting longest.
    open.sort(function (a, b) { return ORDER[a.state] - ORDER[b.state] || a.press_ms - b.press_ms; });
    var closed = all.filter(function (i) { return !OPEN[i.state]; })
      .sort(function (a, b) { return b.updated_ms - a.updated_ms; }).slice(0, 20);
    var tb = document.getElementById("open-rows"), cb = document.getElementById("closed-rows");
    tb.replaceChildren.apply(tb, open.map(row));
    cb.replaceChildren.apply(cb, closed.map(row));
    document.getElementById("empty").hidden = open.length > 0;
    var counts = { new: 0, acknowledged: 0, dispatched: 0, on_scene: 0, late: 0 }, now = PBH.now();
    open.forEach(function (i) {
      counts[i.state]++;
      if (i.state !== "on_scene" && now - i.press_ms > PBH.slaMs) counts.late++;
    });
    Object.keys(counts).forEach(function (k) {
      var n = document.getElementById("n-" + k);
      n.textContent = counts[k];
      n.parentNode.classList.toggle("hot", counts[k] > 0 && (k === "new" || k === "late"));
    });
    document.title = (counts.new ? "(" + counts.new + ") ● " : "") + document.title.replace(/^\(\d+\) ● /, "");
    PBH.tick();
  }

  // --- sound: WebAudio needs one click on the page before it may play --------------------------
  function soundButton() {
    var b = document.getElementById("sound");
    var on = audio && audio.state === "running";
    b.textContent = on ? W.sound_on : W.sound_enable;
    b.className = "btn-ghost " + (on ? "sound-on" : "sound-off");
  }
  function unlock() {
    if (!audio) { try { audio = new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { return; } }
    if (audio.state !== "running") audio.resume().then(soundButton);
    soundButton();
  }
  function beep() {
    if (!audio || audio.state !== "running") return;
    var t = audio.currentTime;
    [0, 0.35, 0.7].forEach(function (dt, n) {
      var o = audio.createOscillator(), g = audio.createGain();
      o.type = "square"; o.frequency.value = n % 2 ? 660 : 880;
      g.gain.setValueAtTime(0.0001, t + dt);
      g.gain.exponentialRampToValueAtTime(0.25, t + dt + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + dt + 0.3);
      o.connect(g).connect(audio.destination);
      o.start(t + dt); o.stop(t + dt + 0.32);
    });
  }
  document.getElementById("sound").addEventListener("click", unlock);
  document.addEventListener("click", unlock, { once: true });
  soundButton();

  function cue(inc) {
    fresh.add(inc.id);
    setTimeout(function () { fresh.delete(inc.id); }, 5000);
    var d = inc.device || {};
    var banner = document.getElementById("banner");
    document.getElementById("banner-text").textContent = (d.holder || inc.dev) + " · " + area(d);
    banner.hidden = false;
    banner.style.animation = "none"; void banner.offsetWidth; banner.style.animation = "";
    clearTimeout(cue.timer);
    cue.timer = setTimeout(function () { banner.hidden = true; }, 15000);
    beep();
  }

  // --- actions from the row ------------------------------------------------------------------
  document.getElementById("queue").addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.dataset && t.dataset.ack) {
      t.disabled = true;
      fetch(PBH.base + "/incidents/" + encodeURIComponent(t.dataset.ack) + "/acknowledge", {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": boot.csrf, "Accept": "application/json" },
      }).then(function (r) { if (!r.ok) t.disabled = false; });
      return;
    }
    if (t.closest("a")) return;
    var tr = t.closest("tr[data-inc]");
    if (tr) location.href = PBH.base + "/incidents/" + encodeURIComponent(tr.dataset.inc);
  });
  document.getElementById("closed-rows").addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr[data-inc]");
    if (tr) location.href = PBH.base + "/incidents/" + encodeURIComponent(tr.dataset.inc);
  });

  boot.incidents.forEach(function (i) { incidents.set(i.id, i); });
  render();
  PBH.live(boot.cursor, function (inc) {
    var isNew = !incidents.has(inc.id) && inc.state === "new";
    incidents.set(inc.id, inc);
    if (isNew) cue(inc);
    render();
  });
  setInterval(render, 5000);  // the "late" count moves with the clock, not only with events
})();
