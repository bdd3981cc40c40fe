// ssi dashboard: polls the agent's API (through /ui/api, as the session's
// user) once a second and draws the nodes, the processes, a job's output and
// the migrations. A process row dropped on a node card migrates it there.
'use strict';

const POLL_MS = 1000;
const LOG_LINES = 500;
const MOVE_WINDOW_MS = 3600 * 1000;
const PHASE_COLORS = ['#2a6fdb', '#d9822b', '#29a36a', '#8e44ad', '#c23030', '#16a2b8', '#b08b00', '#555', '#e377c2', '#7f7f00', '#17becf', '#8c564b', '#9edae5', '#ff9896'];

const $ = (sel) => document.querySelector(sel);

const state = {
  me: null,
  nodes: [],
  procs: [],
  sort: { key: 'gpid', dir: 1 },
  filter: '',
  selected: 0,
  log: { gpid: 0, offset: 0, text: '' },
  eventsSince: 0,
  moves: new Map(), // id -> {gpid, from, to, at, phases: [{name, ms}], total, error}
  dragging: false,
  phaseColors: new Map(),
};

// stats are read by the end-to-end test and the benchmark (chromedp).
window.ssiStats = { polls: 0, loadedAt: 0, lastPollMS: 0, pollMS: [], fetchMS: [], rows: 0, errors: [] };
window.addEventListener('error', (e) => window.ssiStats.errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.ssiStats.errors.push(String(e.reason)));

// setHTML replaces el's content when html differs from what it last set
// (reading innerHTML back would serialize the whole table).
const lastHTML = new WeakMap();
function setHTML(el, html) {
  if (lastHTML.get(el) === html) return;
  lastHTML.set(el, html);
  el.innerHTML = html;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

async function api(path, opts) {
  const o = Object.assign({ credentials: 'same-origin' }, opts || {});
  o.headers = Object.assign({ 'X-Ssi-Dashboard': '1' }, o.headers || {});
  const r = await fetch('/ui/api' + path, o);
  if (r.status === 401) {
    // The session ended (logout, expiry, revoked certificate): the login page.
    location.reload();
    throw new Error('not logged in');
  }
  return r;
}

async function apiJSON(path) {
  const r = await api(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return { body, headers: r.headers };
}

function toast(msg, bad) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = bad ? 'bad' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function bytes(n) {
  if (!n) return '0';
  const u = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + u[i];
}

function age(t) {
  if (!t) return '';
  let s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  if (s < 60) return Math.floor(s) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'd';
}

// ---- nodes ----

function renderNodes() {
  const box = $('#nodes');
  const html = state.nodes.map((n) => {
    const cpus = n.cpus || 1;
    const load = Math.min(100, (100 * n.load) / cpus);
    const demand = Math.min(100, (100 * n.demand) / cpus);
    const flags = [n.ready ? '' : 'NotReady', n.cordoned ? 'cordoned' : '', n.draining ? 'draining' : ''].filter(Boolean).join(' ');
    return `<div class="node${n.ready ? '' : ' notready'}" data-node="${esc(n.name)}">
      <span class="flags">${esc(flags)}</span><div class="name">${esc(n.name)}</div>
      <div class="muted">${esc(n.addr)} · ${cpus} CPU · ${bytes(n.memory)}</div>
      <div class="bar load"><span style="width:${load.toFixed(1)}%"></span><label>load ${n.load.toFixed(2)}</label></div>
      <div class="bar demand"><span style="width:${demand.toFixed(1)}%"></span><label>demand ${n.demand.toFixed(2)}</label></div>
      <div><span class="jobs">${n.jobs}</span> jobs · reserved ${n.reserved_cpus || 0} CPU, ${bytes(n.reserved_memory)}</div>
    </div>`;
  }).join('');
  setHTML(box, html);
}

// Drop targets: the node cards (delegated, since they are redrawn).
function setupDrop() {
  const box = $('#nodes');
  const card = (e) => e.target.closest && e.target.closest('.node');
  box.addEventListener('dragover', (e) => {
    const c = card(e);
    if (!c) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'move';
    c.classList.add('drop');
  });
  box.addEventListener('dragleave', (e) => { const c = card(e); if (c) c.classList.remove('drop'); });
  box.addEventListener('drop', (e) => {
    const c = card(e);
    if (!c) return;
    e.preventDefault();
    c.classList.remove('drop');
    const gpid = Number(e.dataTransfer.getData('text/plain'));
    if (gpid) migrate(gpid, c.dataset.node);
  });
}

async function migrate(gpid, node) {
  const p = state.procs.find((x) => x.gpid === gpid);
  if (p && p.node === node) { toast(`gpid ${gpid} already runs on ${node}`); return; }
  toast(`migrating gpid ${gpid} to ${node}…`);
  const id = 'ui-' + gpid + '-' + Date.now();
  try {
    const r = await api(`/v1/procs/${gpid}/migrate`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ node }),
    });
    const text = await r.text();
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = JSON.parse(text).error || msg; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    const lines = text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const last = lines[lines.length - 1] || {};
    if (last.error) throw new Error(last.error);
    const st = last.stats || {};
    const phases = (st.steps && st.steps.length)
      ? stepPhases(st)
      : [{ name: 'dump', ms: st.dump_ms || 0 }, { name: 'transfer', ms: st.transfer_ms || 0 }, { name: 'restore', ms: st.restore_ms || 0 }];
    for (const [k, m] of state.moves) { // its migrate event, if a refresh drew it first
      if (m.by === 'migrate' && m.gpid === gpid && m.to === (st.to || node) && Date.now() - m.at < 10000) state.moves.delete(k);
    }
    state.moves.set(id, { gpid, from: st.from || (p && p.node) || '?', to: st.to || node, at: Date.now(), phases, total: st.total_ms || 0, frozen: st.frozen_ms || 0, by: 'you' });
    toast(`gpid ${gpid} moved to ${node} in ${Math.round(st.total_ms || 0)} ms (frozen ${Math.round(st.frozen_ms || 0)} ms)`);
    document.body.dataset.lastMigrated = String(gpid);
  } catch (err) {
    state.moves.set(id, { gpid, from: (p && p.node) || '?', to: node, at: Date.now(), phases: [], total: 0, error: err.message });
    toast(`gpid ${gpid} to ${node}: ${err.message}`, true);
  }
  renderTimeline();
  poll();
}

// stepPhases lays a migration's steps end to end: the source's, with its
// "restore call" replaced by the target's steps (nested in it) and the
// rest of the call (the round trip).
function stepPhases(st) {
  const target = st.steps.filter((x) => x.node === st.to && x.node !== st.from);
  const out = [];
  for (const x of st.steps) {
    if (x.node !== st.from) continue;
    if (x.name === 'restore call' && target.length) {
      const inner = target.reduce((sum, y) => sum + y.ms, 0);
      for (const y of target) out.push({ name: y.node + ' ' + y.name, ms: y.ms });
      out.push({ name: x.node + ' restore call (round trip)', ms: Math.max(0, x.ms - inner) });
      continue;
    }
    out.push({ name: x.node + ' ' + x.name, ms: x.ms });
  }
  return out;
}

// ---- processes ----

function procRow(p) {
  const s = p.stats || {};
  return {
    gpid: p.gpid, user: p.user, node: p.node, state: p.state,
    cpu: s.cpu || 0, rss: s.rss || 0, age: p.started || p.created, cmd: (p.argv || []).join(' '),
  };
}

function sortKey(r, k) {
  if (k === 'age') return -Date.parse(r.age || 0);
  return r[k];
}

function renderProcs() {
  if (state.dragging) return; // redrawing would drop the row being dragged
  const f = state.filter.toLowerCase();
  let rows = state.procs.map(procRow);
  if (f) rows = rows.filter((r) => [r.gpid, r.user, r.node, r.state, r.cmd].join(' ').toLowerCase().includes(f));
  const { key, dir } = state.sort;
  rows.sort((a, b) => {
    const x = sortKey(a, key), y = sortKey(b, key);
    return (x < y ? -1 : x > y ? 1 : a.gpid - b.gpid) * dir;
  });
  const html = rows.map((r) => `<tr draggable="true" data-gpid="${r.gpid}" class="${r.gpid === state.selected ? 'selected' : ''}${r.state === 'migrating' ? ' migrating' : ''}">` +
    `<td>${r.gpid}</td><td>${esc(r.user)}</td><td class="where">${esc(r.node)}</td><td class="state">${esc(r.state)}</td>` +
    `<td>${r.cpu.toFixed(1)}</td><td>${bytes(r.rss)}</td><td>${age(r.age)}</td><td class="cmd">${esc(r.cmd)}</td></tr>`).join('');
  setHTML($('#procs tbody'), html);
  $('#count').textContent = rows.length === state.procs.length ? `${rows.length}` : `${rows.length} of ${state.procs.length}`;
  window.ssiStats.rows = rows.length;
  for (const th of document.querySelectorAll('#procs th')) {
    th.className = th.dataset.key === key ? (dir > 0 ? 'asc' : 'desc') : '';
  }
}

function setupProcs() {
  $('#filter').addEventListener('input', (e) => { state.filter = e.target.value; renderProcs(); });
  $('#procs thead').addEventListener('click', (e) => {
    const k = e.target.dataset && e.target.dataset.key;
    if (!k) return;
    state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : (k === 'cpu' || k === 'rss' ? -1 : 1) };
    renderProcs();
  });
  const tb = $('#procs tbody');
  tb.addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    select(Number(tr.dataset.gpid));
  });
  tb.addEventListener('dragstart', (e) => {
    const tr = e.target.closest && e.target.closest('tr');
    if (!tr) return;
    state.dragging = true;
    document.body.dataset.dragged = tr.dataset.gpid;
    e.dataTransfer.setData('text/plain', tr.dataset.gpid);
    e.dataTransfer.effectAllowed = 'move';
  });
  tb.addEventListener('dragend', () => { state.dragging = false; renderProcs(); });
  // No redraw from the press on: a row replaced under the pointer could
  // not be dragged.
  tb.addEventListener('mousedown', () => { state.dragging = true; });
  // The click that follows a mouseup must find its row still there: the
  // next poll redraws.
  document.addEventListener('mouseup', () => { state.dragging = false; });
}

// ---- log tail ----

function select(gpid) {
  state.selected = gpid;
  $('#term').hidden = false;
  state.log = { gpid, offset: 0, text: '' };
  $('#log').textContent = '';
  $('#logtitle').textContent = `gpid ${gpid}`;
  renderProcs();
  pollLog();
}

// The agent's log stream is joblog records: kind (1 byte: 1 stdout, 2
// stderr, 3 exit, 4 error), length (4 bytes, big-endian), payload.
async function pollLog() {
  const lg = state.log;
  if (!lg.gpid || pollLog.busy) return;
  pollLog.busy = true;
  try {
    const r = await api(`/v1/procs/${lg.gpid}/logs?offset=${lg.offset}`);
    if (!r.ok) {
      const b = await r.json().catch(() => ({}));
      $('#logtitle').textContent = `gpid ${lg.gpid}: ${b.error || r.statusText}`;
      return;
    }
    const buf = await r.arrayBuffer();
    if (state.log !== lg) return; // another job was selected meanwhile
    const dv = new DataView(buf);
    const dec = new TextDecoder();
    let off = 0, text = '';
    while (off + 5 <= buf.byteLength) {
      const kind = dv.getUint8(off), len = dv.getUint32(off + 1);
      if (off + 5 + len > buf.byteLength) break;
      if (kind === 1 || kind === 2) text += dec.decode(new Uint8Array(buf, off + 5, len));
      off += 5 + len;
    }
    lg.offset += off;
    if (text) {
      lg.text = (lg.text + text).split('\n').slice(-LOG_LINES).join('\n');
      const pre = $('#log');
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = lg.text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (err) {
    $('#logtitle').textContent = `gpid ${lg.gpid}: ${err.message}`;
  } finally {
    pollLog.busy = false;
  }
}

// ---- migrations timeline ----

function phaseColor(name) {
  const key = name.replace(/^\S+ /, ''); // the step, whichever node took it
  if (!state.phaseColors.has(key)) state.phaseColors.set(key, PHASE_COLORS[state.phaseColors.size % PHASE_COLORS.length]);
  return state.phaseColors.get(key);
}

function addMoveEvents(evs) {
  for (const ev of evs) {
    // A finished move, whoever asked: "migrate" "done" (the balancer's
    // "moved" stands for the same move, and is not drawn twice).
    if (ev.kind !== 'migrate' || ev.phase !== 'done' || !ev.from || !ev.to || !ev.took || !ev.gpid) continue;
    const at = Date.parse(ev.time);
    // A move made from this page is drawn already, with its finer steps.
    if ([...state.moves.values()].some((m) => m.by === 'you' && m.gpid === ev.gpid && m.to === ev.to && Math.abs(m.at - at) < 10000)) continue;
    const took = ev.took / 1e6, frozen = (ev.frozen || 0) / 1e6;
    const steps = ['dump', 'transfer', 'restore'].filter((n) => ev.phases && ev.phases[n]).map((n) => ({ name: n, ms: ev.phases[n] / 1e6 }));
    state.moves.set(ev.id, {
      gpid: ev.gpid, from: ev.from, to: ev.to, at, total: took, frozen,
      phases: [{ name: 'running (pre-copy)', ms: Math.max(0, took - frozen) }, ...(steps.length ? steps : [{ name: 'frozen', ms: frozen }])], by: ev.kind,
    });
  }
}

function renderTimeline() {
  const now = Date.now();
  const moves = [...state.moves.values()].filter((m) => now - m.at < MOVE_WINDOW_MS).sort((a, b) => b.at - a.at).slice(0, 50);
  const maxMS = Math.max(1, ...moves.map((m) => m.total || m.phases.reduce((s, p) => s + p.ms, 0)));
  const rows = moves.map((m) => {
    const when = new Date(m.at).toLocaleTimeString();
    const what = `${when} gpid ${m.gpid} ${esc(m.from)} → ${esc(m.to)} <span class="muted">${esc(m.by || '')}</span>`;
    if (m.error) return `<div class="move"><span class="what">${what}</span><span class="total" style="color:var(--bad)">${esc(m.error)}</span></div>`;
    const bars = m.phases.filter((p) => p.ms > 0).map((p) =>
      `<span title="${esc(p.name)}: ${p.ms.toFixed(1)} ms" style="width:${Math.max(1, (400 * p.ms) / maxMS).toFixed(1)}px;background:${phaseColor(p.name)}"></span>`).join('');
    return `<div class="move"><span class="what">${what}</span><span class="phases">${bars}</span>` +
      `<span class="total">${Math.round(m.total)} ms, frozen ${Math.round(m.frozen || 0)} ms</span></div>`;
  });
  // Moves in flight: the jobs whose record names a migration, with its phase.
  const flying = state.procs.filter((p) => p.migration).map((p) => {
    const m = p.migration;
    const secs = Math.max(0, (now - Date.parse(m.started)) / 1000).toFixed(1);
    return `<div class="move inflight"><span class="what">in flight: gpid ${p.gpid} ${esc(p.node)} → ${esc(m.target)}</span>` +
      `<span class="total">${esc(m.phase || 'starting')}, ${secs} s</span></div>`;
  });
  rows.unshift(...flying);
  const legend = [...state.phaseColors].map(([k, c]) => `<span><i style="background:${c}"></i>${esc(k)}</span>`).join('');
  const html = (rows.length ? rows.join('') : '<p class="muted">no migrations in the last hour</p>') + (legend ? `<div class="legend">${legend}</div>` : '');
  setHTML($('#timeline'), html);
}

// ---- the loop ----

async function poll() {
  if (poll.busy) return;
  poll.busy = true;
  const t0 = performance.now();
  try {
    const evPath = state.eventsSince ? `/v1/events?type=migrate&since=${state.eventsSince}` : '/v1/events?type=migrate&limit=500';
    const [nodes, procs, events] = await Promise.all([apiJSON('/v1/nodes'), apiJSON('/v1/procs'), apiJSON(evPath)]);
    const fetched = performance.now() - t0;
    state.nodes = nodes.body || [];
    state.procs = procs.body || [];
    addMoveEvents(events.body || []);
    const rev = Number(events.headers.get('X-Ssi-Revision'));
    if (rev) state.eventsSince = rev;
    renderNodes();
    renderProcs();
    renderTimeline();
    const ms = performance.now() - t0;
    const st = window.ssiStats;
    st.polls++;
    st.lastPollMS = ms;
    st.pollMS.push(ms);
    st.fetchMS.push(fetched);
    if (st.pollMS.length > 100) { st.pollMS.shift(); st.fetchMS.shift(); }
    if (!st.loadedAt) st.loadedAt = performance.now();
    document.body.dataset.ready = '1';
    $('#status').textContent = `${state.nodes.length} nodes · updated ${new Date().toLocaleTimeString()} (${Math.round(ms)} ms)`;
  } catch (err) {
    $('#status').textContent = `update failed: ${err.message}`;
  } finally {
    poll.busy = false;
  }
}

async function main() {
  setupDrop();
  setupProcs();
  $('#term').addEventListener('click', async () => {
    const gpid = state.selected;
    if (!gpid) return;
    const r = await api(`/v1/procs/${gpid}/signal`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ signal: 'TERM' }) });
    if (r.ok) toast(`sent TERM to gpid ${gpid}`);
    else toast(`gpid ${gpid}: ${((await r.json().catch(() => ({}))).error) || r.statusText}`, true);
    poll();
  });
  $('#logout').addEventListener('click', async () => {
    await api('/logout', { method: 'POST' }).catch(() => {});
    location.reload();
  });
  try {
    const me = (await apiJSON('/whoami')).body;
    state.me = me;
    $('#who').textContent = `${me.user}${me.admin ? ' (admin)' : ''} @ ${me.node}`;
  } catch (err) {
    $('#status').textContent = err.message;
  }
  await poll();
  setInterval(() => { poll(); pollLog(); }, POLL_MS);
}

main();
