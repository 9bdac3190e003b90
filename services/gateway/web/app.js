// convertmesh's page: the public REST API only (POST /api/jobs, GET /api/jobs/{id}/events,
// downloadUrl, POST /api/media/<tool>), so it works against any Convertly-compatible server.
// No innerHTML anywhere: every node is built with createElement/textContent (the page runs
// under a Content-Security-Policy that requires Trusted Types for such sinks).

const KEY_STORE = "convertmesh.apiKey";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const FORMATS = {
  Images: ["jpg", "png", "webp", "avif", "tiff", "gif", "heif", "svg", "pdf"],
  Video: ["mp4", "webm", "mov"],
  Audio: ["mp3", "wav", "ogg", "m4a", "flac"],
  Archives: ["zip", "tar", "tgz", "7z", "gz", "bz2", "xz"],
};
const PRESETS = ["original", "website", "email", "instagram", "linkedin", "ecommerce", "square"];
const FAMILY = {};
for (const ext of "jpg jpeg png webp avif heic heif tif tiff gif bmp ico svg pdf".split(" ")) FAMILY[ext] = "Images";
for (const ext of "mp4 m4v mov webm mkv avi ts mpg mpeg ogv".split(" ")) FAMILY[ext] = "Video";
for (const ext of "mp3 m4a aac wav ogg opus flac".split(" ")) FAMILY[ext] = "Audio";
for (const ext of "zip tar tgz gz bz2 xz 7z rar".split(" ")) FAMILY[ext] = "Archives";
const DEFAULT_FORMAT = { Images: "webp", Video: "mp4", Audio: "mp3", Archives: "zip" };

// API.md "Media tools": [name, summary, [field, label, type, default, choices]]
const TOOLS = [
  ["convert", "Audio or video to another format", [["format", "Format", "select", "mp4", ["mp4", "webm", "mov", "mp3", "m4a", "wav", "ogg", "flac"]], ["compressionLevel", "Compression level (1–100)", "number", 75]]],
  ["extract-audio", "The audio track of a video", [["format", "Format", "select", "mp3", ["mp3", "m4a", "wav", "ogg", "flac"]], ["bitrateKbps", "Bitrate (kb/s)", "number", 192]]],
  ["trim", "Cut a span of audio or video", [["start", "Start (s)", "number", 0], ["duration", "Duration (s)", "number", 10]]],
  ["gif", "An animated GIF from a video", [["start", "Start (s)", "number", 0], ["duration", "Duration (s)", "number", 4], ["width", "Width (px)", "number", 480], ["fps", "Frames per second", "number", 12]]],
  ["thumbnail", "A small picture of an image or video", [["format", "Format", "select", "jpg", ["jpg", "png", "webp", "avif"]], ["width", "Width (px)", "number", 512], ["height", "Height (px)", "number", 512], ["fit", "Fit", "select", "cover", ["cover", "contain", "inside"]], ["timestamp", "Video time (s)", "number", 1]]],
  ["poster-frame", "One frame of a video", [["timestamp", "Time (s)", "number", 1], ["format", "Format", "select", "jpg", ["jpg", "png", "webp", "avif"]], ["width", "Width (px)", "number", 1280]]],
  ["storyboard", "A grid of frames across a video", [["frames", "Frames", "number", 12], ["columns", "Columns", "number", 4], ["width", "Tile width (px)", "number", 240]]],
  ["inspect", "Describe a media file", []],
  ["strip-metadata", "Remove metadata (EXIF, GPS, tags)", []],
  ["image-to-pdf", "Images into one PDF", [["pageSize", "Page size", "select", "auto", ["auto", "letter", "a4"]]]],
  ["pdf-preview", "A page of a PDF as an image", [["page", "Page", "number", 1], ["format", "Format", "select", "jpg", ["jpg", "png", "webp", "avif"]], ["width", "Width (px)", "number", 1600]]],
  ["watermark", "A text on an image or video", [["text", "Text", "text", ""], ["position", "Position", "select", "bottom-right", ["top-left", "top-right", "bottom-left", "bottom-right", "center"]], ["opacity", "Opacity (0–1)", "number", 0.72]]],
  ["transform", "Resize, rotate or flip an image", [["format", "Format", "select", "webp", ["webp", "jpg", "png", "avif"]], ["width", "Width (px)", "number", ""], ["height", "Height (px)", "number", ""], ["rotate", "Rotate (degrees)", "number", ""]]],
];

const $ = (id) => document.getElementById(id);
const state = { files: [], busy: false };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function humanBytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KB", "MB", "GB"];
  let size = n;
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) { size /= 1000; unit += 1; }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

function parseSize(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(k|m|g)?i?b?\s*$/i.exec(text || "");
  if (!match) return null;
  const factor = { undefined: 1, k: 1e3, m: 1e6, g: 1e9 }[match[2] && match[2].toLowerCase()];
  return Math.round(parseFloat(match[1]) * factor);
}

// -- the key --------------------------------------------------------------------------------

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }
function authHeaders() { return apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {}; }

function say(id, text, bad = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("bad", bad);
}

async function errorText(response) {
  try {
    const body = await response.json();
    const parts = [body.error || `HTTP ${response.status}`];
    if (typeof body.detail === "string" && body.detail) parts.push(body.detail);
    const fields = Array.isArray(body.fields) ? body.fields
      : (body.detail && typeof body.detail === "object" && body.detail.fields) || null;
    if (fields && !Array.isArray(fields)) {
      parts.push(Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("; "));
    } else if (Array.isArray(fields)) {
      parts.push(fields.map((f) => (typeof f === "object" ? `${f.field || f.name}: ${f.message || ""}` : f)).join("; "));
    }
    return parts.join(" ");
  } catch {
    return `The server answered HTTP ${response.status}.`;
  }
}

async function checkKey() {
  if (!apiKey()) { say("key-status", "Enter the API key you were given. It is kept in this browser only."); return false; }
  try {
    const response = await fetch("/api/jobs?limit=1", { headers: authHeaders() });
    if (response.ok) { say("key-status", "Key saved in this browser and accepted by the server."); return true; }
    say("key-status", response.status === 401 ? "The server does not accept this key." : await errorText(response), true);
  } catch {
    say("key-status", "The server cannot be reached.", true);
  }
  return false;
}

function setUpKey() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORE, $("api-key").value.trim());
    await checkKey();
  });
  $("key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORE);
    $("api-key").value = "";
    say("key-status", "The key is forgotten by this browser.");
  });
  checkKey();
}

// -- choosing files and options --------------------------------------------------------------

function fillFormatSelect(select, { inherit, keep }) {
  select.replaceChildren();
  if (inherit) select.append(el("option", { value: "", text: "Same as all files" }));
  if (keep) select.append(el("option", { value: "", text: "Keep each file's format" }));
  if (!inherit && !keep) select.append(el("option", { value: "", text: "Best for each file" }));
  for (const [group, formats] of Object.entries(FORMATS)) {
    const optgroup = el("optgroup", { label: group });
    for (const format of formats) optgroup.append(el("option", { value: format, text: format.toUpperCase() }));
    select.append(optgroup);
  }
}

function fillPresetSelect(select, inherit) {
  select.replaceChildren(el("option", { value: "", text: inherit ? "Same as all files" : "Original size" }));
  for (const preset of PRESETS.slice(1)) select.append(el("option", { value: preset, text: preset }));
}

function jobType() { return document.querySelector('input[name="job-type"]:checked').value; }

function extension(name) { return (name.split(".").pop() || "").toLowerCase(); }

function addFiles(list) {
  for (const file of list) {
    const entry = { file, id: `f${state.files.length}-${Date.now()}` };
    state.files.push(entry);
    renderFile(entry);
  }
  updateStart();
}

function optionInputs(entry) {
  const prefix = entry.id;
  const format = el("select", { id: `${prefix}-format`, "data-option": "format" });
  fillFormatSelect(format, { inherit: true });
  const resize = el("select", { id: `${prefix}-resize`, "data-option": "resize" });
  fillPresetSelect(resize, true);
  const quality = el("input", { id: `${prefix}-quality`, type: "number", min: 1, max: 100, inputmode: "numeric", "data-option": "quality", placeholder: "same as all" });
  const target = el("input", { id: `${prefix}-target`, type: "text", "data-option": "target", placeholder: "same as all" });
  entry.inputs = { format, resize, quality, target };
  return el("div", { className: "grid" },
    el("div", {}, el("label", { for: format.id, text: "Format" }), format),
    el("div", {}, el("label", { for: resize.id, text: "Size preset" }), resize),
    el("div", {}, el("label", { for: quality.id, text: "Quality" }), quality),
    el("div", {}, el("label", { for: target.id, text: "Target size" }), target));
}

function renderFile(entry) {
  const remove = el("button", { type: "button", className: "secondary", text: "Remove", "aria-label": `Remove ${entry.file.name}` });
  remove.addEventListener("click", () => {
    state.files = state.files.filter((other) => other !== entry);
    item.remove();
    updateStart();
  });
  const item = el("li", { "data-file": entry.file.name },
    el("div", { className: "file-head" },
      el("span", { className: "file-name", text: entry.file.name }),
      el("span", { className: "file-size", text: humanBytes(entry.file.size) }),
      remove),
    el("details", {}, el("summary", { text: "Options for this file" }), optionInputs(entry)));
  $("file-list").append(item);
}

function updateStart() {
  const ready = state.files.length > 0 || $("source-url").value.trim() !== "";
  $("start").disabled = state.busy || !ready;
  $("start").textContent = jobType() === "compress" ? "Compress" : "Convert";
}

function setUpDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove("over"); });
  }
  zone.addEventListener("drop", (event) => addFiles(event.dataTransfer.files));
  // Files dropped anywhere else on the page must not make the browser leave it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

function chosenOptions(entry) {
  const all = {
    format: $("all-format").value,
    resize: $("all-resize").value,
    quality: $("all-quality").value,
    target: $("all-target").value,
  };
  const own = entry ? Object.fromEntries(Object.entries(entry.inputs).map(([k, input]) => [k, input.value])) : {};
  const pick = (name) => (own[name] ? own[name] : all[name]);
  let format = pick("format");
  const name = entry ? entry.file.name : $("source-url").value;
  if (!format && jobType() === "convert") format = DEFAULT_FORMAT[FAMILY[extension(name)]] || "zip";
  return { format, resize: pick("resize"), quality: pick("quality"), target: pick("target") };
}

// The per-file array form of every option any file sets; null where a file leaves it unset.
function optionFields(chosen) {
  const fields = [];
  const columns = [
    ["formats", (o) => o.format || null],
    ["resizes", (o) => o.resize || null],
    ["compressions", (o) => (o.quality ? Number(o.quality) : null)],
    ["modes", (o) => (o.target ? "target-size" : null)],
    ["targetByteValues", (o) => (o.target ? parseSize(o.target) : null)],
  ];
  for (const [name, value] of columns) {
    const values = chosen.map(value);
    if (values.some((v) => v !== null)) fields.push([name, JSON.stringify(values)]);
  }
  return fields;
}

function validate(chosen) {
  for (const options of chosen) {
    if (options.target && !parseSize(options.target)) return `“${options.target}” is not a size (try 200KB or 1.5MB).`;
    if (options.quality && !(Number(options.quality) >= 1 && Number(options.quality) <= 100)) return "Quality must be from 1 to 100.";
  }
  return null;
}

// -- running a job ---------------------------------------------------------------------------

function upload(form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/jobs");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.setRequestHeader("Idempotency-Key", crypto.randomUUID());
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener("load", () => resolve(new Response(request.responseText, { status: request.status, headers: { "content-type": request.getResponseHeader("content-type") || "" } })));
    request.addEventListener("error", () => reject(new Error("The upload failed: the server cannot be reached.")));
    request.addEventListener("abort", () => reject(new Error("The upload was stopped.")));
    request.send(form);
  });
}

async function followEvents(jobId, onJob) {
  const response = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/events`, {
    headers: { ...authHeaders(), Accept: "text/event-stream" },
  });
  if (!response.ok || !(response.headers.get("content-type") || "").includes("text/event-stream")) {
    throw new Error("no event stream");
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the event stream ended early");
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (data.length && event === "job") {
          const job = JSON.parse(data.join("\n"));
          onJob(job);
          if (isFinished(job)) { reader.cancel(); return job; }
        }
        event = "message";
        data = [];
      } else if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
  }
}

function isFinished(job) { return TERMINAL.has(job.status) || job.cancelled === true; }

async function pollJob(jobId, onJob) {
  let delay = 300;
  for (;;) {
    const response = await fetch(`/api/jobs/${encodeURIComponent(jobId)}`, { headers: authHeaders() });
    if (!response.ok) throw new Error(await errorText(response));
    const job = await response.json();
    onJob(job);
    if (isFinished(job)) return job;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(2000, delay * 1.5);
  }
}

async function waitForJob(jobId, onJob) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try { return await followEvents(jobId, onJob); } catch { /* reopen, then poll */ }
  }
  return pollJob(jobId, onJob);
}

function resultRow(name, size) {
  const upload = el("progress", { max: 100, value: 0, "aria-label": `Upload of ${name}` });
  const work = el("progress", { max: 100, value: 0, "aria-label": `Processing of ${name}` });
  const status = el("p", { className: "status", text: "Waiting to upload" });
  const body = el("div", {});
  const row = el("li", { "data-result": name },
    el("div", { className: "file-head" }, el("span", { className: "file-name", text: name }), el("span", { className: "file-size", text: humanBytes(size) })),
    el("div", { className: "bars" }, el("span", { text: "Upload" }), upload, el("span", { text: "Processing" }), work),
    status, body);
  $("results").append(row);
  return { row, upload, work, status, body };
}

function isSigned(url) { return /[?&]signature=/.test(url); }

async function fetchBlob(url) {
  const response = await fetch(url, { headers: isSigned(url) ? {} : authHeaders() });
  if (!response.ok) throw new Error(await errorText(response));
  return response.blob();
}

// A signed link works as it is (the browser downloads it, no key needed); an unsigned one is
// fetched with the key, then handed to the browser as a blob.
function downloadLink(url, filename, label) {
  const link = el("a", { className: "button-link", href: url, download: filename, text: label });
  if (!isSigned(url)) {
    link.addEventListener("click", async (event) => {
      if (link.dataset.ready) return;
      event.preventDefault();
      try {
        link.href = URL.createObjectURL(await fetchBlob(url));
        link.dataset.ready = "1";
        link.click();
      } catch (error) {
        link.replaceWith(el("span", { className: "bad", text: error.message }));
      }
    });
  }
  return link;
}

function outputName(item) {
  if (item.originalFilename) return item.filename;
  const stem = item.filename.replace(/\.[^.]+$/, "");
  const ext = item.format === "tgz" ? "tar.gz" : item.format || "";
  return ext ? `${stem}.${ext}` : item.filename;
}

async function showResult(view, item) {
  view.work.value = 100;
  if (item.status !== "completed") {
    view.status.textContent = `Failed: ${item.errorMessage || "no output"}`;
    view.status.classList.add("bad");
    view.row.dataset.status = "failed";
    return;
  }
  const saved = typeof item.savedPercent === "number" ? `, ${Math.abs(item.savedPercent).toFixed(0)}% ${item.savedPercent >= 0 ? "smaller" : "larger"}` : "";
  const size = item.width && item.height ? `, ${item.width}×${item.height}` : "";
  view.status.textContent = `Done: ${humanBytes(item.finalSize)}${saved}${size}`;
  view.status.classList.add("good");
  view.row.dataset.status = "completed";
  const name = outputName(item);
  view.body.append(el("div", { className: "result-actions" }, downloadLink(item.downloadUrl, name, `Download ${name}`)));
  if ((item.mimeType || "").startsWith("image/") && (item.finalSize || 0) < 20e6) {
    try {
      const src = isSigned(item.downloadUrl) ? item.downloadUrl : URL.createObjectURL(await fetchBlob(item.downloadUrl));
      view.body.prepend(el("img", { className: "preview", src, alt: `Preview of ${name}` }));
    } catch { /* a preview is optional */ }
  }
}

async function startJob(event) {
  event.preventDefault();
  if (state.busy) return;
  if (!apiKey()) { say("form-status", "Enter and save your API key first.", true); $("api-key").focus(); return; }
  const url = $("source-url").value.trim();
  const entries = [...state.files];
  if (!entries.length && !url) { say("form-status", "Add a file or an address first.", true); return; }
  const chosen = entries.length ? entries.map(chosenOptions) : [chosenOptions(null)];
  const problem = validate(chosen);
  if (problem) { say("form-status", problem, true); return; }

  const form = new FormData();
  form.append("jobType", jobType());
  form.append("saveToStorage", "true");
  if ($("all-archive").checked) form.append("createArchive", "true");
  if (!entries.length) form.append("sourceUrl", url);
  for (const [name, value] of optionFields(chosen)) form.append(name, value);
  for (const entry of entries) form.append("files", entry.file, entry.file.name);

  state.busy = true;
  updateStart();
  say("form-status", "");
  $("job").hidden = false;
  $("results").replaceChildren();
  $("archive").hidden = true;
  $("upload-bar").value = 0;
  $("job-bar").value = 0;
  const names = entries.length ? entries.map((e) => e.file.name) : [url.split("/").pop() || url];
  const views = names.map((name, i) => resultRow(name, entries[i] ? entries[i].file.size : null));
  const sizes = entries.map((e) => e.file.size);
  const totalSize = sizes.reduce((a, b) => a + b, 0);
  say("job-status", "Uploading…");
  try {
    const response = await upload(form, (loaded, total) => {
      $("upload-bar").value = Math.round((loaded / total) * 100);
      // The files go in order: what has gone out so far, scaled to the files' own bytes.
      let sent = (loaded / total) * totalSize;
      sizes.forEach((size, i) => {
        const part = Math.max(0, Math.min(size, sent));
        sent -= size;
        views[i].upload.value = size ? Math.round((part / size) * 100) : 100;
        if (part > 0) views[i].status.textContent = part >= size ? "Uploaded" : "Uploading…";
      });
    });
    if (!response.ok) throw new Error(await errorText(response));
    const { jobId } = await response.json();
    $("upload-bar").value = 100;
    views.forEach((view) => { view.upload.value = 100; view.status.textContent = "Waiting for the server"; });
    say("job-status", `Job ${jobId}: processing…`);
    $("job").dataset.jobId = jobId;
    const shown = new Set();
    const job = await waitForJob(jobId, (update) => {
      $("job-bar").value = update.progress || 0;
      const files = (update.results && update.results.files) || [];
      for (const item of files) {
        const view = views[item.index];
        if (!view || shown.has(item.index)) continue;
        if (item.status === "completed" || item.status === "failed") {
          shown.add(item.index);
          showResult(view, item);
        } else {
          view.work.value = item.progress || 0;
          view.status.textContent = item.status === "processing" ? "Processing…" : "Queued";
        }
      }
    });
    const done = (job.results.files || []).filter((f) => f.status === "completed").length;
    const status = job.cancelled ? "cancelled" : job.status;
    say("job-status", `Job ${status}: ${done} of ${job.totalFiles} files done.`, status !== "completed");
    $("job").dataset.status = status;
    const archive = job.results.archive;
    if (archive && archive.downloadUrl) {
      $("archive").replaceChildren(downloadLink(archive.downloadUrl, `convertmesh-${jobId.slice(0, 8)}.zip`, "Download all as zip"));
      $("archive").hidden = false;
    }
  } catch (error) {
    say("job-status", error.message, true);
    $("job").dataset.status = "error";
  } finally {
    state.busy = false;
    updateStart();
  }
}

function setUpConvert() {
  fillFormatSelect($("all-format"), {});
  fillPresetSelect($("all-resize"), false);
  for (const radio of document.querySelectorAll('input[name="job-type"]')) {
    radio.addEventListener("change", () => {
      fillFormatSelect($("all-format"), { keep: jobType() === "compress" });
      updateStart();
    });
  }
  $("source-url").addEventListener("input", updateStart);
  $("convert-form").addEventListener("submit", startJob);
  $("clear").addEventListener("click", () => {
    state.files = [];
    $("file-list").replaceChildren();
    $("source-url").value = "";
    updateStart();
  });
  updateStart();
}

// -- media tools -----------------------------------------------------------------------------

function renderToolParams() {
  const [name, summary, params] = TOOLS.find(([tool]) => tool === $("tool-name").value);
  $("tool-summary").textContent = summary;
  $("tool-file").multiple = name === "image-to-pdf";
  const holder = $("tool-params");
  holder.replaceChildren();
  for (const [field, label, kind, value, choices] of params) {
    const id = `tool-${field}`;
    let input;
    if (kind === "select") {
      input = el("select", { id, name: field });
      for (const choice of choices) input.append(el("option", { value: choice, text: choice, selected: choice === value }));
    } else {
      input = el("input", { id, name: field, type: kind, value, step: kind === "number" ? "any" : null });
    }
    holder.append(el("div", {}, el("label", { for: id, text: label }), input));
  }
}

function dataUrlBlob(url) {
  const [head, payload] = url.split(",", 2);
  const type = head.slice(5).replace(/;base64$/, "");
  const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

async function runTool(event) {
  event.preventDefault();
  const name = $("tool-name").value;
  const files = [...$("tool-file").files];
  const url = $("tool-url").value.trim();
  if (!apiKey()) { say("tool-status", "Enter and save your API key first.", true); return; }
  if (!files.length && !url) { say("tool-status", "Choose a file or give its address.", true); return; }
  const form = new FormData();
  if (url && !files.length) form.append("sourceUrl", url);
  for (const file of files) form.append(name === "image-to-pdf" ? "files" : "file", file, file.name);
  for (const input of $("tool-params").querySelectorAll("input, select")) {
    if (input.value !== "") form.append(input.name, input.value);
  }
  $("tool-run").disabled = true;
  $("tool-result").replaceChildren();
  say("tool-status", "Working…");
  try {
    const response = await fetch(`/api/media/${name}`, { method: "POST", headers: { ...authHeaders(), Accept: "application/json" }, body: form });
    if (response.status === 404 || response.status === 501) {
      say("tool-status", `This server does not offer the media tool “${name}” yet (it answered ${response.status}).`, true);
      return;
    }
    if (!response.ok) { say("tool-status", await errorText(response), true); return; }
    const body = await response.json();
    if (body.media) {
      $("tool-result").append(el("pre", { text: JSON.stringify(body.media, null, 2) }));
    }
    for (const item of body.files || []) {
      const blob = dataUrlBlob(item.downloadUrl);
      const href = URL.createObjectURL(blob);
      const box = el("div", {}, el("p", { className: "file-name", text: `${item.filename} (${humanBytes(blob.size)})` }));
      if ((item.mimeType || "").startsWith("image/")) box.append(el("img", { className: "preview", src: href, alt: `Result ${item.filename}` }));
      box.append(el("a", { className: "button-link", href, download: item.filename, text: `Download ${item.filename}` }));
      $("tool-result").append(box);
    }
    say("tool-status", "Done.");
  } catch {
    say("tool-status", "The server cannot be reached.", true);
  } finally {
    $("tool-run").disabled = false;
  }
}

function setUpTools() {
  for (const [name, summary] of TOOLS) $("tool-name").append(el("option", { value: name, text: `${name} — ${summary}` }));
  $("tool-name").addEventListener("change", renderToolParams);
  $("tools-form").addEventListener("submit", runTool);
  renderToolParams();
}

setUpKey();
setUpDropZone();
setUpConvert();
setUpTools();
document.documentElement.dataset.ready = "1";
