// imnkit review: the page. Plain JS, no dependencies; every request carries the one-time token.
"use strict";

const TOKEN = document.querySelector('meta[name="imnkit-token"]').content;
const MIN_SIDE = 8; // photo pixels; the server refuses thinner boxes (review/session.py MIN_BOX_SIDE)
const photos = []; // from /api/photos, with the page's edit: {dropped: Set, added: [[x0, y0, x1, y1]]}
let polling = null;

async function api(path, body) {
  const init = { headers: { "X-Imnkit-Token": TOKEN }, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return res;
}

async function imageInto(img, path, body) {
  const res = await api(path, body);
  const url = URL.createObjectURL(await res.blob());
  if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
  img.dataset.url = url;
  img.src = url;
  await img.decode().catch(() => {});
}

function showError(err) {
  const box = document.getElementById("error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

function editOf(photo) {
  return {
    keep: photo.faces.map((_, i) => i).filter((i) => !photo.dropped.has(i)),
    add: photo.added.map((b) => b.slice()),
  };
}

function place(el, box, photo) {
  const [x0, y0, x1, y1] = box;
  el.style.left = `${(100 * x0) / photo.width}%`;
  el.style.top = `${(100 * y0) / photo.height}%`;
  el.style.width = `${(100 * (x1 - x0)) / photo.width}%`;
  el.style.height = `${(100 * (y1 - y0)) / photo.height}%`;
}

function drawBoxes(photo) {
  const overlay = photo.card.querySelector(".overlay");
  overlay.replaceChildren();
  photo.faces.forEach((face, i) => {
    const el = document.createElement("div");
    el.className = "box" + (face.review ? " doubtful" : "") + (photo.dropped.has(i) ? " dropped" : "");
    el.dataset.face = String(i);
    el.title = `${face.detector || "face"}${face.score == null ? "" : ` ${Number(face.score).toFixed(2)}`}` +
      (face.review ? " (doubtful: check it)" : "") + (photo.dropped.has(i) ? " - dropped, click to keep" : " - click to drop");
    place(el, face.box, photo);
    el.addEventListener("click", (e) => {
      e.stopPropagation();
      if (photo.dropped.has(i)) photo.dropped.delete(i); else photo.dropped.add(i);
      changed(photo);
    });
    overlay.appendChild(el);
  });
  photo.added.forEach((box, j) => {
    const el = document.createElement("div");
    el.className = "box added";
    el.dataset.added = String(j);
    el.title = "added by hand - click to remove";
    place(el, box, photo);
    el.addEventListener("click", (e) => {
      e.stopPropagation();
      photo.added.splice(j, 1);
      changed(photo);
    });
    overlay.appendChild(el);
  });
  const kept = photo.faces.length - photo.dropped.size;
  const doubtful = photo.faces.filter((f) => f.review).length;
  photo.card.querySelector(".counts").textContent =
    `${kept + photo.added.length} to mask · ${photo.dropped.size} dropped · ${photo.added.length} added` +
    (doubtful ? ` · ${doubtful} doubtful` : "");
}

function changed(photo) {
  if (photo.card.classList.contains("previewing")) leavePreview(photo);
  drawBoxes(photo);
}

function enableDrawing(photo) {
  const overlay = photo.card.querySelector(".overlay");
  let start = null;
  let draft = null;
  const at = (e) => {
    const r = overlay.getBoundingClientRect();
    const fx = Math.min(Math.max((e.clientX - r.left) / r.width, 0), 1);
    const fy = Math.min(Math.max((e.clientY - r.top) / r.height, 0), 1);
    return [Math.round(fx * photo.width), Math.round(fy * photo.height)];
  };
  const boxOf = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  overlay.addEventListener("pointerdown", (e) => {
    if (e.target !== overlay || e.button !== 0) return;
    start = at(e);
    draft = document.createElement("div");
    draft.className = "box draft";
    overlay.appendChild(draft);
    overlay.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  overlay.addEventListener("pointermove", (e) => {
    if (start) place(draft, boxOf(start, at(e)), photo);
  });
  const finish = (e, keep) => {
    if (!start) return;
    const box = boxOf(start, at(e));
    start = null;
    draft.remove();
    if (keep && box[2] - box[0] >= MIN_SIDE && box[3] - box[1] >= MIN_SIDE) {
      photo.added.push(box);
    }
    changed(photo);
  };
  overlay.addEventListener("pointerup", (e) => finish(e, true));
  overlay.addEventListener("pointercancel", (e) => finish(e, false));
}

function leavePreview(photo) {
  photo.card.classList.remove("previewing");
  photo.card.querySelector(".preview").textContent = "Preview mask";
  imageInto(photo.card.querySelector(".photo"), `/api/photos/${photo.index}/image`).catch(showError);
}

async function togglePreview(photo) {
  const card = photo.card;
  const button = card.querySelector(".preview");
  if (card.classList.contains("previewing")) return leavePreview(photo);
  button.disabled = true;
  card.querySelector(".status").textContent = "rendering the preview (nothing is written)…";
  try {
    await imageInto(card.querySelector(".photo"), `/api/photos/${photo.index}/preview`, editOf(photo));
    card.classList.add("previewing");
    button.textContent = "Back to the boxes";
    card.querySelector(".status").textContent = "preview: the photo as it will be published";
    showError(null);
  } catch (err) {
    card.querySelector(".status").textContent = "";
    showError(err);
  } finally {
    button.disabled = false;
  }
}

async function approve(list) {
  const todo = list.filter((p) => !["queued", "running", "done"].includes(p.status));
  if (!todo.length) return;
  try {
    await api("/api/approve", { photos: todo.map((p) => ({ index: p.index, ...editOf(p) })) });
    showError(null);
  } catch (err) {
    showError(err);
  }
  poll();
}

const STATUS_TEXT = { "to review": "", queued: "queued…", running: "writing the faces file and masking…" };

function showStatus(photo, row) {
  const before = photo.status;
  Object.assign(photo, { status: row.status, message: row.message, outputs: row.outputs });
  const card = photo.card;
  for (const s of ["queued", "running", "done", "failed"]) card.classList.toggle(s, row.status === s);
  const busy = row.status === "queued" || row.status === "running";
  card.classList.toggle("finished", busy || row.status === "done");
  for (const b of card.querySelectorAll("button")) b.disabled = busy || row.status === "done";
  const status = card.querySelector(".status");
  if (row.status === "done") status.textContent = `done: wrote ${row.outputs.join(", ")}${row.message ? ` (${row.message})` : ""}`;
  else if (row.status === "failed") status.textContent = `failed: ${row.message}`;
  else if (STATUS_TEXT[row.status] || before !== row.status) status.textContent = STATUS_TEXT[row.status] || "";
  if (row.status === "done" && before !== "done") {
    card.classList.remove("previewing");
    card.querySelector(".preview").textContent = "Preview mask";
    // the masked photo as written (a recipe without an image.masked output has none: the photo stays)
    imageInto(card.querySelector(".photo"), `/api/photos/${photo.index}/result`).catch(() => {});
  }
}

async function poll() {
  if (polling) return;
  polling = true;
  try {
    for (;;) {
      const p = await (await api("/api/progress")).json();
      p.photos.forEach((row) => showStatus(photos[row.index], row));
      const bar = document.getElementById("progress");
      bar.max = p.total;
      bar.value = p.done;
      document.getElementById("progress-text").textContent =
        `${p.done} of ${p.total} approved` + (p.busy ? ` · ${p.busy} in progress` : "");
      if (!p.busy) break;
      await new Promise((r) => setTimeout(r, 400));
    }
  } catch (err) {
    showError(err);
  } finally {
    polling = null;
  }
}

function initialDrops(row) {
  return new Set(row.faces.map((f, i) => (f.masked ? -1 : i)).filter((i) => i >= 0));
}

async function main() {
  const data = await (await api("/api/photos")).json();
  const grid = document.getElementById("grid");
  const template = document.getElementById("card");
  document.title = `imnkit review (${data.photos.length} photo${data.photos.length === 1 ? "" : "s"}, recipe ${data.recipe})`;
  for (const row of data.photos) {
    const card = template.content.firstElementChild.cloneNode(true);
    // status: set by the first poll; a doubtful face the default leaves bare starts dropped
    const photo = { ...row, status: "", card, dropped: initialDrops(row), added: [] };
    card.id = `photo-${row.index}`;
    card.dataset.index = String(row.index);
    card.querySelector(".name").textContent = row.name;
    card.querySelector(".name").title = row.name;
    card.querySelector(".preview").addEventListener("click", () => togglePreview(photo));
    card.querySelector(".reset").addEventListener("click", () => {
      photo.dropped = initialDrops(row);
      photo.added = [];
      changed(photo);
    });
    card.querySelector(".approve").addEventListener("click", () => approve([photo]));
    photos.push(photo);
    grid.appendChild(card);
    enableDrawing(photo);
    drawBoxes(photo);
    await imageInto(card.querySelector(".photo"), `/api/photos/${row.index}/image`);
  }
  document.getElementById("approve-all").addEventListener("click", () => approve(photos));
  document.body.dataset.ready = "1";
  poll();
}

main().catch(showError);
