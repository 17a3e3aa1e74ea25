// Responder's phone: while on duty, send the browser's position every few seconds over the session.
(function () {
  "use strict";
  var box = document.getElementById("phone-unit");
  if (!box || !navigator.geolocation) return;
  var unit = box.dataset.unit, csrf = box.dataset.csrf, every = (+box.dataset.every || 5) * 1000;
  var badge = document.getElementById("gps"), last = null, sentAt = 0;
  if (!unit || box.dataset.status === "off_duty") return;
  function show(on, words) { badge.className = "gps " + (on ? "gps-on" : "gps-off"); badge.textContent = words; }
  function send() {
    if (!last || Date.now() - sentAt < every - 200) return;
    sentAt = Date.now();
    fetch(PBH.base + "/units/" + encodeURIComponent(unit) + "/position", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: JSON.stringify({ lat: last.latitude, lon: last.longitude, acc: Math.round(last.accuracy || 0) })
    }).then(function (r) { show(r.ok, r.ok ? box.dataset.on : box.dataset.off); })
      .catch(function () { show(false, box.dataset.off); });
  }
  navigator.geolocation.watchPosition(function (p) { last = p.coords; send(); },
    function () { show(false, box.dataset.denied); }, { enableHighAccuracy: true, maximumAge: 5000, timeout: 20000 });
  setInterval(send, every);
})();
