// Responder's phone: reload when an incident for this unit changes (a new dispatch appears at once).
(function () {
  "use strict";
  var box = document.getElementById("assignments"), unit = box.dataset.unit;
  if (!unit) return;
  var timer = null;
  PBH.live(null, function (inc) {
    if (inc.unit !== unit && !box.querySelector('[data-inc="' + inc.id + '"]')) return;
    clearTimeout(timer);
    timer = setTimeout(function () { location.replace(location.pathname); }, 200);
  });
})();
