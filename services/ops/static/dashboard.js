// Keeps the dashboard's live sections current without reloading the page, and asks before admin actions.
(function () {
  "use strict";

  function focusedInside(element) {
    var active = document.activeElement;
    return active && active !== document.body && element.contains(active) && active.tagName !== "A";
  }

  // A reason typed into a form (e.g. to discard a held storm) must survive a refresh, even once the field lost focus.
  function typedInside(element) {
    return Array.prototype.some.call(element.querySelectorAll("input:not([type=hidden]), textarea"), function (field) {
      return field.value !== field.defaultValue;
    });
  }

  function refresh(live) {
    if (focusedInside(live) || typedInside(live)) {
      return Promise.resolve();
    }
    return fetch(live.dataset.src, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.location.assign(response.url);
          return;
        }
        if (!response.ok) {
          live.classList.add("disconnected");
          return;
        }
        return response.text().then(function (html) {
          live.innerHTML = html;
          live.classList.remove("disconnected");
        });
      })
      .catch(function () {
        live.classList.add("disconnected");
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (!live) {
      return;
    }
    var interval = parseInt(live.dataset.refreshMs, 10) || 3000;
    function loop() {
      refresh(live).then(function () {
        window.setTimeout(loop, interval);
      });
    }
    window.setTimeout(loop, interval);
  });
})();
