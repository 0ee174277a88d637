// The memory report's webview: draws the ReportView the extension sends (extension/src/report/model.ts lays it
// out), with no dependencies. Colours are VS Code theme variables; text goes in with textContent only.
// The last view is kept with setState, so a webview re-created after being hidden paints at once.
(function () {
  'use strict';
  const vscode = acquireVsCodeApi();
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  function el(ns, tag, attrs, text) {
    const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const color = (cssVar) => `var(${cssVar})`;

  function drawChart(view) {
    const svg = $('chart');
    const { width, height, plot } = view.chart;
    svg.replaceChildren();
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.dataset.points = String(view.pointCount);
    svg.dataset.thresholds = String(view.thresholds.length);
    svg.dataset.markers = String(view.markers.length);
    svg.dataset.window = String(view.windowSeconds);

    const grid = el(SVG, 'g', { class: 'grid' });
    for (const tick of view.yTicks) {
      grid.append(el(SVG, 'line', { x1: plot.x, x2: plot.x + plot.w, y1: tick.pos, y2: tick.pos }));
      grid.append(el(SVG, 'text', { x: plot.x - 6, y: tick.pos + 4, 'text-anchor': 'end' }, tick.label));
    }
    for (const tick of view.xTicks) {
      grid.append(el(SVG, 'line', { x1: tick.pos, x2: tick.pos, y1: plot.y, y2: plot.y + plot.h }));
      grid.append(el(SVG, 'text', { x: tick.pos, y: plot.y + plot.h + 18, 'text-anchor': 'middle' }, tick.label));
    }
    svg.append(grid);

    const thresholds = el(SVG, 'g', { class: 'thresholds' });
    for (const th of view.thresholds) {
      const line = el(SVG, 'line', { class: 'threshold', x1: plot.x, x2: plot.x + plot.w, y1: th.y, y2: th.y,
        'stroke-dasharray': th.dash, 'data-label': th.label });
      line.style.stroke = color(th.color);
      line.append(el(SVG, 'title', {}, th.label));
      thresholds.append(line);
      const label = el(SVG, 'text', { class: 'threshold-label', x: plot.x + plot.w - 4, y: th.y - 3, 'text-anchor': 'end' },
        th.label);
      label.style.fill = color(th.color);
      thresholds.append(label);
    }
    svg.append(thresholds);

    for (const s of view.series) {
      if (!s.path) continue;
      const path = el(SVG, 'path', { class: 'series', d: s.path, 'data-series': s.id, 'data-count': s.count });
      path.style.stroke = color(s.color);
      path.append(el(SVG, 'title', {}, `${s.label}: ${s.last}`));
      svg.append(path);
    }

    const markers = el(SVG, 'g', { class: 'markers' });
    for (const m of view.markers) {
      const g = el(SVG, 'g', { class: `marker marker-${m.kind}`, tabindex: 0 });
      g.append(el(SVG, 'title', {}, m.title));
      const line = el(SVG, 'line', { x1: m.x, x2: m.x, y1: plot.y, y2: plot.y + plot.h });
      line.style.stroke = color(m.color);
      const dot = el(SVG, 'circle', { cx: m.x, cy: plot.y + 8, r: 7 });
      dot.style.fill = color(m.color);
      g.append(line, dot, el(SVG, 'text', { x: m.x, y: plot.y + 12, 'text-anchor': 'middle' }, m.label));
      markers.append(g);
    }
    svg.append(markers);
    if (view.pointCount === 0) {
      svg.append(el(SVG, 'text', { class: 'empty', x: plot.x + plot.w / 2, y: plot.y + plot.h / 2, 'text-anchor': 'middle' },
        'No samples yet: waiting for the memory monitor…'));
    }
  }

  function fill(tbody, rows, keys, empty) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = el(null, 'tr', { class: 'empty' });
      tr.append(el(null, 'td', { colspan: keys.length }, empty));
      tbody.append(tr);
      return;
    }
    for (const row of rows) {
      const tr = el(null, 'tr', { class: 'row' });
      for (const k of keys) tr.append(el(null, 'td', {}, String(row[k])));
      tbody.append(tr);
    }
  }

  function render(view) {
    drawChart(view);
    $('status').textContent = view.status;
    const summary = $('summary');
    summary.replaceChildren(...view.summary.map((line) => el(null, 'li', {}, line)));
    const legend = $('legend');
    legend.replaceChildren(...view.series.map((s) => {
      const item = el(null, 'span', { class: 'legend-item' });
      const swatch = el(null, 'span', { class: 'swatch' });
      swatch.style.background = color(s.color);
      item.append(swatch, document.createTextNode(`${s.label} ${s.last}`));
      return item;
    }));
    fill($('runs').tBodies[0], view.runs, ['run', 'state', 'step', 'microBatch', 'treeRss', 'vram', 'lastEvent'],
      'No guarded runs.');
    fill($('processes').tBodies[0], view.processes, ['pid', 'name', 'rss', 'share'], 'No process list yet.');
    fill($('gpuProcesses').tBodies[0], view.gpuProcesses || [], ['gpu', 'pid', 'name', 'user', 'vram', 'command'],
      'No process holds GPU memory (or no GPU).');
    $('events').replaceChildren(...(view.events.length ? view.events.map((e) => {
      const li = el(null, 'li', { class: `event event-${e.kind}` });
      const dot = el(null, 'span', { class: 'swatch' });
      dot.style.background = color(e.color);
      li.append(dot, el(null, 'span', { class: 'muted' }, `${e.time} UTC `), document.createTextNode(e.message));
      return li;
    }) : [el(null, 'li', { class: 'muted' }, 'No events in the history yet.')]));
    for (const button of document.querySelectorAll('button[data-window]')) {
      button.setAttribute('aria-pressed', String(Number(button.dataset.window) === view.windowSeconds));
    }
  }

  window.addEventListener('message', (event) => {
    const msg = event.data;
    if (msg && msg.type === 'view') {
      render(msg.view);
      vscode.setState({ view: msg.view, windowSeconds: msg.view.windowSeconds });
    } else if (msg && msg.type === 'status') {
      $('status').textContent = msg.status;
    }
  });
  for (const button of document.querySelectorAll('button[data-window]')) {
    button.addEventListener('click', () => vscode.postMessage({ type: 'window', seconds: Number(button.dataset.window) }));
  }
  const saved = vscode.getState();
  if (saved && saved.view) render(saved.view);
  vscode.postMessage({ type: 'ready' });
}());
