// pocketrec demo page: browse the catalogue, build a history, see recommendations update.
// Plain browser JavaScript talking to the demo server's JSON API; no build step, no libraries.
"use strict";

(() => {
  const state = {
    history: [], // item ids, oldest first
    titles: new Map(), // item id -> title, for the history list
    query: "",
    offset: 0,
    pageSize: 50,
    k: 10,
    personalize: false,
    // Every request gets a number; a response that is not the latest one is dropped, so a slow
    // answer never overwrites a newer one.
    itemsRequest: 0,
    recsRequest: 0,
  };
  const $ = (id) => document.getElementById(id);

  function element(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "text") node.textContent = value; // never innerHTML: titles are data
      else if (name.startsWith("data-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function api(path, options) {
    const response = await fetch(path, options);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      throw new Error((body && body.error) || `the server answered ${response.status}`);
    }
    return body;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // --- catalogue ---------------------------------------------------------------------------

  function itemButton(item, extra) {
    const parts = [item.brand, (item.categories || []).slice(-1)[0], item.item_id].filter(Boolean);
    const button = element("button", { type: "button", className: "add" }, [
      element("span", { className: "visually-hidden", text: "Add to history: " }),
      element("span", { className: "title", text: item.title }),
      element("span", { className: "meta", text: parts.join(" · ") }),
    ]);
    if (extra) button.append(extra);
    button.addEventListener("click", () => addToHistory(item));
    return button;
  }

  async function loadItems() {
    const request = ++state.itemsRequest;
    const params = new URLSearchParams({
      q: state.query,
      offset: String(state.offset),
      limit: String(state.pageSize),
    });
    $("catalogue-list").setAttribute("aria-busy", "true");
    try {
      const page = await api(`/api/items?${params}`);
      if (request === state.itemsRequest) renderCatalogue(page);
    } catch (error) {
      if (request === state.itemsRequest) showError(`Catalogue: ${error.message}`);
    }
  }

  function renderCatalogue(page) {
    const list = $("catalogue-list");
    list.replaceChildren(
      ...page.items.map((item) =>
        element("li", { "data-item-id": item.item_id }, [itemButton(item)]),
      ),
    );
    list.setAttribute("aria-busy", "false");
    list.scrollTop = 0;
    const shown = page.items.length;
    const format = (n) => n.toLocaleString("en-US");
    $("catalogue-count").textContent =
      page.total === 0
        ? `No items match “${page.q}”.`
        : `Items ${format(page.offset + 1)}–${format(page.offset + shown)} of ${format(page.total)}` +
          (page.q ? ` matching “${page.q}”` : "");
    $("prev-page").disabled = page.offset === 0;
    $("next-page").disabled = page.offset + shown >= page.total;
  }

  // --- history -----------------------------------------------------------------------------

  function addToHistory(item) {
    state.titles.set(item.item_id, item.title);
    state.history.push(item.item_id);
    historyChanged();
  }

  function historyChanged() {
    renderHistory();
    refreshRecommendations();
  }

  function renderHistory() {
    const list = $("history-list");
    list.replaceChildren(
      ...state.history.map((itemId, position) => {
        const title = state.titles.get(itemId) || itemId;
        const remove = element("button", {
          type: "button",
          className: "remove",
          text: "Remove",
        });
        remove.setAttribute("aria-label", `Remove ${title} from the history`);
        remove.addEventListener("click", () => {
          state.history.splice(position, 1);
          historyChanged();
        });
        return element("li", { "data-item-id": itemId }, [
          element("span", { className: "title", text: title }),
          remove,
        ]);
      }),
    );
    $("history-count").textContent = `(${state.history.length})`;
    $("history-empty").hidden = state.history.length > 0;
    $("clear-history").disabled = state.history.length === 0;
  }

  // --- recommendations -------------------------------------------------------------------

  async function refreshRecommendations() {
    const request = ++state.recsRequest;
    const list = $("recs-list");
    list.setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const result = await api("/api/recommend", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          history: state.history,
          k: state.k,
          personalize: state.personalize,
        }),
      });
      if (request !== state.recsRequest) return;
      clearError();
      renderRecommendations(result, performance.now() - started);
    } catch (error) {
      if (request !== state.recsRequest) return;
      list.setAttribute("aria-busy", "false");
      showError(`Recommendations: ${error.message}`);
    }
  }

  function renderRecommendations(result, roundTripMs) {
    const list = $("recs-list");
    list.replaceChildren(
      ...result.recommendations.map((r) => {
        const score = r.log_prob === null ? "-inf" : r.log_prob.toFixed(3);
        const item = { ...r, brand: r.metadata.brand, categories: r.metadata.categories };
        return element("li", { "data-item-id": r.item_id }, [
          itemButton(item),
          element("span", { className: "score", title: "log-probability", text: score }),
        ]);
      }),
    );
    // What the list was computed for, so a reader (or a test) can tell it is current.
    list.dataset.history = JSON.stringify(result.history);
    list.dataset.personalized = String(result.personalized);
    list.setAttribute("aria-busy", "false");

    const ms = (x) => `${x.toFixed(1)} ms`;
    $("latency").textContent =
      result.fit_ms === null
        ? `Recommend: ${ms(result.recommend_ms)} on the server; ${ms(roundTripMs)} round trip.`
        : `Fit adapter ${ms(result.fit_ms)} + recommend ${ms(result.recommend_ms)} = ` +
          `${ms(result.latency_ms)} on the server; ${ms(roundTripMs)} round trip.`;

    const status = $("personalization-status");
    status.classList.toggle("on", result.personalized);
    status.classList.toggle("off", !result.personalized);
    if (!result.personalized) {
      status.textContent = "Personalization off: the shared model.";
    } else if (result.adapter.active) {
      status.textContent =
        `Personalization on: adapter fitted on ${result.adapter.num_events} history items ` +
        `(bias norm ${result.adapter.norm.toFixed(2)}), on this machine.`;
    } else {
      status.textContent =
        "Personalization on: the history is too short to fit an adapter yet, so it has no " +
        "effect.";
    }
  }

  // --- wiring ------------------------------------------------------------------------------

  async function start() {
    try {
      const info = await api("/api/info");
      state.pageSize = info.page_size;
      state.k = info.k_default;
      $("k").max = String(info.k_max);
      $("k").value = String(info.k_default);
      $("bundle-info").textContent =
        `${info.bundle} · ${info.precision} · ${info.num_items.toLocaleString("en-US")} items · ` +
        `${info.providers.join(", ")} · pocketrec ${info.version}`;
    } catch (error) {
      showError(`Could not read the bundle: ${error.message}`);
      return;
    }
    let searchTimer = 0;
    $("search").addEventListener("input", () => {
      window.clearTimeout(searchTimer);
      searchTimer = window.setTimeout(() => {
        state.query = $("search").value.trim();
        state.offset = 0;
        loadItems();
      }, 150);
    });
    $("search-form").addEventListener("submit", (event) => event.preventDefault());
    $("prev-page").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - state.pageSize);
      loadItems();
    });
    $("next-page").addEventListener("click", () => {
      state.offset += state.pageSize;
      loadItems();
    });
    $("clear-history").addEventListener("click", () => {
      state.history = [];
      historyChanged();
    });
    $("k").addEventListener("change", () => {
      state.k = Number($("k").value);
      refreshRecommendations();
    });
    $("personalize").addEventListener("change", () => {
      state.personalize = $("personalize").checked;
      refreshRecommendations();
    });
    renderHistory();
    loadItems();
    refreshRecommendations();
  }

  start();
})();
