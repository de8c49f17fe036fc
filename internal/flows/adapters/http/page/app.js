// stockflow · flows: the journal's recent flows, a flow or an order drawn
// as a sequence diagram that grows as messages happen, and the service
// map checked against the contract. Plain JavaScript, drawing its own SVG.
'use strict';

(() => {
  const KEY = 'stockflow.key';
  // The lifelines, left to right, in the order the shop's messages go.
  const SERVICES = ['outside', 'orders', 'allocation', 'warehouse', 'crm', 'notifications'];
  const SERVICE_COLOURS = {
    outside: '#868e96', orders: '#4263eb', allocation: '#7048e8',
    warehouse: '#1098ad', crm: '#d6336c', notifications: '#ae3ec9',
  };
  const OUTCOMES = ['handled', 'duplicate', 'dead_lettered'];
  const OUTCOME_TEXT = { handled: 'handled', duplicate: 'duplicate, skipped', dead_lettered: 'dead-lettered', pending: 'not handled yet' };
  const SVGNS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  // ---- Elements, safely: text is always set as text. ----
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    return fill(e, attrs, children);
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    return fill(e, attrs, children);
  }
  function fill(e, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // ---- The API, with the key when one is given. ----
  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  function key() { try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; } }
  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    const k = key();
    if (k) h.Authorization = 'Bearer ' + k;
    return h;
  }
  async function api(path, signal) {
    let res;
    try {
      res = await fetch(path, { headers: authHeaders({ Accept: 'application/json' }), signal, cache: 'no-store' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new APIError(0, 'stockflow does not answer: is it still running?');
    }
    if (res.ok) return res.json();
    let msg = res.statusText;
    try { msg = (await res.json()).message || msg; } catch { /* not JSON */ }
    if (res.status === 401) askKey(msg);
    if (res.status === 403) msg = msg + ' Give a key with the ops or read role.';
    throw new APIError(res.status, msg);
  }
  const params = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== undefined && v !== '')).toString();

  // ---- Formatting ----
  function clock(iso) {
    if (!iso || iso.startsWith('0001')) return '—';
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }) +
      '.' + String(d.getMilliseconds()).padStart(3, '0');
  }
  function ago(iso) {
    if (!iso || iso.startsWith('0001')) return '';
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return Math.floor(s) + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return new Date(iso).toLocaleDateString();
  }
  function span(ms) {
    if (!isFinite(ms)) return '';
    if (ms === 0) return '0 ms';
    if (ms < 1) return ms.toFixed(2) + ' ms';
    if (ms < 1000) return (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    const m = Math.floor(ms / 60000);
    return m + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  }
  // keysOf names the business keys of m, but for those the view is of.
  function keysOf(m, all) {
    const out = [];
    const sel = all ? {} : state.selection || {};
    if (m.orderid && sel.order !== m.orderid) out.push('order ' + short(m.orderid));
    if (m.customer && sel.customer !== m.customer && !sel.order) out.push(m.customer);
    if (m.sku) out.push(m.sku + (m.qty ? ' ×' + m.qty : ''));
    else if (m.qty) out.push('×' + m.qty);
    if (m.batchref) out.push('batch ' + m.batchref);
    return out;
  }
  const short = (id) => (id && id.length > 14 ? id.slice(0, 8) + '…' : id || '');
  const ms = (iso) => (iso && !iso.startsWith('0001') ? new Date(iso).getTime() : NaN);

  // JSON, pretty, with its tokens coloured.
  function prettyJSON(value) {
    const pre = el('pre', { class: 'json', 'data-field': 'payload' });
    const text = JSON.stringify(value, null, 2);
    if (text === undefined) { pre.textContent = String(value); return pre; }
    const re = /("(?:\\u[\da-fA-F]{4}|\\[^u]|[^\\"])*"(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      pre.append(text.slice(last, m.index));
      const t = m[0];
      const cls = t.startsWith('"') ? (m[2] ? 'k' : 's') : /true|false|null/.test(t) ? 'b' : 'n';
      pre.append(el('span', { class: cls, text: t }));
      last = m.index + t.length;
    }
    pre.append(text.slice(last));
    return pre;
  }

  // ---- State ----
  const state = {
    view: 'flow',
    selection: null,   // {order|customer|sku|batch|correlation|message: value}
    msgs: new Map(),   // id -> {m, depth, hop, seq, handlings: [], fresh}
    seq: 0,
    selected: null,    // {message, service, outcome}
    stream: null,      // AbortController of the live stream
    search: '',
    recent: [],
    known: new Set(),  // recent groups seen, to mark new ones
    keyWaiters: [],
  };

  // ---- Live indicator ----
  function setLive(s, title) {
    const e = $('live');
    e.dataset.state = s;
    e.textContent = { idle: 'idle', live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', locked: 'key needed' }[s] || s;
    if (title) e.title = title;
  }

  // ---- The key ----
  function askKey(reason) {
    setLive('locked');
    $('key-reason').textContent = (reason ? reason + '. ' : '') +
      'This stockflow asks for a key: give one with the ops or read role (stockflow keys add NAME --roles ops).';
    openKeyDialog();
  }
  function openKeyDialog() {
    $('key-input').value = key();
    $('key-forget').hidden = !key();
    $('key-dialog').hidden = false;
    setTimeout(() => $('key-input').focus(), 0);
  }
  function closeKeyDialog() { $('key-dialog').hidden = true; }
  function saveKey(k) {
    try {
      if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY);
    } catch { /* storage refused: the key lasts until the page is left */ }
    closeKeyDialog();
    $('key-button').textContent = k ? 'API key ✓' : 'API key';
    refreshAll();
  }

  // ---- Recent orders and flows ----
  // Flows of one order are one entry: the order's journey.
  function group(flows) {
    const out = [];
    const byOrder = new Map();
    for (const f of flows) {
      if (f.orderid) {
        let g = byOrder.get(f.orderid);
        if (!g) {
          g = { id: 'order:' + f.orderid, sel: { order: f.orderid }, kind: 'order', title: 'Order ' + short(f.orderid),
            customer: f.customer, messages: 0, failed: false, last: f.last, started: f.started, flows: 0, first: f.first_channel };
          byOrder.set(f.orderid, g);
          out.push(g);
        }
        g.messages += f.messages; g.failed = g.failed || f.failed; g.flows++;
        g.customer = g.customer || f.customer;
        if (f.started < g.started) { g.started = f.started; g.first = f.first_channel; }
        if (f.last > g.last) g.last = f.last;
      } else {
        out.push({ id: 'flow:' + f.correlation_id, sel: { correlation: f.correlation_id }, kind: 'flow', title: f.first_channel,
          customer: f.customer, messages: f.messages, failed: f.failed, last: f.last, started: f.started, flows: 1,
          first: f.first_channel, producer: f.producer || 'outside' });
      }
    }
    return out;
  }

  async function loadRecent() {
    const q = state.search;
    try {
      const flows = await api('/flows/recent?' + params({ match: q, limit: 60 }));
      if (q !== state.search) return;
      state.recent = group(flows);
      renderRecent();
      return flows;
    } catch (e) {
      if (e.status === 401) return;
      $('flows').replaceChildren();
      showListEmpty(e.message);
    }
  }

  function showListEmpty(text) {
    const box = $('flows-empty');
    box.textContent = text;
    box.hidden = false;
  }

  function renderRecent() {
    const list = $('flows');
    const current = state.selection ? selectionId(state.selection) : '';
    const items = state.recent.map((g) => {
      const fresh = state.known.size > 0 && !state.known.has(g.id);
      const sub = g.kind === 'order'
        ? [g.customer, g.messages + ' message' + (g.messages === 1 ? '' : 's'), g.flows > 1 ? g.flows + ' flows' : null]
        : [g.producer + ' → ' + g.first, g.messages + ' message' + (g.messages === 1 ? '' : 's')];
      return el('li', {},
        el('button', {
          type: 'button', class: fresh ? 'fresh' : null, 'data-id': g.id,
          'aria-current': g.id === current ? 'true' : 'false',
          title: g.failed ? 'A handler gave a message of it up' : null,
          onclick: () => select(g.sel),
        },
        el('div', { class: 'row1' },
          g.failed ? el('span', { class: 'fail', 'aria-label': 'failed' }) : null,
          el('span', { class: 'title', text: g.title }),
          el('span', { class: 'when', text: ago(g.last), title: clock(g.last) })),
        el('div', { class: 'row2', text: sub.filter(Boolean).join(' · ') })));
    });
    for (const g of state.recent) state.known.add(g.id);
    list.replaceChildren(...items);
    $('list-title').textContent = state.search ? 'Matching “' + short(state.search) + '”' : 'Recent orders and flows';
    $('list-title').title = state.search;
    $('clear-search').hidden = !state.search;
    if (items.length) {
      $('flows-empty').hidden = true;
    } else if (state.search) {
      showListEmpty('Nothing in the journal matches “' + state.search + '”. Search an order id, a customer, a sku, a batch ref, a correlation or a message id.');
    } else {
      showListEmpty('The journal is empty. Drive an order with the README\'s curl examples; it shows here as it happens.');
    }
  }

  // ---- Search ----
  async function search(term) {
    term = term.trim();
    state.search = term;
    if (!term) { renderRecent(); loadRecent(); return; }
    const flows = await loadRecent();
    if (!flows || !flows.length) return;
    // What the term names: an order, a customer or a flow are in the
    // summaries; a message, a batch or a sku are asked for.
    if (flows.some((f) => f.orderid === term)) return select({ order: term });
    if (flows.some((f) => f.customer === term)) return select({ customer: term });
    if (flows.some((f) => f.correlation_id === term)) return select({ correlation: term });
    for (const k of ['message', 'batch', 'sku']) {
      try {
        await api('/flows?' + params({ [k]: term, limit: 1 }));
        return select({ [k]: term });
      } catch (e) {
        if (e.status !== 404) return;
      }
    }
    select(state.recent[0].sel);
  }

  // ---- A selection: its trace, then its live stream ----
  const KINDS = ['order', 'customer', 'sku', 'batch', 'correlation', 'message'];
  function selectionId(sel) {
    const k = KINDS.find((k) => sel[k]);
    return k === 'order' ? 'order:' + sel.order : k === 'correlation' ? 'flow:' + sel.correlation : k + ':' + sel[k];
  }
  function describe(sel) {
    const k = KINDS.find((k) => sel[k]);
    return { order: 'Order', customer: 'Customer', sku: 'SKU', batch: 'Batch', correlation: 'Flow', message: 'Message' }[k] + ' ' + sel[k];
  }

  async function select(sel, { keepHash } = {}) {
    if (state.stream) state.stream.abort();
    state.selection = sel;
    state.msgs = new Map();
    state.seq = 0;
    state.selected = null;
    closePanel();
    if (!keepHash) history.replaceState(null, '', '#' + params(sel));
    switchView('flow');
    $('flow-title').textContent = describe(sel);
    $('flow-meta').textContent = 'Loading…';
    $('flow-empty').hidden = true;
    $('flow-error').hidden = true;
    renderRecent();
    const ctrl = new AbortController();
    state.stream = ctrl;
    try {
      const nodes = await api('/flows?' + params(sel), ctrl.signal);
      if (ctrl.signal.aborted) return;
      ingestTree(nodes, 0, false);
    } catch (e) {
      if (ctrl.signal.aborted || e.name === 'AbortError') return;
      if (e.status !== 404) { showFlowError(e.message); return; }
      // Not in the journal yet: the stream waits for it.
      showFlowError(e.message + '. Waiting for it: it shows here as soon as it happens.', 'notice');
    }
    render();
    follow(sel, ctrl);
  }

  function showFlowError(text, cls) {
    const box = $('flow-error');
    box.className = cls || 'notice error';
    box.textContent = text;
    box.hidden = false;
    $('flow-meta').textContent = '';
  }

  function ingestTree(nodes, depth, fresh) {
    for (const n of nodes || []) {
      const { children, handlings, hop_ms: hop, ...m } = n;
      ingestMessage(m, depth, hop, fresh);
      for (const h of handlings || []) ingestHandling(h, fresh);
      ingestTree(children, depth + 1, fresh);
    }
  }
  function ingestMessage(m, depth, hop, fresh) {
    if (state.msgs.has(m.id)) return false;
    state.msgs.set(m.id, { m, depth, hop: hop || 0, seq: state.seq++, handlings: [], fresh });
    return true;
  }
  function ingestHandling(h, fresh) {
    let e = state.msgs.get(h.message_id);
    if (!e) return false;
    const k = (x) => x.handler + ' ' + x.outcome + ' ' + x.at;
    if (e.handlings.some((x) => k(x) === k(h))) return false;
    e.handlings.push(h);
    e.handlings.sort((a, b) => ms(a.at) - ms(b.at));
    if (fresh) e.freshServices = (e.freshServices || new Set()).add(h.service + ' ' + h.outcome);
    return true;
  }

  // follow reads the live stream of sel with fetch, so that the key goes
  // in a header (EventSource sends none), reconnecting after a break.
  async function follow(sel, ctrl) {
    let backoff = 1000;
    while (!ctrl.signal.aborted) {
      setLive('connecting');
      try {
        const res = await fetch('/flows/stream?' + params(sel), {
          headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctrl.signal, cache: 'no-store',
        });
        if (res.status === 401) { askKey('The live stream needs a key'); return; }
        if (!res.ok || !res.body) throw new Error('stream answered ' + res.status);
        setLive('live', 'Following ' + describe(sel) + ' as it happens');
        backoff = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            onEvent(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      setLive('reconnecting');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  let pending = null;
  function onEvent(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (!data.length) return;
    let ev;
    try { ev = JSON.parse(data.join('\n')); } catch { return; }
    let changed = false;
    if (type === 'message' && ev.message) changed = ingestMessage(ev.message, ev.depth || 0, ev.hop_ms, true);
    if (type === 'handling' && ev.handling) changed = ingestHandling(ev.handling, true);
    if (changed && !pending) {
      pending = requestAnimationFrame(() => {
        pending = null;
        $('flow-error').hidden = true;
        render();
        loadRecent();
      });
    }
  }

  // ---- The sequence diagram ----
  // Each message is a block of rows: one arrow per service it was
  // delivered to and outcome there, from its producer's lifeline.
  function deliveries(e) {
    const by = new Map();
    for (const h of e.handlings) {
      const k = h.service + ' ' + h.outcome;
      if (!by.has(k)) by.set(k, { service: h.service, outcome: h.outcome, handlings: [] });
      by.get(k).handlings.push(h);
    }
    const out = [...by.values()];
    out.sort((a, b) => lane(a.service) - lane(b.service) || OUTCOMES.indexOf(a.outcome) - OUTCOMES.indexOf(b.outcome));
    return out.length ? out : [{ service: null, outcome: 'pending', handlings: [] }];
  }
  let lanes = SERVICES.slice();
  const lane = (s) => { const i = lanes.indexOf(s); return i < 0 ? lanes.length : i; };

  function ordered() {
    return [...state.msgs.values()].sort((a, b) => {
      const ta = ms(a.m.occurred_at), tb = ms(b.m.occurred_at);
      if (isFinite(ta) && isFinite(tb) && ta !== tb) return ta - tb;
      return a.depth - b.depth || a.seq - b.seq;
    });
  }

  function render() {
    const box = $('diagram');
    const entries = ordered();
    if (!entries.length) {
      box.replaceChildren();
      if (state.selection && $('flow-error').hidden) {
        $('flow-empty').hidden = false;
      }
      return;
    }
    $('flow-empty').hidden = true;
    // Lifelines: the shop's services, then any other seen.
    lanes = SERVICES.slice();
    const used = new Set();
    for (const e of entries) {
      const p = e.m.producer || 'outside';
      used.add(p);
      for (const h of e.handlings) used.add(h.service);
    }
    for (const s of used) if (!lanes.includes(s)) lanes.push(s);

    const width = Math.max(($('view-flow').clientWidth || 900) - 40, 560);
    const gutter = 64, top = 58, right = 16;
    const col = Math.max(84, (width - 2 - gutter - right) / lanes.length);
    const x = (s) => gutter + col * (lane(s) + 0.5);
    const W = gutter + col * lanes.length + right;

    const rows = [];
    let y = top + 14;
    let lastCorr = null;
    const t0 = ms(entries[0].m.occurred_at);
    const flows = new Set(entries.map((e) => e.m.correlation_id));
    for (const e of entries) {
      if (flows.size > 1 && e.m.correlation_id !== lastCorr) {
        rows.push({ sep: true, y: y + 6, corr: e.m.correlation_id, first: e });
        y += 26;
      }
      lastCorr = e.m.correlation_id;
      const ds = deliveries(e);
      y += 22; // the label
      ds.forEach((d, i) => {
        rows.push({ e, d, y, first: i === 0 });
        y += d.service === (e.m.producer || 'outside') ? 30 : 22;
      });
      y += 10;
    }
    const H = y + 20;

    const root = svg('svg', { id: 'sequence', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': 'Sequence diagram of ' + $('flow-title').textContent });
    root.append(svg('defs', {}, ...['handled', 'duplicate', 'dead_lettered', 'pending'].map((o) =>
      svg('marker', { id: 'head-' + o, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' },
        svg('path', { d: 'M0,1 L9,5 L0,9 z', fill: `var(--${o === 'dead_lettered' ? 'dead' : o})` })))));

    // Row highlights sit under everything.
    const bgs = svg('g', {});
    root.append(bgs);
    // Lifelines
    for (const s of lanes) {
      const cx = x(s);
      const bw = Math.min(col - 12, 96);
      root.append(svg('g', { class: 'lifeline' + (used.has(s) ? '' : ' unused'), 'data-service': s },
        svg('line', { x1: cx, y1: top, x2: cx, y2: H - 8 }),
        svg('g', { class: 'head' },
          svg('text', { x: cx, y: 30, text: s }),
          svg('rect', { class: 'bar', x: cx - bw / 2, y: 40, width: bw, height: 3, rx: 1.5, fill: SERVICE_COLOURS[s] || '#adb5bd' }))));
    }
    // Arrows
    for (const r of rows) {
      if (r.sep) {
        root.append(svg('g', { class: 'flowsep' },
          svg('line', { x1: 8, x2: W - 8, y1: r.y, y2: r.y }),
          svg('text', { x: 10, y: r.y - 4, text: 'flow ' + short(r.corr) + ' · started by ' + (r.first.m.producer || 'outside') + ' → ' + r.first.m.channel })));
        continue;
      }
      const { e, d } = r;
      const from = e.m.producer || 'outside';
      const x1 = x(from);
      const self = d.service === from;
      const x2 = d.service ? x(d.service) : x1 + Math.min(col * 0.8, 90);
      const isSel = state.selected && state.selected.message === e.m.id && state.selected.service === d.service && state.selected.outcome === d.outcome;
      const fresh = e.fresh || (e.freshServices && e.freshServices.has(d.service + ' ' + d.outcome));
      const bg = svg('rect', { class: 'row-bg' + (isSel ? ' selected' : '') + (fresh ? ' fresh' : ''), x: 2, y: r.y - (r.first ? 26 : 12), width: W - 4, height: r.first ? 38 : 24, rx: 4 });
      bgs.append(bg);
      const g = svg('g', {
        class: `arrow ${d.outcome}` + (isSel ? ' selected' : '') + (fresh ? ' fresh' : ''),
        'data-message': e.m.id, 'data-channel': e.m.channel, 'data-from': from, 'data-to': d.service || '',
        'data-outcome': d.outcome, tabindex: 0, role: 'button',
        'aria-label': `${e.m.channel} from ${from} to ${d.service || 'nobody yet'}: ${OUTCOME_TEXT[d.outcome]}`,
      });
      const marker = `url(#head-${d.outcome})`;
      let shaft;
      if (self) {
        const d1 = `M${x1},${r.y - 4} h34 v14 h-30`;
        g.append(svg('path', { class: 'hit', d: d1 }));
        shaft = svg('path', { class: 'shaft', d: d1, 'marker-end': marker });
      } else {
        const dir = x2 >= x1 ? 1 : -1;
        g.append(svg('line', { class: 'hit', x1, x2, y1: r.y, y2: r.y }));
        shaft = svg('line', { class: 'shaft', x1: x1 + dir * 3, x2: x2 - dir * 4, y1: r.y, y2: r.y, 'marker-end': marker });
      }
      g.append(svg('circle', { class: 'dot', cx: x1, cy: self ? r.y - 4 : r.y, r: 3 }), shaft);
      const endX = self ? x1 + 40 : x2;
      if (d.outcome === 'dead_lettered') g.append(svg('text', { class: 'mark', x: endX + (x2 >= x1 ? 6 : -16), y: r.y + 4, text: '✕' }));
      if (d.outcome === 'duplicate') g.append(svg('text', { class: 'mark', x: endX + (x2 >= x1 ? 6 : -16), y: r.y + 4, text: '↺' }));
      if (d.outcome === 'pending') g.append(svg('text', { class: 'mark', x: endX + 6, y: r.y + 4, fill: 'var(--muted)', text: '…' }));
      if (d.handlings.length > 1 && d.outcome !== 'pending') {
        g.append(svg('text', { class: 'mark', x: (x1 + endX) / 2, y: r.y + 13, fill: 'var(--muted)', 'text-anchor': 'middle', text: '×' + d.handlings.length }));
      }
      if (r.first) {
        const keys = keysOf(e.m).join(' · ');
        const lx = Math.min(x1, self ? x1 : x2) + 10;
        g.append(svg('text', { class: 'label', x: lx, y: r.y - 9 },
          svg('tspan', { class: 'ch', text: e.m.channel }),
          keys ? svg('tspan', { class: 'keys', text: '  ' + keys }) : null));
        const t = ms(e.m.occurred_at);
        root.append(svg('text', { class: 'time', x: 10, y: r.y - 9, text: isFinite(t) && isFinite(t0) ? '+' + span(t - t0) : '' },
          svg('title', { text: clock(e.m.occurred_at) + (e.hop ? ' · ' + span(e.hop) + ' after its cause' : '') })));
      }
      g.append(svg('title', { text: `${e.m.channel}: ${from} → ${d.service || '?'} (${OUTCOME_TEXT[d.outcome]})` }));
      const open = () => { state.selected = { message: e.m.id, service: d.service, outcome: d.outcome }; showPanel(e, d); render(); };
      g.addEventListener('click', open);
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); open(); } });
      root.append(g);
    }
    box.replaceChildren(root);
    for (const e of state.msgs.values()) { e.fresh = false; e.freshServices = null; }

    // The header line
    const first = entries[0].m, last = entries[entries.length - 1].m;
    const failed = entries.filter((e) => e.handlings.some((h) => h.outcome === 'dead_lettered')).length;
    const bits = [entries.length + ' message' + (entries.length === 1 ? '' : 's'),
      flows.size > 1 ? flows.size + ' flows' : null,
      first.customer ? 'customer ' + first.customer : null,
      'from ' + clock(first.occurred_at) + ' to ' + clock(last.occurred_at),
      failed ? failed + ' dead-lettered' : null];
    $('flow-meta').textContent = bits.filter(Boolean).join(' · ');
    // The panel follows what it shows.
    if (state.selected) {
      const e = state.msgs.get(state.selected.message);
      const d = e && deliveries(e).find((x) => x.service === state.selected.service && x.outcome === state.selected.outcome);
      if (e && d && !$('panel').hidden) showPanel(e, d);
    }
  }

  // ---- The message panel ----
  function showPanel(e, d) {
    const m = e.m;
    const from = m.producer || 'outside';
    $('panel-title').textContent = m.channel;
    const link = (text, action) => el('button', { type: 'button', class: 'link', text, onclick: action });
    const cause = state.msgs.get(m.causation_id);
    const body = [
      el('div', { class: 'route' }, from, ' → ', d.service || 'nobody yet',
        el('span', { class: 'badge ' + d.outcome, text: OUTCOME_TEXT[d.outcome] })),
      keysOf(m, true).length ? el('p', { class: 'meta', text: keysOf(m, true).join(' · ') }) : null,
      el('h3', { text: 'Ids' }),
      el('dl', { class: 'kv ids' },
        el('dt', { text: 'message' }), el('dd', { 'data-field': 'message-id', text: m.id }),
        el('dt', { text: 'correlation' }), el('dd', {}, state.selection && state.selection.correlation === m.correlation_id
          ? m.correlation_id : link(m.correlation_id, () => select({ correlation: m.correlation_id }))),
        el('dt', { text: 'causation' }), el('dd', {}, !m.causation_id ? '—' : cause
          ? link(m.causation_id, () => { const cd = deliveries(cause)[0]; state.selected = { message: cause.m.id, service: cd.service, outcome: cd.outcome }; showPanel(cause, cd); render(); })
          : m.causation_id),
        m.key ? [el('dt', { text: 'key' }), el('dd', { text: m.key })] : null),
      el('h3', { text: 'Timing' }),
      el('dl', { class: 'kv' },
        el('dt', { text: 'occurred' }), el('dd', { text: clock(m.occurred_at) }),
        e.hop ? [el('dt', { text: 'hop' }), el('dd', { text: span(e.hop) + ' after its cause' })] : null,
        ...d.handlings.slice(0, 1).flatMap((h) => [el('dt', { text: 'handled' }), el('dd', { text: clock(h.at) + (isFinite(ms(h.at) - ms(m.occurred_at)) ? ' (+' + span(ms(h.at) - ms(m.occurred_at)) + ')' : '') })])),
      el('h3', { text: 'Handlings' }),
      e.handlings.length
        ? el('ul', { class: 'handlings' }, e.handlings.map((h) => el('li', {},
          el('div', { class: 'h1' }, el('span', { class: 'handler', text: h.handler }), el('span', { class: 'badge ' + h.outcome, text: OUTCOME_TEXT[h.outcome] || h.outcome })),
          el('div', { class: 'h2', text: [clock(h.at), h.duration_ms ? span(h.duration_ms) : null,
            h.raised && h.raised.length ? 'raised ' + h.raised.length : null, h.attempts ? h.attempts + ' attempt' + (h.attempts === 1 ? '' : 's') : null].filter(Boolean).join(' · ') }),
          h.reason ? el('div', { class: 'reason', text: h.reason }) : null)))
        : el('p', { class: 'meta', text: 'No service has handled it yet.' }),
      el('h3', { text: 'Payload' }),
      prettyJSON(m.payload),
    ];
    $('panel-body').replaceChildren(...body.filter(Boolean));
    $('panel').hidden = false;
  }
  function closePanel() {
    $('panel').hidden = true;
    if (state.selected) { state.selected = null; if (state.msgs.size) render(); }
  }

  // ---- The service map ----
  // Where each service sits, in a 1000 × 440 drawing: callers on the
  // left, the stock in the middle, the customer's side on the right.
  const PLACES = {
    outside: [110, 220], orders: [380, 80], allocation: [380, 360],
    crm: [650, 80], warehouse: [650, 360], notifications: [880, 220],
  };

  async function loadMap() {
    if (state.view !== 'map') return;
    try {
      const m = await api('/flows/map?' + params({ window: $('map-window').value }));
      $('map-error').hidden = true;
      renderMap(m);
    } catch (e) {
      if (e.status === 401) return;
      $('map-error').textContent = e.message;
      $('map-error').className = 'notice error';
      $('map-error').hidden = false;
    }
  }

  function renderMap(m) {
    const minutes = parseDuration(m.window) / 60000;
    // Links between services, declared or seen.
    const pairs = new Map();
    const pair = (from, to) => {
      const k = from + '>' + to;
      if (!pairs.has(k)) pairs.set(k, { from, to, channels: new Set(), seen: new Set(), messages: 0, dead: 0, undeclared: false });
      return pairs.get(k);
    };
    for (const c of m.channels) {
      if (c.declared) {
        for (const s of c.senders) for (const r of c.receivers) if (s !== 'outside' || r !== 'outside') pair(s, r).channels.add(c.channel);
      }
      for (const l of c.links) {
        if (!l.to) continue;
        const p = pair(l.from, l.to);
        p.channels.add(c.channel);
        p.seen.add(c.channel);
        p.messages += l.messages;
        p.dead += l.dead_lettered;
        if (!l.declared) p.undeclared = true;
      }
    }
    const services = SERVICES.filter((s) => m.services.includes(s)).concat(m.services.filter((s) => !SERVICES.includes(s)));
    let extra = 0;
    const place = (s) => PLACES[s] || (PLACES[s] = [140 + 180 * extra++, 430]);
    services.forEach(place);
    const H = Math.max(440, ...services.map((s) => place(s)[1] + 40));
    const root = svg('svg', { id: 'service-map', viewBox: `0 0 1000 ${H}`, width: '100%', role: 'img', 'aria-label': 'Service map' });
    root.append(svg('defs', {}, ...[['seen', '#5c6b8a'], ['idle', '#c5ccd8'], ['failing', 'var(--dead)'], ['undeclared', 'var(--undeclared)']].map(([k, c]) =>
      svg('marker', { id: 'map-' + k, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 10, markerHeight: 10, markerUnits: 'userSpaceOnUse', orient: 'auto' },
        svg('path', { d: 'M0,1 L9,5 L0,9 z', fill: c })))));
    const maxRate = Math.max(1, ...[...pairs.values()].map((p) => p.messages));
    const outRate = {};
    for (const p of pairs.values()) {
      outRate[p.from] = (outRate[p.from] || 0) + p.messages;
      const [ax, ay] = place(p.from), [bx, by] = place(p.to);
      const cls = p.undeclared ? 'undeclared' : p.dead ? 'failing' : p.seen.size ? 'seen' : 'idle';
      const width = p.seen.size ? 1.4 + 3.2 * Math.sqrt(p.messages / maxRate) : 1.3;
      let d, lx, ly;
      if (p.from === p.to) {
        d = `M${ax - 20},${ay - 22} C${ax - 40},${ay - 80} ${ax + 40},${ay - 80} ${ax + 20},${ay - 22}`;
        lx = ax; ly = ay - 70;
      } else {
        // A curve bent to the right of its direction: the two ways
        // between a pair of services stay apart.
        const dx = bx - ax, dy = by - ay, len = Math.hypot(dx, dy);
        const nx = -dy / len, ny = dx / len, bend = 34;
        const cx = (ax + bx) / 2 + nx * bend, cy = (ay + by) / 2 + ny * bend;
        const trim = (px, py, qx, qy) => { // to the edge of the box around (px, py)
          const tx = qx - px, ty = qy - py;
          const s = Math.min(70 / Math.abs(tx || 1e-9), 26 / Math.abs(ty || 1e-9), 1);
          return [px + tx * s, py + ty * s];
        };
        const [sx, sy] = trim(ax, ay, cx, cy), [ex, ey] = trim(bx, by, cx, cy);
        d = `M${sx},${sy} Q${cx},${cy} ${ex},${ey}`;
        // The label beside the curve's middle, on its outer side.
        lx = (sx + 2 * cx + ex) / 4 + nx * 14; ly = (sy + 2 * cy + ey) / 4 + ny * 10;
      }
      const label = p.seen.size ? (p.messages / minutes >= 1 ? (p.messages / minutes).toFixed(1) + '/min' : p.messages + ' msg') + (p.dead ? ' · ' + p.dead + ' dead' : '') : '';
      root.append(svg('g', { class: 'edge ' + cls, 'data-from': p.from, 'data-to': p.to },
        svg('path', { d, 'stroke-width': width, 'marker-end': `url(#map-${cls})` }),
        label ? svg('text', { x: lx, y: ly + 4, text: label }) : null,
        svg('title', { text: `${p.from} → ${p.to}\n` + [...p.channels].sort().map((c) => (p.seen.has(c) ? '● ' : '○ ') + c).join('\n') +
          (p.undeclared ? '\nnot all of it is in the contract' : '') })));
    }
    for (const s of services) {
      const [cx, cy] = place(s);
      root.append(svg('g', { class: 'node', 'data-service': s },
        svg('rect', { x: cx - 70, y: cy - 24, width: 140, height: 48, rx: 9 }),
        svg('rect', { class: 'bar', x: cx - 70, y: cy - 24, width: 5, height: 48, rx: 2, fill: SERVICE_COLOURS[s] || '#adb5bd' }),
        svg('text', { class: 'name', x: cx + 2, y: cy - 2, text: s }),
        svg('text', { class: 'rate', x: cx + 2, y: cy + 14, text: outRate[s] ? outRate[s] + ' sent' : s === 'outside' ? 'callers, publishers' : 'quiet' })));
    }
    $('map').replaceChildren(root);

    // Differences
    const warn = new Set(['undeclared_channel', 'undeclared_sender', 'undeclared_receiver', 'undeclared_field']);
    const KIND = { undeclared_channel: 'channel not declared', undeclared_sender: 'sender not declared', undeclared_receiver: 'receiver not declared',
      undeclared_field: 'payload differs', unused_channel: 'never seen' };
    const diffs = [...m.differences].sort((a, b) => warn.has(b.kind) - warn.has(a.kind));
    $('map-diffs').replaceChildren(...(diffs.length ? diffs.map((d) => el('li', { class: warn.has(d.kind) ? 'warn' : 'info', 'data-kind': d.kind, 'data-channel': d.channel },
      el('span', { class: 'kind', text: KIND[d.kind] || d.kind }), el('span', { text: d.detail }))) : [el('li', {}, el('span', {
      class: 'ok', text: m.contract ? 'What runs matches the contract.' : 'No contract was given to check against.' }))]));

    // Channels
    const rows = [];
    for (const c of m.channels) {
      const links = c.links.length ? c.links : [null];
      links.forEach((l, i) => {
        const flag = !c.declared || (l && !l.declared);
        rows.push(el('tr', { class: flag ? 'flag' : null, 'data-channel': c.channel },
          el('td', { class: 'ch', text: i === 0 ? c.channel : '' }),
          el('td', { text: l ? l.from + ' → ' + (l.to || 'no handler yet') : c.senders.join(', ') + ' → ' + c.receivers.filter((r) => r !== 'outside' || c.senders.length).join(', ') }),
          el('td', { class: l ? '' : 'dim', text: !c.declared ? 'not declared' : l && !l.declared ? 'not declared' : 'declared' }),
          el('td', { class: 'num', text: l ? String(l.messages) : '—' }),
          el('td', { class: 'num', text: l ? l.per_minute.toFixed(2) : '—' }),
          el('td', { class: 'num', text: l ? String(l.handled) : '—' }),
          el('td', { class: 'num', text: l ? String(l.duplicates) : '—' }),
          el('td', { class: 'num' + (l && l.dead_lettered ? ' bad' : ''), text: l ? String(l.dead_lettered) : '—' }),
          el('td', { class: 'dim', text: i === 0 ? (c.last_seen ? ago(c.last_seen) : 'never') : '' })));
      });
    }
    $('map-table').replaceChildren(
      el('thead', {}, el('tr', {}, ...['Channel', 'From → to', 'Contract', 'Messages', 'Per min', 'Handled', 'Duplicates', 'Dead', 'Last seen'].map((h, i) =>
        el('th', { class: i >= 3 && i <= 7 ? 'num' : null, text: h })))),
      el('tbody', {}, ...rows));
  }
  function parseDuration(s) {
    let total = 0;
    for (const [, n, u] of String(s).matchAll(/([\d.]+)(h|m|s|ms)/g)) total += parseFloat(n) * { h: 3600000, m: 60000, s: 1000, ms: 1 }[u];
    return total || 3600000;
  }

  // ---- Views ----
  function switchView(v) {
    state.view = v;
    $('view-flow').hidden = v !== 'flow';
    $('view-map').hidden = v !== 'map';
    $('tab-flow').setAttribute('aria-selected', String(v === 'flow'));
    $('tab-map').setAttribute('aria-selected', String(v === 'map'));
    if (v === 'map') { $('panel').hidden = true; loadMap(); }
  }

  function refreshAll() {
    loadRecent();
    if (state.selection) select(state.selection, { keepHash: true });
    if (state.view === 'map') loadMap();
  }

  function fromHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const k = KINDS.find((k) => p.get(k));
    return k ? { [k]: p.get(k) } : null;
  }

  // ---- Wiring ----
  function start() {
    $('search').addEventListener('submit', (ev) => { ev.preventDefault(); search($('q').value); });
    $('clear-search').addEventListener('click', () => { $('q').value = ''; search(''); });
    $('tab-flow').addEventListener('click', () => switchView('flow'));
    $('tab-map').addEventListener('click', () => switchView('map'));
    $('map-window').addEventListener('change', loadMap);
    $('panel-close').addEventListener('click', closePanel);
    $('key-button').addEventListener('click', openKeyDialog);
    $('key-cancel').addEventListener('click', closeKeyDialog);
    $('key-forget').addEventListener('click', () => saveKey(''));
    $('key-save').addEventListener('click', () => saveKey($('key-input').value.trim()));
    $('key-input').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') { ev.preventDefault(); saveKey($('key-input').value.trim()); }
      if (ev.key === 'Escape') closeKeyDialog();
    });
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && !$('panel').hidden) closePanel();
      if (ev.key === '/' && document.activeElement.tagName !== 'INPUT') { ev.preventDefault(); $('q').focus(); }
    });
    window.addEventListener('hashchange', () => { const s = fromHash(); if (s) select(s, { keepHash: true }); });
    // The diagram fits the room it has: redrawn when that changes (the
    // window, the panel opening or closing).
    let width = 0;
    new ResizeObserver(() => {
      const w = $('view-flow').clientWidth;
      if (Math.abs(w - width) > 24 && state.msgs.size) { width = w; render(); }
    }).observe($('view-flow'));
    if (key()) $('key-button').textContent = 'API key ✓';

    const sel = fromHash();
    if (sel) {
      const k = Object.keys(sel)[0];
      if (k !== 'correlation' && k !== 'message') $('q').value = sel[k];
      select(sel, { keepHash: true });
    }
    loadRecent();
    // The list and the map follow the journal while the page is seen.
    setInterval(() => { if (!document.hidden) loadRecent(); }, 3000);
    setInterval(() => { if (!document.hidden && state.view === 'map') loadMap(); }, 5000);
  }
  start();
})();
