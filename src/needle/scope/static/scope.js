// needle scope static site: search (features, neuron ids, tokens) and token tooltips. Works from file://.
"use strict";
(function () {
  const root = document.body.dataset.root || "";
  let loading = null;

  function loadIndex() {
    if (window.NEEDLE_SEARCH) return Promise.resolve(window.NEEDLE_SEARCH);
    if (!loading) {
      loading = new Promise((resolve, reject) => {
        const script = document.createElement("script");  // a script tag, not fetch: file:// pages may not fetch
        script.src = root + "search-index.js";
        script.onload = () => resolve(window.NEEDLE_SEARCH);
        script.onerror = () => reject(new Error("search-index.js is missing"));
        document.head.appendChild(script);
      });
    }
    return loading;
  }

  function normalise(text) { return text.trim().toLowerCase(); }

  // Results: [kind, label, page, detail]
  function search(index, query) {
    const q = normalise(query);
    if (!q) return [];
    const out = [];
    // Neuron ids in the forms needle.neurons.ids reads (L3.N120, L3N120, 3:120, l3.n120), or the start of one.
    const compact = q.replace(/\s+/g, "");
    const id = compact.match(/^l?(\d+)(?:[.:/]n?|n)(\d*)$/) || compact.match(/^l(\d+)()$/);
    if (id) {
      const exactId = id[2] ? `l${id[1]}.n${id[2]}` : null;
      const prefix = exactId || `l${id[1]}.`;
      for (const [label, page, tokens] of index.neurons) {
        if (label.toLowerCase().startsWith(prefix)) out.push(["neuron", label, page, "top tokens: " + tokens]);
      }
      out.sort((a, b) => (b[1].toLowerCase() === exactId) - (a[1].toLowerCase() === exactId));
    }
    for (const [name, collection, page, description] of index.features) {
      if (name.toLowerCase().includes(q) || collection.toLowerCase().includes(q) || description.toLowerCase().includes(q)) {
        out.push(["feature", name, page, collection + (description ? " · " + description : "")]);
      }
    }
    const exact = index.tokens[q] || index.tokens[query.trim()];
    const seen = new Set(out.map((r) => r[1]));
    const addToken = (token, list) => {
      for (const n of list) {
        const [id, page, tokens] = index.neurons[n];
        if (seen.has(id)) continue;
        seen.add(id);
        out.push(["token", id, page, `fires on ${JSON.stringify(token)} · top tokens: ${tokens}`]);
      }
    };
    if (exact) addToken(q, exact);
    if (q.length >= 2) {
      for (const token of Object.keys(index.tokens)) {
        if (token !== q && token.startsWith(q)) addToken(token, index.tokens[token]);
        if (out.length > 200) break;
      }
    }
    return out;
  }

  function setUp(box) {
    const input = box.querySelector("input");
    const list = box.querySelector("ul");
    let results = [];
    const show = async () => {
      let index;
      try { index = await loadIndex(); } catch (err) {
        list.innerHTML = '<li class="none">the search index (search-index.js) is missing</li>'; list.hidden = false; return;
      }
      results = search(index, input.value);
      list.replaceChildren();
      if (!input.value.trim()) { list.hidden = true; return; }
      if (!results.length) {
        const li = document.createElement("li"); li.className = "none";
        li.textContent = "nothing found: try a feature name, a neuron id such as L3.N1201, or a token";
        list.appendChild(li);
      }
      for (const [kind, label, page, detail] of results.slice(0, 40)) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = root + page;
        a.className = "result";
        a.dataset.kind = kind;
        const k = document.createElement("span"); k.className = "kind"; k.textContent = kind;
        const b = document.createElement("b"); b.textContent = label;
        const d = document.createElement("span"); d.className = "muted"; d.textContent = detail ? "  " + detail : "";
        a.append(k, b, d);
        li.appendChild(a);
        list.appendChild(li);
      }
      if (results.length > 40) {
        const li = document.createElement("li"); li.className = "none";
        li.textContent = `… ${results.length - 40} more; type more to narrow`;
        list.appendChild(li);
      }
      list.hidden = false;
    };
    input.addEventListener("input", show);
    input.addEventListener("focus", () => { loadIndex().catch(() => {}); if (input.value.trim()) show(); });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && results.length) location.href = root + results[0][2];
      if (e.key === "Escape") list.hidden = true;
    });
    document.addEventListener("click", (e) => { if (!box.contains(e.target)) list.hidden = true; });
    const q = new URLSearchParams(location.search).get("q");
    if (q) { input.value = q; show(); }
  }

  document.querySelectorAll(".search").forEach(setUp);

  // Token tooltip: the token and its activation (data-v).
  const tip = document.createElement("div");
  tip.className = "tip"; tip.hidden = true;
  document.body.appendChild(tip);
  document.addEventListener("mouseover", (e) => {
    const t = e.target.closest ? e.target.closest(".tok") : null;
    if (!t) { tip.hidden = true; return; }
    tip.textContent = `${JSON.stringify(t.textContent)}  ${t.dataset.v}`;
    const r = t.getBoundingClientRect();
    tip.style.left = `${r.left + window.scrollX}px`;
    tip.style.top = `${r.bottom + window.scrollY + 4}px`;
    tip.hidden = false;
  });

  // Viewer links work only when the site is served by `needle scope serve --site` (under /site/).
  const served = location.protocol.startsWith("http") && location.pathname.startsWith("/site/");
  if (served) {
    document.querySelectorAll("a.viewer-link").forEach((a) => { a.hidden = false; });
  }

  // Notes: served by the viewer, saved beside the site through /api/notes (<site>.notes.json, written atomically);
  // opened from disk, where a page can write no file, kept in this browser's localStorage.
  const notes = document.getElementById("notes");
  if (notes) {
    const status = document.getElementById("notes-status");
    const id = notes.dataset.neuron;
    let timer = null;
    if (served) {
      fetch("/api/notes").then((r) => r.json()).then((answer) => {
        if (answer.error) { status.textContent = answer.error; return; }
        notes.value = answer.notes[id] || "";
        status.textContent = `Saved beside the site, in ${answer.path}.`;
        notes.addEventListener("input", () => {
          clearTimeout(timer);
          status.textContent = "saving…";
          timer = setTimeout(async () => {
            const response = await fetch("/api/notes", { method: "POST", headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ neuron: id, text: notes.value }) });
            const saved = await response.json();
            status.textContent = response.ok ? `Saved beside the site, in ${saved.path}.` : saved.error;
            document.body.dataset.notesSaved = response.ok ? "1" : "0";
          }, 400);
        });
      }).catch(() => { status.textContent = "the viewer's server does not answer; notes are not saved."; });
    } else {
      const key = `needle-notes|${notes.dataset.key}|${id}`;
      try {
        const kept = localStorage.getItem(key);
        if (kept !== null) notes.value = kept;
        notes.addEventListener("input", () => {
          localStorage.setItem(key, notes.value);
          status.textContent = "Kept in this browser only (localStorage). Serve the site with needle scope serve " +
            "--site to save notes beside it.";
        });
      } catch (err) {
        notes.readOnly = true;
        status.textContent = "This browser keeps no storage for pages opened from disk: notes are read-only here.";
      }
    }
  }
})();
