// tapegrad explain page. All numbers were computed in Python and arrive as strings in
// the JSON block #tg-data; this script only lays them out and animates the steps. Every
// piece of graph content reaches the DOM through textContent or setAttribute, never HTML.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("tg-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const N = D.nodes.length;
  const box = D.compact ? { w: 16, h: 16, dx: 26, dy: 48 } : { w: 124, h: 58, dx: 150, dy: 112 };

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function htmlEl(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const short = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

  // ---- header, alerts ---------------------------------------------------------------
  $("title").textContent = D.title;
  document.title = D.title;
  $("subtitle").textContent = N + " nodes, " + D.edges.length + " edges: " + D.forwardSteps +
    " forward steps, then the seed and " + D.backwardSteps + " backward edges.";
  $("note").textContent = D.backwardNote;

  function alertBox(cls, heading, items) {
    const div = htmlEl("div", { class: "alert " + cls });
    div.appendChild(htmlEl("span", {}, heading));
    if (items.length) {
      const ul = htmlEl("ul");
      items.forEach((t) => ul.appendChild(htmlEl("li", {}, t)));
      div.appendChild(ul);
    }
    $("alerts").appendChild(div);
    return div;
  }
  const flagged = D.nodes.filter((n) => n.anomaly !== null);
  if (flagged.length) {
    alertBox("anomaly", "⚠ " + flagged.length + " flagged node" + (flagged.length > 1 ? "s" : "") + ":",
      flagged.map((n) => n.name + " (" + n.op + "): " + n.anomaly)).id = "anomalies";
  }
  const bad = D.nodes.filter((n) => n.nonfinite);
  if (bad.length) {
    const items = bad.filter((n) => n.origin).map((n) =>
      "first appears at " + n.name + ": " + (n.formula || n.name + " = " + n.value));
    items.push("nodes with a NaN/Inf value or gradient: " + bad.map((n) => n.name).join(", "));
    alertBox("nonfinite", "NaN / Inf in this graph (" + bad.length + " node" +
      (bad.length > 1 ? "s" : "") + ", drawn in red)", items).id = "nonfinite";
  }
  if (D.compact) {
    alertBox("info", "This graph has " + N + " nodes, more than " + D.maxNodes +
      ": nodes are drawn as small boxes without text. Drag to pan, use the wheel to zoom, " +
      "click a node for its numbers; the steps below still cover every node.", []).id = "compact-note";
  }

  // ---- the graph --------------------------------------------------------------------
  const svg = $("graph");
  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
    markerWidth: "8", markerHeight: "8", markerUnits: "userSpaceOnUse", orient: "auto" });
  marker.appendChild(svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7280" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const world = svgEl("g", { id: "world" });
  svg.appendChild(world);
  const gEdges = svgEl("g", { class: "edges" });
  const gNodes = svgEl("g", { class: "nodes" });
  world.appendChild(gEdges);
  world.appendChild(gNodes);

  const X = (n) => n.pos * box.dx, Y = (n) => n.layer * box.dy;
  const edgeEls = {}, edgeLabels = {}, nodeEls = [], valueEls = [], gradEls = [], tips = [];
  D.edges.forEach((e) => {
    const a = D.nodes[e.from], b = D.nodes[e.to];
    const arity = b.inputs.length;
    const spread = arity > 1 ? (e.k - (arity - 1) / 2) * Math.min(box.w * 0.5, box.w / arity) : 0;
    const x1 = X(a), y1 = Y(a) - box.h / 2, x2 = X(b) + spread, y2 = Y(b) + box.h / 2;
    const my = (y1 + y2) / 2;
    const g = svgEl("g", { class: "edge", id: e.id, "data-from": e.from, "data-to": e.to, "data-k": e.k });
    g.appendChild(svgEl("path", { d: "M" + x1 + "," + y1 + " C" + x1 + "," + my + " " + x2 + "," + my +
      " " + x2 + "," + y2, "marker-end": "url(#arrow)" }));
    const label = svgEl("text", { id: e.id + "-label", x: (x1 + x2) / 2 + 4, y: my, "text-anchor": "start" }, "");
    g.appendChild(label);
    gEdges.appendChild(g);
    edgeEls[e.id] = g;
    edgeLabels[e.id] = label;
  });
  D.nodes.forEach((n) => {
    let cls = "node " + n.kind;
    if (n.nonfinite) cls += " nonfinite";
    if (n.anomaly !== null) cls += " anomaly";
    if (n.i === D.root) cls += " root";
    const g = svgEl("g", { id: "node-" + n.i, class: cls, "data-name": n.name, "data-op": n.op,
      "data-kind": n.kind, "data-node-id": n.id,
      transform: "translate(" + (X(n) - box.w / 2) + "," + (Y(n) - box.h / 2) + ")" });
    const tip = svgEl("title", {}, "");
    g.appendChild(tip);
    g.appendChild(svgEl("rect", { width: box.w, height: box.h, rx: D.compact ? 3 : 6 }));
    if (!D.compact) {
      const head = n.kind === "op" ? n.name + "  " + n.symbol : n.kind === "const" ? "const " + n.name : n.name;
      g.appendChild(svgEl("text", { class: "title", x: 8, y: 16 }, short(head, 17)));
      const v = svgEl("text", { x: 8, y: 33 });
      v.appendChild(svgEl("tspan", { class: "label" }, "value "));
      const vs = svgEl("tspan", { class: "value", id: "node-" + n.i + "-value" }, "");
      v.appendChild(vs);
      g.appendChild(v);
      const gr = svgEl("text", { x: 8, y: 50 });
      gr.appendChild(svgEl("tspan", { class: "label" }, "grad "));
      const gs = svgEl("tspan", { class: "grad", id: "node-" + n.i + "-grad" }, "");
      gr.appendChild(gs);
      g.appendChild(gr);
      valueEls[n.i] = vs;
      gradEls[n.i] = gs;
      if (n.nonfinite || n.anomaly !== null) {
        g.appendChild(svgEl("text", { class: "flag", x: box.w - 16, y: 16 }, n.nonfinite ? "!" : "⚠"));
      }
    }
    g.addEventListener("click", () => select(n.i));
    gNodes.appendChild(g);
    nodeEls[n.i] = g;
    tips[n.i] = tip;
  });

  // Leaf table: one row per leaf, contributions as separate spans.
  const leafBody = $("leaf-grads").tBodies[0];
  const leafSum = {};
  D.leaves.forEach((i) => {
    const n = D.nodes[i];
    const tr = htmlEl("tr", { id: "leaf-" + i, "data-name": n.name });
    tr.appendChild(htmlEl("td", {}, n.name));
    tr.appendChild(htmlEl("td", { id: "leaf-" + i + "-value" }, n.value));
    const td = htmlEl("td", { class: "sum", id: "leaf-" + i + "-sum" }, "");
    tr.appendChild(td);
    leafBody.appendChild(tr);
    leafSum[i] = td;
  });

  // ---- view: fit, pan, zoom ---------------------------------------------------------
  let view = null;
  function bounds() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    D.nodes.forEach((n) => {
      x0 = Math.min(x0, X(n)); x1 = Math.max(x1, X(n)); y0 = Math.min(y0, Y(n)); y1 = Math.max(y1, Y(n));
    });
    const pad = 30;
    return { x: x0 - box.w / 2 - pad, y: y0 - box.h / 2 - pad,
             w: x1 - x0 + box.w + 2 * pad, h: y1 - y0 + box.h + 2 * pad };
  }
  function setView(v) {
    view = v;
    svg.setAttribute("viewBox", v.x + " " + v.y + " " + v.w + " " + v.h);
  }
  function initialView() {  // big graphs start at the root at a readable scale
    fit();
    const most = D.compact ? { w: 900, h: 560 } : { w: 2000, h: 1250 };
    if (view.w > most.w || view.h > most.h) {
      const r = D.nodes[D.root], w = Math.min(view.w, most.w), h = Math.min(view.h, most.h);
      setView({ x: X(r) - w / 2, y: Y(r) - box.h - 20, w: w, h: h });
    }
  }
  function fit() {
    const b = bounds();
    const minW = D.compact ? 0 : 600, minH = D.compact ? 0 : 300;  // small graphs stay readable
    const w = Math.max(b.w, minW), h = Math.max(b.h, minH);
    setView({ x: b.x - (w - b.w) / 2, y: b.y - (h - b.h) / 2, w: w, h: h });
  }
  function toWorld(ev) {
    const r = svg.getBoundingClientRect();
    const s = Math.max(view.w / r.width, view.h / r.height);  // preserveAspectRatio: meet
    const ox = view.x + view.w / 2 - (r.width / 2) * s, oy = view.y + view.h / 2 - (r.height / 2) * s;
    return { x: ox + (ev.clientX - r.left) * s, y: oy + (ev.clientY - r.top) * s, s: s };
  }
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const p = toWorld(ev), f = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    setView({ x: p.x - (p.x - view.x) * f, y: p.y - (p.y - view.y) * f, w: view.w * f, h: view.h * f });
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, v: view, s: toWorld(ev).s };
    svg.classList.add("dragging");
  });
  window.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    setView({ x: drag.v.x - (ev.clientX - drag.x) * drag.s, y: drag.v.y - (ev.clientY - drag.y) * drag.s,
              w: drag.v.w, h: drag.v.h });
  });
  window.addEventListener("pointerup", () => { drag = null; svg.classList.remove("dragging"); });
  function reveal(i) {  // keep the current node in view on big graphs
    const n = D.nodes[i], x = X(n), y = Y(n);
    if (x < view.x || x > view.x + view.w || y < view.y || y > view.y + view.h) {
      setView({ x: x - view.w / 2, y: y - view.h / 2, w: view.w, h: view.h });
    }
  }

  // ---- state and steps --------------------------------------------------------------
  let pos = 0;                       // steps applied so far
  let shownValue, shownGrad, parts, current = [], selected = null;

  function setValue(i, text) {
    shownValue[i] = text;
    if (valueEls[i]) { valueEls[i].textContent = text; valueEls[i].setAttribute("class", "value"); }
  }
  function setGrad(i, text) {
    shownGrad[i] = text;
    if (gradEls[i]) gradEls[i].textContent = text;
  }
  function renderLeaf(i) {
    if (!(i in leafSum)) return;
    const td = leafSum[i];
    td.textContent = "";
    const all = parts[i], many = all.length > 12;  // long sums: first and last terms only
    const shown = many ? all.slice(0, 6).concat([null], all.slice(-2)) : all;
    shown.forEach((p, k) => {
      if (k) td.appendChild(document.createTextNode(" + "));
      td.appendChild(p === null ? htmlEl("span", { class: "more" }, "… " + (all.length - 8) + " more …")
                                : htmlEl("span", { class: "part" }, p));
    });
    if (parts[i].length > 1) td.appendChild(document.createTextNode(" = "));
    if (parts[i].length !== 1) td.appendChild(htmlEl("span", { class: "total", id: "leaf-" + i + "-grad" }, shownGrad[i]));
    else td.lastChild.id = "leaf-" + i + "-grad";
  }
  function updateTip(i) {
    const n = D.nodes[i];
    tips[i].textContent = n.name + " (" + n.op + ")\nvalue " + (shownValue[i] || "?") +
      "\ngrad " + (shownGrad[i] || "–") + (parts[i].length > 1 ? " (" + parts[i].length + " contributions)" : "") +
      (n.anomaly !== null ? "\n⚠ " + n.anomaly : "");
  }
  function resetState() {
    shownValue = new Array(N).fill("");
    shownGrad = new Array(N).fill("");
    parts = D.nodes.map(() => []);
    D.nodes.forEach((n) => {
      if (valueEls[n.i]) { valueEls[n.i].textContent = "?"; valueEls[n.i].setAttribute("class", "value pending"); }
      if (gradEls[n.i]) gradEls[n.i].textContent = "";
      updateTip(n.i);
    });
    D.edges.forEach((e) => { edgeEls[e.id].setAttribute("class", "edge"); edgeLabels[e.id].textContent = ""; });
    D.leaves.forEach((i) => { leafSum[i].textContent = ""; });
  }
  function apply(s) {
    if (s.kind === "leaves") {
      s.nodes.forEach((i) => { setValue(i, D.nodes[i].value); updateTip(i); });
    } else if (s.kind === "forward") {
      setValue(s.node, s.value);
      D.nodes[s.node].inputs.forEach((_, k) => edgeEls["edge-" + s.node + "-" + k].classList.add("used"));
      updateTip(s.node);
    } else if (s.kind === "seed") {
      setGrad(s.node, s.grad);
      renderLeaf(s.node);
      updateTip(s.node);
    } else if (s.kind === "edge") {
      parts[s.to].push(s.contribution);
      setGrad(s.to, s.grad);
      edgeEls[s.edge].classList.add("done");
      edgeLabels[s.edge].textContent = s.contribution;
      renderLeaf(s.to);
      updateTip(s.to);
    }
  }
  function highlight(s) {
    current.forEach((el) => el.classList.remove("current", "active"));
    current = [];
    if (!s) return;
    const mark = (el, cls) => { if (el) { el.classList.add(cls); current.push(el); } };
    if (s.kind === "forward" || s.kind === "seed") mark(nodeEls[s.node], "current");
    if (s.kind === "forward") D.nodes[s.node].inputs.forEach((_, k) => mark(edgeEls["edge-" + s.node + "-" + k], "active"));
    if (s.kind === "leaves") s.nodes.forEach((i) => mark(nodeEls[i], "current"));
    if (s.kind === "edge") { mark(edgeEls[s.edge], "active"); mark(nodeEls[s.to], "current"); }
    const focus = s.kind === "edge" ? s.to : s.kind === "done" ? D.root : s.node;
    if (focus !== undefined) { reveal(focus); select(focus, true); }
  }
  const PHASE = { leaves: "Forward pass: the leaves", forward: "Forward pass", seed: "Backward pass: the seed",
                  edge: "Backward pass: gradient propagation", done: "Done: accumulated gradients" };
  function showPanel() {
    const s = pos > 0 ? D.steps[pos - 1] : null;
    $("phase").textContent = s ? PHASE[s.kind] : "Ready";
    $("phase").setAttribute("data-kind", s ? s.kind : "start");
    $("step-text").textContent = s ? s.text : "Press Step (or →) to walk the forward pass, then the backward pass.";
    $("step-detail").textContent = s && s.kind === "edge" ? s.detail : "";
    $("step-counter").textContent = "step " + pos + " / " + D.steps.length;
    $("step-counter").setAttribute("data-step", pos);
    highlight(s);
  }
  function goTo(target) {
    target = Math.max(0, Math.min(D.steps.length, target));
    if (target < pos) { resetState(); pos = 0; }
    while (pos < target) apply(D.steps[pos++]);
    showPanel();
    if (pos >= D.steps.length) pause();
  }
  function select(i, fromStep) {
    if (selected !== null && nodeEls[selected]) nodeEls[selected].classList.remove("selected");
    selected = i;
    if (!fromStep) nodeEls[i].classList.add("selected");
    const n = D.nodes[i], dl = $("node-detail");
    dl.textContent = "";
    const row = (k, v) => { dl.appendChild(htmlEl("dt", {}, k)); dl.appendChild(htmlEl("dd", {}, v)); };
    row("name", n.name);
    row("op", n.op);
    if (n.formula) row("computes", n.formula);
    row("value", shownValue[i] ? shownValue[i] + (shownValue[i] !== n.valueExact && shownValue[i] + ".0" !== n.valueExact ? "  (" + n.valueExact + ")" : "") : "not yet computed");
    row("grad", shownGrad[i] ? (parts[i].length > 1 && parts[i].length <= 12 ? parts[i].join(" + ") + " = " : "") +
      shownGrad[i] + (parts[i].length > 12 ? "  (" + parts[i].length + " contributions)" : "") : "not yet");
    if (n.anomaly !== null) row("⚠ flagged", n.anomaly);
    row("id", n.id);
  }

  // ---- controls ---------------------------------------------------------------------
  let timer = null;
  const speedSel = $("speed");
  function play() {
    if (pos >= D.steps.length) goTo(0);
    $("btn-play").textContent = "❚❚ Pause";
    $("btn-play").setAttribute("aria-pressed", "true");
    const tick = () => {
      if (pos >= D.steps.length) { pause(); return; }
      goTo(pos + 1);
      if (timer !== null) timer = setTimeout(tick, 1000 / parseFloat(speedSel.value));
    };
    timer = setTimeout(tick, 1000 / parseFloat(speedSel.value));
  }
  function pause() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    $("btn-play").textContent = "▶ Play";
    $("btn-play").setAttribute("aria-pressed", "false");
  }
  const toggle = () => (timer === null ? play() : pause());
  function speed(delta) {
    speedSel.selectedIndex = Math.max(0, Math.min(speedSel.options.length - 1, speedSel.selectedIndex + delta));
  }
  const actions = {
    "btn-reset": () => { pause(); goTo(0); }, "btn-back": () => { pause(); goTo(pos - 1); },
    "btn-play": toggle, "btn-step": () => { pause(); goTo(pos + 1); },
    "btn-end": () => { pause(); goTo(D.steps.length); }, "btn-fit": fit,
  };
  Object.keys(actions).forEach((id) => $(id).addEventListener("click", (ev) => {
    actions[id]();
    ev.currentTarget.blur();  // so Space is never both a click and a shortcut
  }));
  const keys = {
    ArrowRight: "btn-step", n: "btn-step", ArrowLeft: "btn-back", p: "btn-back", " ": "btn-play",
    k: "btn-play", r: "btn-reset", Home: "btn-reset", End: "btn-end", e: "btn-end", f: "btn-fit",
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.target === speedSel) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (key in keys) { ev.preventDefault(); actions[keys[key]](); }
    else if (key === "+" || key === "=") { ev.preventDefault(); speed(1); }
    else if (key === "-" || key === "_") { ev.preventDefault(); speed(-1); }
  });

  resetState();
  initialView();
  showPanel();
  select(D.root);
  document.body.setAttribute("data-ready", "1");
})();
