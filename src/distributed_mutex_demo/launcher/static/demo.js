// The demo's page: renders each state snapshot the launcher pushes (server-sent events on /events)
// and sends the buttons' actions (POST /action/<name>). No framework, no build step.
"use strict";

const WORDS = {
  en: {
    title: "Leader election, live", instances: "Instances", timeline: "Timeline", log: "Log",
    what: "What you are looking at", kill: "kill -9 the leader", stop: "stop it gracefully",
    pause: "pause it", cut: "cut it off", for: "for", add: "add an instance",
    leader: "leader", worker: "worker", stopped: "stopped", paused: "paused", cutoff: "cut off",
    term: "term", lease: "lease left", lastWrite: "last write", lastRead: "last read",
    runs: "runs as Raft member", exited: "exited",
    leads: (i, t) => `${i} leads (term ${t})`, until: (e, r) => `, until ${e} s${r ? ": " + r : ""}`,
    by: { schedule: "the schedule", key: "a key", web: "you" },
    acted: (by, k, tgt) => `${by}: ${k} of ${tgt}`,
    reacted: (s, tt, took) => ` → ${s} led (term ${tt}) after ${took} s`,
    added: (by, n) => `${by}: added ${n}`, joined: (took) => `, it found the leader after ${took} s`,
    waiting: " → waiting for a new leader…",
    refused: (i, t, s) => `the store refused a stale write from ${i}: its term ${t}` + (s ? `, the store has term ${s}` : " had ended"),
    kinds: { "kill": "kill", "graceful stop": "graceful stop", "pause": "pause", "cut off": "cut off" },
    noLeader: "no leader right now", disconnected: "the demo has ended (or cannot be reached)",
  },
  vi: {
    title: "Bầu chọn leader, trực tiếp", instances: "Các instance", timeline: "Diễn biến", log: "Nhật ký",
    what: "Bạn đang xem gì", kill: "kill -9 leader", stop: "dừng êm leader",
    pause: "tạm dừng leader", cut: "cắt kết nối leader", for: "trong", add: "thêm một instance",
    leader: "leader", worker: "worker", stopped: "đã dừng", paused: "đang tạm dừng", cutoff: "bị cắt kết nối",
    term: "nhiệm kỳ", lease: "lease còn", lastWrite: "lần ghi cuối", lastRead: "lần đọc cuối",
    runs: "chạy với vai thành viên Raft", exited: "đã thoát",
    leads: (i, t) => `${i} làm leader (nhiệm kỳ ${t})`, until: (e, r) => `, đến ${e} s${r ? ": " + r : ""}`,
    by: { schedule: "lịch tự động", key: "phím", web: "bạn" },
    acted: (by, k, tgt) => `${by}: ${k} ${tgt}`,
    reacted: (s, tt, took) => ` → ${s} làm leader (nhiệm kỳ ${tt}) sau ${took} s`,
    added: (by, n) => `${by}: thêm ${n}`, joined: (took) => `, nó thấy leader sau ${took} s`,
    waiting: " → đang chờ leader mới…",
    refused: (i, t, s) => `cơ sở dữ liệu từ chối lần ghi đã cũ của ${i}: nhiệm kỳ ${t}` + (s ? `, cơ sở dữ liệu đã có nhiệm kỳ ${s}` : " đã kết thúc"),
    kinds: { "kill": "kill", "graceful stop": "dừng êm", "pause": "tạm dừng", "cut off": "cắt kết nối" },
    noLeader: "hiện chưa có leader", disconnected: "demo đã kết thúc (hoặc không kết nối được)",
  },
};
const HOLD = { azure: 20, zookeeper: 10, raft: 5, postgres: 10, redis: 10 };
let lang = localStorage.getItem("demo-lang") || "en";
let last = null;  // the newest snapshot
let received = 0;  // when it came (performance.now(), ms): the countdowns run on from it

const $ = (selector) => document.querySelector(selector);
const el = (tag, attrs = {}, text = "") => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
};

function setLang(next) {
  lang = next;
  localStorage.setItem("demo-lang", lang);
  document.documentElement.lang = lang;
  for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  for (const block of document.querySelectorAll("[data-lang-block]")) block.hidden = block.dataset.langBlock !== lang;
  for (const node of document.querySelectorAll("[data-text]")) node.textContent = WORDS[lang][node.dataset.text];
  if (last) render(last);
}

function renderInstances(state) {
  const w = WORDS[lang];
  const cluster = $("#cluster");
  cluster.replaceChildren();
  for (const i of state.instances) {
    const card = el("div", { class: "instance", "data-instance": i.name, "data-role": i.role });
    if (i.role === "leader" && i.term !== null) card.setAttribute("data-term", String(i.term));
    if (i.paused) card.setAttribute("data-paused", "true");
    if (i.cut_off) card.setAttribute("data-cut-off", "true");
    card.append(el("span", { class: "name" }, i.name), el("span", { class: "role" }, w[i.role]));
    if (i.slot !== i.name) card.append(el("div", { class: "seen" }, `${w.runs} ${i.slot}`));
    if (i.paused) card.append(el("div", { class: "flag" }, w.paused));
    if (i.cut_off) card.append(el("div", { class: "flag" }, w.cutoff));
    if (i.role === "leader") {
      card.append(el("div", {}, `${w.term} ${i.term}`));
      card.append(el("div", { class: "lease", "data-lease-left": i.lease_left ?? "" }, ""));
      card.append(el("div", { class: "seen" }, `${w.lastWrite}: ${i.last_write}`));
    } else if (i.role === "worker") {
      card.append(el("div", { class: "seen" }, `${w.lastRead}: ${i.last_read}`));
    } else {
      card.append(el("div", { class: "seen" }, `${w.exited} (${i.exit_code})`));
    }
    cluster.append(card);
  }
  tick();
}

function renderTimeline(state) {
  const w = WORDS[lang];
  const entries = [];
  for (const s of state.leaderships) {
    entries.push([s.start, "leader", w.leads(s.instance, s.term) + (s.end !== null ? w.until(s.end.toFixed(1), s.reason) : ""), s.instance]);
  }
  for (const a of state.actions) {
    const by = w.by[a.origin] || a.origin;
    let text;
    if (a.kind === "add") text = w.added(by, a.target) + (a.took !== null ? w.joined(a.took.toFixed(1)) : "");
    else text = w.acted(by, w.kinds[a.kind] || a.kind, a.target) + (a.took !== null ? w.reacted(a.successor, a.term, a.took.toFixed(1)) : w.waiting);
    entries.push([a.at, "action", text, a.target, a.kind]);
  }
  for (const r of state.refusals) entries.push([r.at, "refused", w.refused(r.instance, r.term, r.stored), r.instance]);
  entries.sort((x, y) => y[0] - x[0]);
  const list = $("#timeline");
  list.replaceChildren();
  for (const [at, kind, text, who, what] of entries) {
    const item = el("li", { class: kind, "data-event": kind, "data-target": who }, `${at.toFixed(1)} s  ${text}`);
    if (what) item.setAttribute("data-kind", what);
    list.append(item);
  }
  // Who led when, as bars over the run so far.
  const bars = $("#bars");
  bars.replaceChildren();
  const span = Math.max(state.elapsed, 1);
  const colours = ["#1b7f3b", "#3a5a8c", "#8c3a7a", "#8c6a3a", "#3a8c8c", "#6a3d9a"];
  state.leaderships.forEach((s, n) => {
    const end = s.end ?? state.elapsed;
    const bar = el("span", { title: w.leads(s.instance, s.term) }, `${s.instance} ${s.term}`);
    bar.style.left = `${(100 * s.start) / span}%`;
    bar.style.width = `${Math.max(0.3, (100 * (end - s.start)) / span)}%`;
    bar.style.background = colours[n % colours.length];
    bars.append(bar);
  });
}

function render(state) {
  last = state;
  const w = WORDS[lang];
  $("#where").textContent = `${state.backend}: ${state.where}` + (state.leader ? "" : ` (${w.noLeader})`);
  renderInstances(state);
  renderTimeline(state);
  $("#log").textContent = state.log.join("\n");
  const seconds = $("#seconds");
  if (!seconds.placeholder) seconds.placeholder = String(HOLD[state.backend] || 10);
  for (const button of document.querySelectorAll("[data-action]")) {
    const reason = state.disabled[button.dataset.action];
    button.disabled = Boolean(reason);
    button.title = reason || "";
  }
}

function tick() {
  if (!last) return;
  const gone = (performance.now() - received) / 1000;
  for (const node of document.querySelectorAll("[data-lease-left]")) {
    const left = node.dataset.leaseLeft === "" ? null : Math.max(0, Number(node.dataset.leaseLeft) - gone);
    node.textContent = `${WORDS[lang].lease}: ${left === null ? "-" : left.toFixed(1) + " s"}`;
  }
}

async function act(button) {
  const body = {};
  if (["pause-leader", "cut-off"].includes(button.dataset.action) && $("#seconds").value) {
    body.seconds = Number($("#seconds").value);
  }
  $("#answer").textContent = "…";
  try {
    const response = await fetch(`/action/${button.dataset.action}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    $("#answer").textContent = (await response.json()).message;
  } catch (error) {
    $("#answer").textContent = WORDS[lang].disconnected;
  }
}

function connect() {
  const events = new EventSource("/events");
  events.onmessage = (message) => { received = performance.now(); render(JSON.parse(message.data)); };
  events.onerror = () => { $("#where").textContent = WORDS[lang].disconnected; };
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("[data-lang]")) b.addEventListener("click", () => setLang(b.dataset.lang));
  for (const b of document.querySelectorAll("[data-action]")) b.addEventListener("click", () => act(b));
  setLang(lang);
  connect();
  setInterval(tick, 100);
});
