// Unit board map: every unit with its status colour; a stale fix is greyed, a unit without one sits at its post.
(function () {
  "use strict";
  var el = document.getElementById("units-map");
  if (!el || !window.L) return;
  var boot = PBH.boot, W = boot.words || {};
  var COLOURS = { available: "#1e8449", dispatched: "#1f5fa8", en_route: "#d68910", on_scene: "#c0392b", off_duty: "#95a5a6" };
  function text(s) { return document.createTextNode(String(s)); }
  var map = L.map(el, { attributionControl: !!boot.tile_url }).setView([-7.975, 112.630], 14);
  if (boot.tile_url) L.tileLayer(boot.tile_url, { maxZoom: 19, attribution: boot.tile_attribution || "" }).addTo(map);
  L.control.scale({ imperial: false }).addTo(map);
  fetch(PBH.base + "/geo.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (g) {
    g.kelurahan.forEach(function (k) {
      L.circle([k.lat, k.lon], { radius: g.spread_m || 450, color: "#7f9bb8", weight: 1, dashArray: "4 4",
                                 fillColor: "#aac4de", fillOpacity: 0.10, interactive: false }).addTo(map);
    });
    g.posts.forEach(function (p) {
      L.circleMarker([p.lat, p.lon], { radius: 5, color: "#0d1b2a", weight: 2, fillColor: "#f5c518", fillOpacity: 1 })
        .bindTooltip(text(p.name), { direction: "right", offset: [8, 0], className: "post-label" }).addTo(map);
    });
  });
  var layer = L.layerGroup().addTo(map), framed = false;
  function draw(board) {
    layer.clearLayers();
    var pts = [];
    board.units.forEach(function (u) {
      var fix = u.lat6 !== null && u.fix_age_s !== null;
      var stale = !fix || u.fix_age_s > board.stale_s;
      var lat = (fix ? u.lat6 : u.post_lat6) / 1e6, lon = (fix ? u.lon6 : u.post_lon6) / 1e6;
      var pin = L.divIcon({ className: "", iconSize: [16, 16], iconAnchor: [8, 8],
        html: '<div class="unit-pin' + (stale ? " stale" : "") + '" style="background:' + (COLOURS[u.status] || "#555") + '"></div>' });
      var age = u.fix_age_s === null ? "—" : PBH.fmtSpan(u.fix_age_s * 1000);
      L.marker([lat, lon], { icon: pin, keyboard: false })
        .bindTooltip(text(u.call_sign + " · " + (W["ustatus_" + u.status] || u.status) + " · " + age),
                     { permanent: true, direction: "right", offset: [9, 0], className: "post-label" })
        .addTo(layer);
      pts.push([lat, lon]);
    });
    if (!framed && pts.length) { map.fitBounds(L.latLngBounds(pts).pad(0.3), { maxZoom: 16 }); framed = true; }
  }
  function load() {
    fetch(PBH.base + "/units.json" + (boot.sector ? "?sector=" + encodeURIComponent(boot.sector) : ""),
          { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); }).then(draw).catch(function () {});
  }
  load();
  setInterval(load, 5000);
})();
