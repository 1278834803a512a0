// Airlift console: one page over the REST API. Forms are built from the
// API's own OpenAPI schemas, so every field an object has is on its form
// and a validation error lands next to the field it names.
'use strict';

const RANK = { viewer: 0, operator: 1, admin: 2 };
const state = { me: null, schemas: {}, stream: null, timers: [] };

// ---- small helpers -------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svg = (tag, attrs) => {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
};

async function api(method, path, body) {
  const init = { method, headers: { 'x-airlift-console': '1' } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers['content-type'] = 'application/json'; }
  const r = await fetch(path, init);
  if (r.status === 401) { location.reload(); throw new Error('signed out'); }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  return { ok: r.ok, status: r.status, data };
}
const list = async (path) => { const r = await api('GET', path); return r.ok && Array.isArray(r.data) ? r.data : []; };
const idOf = (o) => o.id ?? o.devEui ?? o.name;
const can = (role) => state.me && RANK[state.me.role] >= RANK[role];
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '');
const fmtBytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B');

/// A button that needs `role`: disabled, with the reason, for lower roles.
function roleButton(role, label, onclick, attrs) {
  const allowed = can(role);
  return h('button', Object.assign({ type: 'button', onclick: allowed ? onclick : undefined, disabled: !allowed,
    title: allowed ? undefined : `needs the ${role} role`, 'aria-disabled': allowed ? undefined : 'true' }, attrs || {}), label);
}

function status(text) { return h('span', { class: `status ${text || ''}` }, text || '—'); }

function notice(view, text, isError) {
  view.prepend(h('p', { class: isError ? 'notice error' : 'notice', role: isError ? 'alert' : 'status' }, text));
}

// ---- forms from schemas --------------------------------------------------

function resolve(schema) {
  if (!schema) return {};
  if (schema.$ref) return resolve(state.schemas[schema.$ref.split('/').pop()]);
  if (schema.oneOf) {
    const real = schema.oneOf.find((s) => s.type !== 'null');
    return Object.assign({ nullable: true }, resolve(real), { description: schema.description });
  }
  return schema;
}

// Fields that name another object: where to list the choices.
const REFERENCES = {
  deviceProfile: { path: '/api/device-profiles' },
  backendInstance: { path: '/api/backend-instances' },
  file: { path: '/api/files' },
  smartDeltaKey: { path: '/api/smart-delta-keys' },
  deviceLibrary: { path: '/api/plugins', kind: 'device-library' },
  fuotaLibrary: { path: '/api/plugins', kind: 'device-library' },
  updateType: { path: '/api/plugins', kind: 'update-type' },
  plugin: { path: '/api/plugins', kind: 'backend' },
  deviceSets: { path: '/api/device-sets', many: true },
  regions: { path: '/api/regions', many: true },
  multicastGroups: { path: '/api/multicast-groups', many: true },
  mcGroup: { path: '/api/multicast-groups' },
};
const isSecret = (name, schema) => /write-only/i.test(schema.description || '') || name === 'secrets';

async function choices(ref) {
  const items = await list(ref.path);
  return items.filter((o) => !ref.kind || o.kind === ref.kind).filter((o) => !o.archived)
    .map((o) => ({ value: ref.path === '/api/plugins' ? o.name : idOf(o), label: o.name && o.name !== idOf(o) ? `${o.name} (${idOf(o)})` : String(idOf(o)) }));
}

const label = (name) => name.replace(/([A-Z])/g, ' $1').replace(/^./, (c) => c.toUpperCase());
const toLocalInput = (iso) => { if (!iso) return ''; const d = new Date(iso); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); };

/// One input for a schema property; returns [element, read()].
async function fieldInput(name, schema, value, editing, id) {
  const s = resolve(schema);
  const ref = REFERENCES[name];
  if (ref) {
    const opts = await choices(ref);
    const chosen = new Set(ref.many ? value || [] : value != null ? [value] : []);
    const sel = h('select', { id, name, multiple: ref.many || undefined, size: ref.many ? Math.min(5, Math.max(2, opts.length)) : undefined },
      ref.many ? null : h('option', { value: '' }, s.nullable || !(state.required || []).includes(name) ? '(none)' : '(choose)'),
      opts.map((o) => h('option', { value: o.value, selected: chosen.has(o.value) }, o.label)));
    return [sel, () => (ref.many ? [...sel.selectedOptions].map((o) => o.value) : sel.value || null)];
  }
  if (s.enum) {
    const sel = h('select', { id, name }, s.nullable ? h('option', { value: '' }, '(none)') : null,
      s.enum.map((v) => h('option', { value: v, selected: v === value }, v)));
    return [sel, () => sel.value || null];
  }
  if (s.type === 'boolean') {
    const box = h('input', { id, name, type: 'checkbox', checked: !!value });
    return [box, () => box.checked];
  }
  const t = Array.isArray(s.type) ? s.type.find((x) => x !== 'null') : s.type;
  if (t === 'integer' || t === 'number') {
    const input = h('input', { id, name, type: 'number', step: t === 'integer' ? 1 : 'any', min: s.minimum, value: value ?? '' });
    return [input, () => (input.value === '' ? null : Number(input.value))];
  }
  if (t === 'array') {
    const area = h('textarea', { id, name, placeholder: 'one per line' }, (value || []).join('\n'));
    const itemType = resolve(s.items).type;
    return [area, () => area.value.split(/[\s,]+/).filter(Boolean).map((v) => (itemType === 'integer' ? Number(v) : v))];
  }
  if (t === 'object' && s.additionalProperties && !s.properties) {
    const secret = isSecret(name, s);
    const shown = secret ? '' : Object.entries(value || {}).map(([k, v]) => `${k}=${v}`).join('\n');
    const area = h('textarea', { id, name, placeholder: secret ? (editing ? 'name=value (unchanged when empty; write-only)' : 'name=value, one per line (write-only)') : 'name=value, one per line' }, shown);
    return [area, () => {
      const out = {};
      for (const line of area.value.split('\n')) {
        const at = line.indexOf('=');
        if (at > 0) { const v = line.slice(at + 1).trim(); out[line.slice(0, at).trim()] = t === 'object' && resolve(s.additionalProperties).type === 'integer' ? Number(v) : v; }
      }
      return out;
    }];
  }
  if (t === 'object' || (!t && (s.properties || s.oneOf || s.allOf))) {
    const area = h('textarea', { id, name, placeholder: 'JSON' }, value ? JSON.stringify(value, null, 1) : '');
    return [area, () => (area.value.trim() ? JSON.parse(area.value) : null)];
  }
  if (s.format === 'date-time') {
    const input = h('input', { id, name, type: 'datetime-local', value: toLocalInput(value) });
    return [input, () => (input.value ? new Date(input.value).toISOString() : null)];
  }
  const secret = isSecret(name, s);
  const input = h('input', { id, name, type: secret ? 'password' : 'text', autocomplete: secret ? 'new-password' : 'off',
    placeholder: secret && editing ? '(unchanged)' : undefined, value: secret ? '' : value ?? '' });
  return [input, () => (input.value === '' ? null : input.value)];
}

/// A form for `schemaName`'s fields, filled from `initial`. `submit(body)`
/// answers {ok, data}; an error naming a field is shown next to it.
async function objectForm(schemaName, initial, submit, opts) {
  const schema = state.schemas[schemaName];
  if (!schema) return h('p', { class: 'error' }, `no schema ${schemaName}`);
  state.required = schema.required || [];
  const editing = !!initial;
  // Input ids are `f-<field>` (`<prefix><field>` for a second form on a page).
  const prefix = opts?.prefix || 'f-';
  const readers = {};
  const errors = {};
  const form = h('form', { class: 'object', novalidate: true, 'aria-label': opts?.title || schemaName });
  // Names first, then the schema's order.
  const FIRST = ['name', 'devEui', 'description'];
  const fields = Object.entries(schema.properties || {}).sort(([a], [b]) => (FIRST.includes(b) - FIRST.includes(a)) || (FIRST.indexOf(a) - FIRST.indexOf(b)));
  for (const [name, prop] of fields) {
    if (opts?.omit?.includes(name)) continue;
    const [input, read] = await fieldInput(name, prop, initial?.[name] ?? opts?.defaults?.[name], editing, prefix + name);
    const desc = resolve(prop).description || prop.description;
    errors[name] = h('span', { class: 'field-error', id: `err-${prefix}${name}`, role: 'alert' });
    input.setAttribute('aria-describedby', `err-${prefix}${name}`);
    if (opts?.onchange) input.addEventListener('change', opts.onchange);
    form.append(h('label', { for: prefix + name }, label(name), (schema.required || []).includes(name) ? ' *' : '', desc ? h('span', { class: 'hint' }, desc.split('\n')[0]) : null),
      h('div', {}, input, errors[name]));
    readers[name] = read;
  }
  const general = h('p', { class: 'field-error', role: 'alert' });
  form.read = () => {
    const body = {};
    for (const [name, read] of Object.entries(readers)) {
      const v = read();
      if (v === null || (Array.isArray(v) && v.length === 0 && !editing) || (typeof v === 'object' && v && !Array.isArray(v) && Object.keys(v).length === 0 && !editing)) continue;
      body[name] = v;
    }
    return body;
  };
  form.append(general, h('div', { class: 'actions' }, h('button', { type: 'submit', id: `${schemaName}-submit`, disabled: !can(opts?.role || 'operator') }, opts?.submitLabel || (editing ? 'Save' : 'Create'))));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    Object.values(errors).forEach((e) => (e.textContent = ''));
    general.textContent = '';
    let body;
    try { body = form.read(); } catch (e) { general.textContent = `Not valid JSON: ${e.message}`; return; }
    const r = await submit(body);
    if (r.ok) return;
    const message = r.data?.error || `failed (${r.status})`;
    const field = (r.data?.field || '').split(/[.[]/)[0];
    if (errors[field]) { errors[field].textContent = message; form.querySelector(`#${prefix}${field}`)?.focus(); } else general.textContent = message;
  });
  return form;
}

// ---- views ---------------------------------------------------------------

const VIEWS = [
  [/^#\/campaigns\/new$/, newCampaign],
  [/^#\/campaigns\/([^/]+)$/, campaignPage],
  [/^#\/devices\/([^/]+)$/, devicePage],
  [/^#\/devices$/, devicesPage],
  [/^#\/firmware$/, firmwarePage],
  [/^#\/fleet(?:\/([a-z-]+))?$/, fleetPage],
  [/^#\/plugins$/, pluginsPage],
  [/^#\/campaigns$|^#?\/?$/, campaignsPage],
];

async function route() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  state.timers.forEach(clearInterval); state.timers = [];
  const hash = location.hash || '#/campaigns';
  for (const a of document.querySelectorAll('nav a')) a.toggleAttribute('aria-current', hash.startsWith(a.getAttribute('href')));
  document.querySelectorAll('nav a[aria-current]').forEach((a) => a.setAttribute('aria-current', 'page'));
  const view = document.getElementById('view');
  view.replaceChildren(h('p', {}, 'Loading…'));
  for (const [re, render] of VIEWS) {
    const m = hash.match(re);
    if (m) {
      const root = h('div', {});
      try { await render(root, ...m.slice(1).map((x) => x && decodeURIComponent(x))); } catch (e) { root.append(h('p', { class: 'error', role: 'alert' }, String(e))); }
      view.replaceChildren(root);
      return;
    }
  }
  view.replaceChildren(h('p', {}, 'No such page.'));
}

async function campaignsPage(root) {
  const campaigns = await list('/api/campaigns');
  root.append(h('div', { class: 'toolbar' }, h('h1', {}, 'Campaigns'),
    roleButton('operator', 'New campaign', () => (location.hash = '#/campaigns/new'), { id: 'new-campaign' })));
  root.append(h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Type'), h('th', {}, 'Status'), h('th', { class: 'hide-narrow' }, 'Created'), h('th', { class: 'hide-narrow' }, 'Network'))),
    h('tbody', {}, campaigns.filter((c) => !c.archived).map((c) => h('tr', {},
      h('td', {}, h('a', { href: `#/campaigns/${encodeURIComponent(c.id)}` }, c.name)), h('td', {}, c.campaignType),
      h('td', {}, status(c.status)), h('td', { class: 'hide-narrow' }, fmtTime(c.created)), h('td', { class: 'hide-narrow' }, c.backendInstance)))))));
  if (!campaigns.length) root.append(h('p', {}, 'No campaign yet.'));
}

async function newCampaign(root) {
  root.append(h('h1', {}, 'New campaign'));
  const estimate = h('div', { class: 'figure', 'aria-live': 'polite', id: 'estimate' }, h('div', { class: 'label' }, 'Duration estimate'), h('div', { class: 'value' }, '—'));
  const groups = h('div', { id: 'group-options' });
  let form;
  let pending;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      let body;
      try { body = form.read(); } catch (_) { return; }
      const r = await api('POST', '/api/campaigns/duration', body);
      estimate.lastChild.textContent = r.ok ? describeDuration(r.data) : (r.data?.error || '—');
      await showGroups(groups, body.regions || []);
    }, 300);
  };
  form = await objectForm('CampaignInput', null, async (body) => {
    const r = await api('POST', '/api/campaigns', body);
    if (r.ok) location.hash = `#/campaigns/${encodeURIComponent(r.data.id)}`;
    return r;
  }, { onchange: refresh, title: 'New campaign', defaults: { campaignType: 'FIRMWARE_UPDATE', maxDurationMinutes: 1440, successThreshold: 90 } });
  root.append(h('div', { class: 'detail' }, h('section', { class: 'card' }, form),
    h('div', {}, estimate, h('h2', {}, 'Fragmentation and session options of the chosen regions'), groups)));
  refresh();
}

function describeDuration(d) {
  // Seed 002's RESP: `duration` in seconds, with each group's stages.
  const m = Math.ceil((d.duration || 0) / 60);
  return m >= 120 ? `about ${(m / 60).toFixed(1)} h (at ${Math.round(d.assumptions.loss * 100)} % loss)` : `about ${m} min (at ${Math.round(d.assumptions.loss * 100)} % loss)`;
}

async function showGroups(box, regionIds) {
  const rows = [];
  for (const id of regionIds) {
    const r = await api('GET', `/api/regions/${encodeURIComponent(id)}`);
    for (const g of r.ok ? r.data.multicastGroups || [] : []) {
      const gr = await api('GET', `/api/multicast-groups/${encodeURIComponent(g)}`);
      if (gr.ok) rows.push(gr.data);
    }
  }
  box.replaceChildren(rows.length ? h('table', {}, h('thead', {}, h('tr', {}, ['Group', 'Class', 'DR', 'Frequency', 'Redundancy', 'Ping slot'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map((g) => h('tr', {}, h('td', {}, g.name || g.devEui), h('td', {}, g.sessionClass), h('td', {}, g.dataRate), h('td', {}, g.frequency),
      h('td', {}, g.redundancy == null ? 'closed loop' : `${g.redundancy} % uncoded`), h('td', {}, g.pingSlotPeriodicity))))) : h('p', { class: 'hint' }, 'Choose regions to see their multicast groups.'));
}

// The campaign page: a timeline per group, a device grid, the fragment
// chart, the frame counters, all live over the progress SSE stream.
async function campaignPage(root, id) {
  const c = await api('GET', `/api/campaigns/${encodeURIComponent(id)}`);
  if (!c.ok) throw new Error(c.data?.error || 'no such campaign');
  const campaign = c.data;
  const statusBox = h('span', { id: 'campaign-status' }, status(campaign.status));
  const instances = (await list('/api/backend-instances')).filter((i) => !i.archived);
  const moveTo = h('select', { id: 'move-to', 'aria-label': 'Backend instance to move to' }, instances.map((i) => h('option', { value: i.id, selected: i.id === campaign.backendInstance }, i.name)));
  const message = h('p', { role: 'status', 'aria-live': 'polite', class: 'hint', id: 'campaign-message' });
  const act = (label, fn, attrs) => roleButton('operator', label, async () => { message.textContent = ''; const r = await fn(); message.textContent = r.ok ? `${label}: done` : (r.data?.error || `${label} failed`); if (r.ok) poll(); }, attrs);
  root.append(h('div', { class: 'toolbar' }, h('h1', {}, campaign.name, ' '), statusBox),
    h('div', { class: 'toolbar' },
      act('Start', () => api('POST', `/api/campaigns/${encodeURIComponent(id)}/start`), { id: 'start' }),
      act('Stop', () => api('POST', `/api/campaigns/${encodeURIComponent(id)}/stop`), { id: 'stop', class: 'danger' }),
      act('New campaign from failed devices', async () => { const r = await api('POST', `/api/campaigns/${encodeURIComponent(id)}/retry-failed`); if (r.ok) location.hash = `#/campaigns/${encodeURIComponent(r.data.id)}`; return r; }, { id: 'retry-failed', class: 'secondary' }),
      moveTo, act('Move to instance', () => api('PUT', `/api/campaigns/${encodeURIComponent(id)}/backend-instance`, { backendInstance: moveTo.value }), { id: 'move', class: 'secondary' })),
    message);
  const figures = {};
  const figure = (key, text) => (figures[key] = h('div', { class: 'value', id: `fig-${key}` }, '—')) && h('div', { class: `figure fig-${key}` }, h('div', { class: 'label' }, text), figures[key]);
  root.append(h('div', { class: 'figures' }, figure('stage', 'Stage'), figure('devices', 'Devices succeeded / failed / total'), figure('fragments', 'Fragments sent'), figure('fcnt', 'Multicast frame counter')));
  const timeline = h('div', { class: 'timeline', id: 'timeline', 'aria-label': 'Stage timeline' });
  const grid = h('div', { class: 'grid', id: 'device-grid', role: 'list', 'aria-label': 'Devices by state' });
  const chart = svg('svg', { class: 'chart', viewBox: '0 0 600 220', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Fragments sent against the lower bound and the uncoded count' });
  root.append(h('h2', {}, 'Stages'), timeline, h('h2', {}, 'Devices'),
    h('div', { class: 'legend' }, ['COMPLETED', 'RUNNING', 'ERROR', 'PROCESSED'].map((s) => h('span', {}, h('i', { class: s }), s.toLowerCase()))), grid,
    h('h2', {}, 'Fragments'), chart, h('div', { class: 'legend' }, h('span', {}, '— sent'), h('span', {}, '- - lower bound (worst device at its reported loss)'), h('span', {}, '··· uncoded')));
  const samples = [];
  let devicesDue = 0;
  // What each button may do in each state (and only with the role).
  const enable = (campaignStatus) => {
    const allowed = { start: campaignStatus === 'CONFIGURED', stop: campaignStatus === 'RUNNING', 'retry-failed': ['COMPLETED', 'ERROR', 'STOPPED'].includes(campaignStatus), move: true };
    for (const [id, ok] of Object.entries(allowed)) {
      const b = root.querySelector(`#${id}`);
      if (b && can('operator')) b.disabled = !ok;
    }
  };
  enable(campaign.status);
  const show = async (p) => {
    statusBox.replaceChildren(status(p.campaignStatus));
    enable(p.campaignStatus);
    figures.stage.textContent = p.stage ? `${p.stage.stageName} ${p.stage.stageProgress} %` : '—';
    figures.devices.textContent = `${p.devicesSucceeded ?? 0} / ${p.devicesFailed ?? 0} / ${p.devicesTotal ?? 0}`;
    figures.fragments.textContent = `${p.fragmentsSent ?? 0}`;
    const groups = p.groups && p.groups.length ? p.groups : [p];
    figures.fcnt.textContent = groups.map((g) => g.mcGroupState?.fCntDown ?? '—').join(' · ');
    timeline.replaceChildren(...groups.map((g) => drawStages(g)));
    samples.push([Date.now(), p.fragmentsSent || 0]);
    drawChart(chart, samples, p.fragmentsLowerBound, p.fragmentsUncoded);
    if (Date.now() >= devicesDue) {
      devicesDue = Date.now() + 1000;
      const d = await api('GET', `/api/campaigns/${encodeURIComponent(id)}/devices`);
      if (d.ok) drawGrid(grid, d.data);
    }
  };
  const poll = async () => {
    const p = await api('GET', `/api/campaigns/${encodeURIComponent(id)}/progress`);
    if (!p.ok) { figures.stage.textContent = 'not started'; return; }
    await show(p.data);
    if (p.data.campaignStatus === 'RUNNING' && !state.stream) {
      state.stream = new EventSource(`/api/campaigns/${encodeURIComponent(id)}/progress/stream`);
      state.stream.addEventListener('progress', (ev) => show(JSON.parse(ev.data)));
      state.stream.addEventListener('error', () => { state.stream?.close(); state.stream = null; setTimeout(poll, 1000); });
    }
  };
  await poll();
}

function drawStages(g) {
  const names = g.campaignStages || [];
  const done = g.campaignStagesCompleted || 0;
  return h('div', { class: 'group' }, h('span', { class: 'mono' }, g.mcGroupEui || ''),
    h('ol', {}, names.map((name, i) => {
      const current = i === done && g.campaignStatus !== 'COMPLETED';
      const failed = current && g.campaignStatus === 'ERROR';
      const pct = i < done ? 100 : current ? g.stage?.stageProgress ?? 0 : 0;
      const fill = h('div', { class: 'fill' });
      fill.style.width = `${pct}%`;
      return h('li', { class: i < done ? 'done' : failed ? 'failed' : current ? 'current' : '', 'data-stage': name, 'aria-label': `${name}: ${pct} %`, title: `${name}: ${pct} %` }, fill, h('span', {}, name));
    })));
}

function drawGrid(grid, devices) {
  const cells = devices.map((d) => {
    const s = d.deviceState || {};
    const lines = [d.deveui, `${s.deviceStatus} at ${s.stage}`, `retries ${s.retries ?? 0}`];
    if (s.fragmentsReceived != null) lines.push(`fragments received ${s.fragmentsReceived}, missing ${s.fragmentsMissing ?? '?'}`);
    if (s.fwVersion) lines.push(`firmware ${s.fwVersion}`);
    if (d.error) lines.push(`error: ${d.error.text}`);
    return h('div', { class: `cell ${s.deviceStatus}`, role: 'listitem', 'data-eui': d.deveui, 'data-status': s.deviceStatus, title: lines.join('\n'), 'aria-label': lines.join(', ') });
  });
  grid.replaceChildren(...cells);
}

function drawChart(chart, samples, bound, uncoded) {
  const W = 600, H = 220, pad = 30;
  const top = Math.max(1, bound || 0, uncoded || 0, ...samples.map((s) => s[1])) * 1.1;
  const t0 = samples[0][0], t1 = Math.max(samples[samples.length - 1][0], t0 + 1);
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (W - 2 * pad);
  const y = (v) => H - pad - (v / top) * (H - 2 * pad);
  const items = [svg('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: '#ccc' })];
  // Labels at opposite ends: the two lines are often close or equal.
  const hline = (v, cls, text, end) => { if (v) { items.push(svg('line', { x1: pad, x2: W - pad, y1: y(v), y2: y(v), class: cls })); const t = svg('text', { x: end ? W - pad : pad, y: y(v) - 3, 'text-anchor': end ? 'end' : 'start' }); t.textContent = `${text} ${v}`; items.push(t); } };
  hline(uncoded, 'uncoded', 'uncoded', false);
  hline(bound, 'bound', 'lower bound', true);
  items.push(svg('polyline', { class: 'sent', points: samples.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' '), id: 'sent-line' }));
  const last = svg('text', { x: W / 2, y: 14, 'text-anchor': 'middle' }); last.textContent = `sent ${samples[samples.length - 1][1]}`; items.push(last);
  chart.replaceChildren(...items);
}

async function devicesPage(root) {
  const [sets, profiles] = await Promise.all([list('/api/device-sets'), list('/api/device-profiles')]);
  const search = h('input', { id: 'device-search', type: 'search', placeholder: 'DevEUI or name', 'aria-label': 'Search devices' });
  const tag = h('input', { id: 'filter-tag', 'aria-label': 'Tag' });
  const firmware = h('input', { id: 'filter-firmware', 'aria-label': 'Firmware' });
  const set = h('select', { id: 'filter-set', 'aria-label': 'Device set' }, h('option', { value: '' }, 'any'), sets.map((s) => h('option', { value: s.id }, s.name)));
  const profile = h('select', { id: 'filter-profile', 'aria-label': 'Device profile' }, h('option', { value: '' }, 'any'), profiles.map((p) => h('option', { value: p.id }, p.name)));
  const body = h('tbody', {});
  let asked = 0;
  const load = async () => {
    // Each keystroke asks again; only the latest answer is shown.
    const mine = ++asked;
    const q = new URLSearchParams();
    if (tag.value) q.set('tag', tag.value);
    if (firmware.value) q.set('firmware', firmware.value);
    if (set.value) q.set('deviceSet', set.value);
    if (profile.value) q.set('deviceProfile', profile.value);
    q.set('limit', '1000');
    const text = search.value.trim().toLowerCase();
    const found = await list(`/api/devices?${q}`);
    if (mine !== asked) return;
    const devices = found.filter((d) => !text || d.devEui.toLowerCase().includes(text) || (d.name || '').toLowerCase().includes(text));
    body.replaceChildren(...devices.map((d) => h('tr', {}, h('td', { class: 'mono' }, h('a', { href: `#/devices/${d.devEui}` }, d.devEui)), h('td', {}, d.name), h('td', {}, d.tag),
      h('td', {}, d.firmware || ''), h('td', { class: 'hide-narrow' }, d.deviceProfile || ''))));
  };
  for (const el of [search, tag, firmware]) el.addEventListener('input', load);
  for (const el of [set, profile]) el.addEventListener('change', load);
  const lbl = (text, el) => h('label', {}, text, el);
  root.append(h('div', { class: 'toolbar' }, h('h1', {}, 'Devices'), roleButton('operator', 'New device', () => (location.hash = '#/devices/new'), { id: 'new-device' })),
    h('div', { class: 'toolbar', role: 'search' }, lbl('Search', search), lbl('Tag', tag), lbl('Set', set), lbl('Profile', profile), lbl('Firmware', firmware)),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'DevEUI'), h('th', {}, 'Name'), h('th', {}, 'Tag'), h('th', {}, 'Firmware'), h('th', { class: 'hide-narrow' }, 'Profile'))), body)));
  await load();
}

async function devicePage(root, eui) {
  if (eui === 'new') {
    root.append(h('h1', {}, 'New device'), h('section', { class: 'card' }, await objectForm('DeviceInput', null, async (body) => {
      const r = await api('POST', '/api/devices', body);
      if (r.ok) location.hash = `#/devices/${r.data.devEui}`;
      return r;
    }, { title: 'New device', defaults: { lorawanVersion: '1.0' } })));
    return;
  }
  const d = await api('GET', `/api/devices/${encodeURIComponent(eui)}`);
  if (!d.ok) throw new Error(d.data?.error || 'no such device');
  const device = d.data;
  const [uplinks, history] = await Promise.all([list(`/api/devices/${eui}/uplinks`), list(`/api/devices/${eui}/campaigns`)]);
  const form = await objectForm('DeviceInput', device, (body) => api('PUT', `/api/devices/${eui}`, body).then((r) => { if (r.ok) route(); return r; }), { title: 'Edit device' });
  root.append(h('div', { class: 'toolbar' }, h('h1', {}, device.name || device.devEui, ' ', h('span', { class: 'mono' }, device.devEui)),
    device.archived ? status('ARCHIVED') : roleButton('operator', 'Archive', async () => { const r = await api('DELETE', `/api/devices/${eui}`); if (r.ok) route(); }, { class: 'danger', id: 'archive-device' })),
  h('p', {}, 'Firmware: ', h('strong', { id: 'device-firmware' }, device.firmware || 'unknown')),
  h('div', { class: 'detail' },
    h('section', { class: 'card' }, h('h2', {}, 'Last uplinks'), uplinks.length ? h('table', { id: 'uplinks' }, h('thead', {}, h('tr', {}, ['Time', 'Port', 'Payload', 'RSSI', 'SNR'].map((t) => h('th', {}, t)))),
      h('tbody', {}, uplinks.map((u) => h('tr', {}, h('td', {}, fmtTime(u.received)), h('td', {}, u.fport), h('td', { class: 'mono' }, u.payloadHex), h('td', {}, u.rssi ?? ''), h('td', {}, u.snr ?? ''))))) : h('p', { class: 'hint' }, 'No uplink yet.'),
    h('h2', {}, 'Campaign history'), history.length ? h('table', {}, h('tbody', {}, history.map((m) => h('tr', {}, h('td', {}, h('a', { href: `#/campaigns/${encodeURIComponent(m.campaignId)}` }, m.campaignName)), h('td', {}, status(m.deviceState?.deviceStatus)), h('td', {}, m.error?.text || ''))))) : h('p', { class: 'hint' }, 'In no campaign yet.')),
    h('section', { class: 'card' }, h('h2', {}, 'Edit'), form)));
}

async function firmwarePage(root) {
  const [files, keys] = await Promise.all([list('/api/files'), list('/api/smart-delta-keys')]);
  root.append(h('h1', {}, 'Firmware and delta keys'));
  root.append(h('div', { class: 'table-wrap' }, h('table', { id: 'files' }, h('thead', {}, h('tr', {}, ['Name', 'Version', 'Base', 'Type', 'Size', 'SHA-256', 'Uploaded'].map((t) => h('th', {}, t)))),
    h('tbody', {}, files.filter((f) => !f.archived).map((f) => h('tr', {}, h('td', {}, f.name), h('td', {}, f.firmwareVersion || ''), h('td', {}, f.firmwareBaseVersion || ''), h('td', {}, f.fileType),
      h('td', { class: 'num' }, fmtBytes(f.size)), h('td', { class: 'mono' }, f.id), h('td', {}, fmtTime(f.uploadTime))))))));
  // Upload: the content plus the file's metadata, with a progress bar.
  const chooser = h('input', { type: 'file', id: 'upload-file', 'aria-label': 'Firmware file' });
  const bar = h('progress', { id: 'upload-progress', max: 100, value: 0, 'aria-label': 'Upload progress' });
  const meta = await objectForm('FileInput', null, (body) => new Promise((resolve) => {
    if (!chooser.files[0]) return resolve({ ok: false, data: { error: 'choose a file', field: 'name' } });
    const data = new FormData();
    if (!body.name) body.name = chooser.files[0].name;
    data.append('metadata', JSON.stringify(body));
    data.append('file', chooser.files[0]);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/files');
    xhr.setRequestHeader('x-airlift-console', '1');
    xhr.upload.addEventListener('progress', (ev) => { if (ev.lengthComputable) bar.value = (ev.loaded / ev.total) * 100; });
    xhr.addEventListener('load', () => {
      let data = null; try { data = JSON.parse(xhr.responseText); } catch (_) {}
      const ok = xhr.status >= 200 && xhr.status < 300;
      if (ok) { bar.value = 100; route(); }
      resolve({ ok, status: xhr.status, data });
    });
    xhr.addEventListener('error', () => resolve({ ok: false, data: { error: 'upload failed' } }));
    xhr.send(data);
  }), { title: 'Upload firmware', submitLabel: 'Upload' });
  meta.prepend(h('label', { for: 'upload-file' }, 'File *'), h('div', {}, chooser, bar));
  root.append(h('h2', {}, 'Upload'), h('section', { class: 'card' }, meta));
  // Smart-delta keys: generate (no private key given) or import a PEM;
  // export shows the public key.
  const exported = h('pre', { id: 'public-key', 'aria-live': 'polite' });
  root.append(h('h2', {}, 'Smart-delta signing keys'), h('table', { id: 'keys' }, h('tbody', {}, keys.filter((k) => !k.archived).map((k) => h('tr', {}, h('td', {}, k.name), h('td', { class: 'mono' }, k.id),
    h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: async () => { const r = await api('GET', `/api/smart-delta-keys/${encodeURIComponent(k.id)}/public-key`); exported.textContent = r.ok ? (r.data.pem || JSON.stringify(r.data, null, 1)) : r.data?.error; } }, 'Export public key')))))), exported);
  root.append(h('section', { class: 'card' }, h('p', { class: 'hint' }, 'Leave the private key empty to generate a key in the host; paste a PKCS#8 PEM to import one.'),
    await objectForm('SmartDeltaKeyInput', null, (body) => api('POST', '/api/smart-delta-keys', body).then((r) => { if (r.ok) route(); return r; }), { title: 'New signing key', submitLabel: 'Generate or import', prefix: 'key-' })));
}

const FLEET_KINDS = {
  'device-sets': ['Device sets', 'DeviceSetInput'],
  'multicast-groups': ['Multicast groups', 'MulticastGroupInput'],
  regions: ['Regions', 'RegionInput'],
  'device-profiles': ['Device profiles', 'DeviceProfileInput'],
};

async function fleetPage(root, kind) {
  kind = FLEET_KINDS[kind] ? kind : 'device-sets';
  const [title, schema] = FLEET_KINDS[kind];
  root.append(h('h1', {}, 'Fleet objects'), h('div', { class: 'tabs', role: 'tablist' }, Object.entries(FLEET_KINDS).map(([k, [t]]) =>
    h('button', { type: 'button', role: 'tab', 'aria-selected': String(k === kind), id: `tab-${k}`, onclick: () => (location.hash = `#/fleet/${k}`) }, t))));
  const items = (await list(`/api/${kind}`)).filter((o) => !o.archived);
  const editor = h('section', { class: 'card', id: 'editor' });
  const edit = async (item) => {
    editor.replaceChildren(h('h2', {}, item ? `Edit ${item.name || idOf(item)}` : `New ${title.toLowerCase().replace(/s$/, '')}`),
      await objectForm(schema, item, (body) => api(item ? 'PUT' : 'POST', item ? `/api/${kind}/${encodeURIComponent(idOf(item))}` : `/api/${kind}`, body).then((r) => { if (r.ok) route(); return r; }), { title }));
  };
  root.append(h('div', { class: 'table-wrap' }, h('table', { id: `list-${kind}` }, h('tbody', {}, items.map((o) => h('tr', {}, h('td', {}, o.name || ''), h('td', { class: 'mono' }, idOf(o)),
    h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: () => edit(o) }, 'Edit'), ' ',
      roleButton('operator', 'Archive', async () => { const r = await api('DELETE', `/api/${kind}/${encodeURIComponent(idOf(o))}`); if (r.ok) route(); }, { class: 'danger' }))))))), editor);
  await edit(null);
}

async function pluginsPage(root) {
  const [plugins, instances, agents] = await Promise.all([list('/api/plugins'), list('/api/backend-instances'), api('GET', '/api/agents')]);
  // On an RMC core: the agents that run the campaigns.
  if (agents.ok && agents.data.mode === 'core') {
    root.append(h('h1', {}, 'Agents'), h('div', { class: 'table-wrap' }, h('table', { id: 'agents' },
      h('thead', {}, h('tr', {}, ['Agent', 'Live', 'Heard', 'Campaigns', 'Devices', 'Plugins'].map((t) => h('th', {}, t)))),
      h('tbody', {}, agents.data.agents.map((a) => h('tr', {}, h('td', { class: 'mono' }, a.instanceId), h('td', {}, status(a.live ? 'live' : 'lost')),
        h('td', { class: 'num' }, `${a.heardSecondsAgo} s ago`), h('td', { class: 'num' }, a.runningCampaigns.length), h('td', { class: 'num' }, a.devicesInCampaigns),
        h('td', {}, a.plugins.join(', '))))))));
  }
  const described = h('pre', { id: 'describe', 'aria-live': 'polite' });
  root.append(h('h1', {}, 'Plugins'), h('div', { class: 'table-wrap' }, h('table', { id: 'plugins' },
    h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Version', 'WIT', 'Versions loaded', 'Limits', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, plugins.map((p) => h('tr', {}, h('td', {}, p.name), h('td', {}, p.kind), h('td', {}, p.version), h('td', {}, p.witVersion), h('td', { class: 'num' }, (p.versions || []).length),
      h('td', {}, p.limits ? `${p.limits.memoryMib} MiB, ${p.limits.timeoutMs} ms` : ''),
      h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: async () => { const r = await api('GET', `/api/plugins/${encodeURIComponent(p.name)}/describe`); described.textContent = JSON.stringify(r.data, null, 1); } }, 'Capabilities'))))))), described);
  // Load or hot-swap: a manifest and a component.
  const manifest = h('textarea', { id: 'plugin-manifest', 'aria-label': 'Plugin manifest (JSON)', placeholder: '{"name": …, "kind": …, "version": …}' });
  const wasm = h('input', { type: 'file', id: 'plugin-wasm', accept: '.wasm', 'aria-label': 'Plugin component (.wasm)' });
  const loaded = h('p', { role: 'status', class: 'hint' });
  root.append(h('h2', {}, 'Load or hot-swap a plugin'), h('section', { class: 'card' }, h('form', { class: 'object', onsubmit: async (ev) => {
    ev.preventDefault();
    const data = new FormData();
    data.append('manifest', manifest.value);
    if (wasm.files[0]) data.append('wasm', wasm.files[0]);
    const r = await api('POST', '/api/plugins', data);
    loaded.textContent = r.ok ? `loaded ${r.data.name} ${r.data.version}` : r.data?.error;
    if (r.ok) route();
  } }, h('label', { for: 'plugin-manifest' }, 'Manifest'), manifest, h('label', { for: 'plugin-wasm' }, 'Component'), wasm,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'plugin-load', disabled: !can('admin') }, 'Load'), loaded))));
  // Backend instances: secrets are write-only (shown only as set).
  const editor = h('section', { class: 'card', id: 'instance-editor' });
  const edit = async (item) => editor.replaceChildren(h('h2', {}, item ? `Edit ${item.name}` : 'New backend instance'),
    await objectForm('BackendInstanceInput', item, (body) => api(item ? 'PUT' : 'POST', item ? `/api/backend-instances/${encodeURIComponent(item.id)}` : '/api/backend-instances', body).then((r) => { if (r.ok) route(); return r; }), { role: 'admin', title: 'Backend instance' }));
  root.append(h('h2', {}, 'Backend instances'), h('div', { class: 'table-wrap' }, h('table', { id: 'instances' }, h('tbody', {}, instances.filter((i) => !i.archived).map((i) => h('tr', {},
    h('td', {}, i.name), h('td', {}, i.plugin), h('td', { class: 'mono' }, i.id), h('td', {}, Object.entries(i.settings || {}).map(([k, v]) => `${k}=${v}`).join(', ')),
    h('td', {}, i.secretsSet ? 'secrets set' : 'no secrets'),
    h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: () => edit(i) }, 'Edit'))))))), editor);
  await edit(null);
}

// ---- start ---------------------------------------------------------------

async function start() {
  const [me, doc] = await Promise.all([api('GET', '/console/session'), api('GET', '/api/openapi.json')]);
  state.me = me.data;
  state.schemas = doc.data?.components?.schemas || {};
  document.getElementById('who').textContent = `${state.me.name} (${state.me.role})`;
  window.addEventListener('hashchange', route);
  await route();
}

start();
