// Shared by every console page: the server's clock, ticking ages, the WIB clock.
(function () {
  "use strict";
  var PBH = (window.PBH = { offset: 0, base: "/console" });
  var bootEl = document.getElementById("boot");
  PBH.boot = bootEl ? JSON.parse(bootEl.textContent) : {};
  // Ages are counted on the server's clock: a desk PC's clock may be minutes off.
  if (PBH.boot.now) PBH.offset = PBH.boot.now - Date.now();
  PBH.now = function () { return Date.now() + PBH.offset; };
  PBH.slaMs = PBH.boot.sla_ms || 600000;

  PBH.fmtSpan = function (ms) {
    var s = Math.max(0, Math.floor(ms / 1000)), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    var ss = ("0" + (s % 60)).slice(-2);
    return h ? h + ":" + ("0" + m).slice(-2) + ":" + ss : m + ":" + ss;
  };

  // Amber at half the promise, red at 80 %, blinking dark red past it.
  PBH.ageClass = function (ms) {
    var f = ms / PBH.slaMs;
    return f >= 1 ? "age-over" : f >= 0.8 ? "age-red" : f >= 0.5 ? "age-amber" : "age-ok";
  };

  PBH.tick = function () {
    var now = PBH.now();
    document.querySelectorAll(".age[data-press]").forEach(function (el) {
      var press = +el.dataset.press, stop = el.dataset.stop ? +el.dataset.stop : 0;
      var ms = (stop || now) - press, cls;
      if (stop) cls = !el.dataset.scene ? "age-stopped" : ms <= PBH.slaMs ? "age-met" : "age-red";
      else cls = PBH.ageClass(ms);
      el.textContent = PBH.fmtSpan(ms);
      if (el.dataset.cls !== cls) {
        el.classList.remove("age-ok", "age-amber", "age-red", "age-over", "age-met", "age-stopped");
        el.classList.add(cls);
        el.dataset.cls = cls;
      }
    });
    var clock = document.getElementById("clock");
    if (clock) {
      var d = new Date(now + 7 * 3600 * 1000);  // WIB = UTC+7, no DST
      clock.textContent = d.toISOString().slice(11, 19) + " WIB";
    }
  };
  PBH.tick();
  setInterval(PBH.tick, 1000);

  // One live stream per page; `onIncident` gets each changed incident as JSON.
  PBH.live = function (after, onIncident) {
    var url = PBH.base + "/events" + (after != null ? "?after=" + after : "");
    var es = new EventSource(url);
    var live = document.getElementById("live"), text = document.getElementById("live-text");
    var W = PBH.boot.words || {};
    function state(s) {
      if (!live) return;
      live.dataset.state = s;
      if (text) text.textContent = s === "open" ? (W.live || "LIVE") : (W.disconnected || "DISCONNECTED");
    }
    es.onopen = function () { state("open"); };
    es.onerror = function () { state(es.readyState === 2 ? "closed" : "closed"); };
    es.addEventListener("incident", function (ev) { state("open"); onIncident(JSON.parse(ev.data)); });
    return es;
  };
})();
