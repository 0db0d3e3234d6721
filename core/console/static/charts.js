// Small SVG charts drawn in the page (no library, nothing fetched): stacked columns over categories
// (e.g. days) and stacked horizontal bars (e.g. stores). Colours come from CSS classes in console.css.
import { h } from "/console/static/lib.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= value) return m * exp;
  return 10 * exp;
}

/** A legend: [{name, className}]. */
export function legend(series) {
  return h("div", { class: "legend" }, series.map((x) => h("span", { class: `swatch-${x.className}` }, x.name)));
}

/**
 * Stacked columns. categories: labels; series: [{name, className, values[]}] (same length as categories).
 * format(value) labels the axis and tooltips; labelEvery: show every n-th category label; `width` is
 * the drawing's width in px-like units (larger for a wide panel, so the text keeps its size).
 */
export function stackedColumns({ categories, series, format = String, height = 220, labelEvery = 1, title = "", width = 640 }) {
  const left = 56, right = 8, top = 10, bottom = 28;
  const innerW = width - left - right, innerH = height - top - bottom;
  const totals = categories.map((_, i) => series.reduce((sum, x) => sum + (x.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  const grid = s("g", { class: "grid" });
  for (let t = 0; t <= 4; t++) {
    const y = top + innerH - (innerH * t) / 4;
    grid.append(s("line", { x1: left, x2: width - right, y1: y, y2: y }));
    grid.append(s("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, format((max * t) / 4)));
  }
  svg.append(grid);
  const band = innerW / Math.max(1, categories.length);
  const barW = Math.max(2, band * 0.72);
  categories.forEach((label, i) => {
    let y = top + innerH;
    const x = left + i * band + (band - barW) / 2;
    const g = s("g", { "data-category": label });
    for (const x_ of series) {
      const v = x_.values[i] || 0;
      if (v <= 0) continue;
      const hgt = (innerH * v) / max;
      y -= hgt;
      g.append(s("rect", { x, y, width: barW, height: Math.max(0.5, hgt), class: x_.className },
        s("title", {}, `${label} · ${x_.name}: ${format(v)}`)));
    }
    svg.append(g);
    if (i % labelEvery === 0 || i === categories.length - 1) {
      svg.append(s("text", { x: x + barW / 2, y: height - 10, "text-anchor": "middle" }, label));
    }
  });
  svg.append(s("line", { class: "axis", x1: left, x2: width - right, y1: top + innerH, y2: top + innerH }));
  return h("div", {}, svg, legend(series));
}

/**
 * Stacked horizontal bars. rows: [{label, segments: [{name, className, value}]}]; the total is written
 * at the end of each bar. `width` is the drawing's width in px-like units (the text size follows it).
 */
export function hbars({ rows, format = String, title = "", series, width = 440 }) {
  const labelW = Math.min(200, Math.round(width * 0.3)), right = 76, rowH = 22, gap = 8, top = 4;
  const height = top * 2 + Math.max(1, rows.length) * (rowH + gap);
  const totals = rows.map((r) => r.segments.reduce((sum, x) => sum + Math.max(0, x.value), 0));
  const max = niceMax(Math.max(0, ...totals));
  const innerW = width - labelW - right;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  rows.forEach((row, i) => {
    const y = top + i * (rowH + gap);
    const g = s("g", { "data-row": row.label });
    const chars = Math.floor(labelW / 9);
    const label = row.label.length > chars ? `${row.label.slice(0, chars - 1)}…` : row.label;
    g.append(s("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, label, s("title", {}, row.label)));
    let x = labelW;
    for (const seg of row.segments) {
      if (seg.value <= 0) continue;
      const w = (innerW * seg.value) / max;
      g.append(s("rect", { x, y, width: Math.max(0.5, w), height: rowH, rx: 3, class: seg.className },
        s("title", {}, `${row.label} · ${seg.name}: ${format(seg.value)}`)));
      x += w;
    }
    g.append(s("text", { x: x + 6, y: y + rowH / 2 + 4, class: "value-label" }, format(totals[i])));
    svg.append(g);
  });
  if (!rows.length) svg.append(s("text", { x: width / 2, y: height / 2 + 4, "text-anchor": "middle" }, "no data"));
  return h("div", {}, svg, series ? legend(series) : null);
}
