// Progressive enhancement only: every page works without this script.
"use strict";

// Forms with data-confirm ask first (delete, rotate the secret).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Search form: the server's own validation messages while typing, each on its field once
// that field is touched; the summary above the button lists every problem saving would
// meet; a marketplace's own options show only while it is ticked.
const searchForm = document.getElementById("search-form");
if (searchForm) {
  const touched = new Set();
  const groups = { criteria: ["min_price", "max_price", "location", "radius_km"] };
  const summary = searchForm.querySelector("[data-error-summary]");
  const labels = summary ? JSON.parse(summary.dataset.labels || "{}") : {};
  let timer = null;
  // Messages the page came with (a refused save) stay until their field changes.
  document.querySelectorAll("[data-error-for]:not([hidden])").forEach((box) => touched.add(box.dataset.errorFor));
  const showSummary = (errors) => {
    if (!summary) return;
    const names = Object.keys(errors);
    const list = summary.querySelector("[data-error-summary-list]");
    list.replaceChildren(...names.map((name) => {
      const item = document.createElement("li");
      if (labels[name]) {
        const link = document.createElement("a");
        link.href = `#f-${name}`;
        link.textContent = labels[name];
        item.append(link, ": ");
      }
      item.append(errors[name]);
      return item;
    }));
    summary.querySelector("[data-error-summary-title]").textContent = `${names.length} thing${names.length === 1 ? "" : "s"} to fix before saving:`;
    summary.hidden = names.length === 0;
  };
  const show = (errors) => {
    document.querySelectorAll("[data-error-for]").forEach((box) => {
      const name = box.dataset.errorFor;
      const relevant = touched.has(name) || (groups[name] || []).some((field) => touched.has(field));
      const message = relevant ? errors[name] || "" : "";
      box.textContent = message;
      box.hidden = !message;
      searchForm.querySelectorAll(`[name="${CSS.escape(name)}"]`).forEach((input) => {
        if (message) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      });
    });
    showSummary(errors);
  };
  let latest = null;
  const validate = async () => {
    const response = await fetch(searchForm.dataset.validateUrl, {
      method: "POST", body: new FormData(searchForm), headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (!response.ok) return;
    latest = (await response.json()).errors || {};
    show(latest);
  };
  const showOptions = () => {
    searchForm.querySelectorAll("[data-options-for]").forEach((box) => {
      const ticked = searchForm.querySelector(`input[name="marketplaces"][value="${CSS.escape(box.dataset.optionsFor)}"]:checked`);
      if (ticked && box.hidden) box.open = true;
      box.hidden = !ticked;
    });
  };
  const changed = (event) => {
    if (!event.target.name) return;
    touched.add(event.target.name);
    if (event.target.name === "marketplaces") showOptions();
    clearTimeout(timer);
    timer = setTimeout(validate, 350);
  };
  searchForm.addEventListener("input", changed);
  searchForm.addEventListener("change", changed);
  // Following a link in the summary shows that field's message beside it too.
  summary?.addEventListener("click", (event) => {
    const link = event.target.closest('a[href^="#f-"]');
    if (!link) return;
    touched.add(link.getAttribute("href").slice(3));
    if (latest) show(latest);
  });
  showOptions();
}

// Matches: save / hide / viewed without reloading the page.
const flip = { save: ["unsave", "Unsave"], unsave: ["save", "Save"], hide: ["unhide", "Unhide"], unhide: ["hide", "Hide"], viewed: ["unviewed", "Mark unviewed"], unviewed: ["viewed", "Mark viewed"] };
const showHidden = new URLSearchParams(window.location.search).has("include_hidden");

async function changeListing(form) {
  const choice = form.querySelector("input[name=change]");
  const response = await fetch(form.action, {
    method: "POST", body: new FormData(form), headers: { Accept: "application/json" }, credentials: "same-origin", keepalive: true,
  });
  if (!response.ok) return false;
  const state = await response.json();
  const card = form.closest(".listing");
  card.classList.toggle("is-saved", state.is_saved);
  card.classList.toggle("is-hidden", state.is_hidden);
  card.classList.toggle("is-new", !state.is_viewed);
  if (state.is_hidden && !showHidden) {
    card.remove();
    updateMatchCount(-1);
    return true;
  }
  const [next, label] = flip[choice.value];
  choice.value = next;
  form.querySelector("button").textContent = label;
  return true;
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (event.defaultPrevented || !form.closest("[data-listing-actions]")) return;
  event.preventDefault();
  if (!(await changeListing(form))) form.submit();
});

// Opening a listing marks it viewed.
document.addEventListener("click", (event) => {
  const link = event.target.closest(".listing-link");
  if (!link) return;
  const viewed = link.closest(".listing").querySelector("[data-listing-actions] input[name=change][value=viewed]");
  if (viewed) changeListing(viewed.form);
});

// Matches: the count above the list follows what Hide took out of it (a reload counts anew).
function updateMatchCount(delta) {
  const count = document.getElementById("match-count");
  if (!count) return;
  const total = Math.max(0, Number(count.dataset.count) + delta);
  count.dataset.count = String(total);
  count.textContent = `${total} listing${total === 1 ? "" : "s"}`;
}

// Matches: the filters start open on a wide screen; on a phone they stay folded (unless one
// is set) so the matches come first.
{
  const filtersBox = document.querySelector("details[data-filters]");
  if (filtersBox && window.matchMedia("(min-width: 601px)").matches) filtersBox.open = true;
}

// Nav: the unread alerts badge stays current while the page is visible, and an alert that
// arrives meanwhile is read out by screen readers (a polite live region).
{
  const POLL_MS = 10000;
  const nav = document.querySelector("nav[data-unread-url]");
  const badge = nav && nav.querySelector("[data-unread-badge]");
  const announcer = document.querySelector("[data-alert-announcer]");
  if (nav && badge) {
    let shown = Number(nav.dataset.unreadCount) || 0;
    let timer = null;
    let stopped = false;
    let asking = false;
    const showCount = (count) => {
      const many = count >= 100;
      badge.hidden = count === 0;
      badge.querySelector(".unread-count").textContent = many ? "99+" : String(count);
      badge.querySelector(".visually-hidden").textContent = ` (${many ? "more than 99" : count} unread alert${count === 1 ? "" : "s"})`;
    };
    const announce = (body) => {
      if (!announcer || !body.latest || body.unread <= shown) return;
      const latest = body.latest;
      const about = latest.search_name ? `${latest.subject} — ${latest.search_name}` : latest.subject;
      const arrived = body.unread - shown;
      announcer.textContent = arrived > 1 ? `${arrived} new alerts. The newest: ${about}` : about;
    };
    const poll = async () => {
      let response;
      try {
        response = await fetch(nav.dataset.unreadUrl, {
          headers: { Accept: "application/json" }, credentials: "same-origin", redirect: "manual",
        });
      } catch {
        return; // offline for a moment: the next poll tries again
      }
      // Signed out (a redirect to the login page) or gone: stop asking.
      const body = response.ok ? await response.json().catch(() => null) : null;
      if (!body) {
        stopped = true;
        return;
      }
      announce(body);
      shown = body.unread;
      showCount(shown);
    };
    const tick = async () => {
      clearTimeout(timer);
      if (stopped || asking || document.visibilityState !== "visible") return;
      asking = true;
      try {
        await poll();
      } finally {
        asking = false;
      }
      if (!stopped && document.visibilityState === "visible") timer = setTimeout(tick, POLL_MS);
    };
    // A hidden tab asks nothing; shown again, it catches up at once.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") tick();
      else clearTimeout(timer);
    });
    timer = setTimeout(tick, POLL_MS);
  }
}
