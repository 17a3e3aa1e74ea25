// Incident view: the map, a guard on the irreversible action, reload when someone else acts.
(function () {
  "use strict";
  var inc = PBH.boot.incident, W = PBH.boot.words;
  PBH.incidentMap = PBH.map(document.getElementById("map"), { lat: inc.lat6 / 1e6, lon: inc.lon6 / 1e6, acc: inc.acc, dev: inc.dev });

  // Where the button has been since the press (a GPS button reports while its call is open).
  var track = PBH.boot.track || [];
  if (track.length) {
    var pts = [[inc.lat6 / 1e6, inc.lon6 / 1e6]].concat(track.map(function (p) { return [p.lat6 / 1e6, p.lon6 / 1e6]; }));
    L.polyline(pts, { color: "#c0392b", weight: 3, dashArray: "6 4" }).addTo(PBH.incidentMap);
    var last = track[track.length - 1], ago = Math.max(0, Math.round((PBH.boot.now - last.at_ms) / 1000));
    L.circleMarker(pts[pts.length - 1], { radius: 6, color: "#c0392b", weight: 2, fillColor: "#fff", fillOpacity: 1 })
      .bindTooltip(document.createTextNode((W.track_last || "") + " · " + ago + " s"), { permanent: true, direction: "right" })
      .addTo(PBH.incidentMap);
  }

  var form = document.getElementById("actions");
  if (form) form.addEventListener("submit", function (ev) {
    var action = ev.submitter && ev.submitter.dataset.action;
    var unit = document.getElementById("unit");
    if (action === "dispatch" && unit && !unit.value.trim()) { ev.preventDefault(); unit.focus(); return; }
    if (action === "false_alarm" && !window.confirm(W.act_false_alarm + "?")) ev.preventDefault();
    form.dataset.busy = "1";
  });

  // Another desk or the officer's phone moved this incident: show it, unless this desk is typing.
  PBH.live(null, function (changed) {
    if (changed.id !== inc.id) return;
    var typing = form && (form.dataset.busy || ["note", "unit"].some(function (id) {
      var e = document.getElementById(id); return e && (e.value.trim() || document.activeElement === e);
    }));
    if (!typing) location.replace(location.pathname);
  });
})();
