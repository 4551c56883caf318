// Inline SVG charts of GET api/v1/tasks/throughput: tasks ended per slice, and the failure rate.

import { fmtTime, h, s } from "./dom.js";

const WIDTH = 560;
const HEIGHT = 170;
const PAD = { left: 40, right: 8, top: 10, bottom: 22 };

const AGO = { hour: "60 min", day: "24 h" };
const failedOf = (point) => point.failed + point.dead;

function frame(title, maxLabel, spanLabel) {
  const innerBottom = HEIGHT - PAD.bottom;
  return s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": title },
    s("title", {}, title),
    s("line", { x1: PAD.left, y1: innerBottom, x2: WIDTH - PAD.right, y2: innerBottom, class: "axis" }),
    s("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: innerBottom, class: "axis" }),
    s("line", { x1: PAD.left, y1: PAD.top, x2: WIDTH - PAD.right, y2: PAD.top, class: "gridline" }),
    s("text", { x: PAD.left - 4, y: PAD.top + 4, class: "tick", "text-anchor": "end" }, maxLabel),
    s("text", { x: PAD.left - 4, y: innerBottom, class: "tick", "text-anchor": "end" }, "0"),
    s("text", { x: PAD.left, y: HEIGHT - 6, class: "tick" }, `${AGO[spanLabel] || spanLabel} ago`),
    s("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, class: "tick", "text-anchor": "end" }, "now"));
}

function slot(points, i) {
  const width = (WIDTH - PAD.left - PAD.right) / Math.max(points.length, 1);
  return { x: PAD.left + i * width, width };
}

/** Stacked bars: succeeded, failed (failure + dead), other (cancelled + expired). */
export function throughputChart(points, spanLabel) {
  const max = Math.max(1, ...points.map((p) => p.total));
  const scale = (HEIGHT - PAD.top - PAD.bottom) / max;
  const svg = frame(`Tasks ended per slice, last ${spanLabel}`, String(max), spanLabel);
  points.forEach((point, i) => {
    const { x, width } = slot(points, i);
    let y = HEIGHT - PAD.bottom;
    const parts = [["ok", point.succeeded], ["bad", failedOf(point)], ["other", point.cancelled + point.expired]];
    const tip = `${fmtTime(point.start)} – ${fmtTime(point.end)}: ${point.total} ended, ` +
      `${point.succeeded} succeeded, ${failedOf(point)} failed, ${point.cancelled} cancelled, ${point.expired} expired`;
    const group = s("g", {}, s("title", {}, tip));
    for (const [kind, count] of parts) {
      if (!count) continue;
      const height = count * scale;
      y -= height;
      group.append(s("rect", { x: x + 0.5, y, width: Math.max(width - 1, 1), height, class: `bar-${kind}` }));
    }
    group.append(s("rect", { x, y: PAD.top, width, height: HEIGHT - PAD.top - PAD.bottom, class: "hit" }));
    svg.append(group);
  });
  return svg;
}

/** The share of ended tasks that failed, per slice (a gap where nothing ended). */
export function failureRateChart(points, spanLabel) {
  const svg = frame(`Failure rate per slice, last ${spanLabel}`, "100%", spanLabel);
  const inner = HEIGHT - PAD.top - PAD.bottom;
  let path = "";
  let pen = false;
  points.forEach((point, i) => {
    const { x, width } = slot(points, i);
    if (!point.total) {
      pen = false;
      return;
    }
    const rate = failedOf(point) / point.total;
    const y = PAD.top + inner * (1 - rate);
    path += `${pen ? "L" : "M"}${(x + width / 2).toFixed(1)},${y.toFixed(1)} `;
    pen = true;
    svg.append(s("circle", { cx: x + width / 2, cy: y, r: 2.5, class: rate > 0 ? "dot-bad" : "dot-ok" },
      s("title", {}, `${fmtTime(point.start)} – ${fmtTime(point.end)}: ${(rate * 100).toFixed(1)}% ` +
        `(${failedOf(point)} of ${point.total})`)));
  });
  if (path) svg.insertBefore(s("path", { d: path.trim(), class: "rate-line" }), svg.children[1]);
  return svg;
}

/** The totals of a series, as one line of text. */
export function summary(points) {
  const total = points.reduce((sum, p) => sum + p.total, 0);
  const failed = points.reduce((sum, p) => sum + failedOf(p), 0);
  const rate = total ? ((failed / total) * 100).toFixed(1) : "0.0";
  return h("p", { class: "chart-summary" }, `${total} ended, ${failed} failed (${rate}%)`);
}
