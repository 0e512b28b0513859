// report.html's script: draws the page from its data (the JSON above), with no network.
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function decode(entry) {
  const bytes = Uint8Array.from(atob(entry.bytes), (c) => c.charCodeAt(0));
  if (entry.type === "float32") return new Float32Array(bytes.buffer);
  const span = entry.high - entry.low;  // 8-bit levels of the map's range
  return Float32Array.from(bytes, (level) => entry.low + (level / 255) * span);
}

function number(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}

const LUTS = Object.fromEntries(Object.entries(DATA.luts).map(([name, text]) =>
  [name, Uint8Array.from(atob(text), (c) => c.charCodeAt(0))]));

// Over the photo (the figure's overlay): each pixel's color as opaque as the map is strong there,
// up to DATA.overlay_alpha, the photo in gray beneath it; else the map alone
let overlay = Boolean(DATA.overlay);

function strength(value, entry) {
  const span = entry.high - entry.low || 1;
  if (entry.low >= 0) return (value - entry.low) / span;  // a map of one sign: its own range
  if (entry.high <= 0) return (entry.high - value) / span;
  return Math.abs(value) / Math.max(Math.abs(entry.low), Math.abs(entry.high), 1e-300);
}

function paint(canvas, values, entry, photo) {
  const [height, width] = entry.shape;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const lut = LUTS[entry.cmap], span = entry.high - entry.low || 1, over = overlay && photo;
  values.forEach((value, index) => {
    const level = Math.max(0, Math.min(255, Math.round(((value - entry.low) / span) * 255)));
    const alpha = over ? Math.round(255 * DATA.overlay_alpha * strength(value, entry)) : 255;
    image.data.set([lut[3 * level], lut[3 * level + 1], lut[3 * level + 2], alpha], 4 * index);
  });
  context.putImageData(image, 0, 0);
  canvas.style.backgroundImage = over ? `url(${photo})` : "none";
}

function colorBar(entry, height) {
  const bar = element("canvas", {class: "bar", width: 1, height: 256});
  const context = bar.getContext("2d"), lut = LUTS[entry.cmap];
  for (let level = 0; level < 256; level++) {
    context.fillStyle = `rgb(${lut[3 * level]},${lut[3 * level + 1]},${lut[3 * level + 2]})`;
    context.fillRect(0, 255 - level, 1, 1);
  }
  return element("div", {class: "scale", style: `height:${height}px`}, element("span", {}, number(entry.high)),
                 bar, element("span", {}, number(entry.low)));
}

const tip = element("div", {id: "tip"});
let zoom = 1;

function mapFigure(entry, photo) {
  const figure = element("figure", {"data-key": entry.key}, element("figcaption", {}, `${entry.name} (${entry.key})`));
  if (entry.error) {
    figure.append(element("div", {class: "failed"}, entry.error));
    return figure;
  }
  const values = decode(entry), canvas = element("canvas", {class: "map", "data-width": entry.shape[1]});
  paint(canvas, values, entry, photo);
  canvas.repaint = () => paint(canvas, values, entry, photo);
  canvas.addEventListener("mousemove", (event) => {
    const column = Math.floor((event.offsetX / canvas.clientWidth) * entry.shape[1]);
    const row = Math.floor((event.offsetY / canvas.clientHeight) * entry.shape[0]);
    if (row < 0 || column < 0 || row >= entry.shape[0] || column >= entry.shape[1]) return;
    tip.textContent = `${entry.key} [${row}, ${column}] = ${number(values[row * entry.shape[1] + column])}`;
    Object.assign(tip.style, {display: "block", left: `${event.clientX + 12}px`, top: `${event.clientY + 12}px`});
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  figure.append(element("div", {class: "panel"}, canvas, colorBar(entry, 150)));
  return figure;
}

function setZoom(value) {
  zoom = value;
  for (const canvas of document.querySelectorAll("canvas.map, img.input")) {
    const width = Number(canvas.dataset.width) * zoom;
    canvas.style.width = `${Math.max(width, 150)}px`;
  }
  for (const scale of document.querySelectorAll(".scale")) {
    scale.style.height = `${scale.previousSibling.clientHeight}px`;
  }
}

function sortable(table, rows, columns) {
  const body = table.tBodies[0];
  const fill = () => body.replaceChildren(...rows.map((row) => {
    const line = element("tr", {}, ...columns.map((column) => element("td", {}, number(row[column.key]))));
    if (row.onclick) line.addEventListener("click", row.onclick);
    return line;
  }));
  for (const [index, column] of columns.entries()) {
    const head = table.tHead.rows[0].cells[index];
    head.addEventListener("click", () => {
      const descending = head.getAttribute("aria-sort") === "ascending";
      for (const cell of table.tHead.rows[0].cells) cell.removeAttribute("aria-sort");
      head.setAttribute("aria-sort", descending ? "descending" : "ascending");
      const key = column.key, sign = descending ? -1 : 1;
      rows.sort((a, b) => {  // empty cells last, either way
        const x = a[key], y = b[key];
        if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
        if (y === null || y === undefined) return -1;
        return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sign;
      });
      fill();
    });
  }
  fill();
  return table;
}

function scoresTable(rows, leading) {
  const metrics = DATA.columns.filter((column) => rows.some((row) => row[column.key] !== null &&
                                                                      row[column.key] !== undefined));
  const columns = [...leading, ...metrics, {key: "seconds", name: "seconds", direction: "-"}, {key: "error", name: "error"}];
  const head = element("tr", {}, ...columns.map((column) => element("th", {"data-key": column.key,
    title: column.direction && column.direction !== "-" ? `${column.direction} is better` : ""}, column.name,
    element("small", {}, column.direction && column.direction !== "-" ? `${column.direction} is better` : ""))));
  const table = sortable(element("table", {class: "scores"}, element("thead", {}, head), element("tbody")), rows, columns);
  return element("div", {class: "table"}, table);  // scrolls within 1,400 pixels where it is wider
}

// curves.png's colors: matplotlib's default cycle (tab10), the random rankings gray and dashed
const CYCLE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf"];

function curvesChart(curves, which) {
  const width = 360, height = 230, left = 40, bottom = 34, names = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(names, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height + 14 * curves.length);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(names, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    svg.append(node);
  };
  add("rect", {x: left, y: 4, width: width - left - 4, height: height - bottom - 4, fill: "none", stroke: "#999"});
  for (const tick of [0, 0.5, 1]) {  // the same ticks on both axes: fractions, and probabilities
    const x = left + tick * (width - left - 4), y = 4 + (1 - tick) * (height - bottom - 8);
    add("text", {x: x - 6, y: height - bottom + 12}, String(tick));
    add("text", {x: left - 22, y: y + 4}, String(tick));
  }
  add("text", {x: left, y: height - 6}, `${which}: fraction of the image ${which === "deletion" ? "deleted" : "inserted"}`);
  add("text", {x: 2, y: 14}, "p");
  let drawn = 0;
  curves.forEach((curve, index) => {
    const values = curve[which], color = curve.key === "random" ? "#7f7f7f" : CYCLE[drawn++ % CYCLE.length];
    const points = values.map((value, step) => [left + (step / Math.max(1, values.length - 1)) * (width - left - 4),
                                                 4 + (1 - value) * (height - bottom - 8)].join(",")).join(" ");
    add("polyline", {points, fill: "none", stroke: color, "stroke-width": 1.3,
                     "stroke-dasharray": curve.key === "random" ? "4 3" : "none"});
    add("text", {x: left, y: height + 12 + 14 * index, fill: color},
        `${curve.name}: area ${number(curve[which + "_area"])}`);
  });
  return svg;
}

function runPage(main) {
  for (const image of DATA.images) {
    const input = element("img", {class: "input", src: image.input, alt: image.stem, "data-width": image.maps.find(
      (entry) => entry.shape)?.shape[1] ?? 150});
    main.append(element("h2", {}, image.stem), element("p", {}, `${image.source}: ${image.caption}`),
                element("div", {class: "maps"}, element("figure", {}, element("figcaption", {}, "input"), input),
                        ...image.maps.map((entry) => mapFigure(entry, image.gray)),
                        element("figure", {class: "top"}, element("figcaption", {}, "top classes"),
                                element("ol", {}, ...image.top.map(([name, p]) => element("li", {}, `${name}: ${number(p)}`))))));
    if (image.curves.length) {
      main.append(element("h3", {}, "faithfulness curves"),
                  element("div", {class: "curves"}, curvesChart(image.curves, "deletion"),
                          curvesChart(image.curves, "insertion")));
    }
  }
  main.append(element("h2", {}, "scores"),
              scoresTable(DATA.rows, [{key: "stem", name: "image"}, {key: "method", name: "method"}]));
}

function datasetPage(main) {
  main.append(element("h2", {}, "leaderboard"),
              sortable(element("table", {class: "leaderboard"}, element("thead", {}, element("tr", {},
                ...["method", "images", "mean", "median", "low", "high", "seconds"].map((name) =>
                  element("th", {"data-key": name}, name)))), element("tbody")), DATA.leaderboard,
                ["method", "images", "mean", "median", "low", "high", "seconds"].map((key) => ({key}))),
              element("pre", {}, DATA.boards));
  const drill = element("div", {id: "drill"});
  const byKey = Object.fromEntries(DATA.images.map((image) => [image.key, image]));
  const rows = DATA.rows.map((row) => ({...row, onclick: () => {
    const image = byKey[row.key];
    drill.replaceChildren(element("h3", {}, `${row.image}: predicted ${row.predicted}, label ${number(row.label)}`),
                          image ? element("div", {class: "maps"}, ...image.maps.map((entry) => mapFigure(entry))) :
                            element("p", {}, `this page holds the maps of the first ${DATA.images.length} images; `
                                             + `this image's are in maps/${row.key}.npz`));
    setZoom(zoom);
    drill.scrollIntoView();
  }}));
  const listed = DATA.total > DATA.rows.length ?
    `the first ${DATA.rows.length} of ${DATA.total} rows (click a row for its maps; results.csv has them all)` :
    "every image and method (click a row for its maps)";
  main.append(element("h2", {}, listed),
              scoresTable(rows, [{key: "image", name: "image"}, {key: "method", name: "method"}]),
              element("h2", {}, "maps of the chosen image"), drill);
}

function render() {
  const main = element("main");
  const slider = element("input", {type: "range", id: "zoom", min: 1, max: 8, step: 1, value: 1});
  slider.addEventListener("input", () => setZoom(Number(slider.value)));
  main.append(element("h1", {}, DATA.title));
  if (DATA.incomplete) main.append(element("div", {class: "incomplete"}, DATA.incomplete));
  if (DATA.header) {
    main.append(element("p", {class: "header"}, Object.entries(DATA.header).filter(([, v]) => typeof v !== "object")
      .map(([k, v]) => `${k}: ${v}`).join(" · ")));
  }
  const over = element("input", {type: "checkbox", id: "overlay"});
  over.checked = overlay;
  over.addEventListener("change", () => {
    overlay = over.checked;
    for (const canvas of document.querySelectorAll("canvas.map")) canvas.repaint();
  });
  main.append(element("div", {class: "controls"}, "zoom ", slider, " ",
                      ...(DATA.kind === "run" ? [element("label", {}, over, " over the photo")] : []),
                      " (hover over a map for its values; click a column's heading to sort by it)"));
  (DATA.kind === "run" ? runPage : datasetPage)(main);
  main.append(element("h2", {}, "run record"), element("details", {}, element("summary", {}, "run.json"),
                                                      element("pre", {}, JSON.stringify(DATA.record, null, 2))));
  document.body.append(main, tip);
  setZoom(1);
  document.body.dataset.rendered = "true";
}

render();
