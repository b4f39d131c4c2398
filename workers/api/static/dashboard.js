// framequeue dashboard: auto-refresh (toggleable, remembered) and confirmation of destructive actions.
(() => {
  "use strict";
  const REFRESH_MS = 5000;
  const toggle = document.getElementById("auto-refresh");
  const enabled = () => localStorage.getItem("framequeue.refresh") !== "off";

  if (toggle) {
    toggle.checked = enabled();
    toggle.addEventListener("change", () => {
      localStorage.setItem("framequeue.refresh", toggle.checked ? "on" : "off");
    });
  }

  // An action's report is shown once: refreshes and reloads re-read the page without it.
  const here = new URL(location.href);
  if (here.searchParams.has("done")) {
    here.searchParams.delete("done");
    history.replaceState(null, "", here.pathname + here.search);
  }

  // Re-reads this page and swaps its <main>, so scrolling and the header stay put.
  async function refresh() {
    const playing = [...document.querySelectorAll("video")].some((video) => !video.paused);
    const focused = document.activeElement && document.activeElement.closest("main form");
    if (!enabled() || document.hidden || playing || focused) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("main");
      const main = document.querySelector("main");
      if (fresh && main) {
        main.replaceWith(fresh);
        document.body.dataset.refreshedAt = String(Date.now());
      }
    } catch (error) {
      console.warn("refresh failed", error);
    }
  }
  setInterval(refresh, REFRESH_MS);

  // Forms marked data-confirm ask first; the server asks on a page of its own when this did not.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.dataset ? form.dataset.confirm : undefined;
    if (!question) return;
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    const confirmed = form.querySelector("input[name=confirmed]");
    if (confirmed) confirmed.value = "yes";
  });
})();
