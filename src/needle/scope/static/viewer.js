// The interactive viewer: asks the server for one neuron's, latent's (a site served with --sae) or probe's
// activations on the typed text.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { info: null, timer: null, request: 0 };
  const unit = () => (state.info && state.info.unit) || "neuron";

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
    if (message) $("result").hidden = true;
  }

  function tokenSpan(token, value, scale, predicted, probability, activation) {
    const span = document.createElement("span");
    span.className = "tok" + (value < 0 ? " neg" : "") + (predicted ? " hit" : "");
    span.style.setProperty("--a", scale > 0 ? Math.min(1, Math.abs(value) / scale).toFixed(3) : "0");
    span.dataset.v = value.toFixed(4);
    if (probability !== undefined) span.dataset.p = probability.toFixed(3);
    if (activation !== undefined) span.dataset.act = activation.toFixed(4);
    span.textContent = token;
    return span;
  }

  // The text as typed (line breaks and indentation kept), each token's characters highlighted; special tokens
  // ([CLS], [SEP], which have no characters) are shown as small labels.
  function render(answer, text) {
    const probe = answer.probe;
    // Probe mode colours by the probe's score (coef · activations + intercept), neuron mode by the activation.
    const values = answer.values || answer.activations;
    $("result-title").textContent = probe
      ? `probe ${probe.id} (F1 ${probe.f1.toFixed(3)}) · coloured by the probe's score over its ${probe.k} ` +
        `${unit()}${probe.k === 1 ? "" : "s"} of layer ${answer.layer}`
      : `${unit()} L${answer.layer}.N${answer.neuron}`;
    $("legend-what").textContent = probe ? "the probe's score (coef · activations + intercept)"
      : `the ${unit()}'s activation`;
    document.body.dataset.mode = probe ? "probe" : "neuron";
    $("activation-col").textContent = probe ? `activation of L${answer.layer}.N${answer.neuron}` : "activation";
    $("max-abs").textContent = `relative to ${answer.scale_source} (${answer.scale.toFixed(3)})` +
      (answer.scale !== answer.max_abs ? `; on this text it reaches ${answer.max_abs.toFixed(3)}` : "");
    $("probe-legend").hidden = !probe;
    const tokens = $("tokens");
    tokens.replaceChildren();
    const body = $("table").querySelector("tbody");
    body.replaceChildren();
    let done = 0;
    answer.tokens.forEach((token, i) => {
      const value = values[i];
      const [start, end] = answer.offsets[i];
      const special = end <= start;
      if (!special && start > done) tokens.appendChild(document.createTextNode(text.slice(done, start)));
      const span = tokenSpan(special ? token : text.slice(start, end), value, answer.scale,
                             probe && probe.predicted[i], probe ? probe.probabilities[i] : undefined,
                             probe ? answer.activations[i] : undefined);
      span.dataset.i = String(i);
      if (special) span.classList.add("special");
      tokens.appendChild(span);
      if (!special) done = Math.max(done, end);
      const row = document.createElement("tr");
      const cells = [i, token, answer.activations[i].toFixed(4)];
      if (probe) cells.push(probe.scores[i].toFixed(3), probe.probabilities[i].toFixed(3));
      cells.forEach((c) => { const td = document.createElement("td"); td.textContent = c; row.appendChild(td); });
      body.appendChild(row);
    });
    if (done < text.length) tokens.appendChild(document.createTextNode(text.slice(done)));
    document.querySelectorAll(".probe-col").forEach((th) => { th.hidden = !probe; });
    const link = $("page-link");
    if (answer.page) {
      link.replaceChildren(`This ${unit()} has a page in the static site: `);
      const a = document.createElement("a");
      a.href = answer.page; a.textContent = `L${answer.layer}.N${answer.neuron}`;
      link.appendChild(a);
    }
    link.hidden = !answer.page;
    $("result").hidden = false;
  }

  async function run() {
    const text = $("text").value;
    // With a probe, the server shows the probe's layer and its largest-coefficient neuron.
    const payload = $("probe").value ? { text: text, probe: $("probe").value }
      : { text: text, layer: $("layer").value, neuron: $("neuron").value };
    const ticket = ++state.request;
    try {
      const response = await fetch("/api/activations", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
      const answer = await response.json();
      if (ticket !== state.request) return;  // a newer request is under way
      if (!response.ok) { showError(answer.error || `the server answered ${response.status}`); return; }
      showError("");
      state.shown = answer.neuron;
      render(answer, text);
    } catch (err) {
      if (ticket === state.request) showError("the viewer's server does not answer: is needle scope serve running?");
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if ($("text").value.trim()) state.timer = setTimeout(run, 350);
  }

  // The probe list shows the probes of the chosen layer, grouped by feature.
  function fillProbes() {
    const select = $("probe");
    const keep = select.value;
    select.replaceChildren(new Option("— none —", ""));
    const layer = Number($("layer").value);
    const groups = new Map();
    for (const p of state.info.probes.filter((p) => p.layer === layer)) {
      if (!groups.has(p.feature)) groups.set(p.feature, []);
      groups.get(p.feature).push(p);
    }
    for (const [feature, probes] of groups) {
      const group = document.createElement("optgroup");
      group.label = feature;
      for (const p of probes) group.appendChild(new Option(`${p.feature} · ${p.method} · k=${p.k} (F1 ${p.f1.toFixed(2)})`, p.id));
      select.appendChild(group);
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    select.disabled = groups.size === 0;
    select.title = groups.size ? "" : "no probes for this layer (start the viewer with --site to offer a site's probes)";
  }

  function pickProbe() {
    $("neuron").disabled = !!$("probe").value;
    schedule();
  }

  async function start() {
    const response = await fetch("/api/info");
    const info = await response.json();
    state.info = info;
    const layers = info.layers || [...Array(info.n_layers).keys()];
    $("model").textContent = (info.unit === "latent"
      ? `${info.model_id} · layer ${layers.join(", ")} · ${info.n_neurons} latents of ${info.basis} (${info.site}) · `
      : `${info.model_id} · ${info.n_layers} layers × ${info.n_neurons} neurons (${info.site}) · `) +
      `at most ${info.max_tokens} tokens`;
    $("unit-label").textContent = unit();
    $("neuron").setAttribute("aria-label", unit());
    for (const l of layers) $("layer").add(new Option(String(l), String(l)));
    $("neuron").max = String(info.n_neurons - 1);
    $("site-link").hidden = !info.site_root;
    const params = new URLSearchParams(location.search);
    if (params.get("layer")) $("layer").value = params.get("layer");
    if (params.get("neuron")) $("neuron").value = params.get("neuron");
    const wanted = state.info.probes.find((p) => p.id === params.get("probe"));
    if (wanted) $("layer").value = String(wanted.layer);
    fillProbes();
    if (wanted) { $("probe").value = wanted.id; pickProbe(); }
    if (params.get("text")) $("text").value = params.get("text");
    $("run").addEventListener("click", run);
    $("text").addEventListener("input", schedule);
    $("layer").addEventListener("change", () => { fillProbes(); pickProbe(); });
    $("neuron").addEventListener("change", schedule);
    $("probe").addEventListener("change", pickProbe);
    $("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
    document.body.dataset.ready = "1";
    if ($("text").value.trim()) run();
  }

  // A tooltip that follows the pointer over tokens: the activation (and the probe's probability).
  document.addEventListener("mouseover", (e) => {
    const t = e.target.closest ? e.target.closest(".tok") : null;
    const tip = $("tip");
    if (!t) { tip.hidden = true; return; }
    tip.textContent = t.dataset.p
      ? `${JSON.stringify(t.textContent)}  probe score ${t.dataset.v}  P(feature)=${t.dataset.p}  ` +
        `(${unit()} L${$("layer").value}.N${state.shown} ${t.dataset.act})`
      : `${JSON.stringify(t.textContent)}  activation ${t.dataset.v}`;
    const r = t.getBoundingClientRect();
    tip.style.left = `${r.left + window.scrollX}px`;
    tip.style.top = `${r.bottom + window.scrollY + 4}px`;
    tip.hidden = false;
  });

  start().catch(() => showError("cannot reach the viewer's server: is needle scope serve running?"));
})();
