// The incident's map: the units now (status colour, stale fixes greyed) and the track of the unit sent.
(function () {
  "use strict";
  var map = PBH.incidentMap, inc = PBH.boot.incident;
  if (!map || !window.L) return;
  var COLOURS = { available: "#1e8449", dispatched: "#1f5fa8", en_route: "#d68910", on_scene: "#c0392b", off_duty: "#95a5a6" };
  function text(s) { return document.createTextNode(String(s)); }
  var layer = L.layerGroup().addTo(map);
  function draw(d) {
    layer.clearLayers();
    var line = d.positions.map(function (p) { return [p.lat6 / 1e6, p.lon6 / 1e6]; });
    if (line.length > 1) L.polyline(line, { color: "#1f5fa8", weight: 3, opacity: 0.8, dashArray: "6 4" }).addTo(layer);
    d.units.forEach(function (u) {
      if (u.lat6 === null || u.fix_age_s === null) return;
      var stale = u.fix_age_s > d.stale_s, mine = u.call_sign === d.unit;
      L.marker([u.lat6 / 1e6, u.lon6 / 1e6], { keyboard: false, icon: L.divIcon({ className: "", iconSize: [14, 14], iconAnchor: [7, 7],
        html: '<div class="unit-pin' + (stale ? " stale" : "") + '" style="background:' + (COLOURS[u.status] || "#555") + '"></div>' }) })
        .bindTooltip(text(u.call_sign + " · " + PBH.fmtSpan(u.fix_age_s * 1000)), { permanent: mine, direction: "right", offset: [8, 0] })
        .addTo(layer);
    });
  }
  function load() {
    fetch(PBH.base + "/incidents/" + encodeURIComponent(inc.id) + "/track.json",
          { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; }).then(function (d) { if (d) draw(d); }).catch(function () {});
  }
  load();
  setInterval(load, 5000);
})();
