// Progressive enhancement only: every page works without this script.
"use strict";

// Forms with data-confirm ask first (delete, rotate the secret).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Search form: the server's own validation messages while typing, for fields already touched.
const searchForm = document.getElementById("search-form");
if (searchForm) {
  const touched = new Set();
  const groups = { criteria: ["min_price", "max_price", "location", "radius_km"], form: ["marketplaces", "check_frequency_minutes", "alert_channels"] };
  let timer = null;
  const show = (errors) => {
    document.querySelectorAll("[data-error-for]").forEach((box) => {
      const name = box.dataset.errorFor;
      const relevant = touched.has(name) || (groups[name] || []).some((field) => touched.has(field));
      const message = relevant ? errors[name] || "" : "";
      box.textContent = message;
      box.hidden = !message;
      searchForm.querySelectorAll(`[name="${name}"]`).forEach((input) => {
        if (message) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      });
    });
  };
  const validate = async () => {
    const response = await fetch(searchForm.dataset.validateUrl, {
      method: "POST", body: new FormData(searchForm), headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (response.ok) show((await response.json()).errors || {});
  };
  const changed = (event) => {
    if (!event.target.name) return;
    touched.add(event.target.name);
    clearTimeout(timer);
    timer = setTimeout(validate, 350);
  };
  searchForm.addEventListener("input", changed);
  searchForm.addEventListener("change", changed);
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
