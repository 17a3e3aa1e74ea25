// The incident map from the project's own data: no tile server needed (one can be configured).
(function () {
  "use strict";
  // Leaflet puts string content in with innerHTML: names from data always go in as text.
  function text(s) { return document.createTextNode(String(s)); }

  PBH.map = function (el, focus) {
    var boot = PBH.boot, W = boot.words || {};
    var map = L.map(el, { zoomControl: true, attributionControl: !!boot.tile_url })
      .setView([focus.lat, focus.lon], 15);
    if (boot.tile_url) L.tileLayer(boot.tile_url, { maxZoom: 19, attribution: boot.tile_attribution || "" }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    fetch(PBH.base + "/geo.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (g) {
      g.kelurahan.forEach(function (k) {
        var r = g.spread_m || 450;
        L.circle([k.lat, k.lon], { radius: r, color: "#7f9bb8", weight: 1, dashArray: "4 4",
                                   fillColor: "#aac4de", fillOpacity: 0.12, interactive: false }).addTo(map);
        // The name sits on the area's northern edge, never over an incident near its centre.
        L.tooltip({ permanent: true, direction: "center", className: "kel-label", interactive: false })
          .setLatLng([k.lat + r / 111320, k.lon]).setContent(text(k.name)).addTo(map);
      });
      var dots = L.layerGroup().addTo(map);
      g.devices.forEach(function (d) {
        var mine = d[0] === focus.dev;
        L.circleMarker([d[1], d[2]], { radius: mine ? 7 : 2.5, weight: mine ? 3 : 1,
          color: mine ? "#1f5fa8" : "#6b7a8c", fillColor: mine ? "#fff" : "#95a5a6", fillOpacity: mine ? 1 : 0.8 })
          .bindTooltip(text(d[0] + " · RT " + d[5] + " / RW " + d[4] + (mine ? " · " + (W.registered_at || "") : "")))
          .addTo(dots);
      });
      // Frame the scene together with the nearest police post: where help comes from.
      var here = L.latLng(focus.lat, focus.lon), near = null;
      g.posts.forEach(function (p) {
        if (!near || here.distanceTo([p.lat, p.lon]) < here.distanceTo(near)) near = L.latLng(p.lat, p.lon);
      });
      // Mirrored about the scene, so the scene stays in the middle.
      if (near) map.fitBounds(L.latLngBounds([here, near, [2 * here.lat - near.lat, 2 * here.lng - near.lng]])
                                .pad(0.15), { maxZoom: 16 });
      g.posts.forEach(function (p) {
        L.circleMarker([p.lat, p.lon], { radius: 6, color: "#0d1b2a", weight: 2, fillColor: "#f5c518", fillOpacity: 1 })
          .bindTooltip(text(p.name), { permanent: true, direction: "right", offset: [8, 0], className: "post-label" })
          .addTo(map);
      });
    });
    if (focus.acc) L.circle([focus.lat, focus.lon], { radius: focus.acc, color: "#c0392b", weight: 1, fillOpacity: 0.12 }).addTo(map);
    L.marker([focus.lat, focus.lon], { icon: L.divIcon({ className: "", html: '<div class="inc-pin"></div>', iconSize: [22, 22], iconAnchor: [11, 11] }),
                                       zIndexOffset: 1000, keyboard: false })
      .bindTooltip(text(W.alert_at || ""), { direction: "top", offset: [0, -12] }).addTo(map);
    return map;
  };
})();
