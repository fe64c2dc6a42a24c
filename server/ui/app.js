// app.js: the /ui/ page of archevald: the studies with their progress, a
// study's ranking (sortable table, Pareto scatter of two aspects, a
// histogram per metric, live progress) and a job's scorecard, read from
// the same JSON API the clients use.  No external scripts, fonts or CDNs.
"use strict";

const ASPECTS = ["expressivity", "convergence", "generalization",
                 "complexity"];
const SVG = "http://www.w3.org/2000/svg";
let timer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children)
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function api(path) {
  const r = await fetch(path, {headers: {Accept: "application/json"}});
  const body = await r.json().catch(() => null);
  if (!r.ok)
    throw new Error((body && (body.detail || body.title)) || r.statusText);
  return body;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(3)
                                                  : v.toFixed(4);
}

function bar(progress) {
  const b = el("span", {class: "bar"}, el("span"));
  b.firstChild.style.width = (100 * progress).toFixed(1) + "%";
  return b;
}

function show(where, ...nodes) {
  document.getElementById("where").textContent = where;
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

// ---- the list of studies ----

async function studiesPage() {
  const studies = [];
  let token = null;
  do {
    const page = await api("/v1/studies?page_size=1000" +
                           (token ? "&page_token=" + token : ""));
    studies.push(...page.studies);
    token = page.next_page_token;
  } while (token);
  const rows = studies.map(s => el("tr", {class: "study", "data-id": s.id},
    el("td", {class: "text"}, el("a", {href: "#/studies/" + s.id}, s.name)),
    el("td", {class: "text"}, s.id), el("td", {}, s.members),
    el("td", {}, bar(s.progress), " ", (100 * s.progress).toFixed(0) + "%"),
    el("td", {}, s.counts.cached), el("td", {}, s.counts.failed),
    el("td", {class: "text"}, s.created_at || "")));
  const table = el("table", {id: "studies"},
    el("tr", {}, ...["name", "id", "members", "progress", "cached",
                     "failed", "created"].map(h => el("th", {}, h))),
    ...rows);
  show("studies", el("h2", {}, studies.length + " studies"), table);
  return studies.some(s => s.progress < 1);
}

// ---- a study ----

function scatter(members, xa, ya) {
  const w = 360, h = 300, pad = 30;
  const pts = members.filter(m => m.aspect_ranks[xa] !== null &&
                                  m.aspect_ranks[ya] !== null);
  const n = Math.max(1, members.length);
  const s = svg("svg", {id: "pareto", width: w, height: h,
                        "data-x": xa, "data-y": ya});
  const sx = r => pad + (w - 2 * pad) * (n === 1 ? 0.5 : (r - 1) / (n - 1));
  const sy = r => h - pad - (h - 2 * pad) * (n === 1 ? 0.5 :
                                             (r - 1) / (n - 1));
  const label = (x, y, text) => {
    const t = svg("text", {x, y, "font-size": 11});
    t.textContent = text;
    s.append(t);
  };
  label(pad, h - 8, xa + " rank (1 = best) →");
  label(4, 14, "↑ " + ya + " rank");
  for (const m of pts) {
    const c = svg("circle", {cx: sx(m.aspect_ranks[xa]),
                             cy: sy(n + 1 - m.aspect_ranks[ya]),
                             r: m.pareto ? 5 : 3,
                             class: m.pareto ? "front" : "member",
                             "data-job": m.job});
    const t = svg("title");
    t.textContent = m.job + " rank " + m.rank;
    c.append(t);
    s.append(c);
  }
  return s;
}

function histogram(name, values) {
  const w = 220, h = 120, bins = 12;
  const s = svg("svg", {class: "histogram", width: w, height: h,
                        "data-metric": name});
  const t = svg("text", {x: 4, y: 12, "font-size": 11});
  t.textContent = name;
  s.append(t);
  const v = values.filter(x => typeof x === "number" && isFinite(x));
  if (!v.length) return s;
  const lo = Math.min(...v), hi = Math.max(...v);
  const counts = new Array(bins).fill(0);
  for (const x of v)
    counts[hi > lo ? Math.min(bins - 1,
                              Math.floor((x - lo) / (hi - lo) * bins)) : 0]++;
  const top = Math.max(...counts);
  counts.forEach((c, i) => {
    const bh = (h - 30) * c / top;
    s.append(svg("rect", {x: 4 + i * (w - 8) / bins, y: h - 14 - bh,
                          width: (w - 8) / bins - 1, height: bh}));
  });
  return s;
}

function rankingTable(members, metrics) {
  const cols = [["rank", m => m.rank], ["score", m => m.score],
                ["job", m => m.job, true]]
    .concat(ASPECTS.map(a => [a, m => m.aspect_ranks[a]]))
    .concat(metrics.map(k => [k, m => m.metrics[k]]))
    .concat([["architecture", m => m.architecture.cell ||
              m.architecture.dag || m.architecture.type, true]]);
  const table = el("table", {id: "ranking"});
  let order = {col: 0, dir: 1};
  const render = () => {
    const [, get] = cols[order.col];
    const sorted = members.slice().sort((a, b) => {
      const x = get(a), y = get(b);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * order.dir;
    });
    const head = el("tr", {}, ...cols.map(([h, , text], i) => {
      const th = el("th", {class: text ? "text" : ""},
                    h + (i === order.col ? (order.dir > 0 ? " ▲" : " ▼")
                                         : ""));
      th.onclick = () => {
        order = {col: i, dir: order.col === i ? -order.dir : 1};
        render();
      };
      return th;
    }));
    table.replaceChildren(head, ...sorted.map(m => el("tr",
      {class: "member" + (m.pareto ? " front" : ""), "data-job": m.job},
      ...cols.map(([h, get, text]) => el("td", {class: text ? "text" : ""},
        h === "job" ? el("a", {href: "#/jobs/" + m.job}, m.job)
                    : fmt(get(m)))))));
  };
  render();
  return table;
}

async function studyPage(id) {
  const study = await api("/v1/studies/" + id);
  const ranking = await api("/v1/studies/" + id + "/ranking");
  const members = ranking.members;
  const metrics = members.length ? Object.keys(members[0].metrics) : [];
  const scored = ASPECTS.filter(a => members.some(
    m => m.aspect_ranks[a] !== null));
  const pick = (name, value) => {
    const s = el("select", {id: name},
                 ...ASPECTS.map(a => el("option", {value: a}, a)));
    s.value = value;
    return s;
  };
  const xs = pick("x-aspect", scored[0] || "expressivity");
  const ys = pick("y-aspect", scored[1] || scored[0] || "convergence");
  const plot = el("div", {id: "plot"});
  const draw = () => plot.replaceChildren(scatter(members, xs.value,
                                                  ys.value));
  xs.onchange = ys.onchange = draw;
  draw();
  const c = study.counts;
  const progress = el("p", {id: "progress", "data-progress": study.progress},
    bar(study.progress), " ", (100 * study.progress).toFixed(0) + "% of " +
    study.members + " members finished (" + c.succeeded + " succeeded, " +
    c.cached + " cached, " + c.failed + " failed, " + c.running +
    " running, " + c.queued + " queued)");
  const bound = ranking.selection_bound || {};
  show("study " + study.name,
    el("h2", {}, study.name), progress,
    el("p", {}, "Ranked by " + (ranking.rank.combination || "–") + " (" +
       (ranking.rank.aggregate || "–") + "); Pareto front: " +
       ranking.pareto_front.length + " of " + ranking.n + " members."),
    el("p", {}, "Selection bound: validation and test risks within " +
       fmt(bound.gap) + " (δ = " + fmt(bound.delta) + ", " +
       bound.n_validation + " validation samples, " + bound.n_candidates +
       " candidates)."),
    el("div", {}, "Pareto front of ", xs, " against ", ys), plot,
    el("h3", {}, "Ranking"), rankingTable(members, metrics),
    el("h3", {}, "Histograms"),
    el("div", {class: "charts"},
       ...metrics.map(k => histogram(k, members.map(m => m.metrics[k])))));
  return study.progress < 1;
}

// ---- a job ----

async function jobPage(id) {
  const job = await api("/v1/jobs/" + id);
  const warnings = (job.result && job.result.warnings) || [];
  show("job " + id,
    el("h2", {}, "Job " + id),
    el("p", {id: "job-state"}, job.state + (job.cached ? " (cached)" : "") +
       (job.study ? " · study " : "")),
    job.study ? el("a", {href: "#/studies/" + job.study}, job.study) : "",
    el("h3", {}, "Warnings"),
    el("ul", {id: "warnings"}, ...warnings.map(w => el("li", {},
       typeof w === "string" ? w : JSON.stringify(w)))),
    el("h3", {}, "Scorecard"),
    el("pre", {id: "scorecard"}, JSON.stringify(job.result || job.error ||
                                                 null, null, 2)),
    el("h3", {}, "Request"),
    el("pre", {}, JSON.stringify(job.request, null, 2)));
  return !["succeeded", "failed", "cancelled"].includes(job.state);
}

async function route() {
  clearTimeout(timer);
  const hash = location.hash.replace(/^#\/?/, "");
  const [kind, id] = hash.split("/");
  let live = false;
  try {
    if (kind === "studies" && id) live = await studyPage(id);
    else if (kind === "jobs" && id) live = await jobPage(id);
    else live = await studiesPage();
    document.body.setAttribute("data-loaded", "1");
  } catch (err) {
    show("error", el("p", {class: "error", id: "error"}, err.message));
    document.body.setAttribute("data-loaded", "1");
  }
  if (live) timer = setTimeout(route, 1000);  // live progress
}

window.addEventListener("hashchange", route);
route();
