// patentcpc web page: paste a document or upload a CSV, POST /predict, show the codes, download a CSV.
// Plain browser JavaScript, no dependencies, no network access beyond this service.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let limits = { max_docs: 64, max_chars: 50000, max_top_k: 50, max_body_bytes: 4000000 };
  let scoreType = "score";
  let lastResults = [];  // [{id, predictions, labels, error}]

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  async function api(path, body) {
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const msg = data && data.error && data.error.message ? data.error.message : `HTTP ${r.status}`;
      throw new Error(msg);
    }
    return data;
  }

  async function loadInfo() {
    try {
      const h = await api("health");
      if (h.limits) limits = Object.assign(limits, h.limits);
      scoreType = h.score_type || "score";
      $("model-info").textContent =
        `Model: ${h.model_kind}, ${h.n_labels} codes at the ${h.label_level || "?"} level; scores are ${scoreType.endsWith("y") ? scoreType.slice(0, -1) + "ies" : scoreType + "s"}.`;
      $("top-k").max = String(limits.max_top_k);
      if (!h.conformal) document.querySelectorAll(".coverage").forEach((n) => { n.hidden = true; });
    } catch (e) {
      $("model-info").textContent = `The service did not answer: ${e.message}`;
    }
  }

  function coverage() {  // a number in (0, 1), or null (off, or a model without conformal data)
    const c = parseFloat($("coverage").value);
    return !$("coverage").hidden && Number.isFinite(c) && c > 0 && c < 1 ? c : null;
  }

  function topK() {
    const k = parseInt($("top-k").value, 10);
    return Math.min(Math.max(Number.isFinite(k) ? k : 5, 1), limits.max_top_k);
  }

  // ------------------------------------------------------------------ rendering

  function evidenceNode(ev) {
    if (ev === undefined || ev === null) return null;
    const items = Array.isArray(ev) ? ev : (typeof ev === "object" && Array.isArray(ev.terms) ? ev.terms : [ev]);
    const box = el("div", { class: "evidence" }, "Evidence: ");
    items.forEach((it, i) => {
      if (i) box.appendChild(document.createTextNode(", "));
      if (typeof it === "string" || typeof it === "number") { box.appendChild(el("mark", {}, String(it))); return; }
      if (it && typeof it === "object") {
        const term = it.term ?? it.text ?? it.token ?? it.feature ?? it.span ?? it.passage;
        const weight = it.weight ?? it.score ?? it.contribution;
        if (term !== undefined) {
          box.appendChild(el("mark", {}, String(term)));
          if (typeof weight === "number") box.appendChild(document.createTextNode(` (${weight.toFixed(3)})`));
          return;
        }
      }
      box.appendChild(document.createTextNode(JSON.stringify(it)));
    });
    return box;
  }

  function pathNode(path) {
    const box = el("div", { class: "path" });
    for (const node of path || []) {
      const span = el("span", { title: node.title || "" }, node.code);
      box.appendChild(span);
    }
    const titled = (path || []).filter((n) => n.title).map((n) => `${n.code}: ${n.title}`);
    if (titled.length) box.setAttribute("title", titled.join("\n"));
    return box;
  }

  function bar(width) {  // (CSSOM, not a style attribute: the page's CSP allows no inline styles)
    const span = el("span", { class: "bar" });
    span.style.width = `${width}px`;
    return span;
  }

  function renderDoc(res, index) {
    const heading = res.id !== undefined && res.id !== null ? `Document ${res.id}` : `Document ${index + 1}`;
    const card = el("div", { class: "doc", "data-doc": String(index) }, el("h3", {}, heading));
    if (res.error) { card.appendChild(el("p", { class: "error" }, res.error)); return card; }
    const table = el("table", { class: "predictions" },
      el("thead", {}, el("tr", {}, el("th", {}, "Code"), el("th", {}, scoreType === "probability" ? "Probability" : "Score"),
        el("th", {}, "Assigned"), el("th", {}, "Title and ancestry"))));
    const body = el("tbody");
    for (const p of res.predictions || []) {
      const width = Math.round(Math.max(0, Math.min(1, Number(p.score))) * 80);
      const titleCell = el("td", {}, el("div", { class: "title" }, p.title || "(no title known)"), pathNode(p.path),
        evidenceNode(p.evidence ?? p.explanation));
      body.appendChild(el("tr", { class: "prediction" },
        el("td", { class: "code" }, p.code),
        el("td", { class: "score" }, bar(width), Number(p.score).toFixed(3)),
        el("td", { class: p.above_threshold ? "assigned" : "" }, p.above_threshold ? "yes" : ""),
        titleCell));
    }
    table.appendChild(body);
    if (res.note || (Array.isArray(res.labels) && res.labels.length === 0)) {  // the model abstained
      card.appendChild(el("p", { class: "no-code" }, res.note || "no code assigned"));
    }
    card.appendChild(table);
    if (res.label_set) {  // the conformal set (predict with coverage)
      const s = res.label_set;
      card.appendChild(el("p", { class: s.unsure ? "label-set unsure" : "label-set" },
        `Label set at coverage ${s.coverage}: ${s.size} code${s.size === 1 ? "" : "s"} (${s.codes.join(", ")})` +
        (s.unsure ? " — unsure: the model cannot narrow it down" : "")));
    }
    const docEvidence = evidenceNode(res.evidence ?? res.explanation);
    if (docEvidence) card.appendChild(docEvidence);
    return card;
  }

  function render(results) {
    lastResults = results;
    const box = $("results");
    box.replaceChildren(...results.map(renderDoc));
    $("results-section").hidden = false;
  }

  // ------------------------------------------------------------------ CSV in and out

  function parseCSV(text, delimiter) {
    const rows = []; let row = []; let field = ""; let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"') { if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false; }
        else field += c;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === delimiter) { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); field = ""; rows.push(row); row = [];
      } else field += c;
    }
    if (quoted) throw new Error("the file ends inside a quoted field (an unterminated quote)");
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows.filter((r) => r.some((f) => f.trim() !== ""));
  }

  const ID_NAMES = /^(id|doc_?id|document_?id|patent_?id|patent_?number|publication_?number|pub_?no|application_?number|pn)$/;
  const TEXT_NAMES = ["title", "abstract", "claims", "description"];

  function csvDocuments(text, fileName) {
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const first = text.split(/\r?\n/, 1)[0];
    const delimiter = /\.tsv$/i.test(fileName) || (first.includes("\t") && !first.includes(",")) ? "\t" : ",";
    const rows = parseCSV(text, delimiter);
    if (rows.length < 2) throw new Error("the file has no rows after its header");
    const norm = rows[0].map((h) => h.trim().toLowerCase().replace(/[\s.\-]+/g, "_"));
    const idCol = norm.findIndex((h) => ID_NAMES.test(h));
    const textCols = TEXT_NAMES.map((n) => [n, norm.indexOf(n)]).filter(([, i]) => i >= 0);
    const wholeText = norm.indexOf("text");
    if (!textCols.length && wholeText < 0) {
      throw new Error(`no text column: name one title, abstract, claims, description or text (found: ${rows[0].join(", ")})`);
    }
    return rows.slice(1).map((r, n) => {
      const doc = {};
      if (idCol >= 0 && (r[idCol] || "").trim()) doc.id = r[idCol].trim();
      else doc.id = `row ${n + 2}`;
      if (wholeText >= 0 && (r[wholeText] || "").trim()) doc.text = r[wholeText];
      else for (const [name, i] of textCols) if ((r[i] || "").trim()) doc[name] = r[i];
      return doc;
    });
  }

  function csvCell(value) {
    let s = value === null || value === undefined ? "" : String(value);
    if (/^[=+\-@\t\r]/.test(s) && !/^-?[\d.]+(;-?[\d.]+)*$/.test(s)) s = "'" + s;  // no spreadsheet formulas
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function resultsCSV(results) {
    const lines = [["id", "codes", "scores", "assigned", "titles", "error"].join(",")];
    results.forEach((res, i) => {
      const preds = res.predictions || [];
      lines.push([
        res.id !== undefined && res.id !== null ? res.id : String(i + 1),
        preds.map((p) => p.code).join(";"),
        preds.map((p) => Number(p.score).toFixed(6)).join(";"),
        (res.labels || []).join(";"),
        preds.map((p) => (p.title || "").replace(/;/g, ",")).join("; "),
        res.error || "",
      ].map(csvCell).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function download() {
    const blob = new Blob([resultsCSV(lastResults)], { type: "text/csv;charset=utf-8" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "patentcpc-predictions.csv" });
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  // ------------------------------------------------------------------ requests

  function chunks(docs) {
    const out = []; let cur = []; let bytes = 0;
    const enc = new TextEncoder(); const budget = Math.floor(limits.max_body_bytes * 0.9) - 100;
    for (const d of docs) {
      const size = enc.encode(JSON.stringify(d)).length + 1;
      if (cur.length && (cur.length >= limits.max_docs || bytes + size > budget)) { out.push(cur); cur = []; bytes = 0; }
      cur.push(d); bytes += size;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  async function classify(docs) {
    const results = [];
    const parts = chunks(docs);
    for (let i = 0; i < parts.length; i++) {
      if (parts.length > 1) setStatus(`Classifying: ${results.length} of ${docs.length} documents done`);
      const body = { documents: parts[i], top_k: topK() };
      if ($("explain").checked) body.explain = true;
      if (coverage() !== null) body.coverage = coverage();
      try {
        const data = await api("predict", body);
        data.documents.forEach((r, j) => results.push(Object.assign({ id: parts[i][j].id }, r)));
      } catch (e) {
        if (parts[i].length === 1) { results.push({ id: parts[i][0].id, error: e.message }); continue; }
        for (const d of parts[i]) {  // one bad document must not sink its neighbours
          try {
            const one = { documents: [d], top_k: topK() };
            if (coverage() !== null) one.coverage = coverage();
            const data = await api("predict", one);
            results.push(Object.assign({ id: d.id }, data.documents[0]));
          } catch (e2) { results.push({ id: d.id, error: e2.message }); }
        }
      }
    }
    return results;
  }

  async function run(button, makeDocs) {
    button.disabled = true;
    try {
      setStatus("Classifying\u2026");
      const docs = await makeDocs();
      const results = await classify(docs);
      render(results);
      const failed = results.filter((r) => r.error).length;
      setStatus(`${results.length} document(s) classified` + (failed ? `, ${failed} failed` : "") + ".", failed > 0);
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  $("paste-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run($("classify"), async () => {
      const doc = {};
      for (const f of ["title", "abstract", "claims"]) if ($(f).value.trim()) doc[f] = $(f).value;
      if (!Object.keys(doc).length) throw new Error("Paste a title, an abstract or claims first.");
      const total = Object.values(doc).reduce((n, v) => n + v.length, 0);
      if (total > limits.max_chars) throw new Error(`The text has ${total} characters; the limit is ${limits.max_chars}.`);
      return [doc];
    });
  });

  $("csv-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = $("csv-file").files[0];
    if (!file) { setStatus("Choose a CSV file first.", true); return; }
    run($("classify-csv"), async () => csvDocuments(await file.text(), file.name));
  });

  // ------------------------------------------------------------------ a patent PDF or scan (POST /read)

  const RECORD_FIELDS = [["publication_number", "Publication"], ["doc_type", "Document"],
    ["publication_date", "Published"], ["application_number", "Application"], ["filing_date", "Filed"],
    ["applicant", "Applicant"], ["assignee", "Assignee"], ["inventors", "Inventors"], ["ipc", "Int. Cl. (printed)"],
    ["cpc", "CPC (printed)"], ["title", "Title"], ["abstract", "Abstract"]];

  function recordNode(rec, data) {
    const list = el("dl", { class: "record" });
    for (const [key, name] of RECORD_FIELDS) {
      const v = rec[key];
      if (v === null || v === undefined || (Array.isArray(v) && !v.length) || v === "") continue;
      list.appendChild(el("dt", {}, name));
      list.appendChild(el("dd", { "data-field": key }, Array.isArray(v) ? v.join("; ") : String(v)));
    }
    const d = data.disagreement || {};
    const audit = !data.printed || !data.printed.length ? "The document prints no CPC or IPC code to compare with."
      : (d.printed_not_predicted || []).length || (d.predicted_not_printed || []).length
        ? `Disagreement: printed but not predicted: ${(d.printed_not_predicted || []).join(", ") || "none"}; ` +
          `predicted but not printed: ${(d.predicted_not_printed || []).join(", ") || "none"}.`
        : `The predicted codes agree with the printed ones (${data.printed.join(", ")}).`;
    return el("div", { class: "record-box" }, list, el("p", { class: "audit" }, audit));
  }

  $("pdf-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("pdf-file").files[0];
    if (!file) { setStatus("Choose a PDF or an image first.", true); return; }
    if (file.size > limits.max_body_bytes) {
      setStatus(`${file.name} has ${file.size} bytes; the limit is ${limits.max_body_bytes}.`, true); return;
    }
    $("classify-pdf").disabled = true;
    setStatus(`Reading ${file.name}\u2026 (a scan is read by OCR: up to a minute)`);
    try {
      const r = await fetch(`read?top_k=${topK()}`, { method: "POST", body: file,
        headers: { "Content-Type": file.type || "application/octet-stream" } });
      let data = null;
      try { data = await r.json(); } catch (e) { data = null; }
      if (!r.ok) throw new Error(data && data.error && data.error.message ? data.error.message : `HTTP ${r.status}`);
      const rec = data.record || {};
      const res = { id: rec.publication_number || file.name, predictions: data.predictions,
        labels: (data.predictions || []).filter((p) => p.above_threshold).map((p) => p.code) };
      render([res]);
      $("results").firstChild.insertBefore(recordNode(rec, data), $("results").firstChild.children[1]);
      setStatus(`${file.name} read and classified.`);
    } catch (e) {
      setStatus(`${file.name}: ${e.message}`, true);
    } finally {
      $("classify-pdf").disabled = false;
    }
  });

  $("download").addEventListener("click", download);
  loadInfo();
})();
