// The GPU panel: every GPU of the cluster and the worker replica(s) on it (one deployment per model), refreshed on a timer.
// GET /api/gpu/status reads the worker registry and the nodes directly: polling it never wakes a
// deployment that scaled to zero.

import { getJSON, postJSON } from "./api.js";
import { element, showError } from "./dom.js";
import { t } from "./i18n.js";

const REFRESH_S = 3;

export class GpuPanel {
  constructor({ list, summary, updated, error, offloadAll, message }) {
    this.list = list;
    this.summary = summary;
    this.updated = updated;
    this.error = error;
    this.message = message;
    this.status = null;
    this.lastRefresh = null;
    this.timer = null;
    this.offloadAll = offloadAll;
    offloadAll.addEventListener("click", () => this.offload(null, offloadAll));
    document.addEventListener("visibilitychange", () => !document.hidden && this.refresh());
  }

  start() {
    this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      this.status = await getJSON("api/gpu/status");
      this.lastRefresh = new Date();
      showError(this.error, null);
    } catch (exc) {
      showError(this.error, t("err_gpu", { detail: exc.message }));
    }
    this.render();
    // A hidden tab does not poll; it refreshes when shown again.
    this.timer = setTimeout(() => !document.hidden && this.refresh(), REFRESH_S * 1000);
  }

  /** Offloads the model of one GPU's replicas (gpu: index) or of every replica (gpu: null). */
  async offload(gpu, button) {
    button.disabled = true;
    const label = button.textContent;
    button.textContent = t("offloading");
    try {
      const answer = await postJSON("api/gpu/offload", gpu === null ? {} : { gpu });
      const results = (answer.results || []).map((r) => `${r.gpu ?? "CPU"}: ${r.result}`).join(", ");
      this.message.textContent = answer.requested ? t("offloadDone", { n: answer.requested, results }) : t("offloadNone");
      showError(this.error, null);
    } catch (exc) {
      showError(this.error, t("err_server", { detail: exc.message }));
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
    await this.refresh();
  }

  render() {
    const status = this.status;
    if (!status) return;
    const nodes = status.nodes || [];
    const replicas = status.replicas || [];
    this.summary.textContent = t("gpuSummary", {
      gpus: status.total_ray_gpus ?? 0, nodes: nodes.length, replicas: replicas.length,
      status: status.worker_deployment?.status ?? "?",
    });
    // With several models, each replica row names its model.
    const manyModels = Object.keys(status.worker_deployments || {}).length > 1;
    const blocks = gpuBlocks(nodes, replicas).map((block) => this.renderGpu(block, nodes.length > 1, manyModels));
    if (!replicas.length) blocks.unshift(paragraph("hint", t("scaledToZero")));
    this.list.replaceChildren(...blocks);
    if (this.lastRefresh) this.updated.textContent = t("updated", { s: REFRESH_S, time: this.lastRefresh.toLocaleTimeString() });
  }

  renderGpu({ node, index, facts, replicas }, manyNodes, manyModels) {
    const box = element("div", "gpu");
    box.dataset.gpu = index ?? "cpu";
    const head = element("div", "gpu-head");
    const title = element("strong", "", index === null ? t("noGpu") : t("gpuName", { index }));
    head.append(title);
    if (facts?.name) head.append(element("span", "muted", facts.name));
    if (manyNodes) head.append(element("span", "muted", node));
    if (index !== null && replicas.length) {
      const button = element("button", "small", t("offload"));
      button.dataset.offloadGpu = index;
      button.addEventListener("click", () => this.offload(index, button));
      head.append(button);
    }
    box.append(head);
    // VRAM: the node's NVML reading of this GPU, else the one its replica reports.
    const vram = facts?.memory_total_mib ? facts : replicas.find((r) => r.vram?.memory_total_mib)?.vram;
    if (index !== null) box.append(vramBar(vram));
    if (!replicas.length) box.append(paragraph("muted", t("noReplica")));
    for (const replica of replicas) {
      box.append(replicaRow(replica, manyModels));
      if (replica.download) box.append(downloadBar(replica.download));
    }
    return box;
  }
}

/** GPUs to draw, node by node: those NVML sees, those Ray counts, and those a replica names. */
function gpuBlocks(nodes, replicas) {
  const blocks = [];
  const placed = new Set();
  const onNode = (r, node) => nodes.length === 1 || r.node === node.hostname || r.node === node.node_ip;
  for (const node of nodes) {
    const indexes = new Set((node.gpus || []).map((g) => g.index));
    for (let i = 0; i < Math.round(node.ray_gpus || 0); i++) indexes.add(i);
    replicas.filter((r) => onNode(r, node) && r.gpu !== null && r.gpu !== undefined).forEach((r) => indexes.add(r.gpu));
    for (const index of [...indexes].sort((a, b) => a - b)) {
      const mine = replicas.filter((r) => onNode(r, node) && r.gpu === index);
      mine.forEach((r) => placed.add(r));
      blocks.push({ node: node.hostname, index, facts: (node.gpus || []).find((g) => g.index === index), replicas: mine });
    }
  }
  const rest = replicas.filter((r) => !placed.has(r));
  if (rest.length) blocks.push({ node: "", index: null, facts: null, replicas: rest });
  return blocks;
}

function vramBar(vram) {
  const wrap = element("div", "vram");
  if (!vram?.memory_total_mib) {
    const unknown = element("span", "muted", t("vramUnknown"));
    unknown.title = t("vramUnknownWhy");
    wrap.append(unknown);
    return wrap;
  }
  const bar = meter("meter", vram.memory_used_mib, vram.memory_total_mib);
  bar.firstChild.classList.toggle("high", vram.memory_used_mib / vram.memory_total_mib > 0.85);
  const gib = (mib) => (mib / 1024).toFixed(1);
  wrap.append(bar, element("span", "muted", t("vram", { used: gib(vram.memory_used_mib), total: gib(vram.memory_total_mib) })));
  return wrap;
}

/** A bar filled to value / max (`role`: "meter" for a level, "progressbar" for a download). */
function meter(role, value, max) {
  const bar = element("div", "bar");
  bar.setAttribute("role", role);
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", String(max));
  bar.setAttribute("aria-valuenow", String(value));
  const fill = element("div", "fill");
  fill.style.width = `${(Math.min(1, value / max) * 100).toFixed(1)}%`;
  bar.append(fill);
  return bar;
}

/** A replica's hub download: a progress bar, then file, share, size, rate and time left. */
function downloadBar(download) {
  const wrap = element("div", "download");
  wrap.dataset.repo = download.repo;
  const total = download.bytes_total;
  const vars = {
    file: download.file || download.repo, done: size(download.bytes_done), total: total ? size(total) : "?",
    pct: total ? Math.floor((100 * download.bytes_done) / total) : "?",
  };
  const parts = [t("downloading", vars)];
  if (download.rate_bps) parts.push(t("downloadRate", { rate: size(download.rate_bps) }));
  if (download.eta_s) parts.push(t("downloadLeft", { t: duration(download.eta_s) }));
  if (total) wrap.append(meter("progressbar", download.bytes_done, total));
  wrap.append(element("span", "muted", parts.join(" · ")));
  return wrap;
}

function size(bytes) {
  for (const [unit, scale] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) {
    if (bytes >= scale) return `${(bytes / scale).toFixed(1)} ${unit}`;
  }
  return `${bytes} B`;
}

function replicaRow(replica, manyModels) {
  const row = element("div", "replica");
  row.dataset.replica = replica.replica;
  row.dataset.model = replica.model_name || "";
  const state = replica.state || "unloaded";
  // On a CPU replica "ready" means loaded in RAM: there is no VRAM to speak of.
  const label = state === "ready" && replica.device === "cpu" ? "state_ready_cpu" : `state_${state}`;
  const badge = element("span", `badge state-${state}`, t(label));
  badge.dataset.state = state;
  if (replica.error) badge.title = replica.error;
  const name = element("code", "", shortId(replica.replica));
  name.title = replica.replica;
  const busy = (replica.active || 0) + (replica.queued || 0) > 0;
  const activity = busy
    ? t("busy", { active: replica.active || 0, queued: replica.queued || 0 })
    : replica.idle_seconds === null || replica.idle_seconds === undefined ? "" : t("idle", { t: duration(replica.idle_seconds) });
  if (manyModels) row.append(element("span", "model", replica.model_name || ""));
  row.append(name, badge, slotsMeter(replica), element("span", "muted", activity));
  return row;
}

/** Busy and free slots of one replica: rows of its batch speaking now, and rows a new request can take. */
function slotsMeter(replica) {
  const busy = replica.active || 0;
  const free = replica.free_slots ?? Math.max(0, (replica.max_batch_size || 0) - busy);
  const total = replica.max_batch_size ?? busy + free;
  const slots = element("span", "slots", t("slots", { busy, free, total }));
  slots.dataset.busy = String(busy);
  slots.dataset.free = String(free);
  slots.dataset.total = String(total);
  slots.classList.toggle("full", free === 0 && total > 0);
  return slots;
}

function shortId(id) {
  return id && id.length > 14 ? `…${id.slice(-12)}` : id || "?";
}

function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function paragraph(className, text) {
  return element("p", className, text);
}
