/* app.js — the operator dashboard: hash-routed pages that read and act through the hub's API.
 *
 * Rules this file keeps:
 * - Every number comes from an API answer fetched when the page renders; nothing is computed
 *   from guesses or cached across sign-ins.
 * - Data never goes through innerHTML: every node is built with el() and text nodes, so a
 *   record holding markup shows as text (the server's Content-Security-Policy forbids inline
 *   script as a second line).
 * - The token lives in sessionStorage (this tab only). An admin token opens every page for the
 *   tenant chosen in the header; a tenant key opens only the pages whose routes take a tenant
 *   key, and the API refuses anything else anyway.
 */
'use strict';

(function () {
  const STORE_KEY = 'stagedoor.session';
  const NF = new Intl.NumberFormat('en');
  let session = load();
  let timer = null;

  /* ---- small helpers ------------------------------------------------------------------------ */

  function load() {
    try {
      const s = JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null');
      return s && s.token ? s : null;
    } catch (e) {
      return null;
    }
  }

  function save() {
    if (session) {
      sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
    } else {
      sessionStorage.removeItem(STORE_KEY);
    }
  }

  /* el('tag', {attr: value, onclick: fn}, child, …): children are nodes, strings or arrays. */
  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else if (k === 'class') n.className = v;
      else if (k === 'text') n.textContent = v;
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    append(n, kids);
    return n;
  }

  function append(n, kids) {
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      if (Array.isArray(k)) append(n, k);
      else n.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
    }
  }

  /* Element.append would turn a null child into the text "null": this skips it. */
  function add(n, ...kids) {
    append(n, kids);
  }

  function num(v) {
    return typeof v === 'number' ? NF.format(v) : v === null || v === undefined ? '—' : String(v);
  }

  function when(iso) {
    if (!iso) return '—';
    return el('time', { datetime: iso }, iso.replace('T', ' ').replace('Z', ' UTC'));
  }

  function enc(s) {
    return encodeURIComponent(s);
  }

  let toastTimer = null;

  function toast(msg) {
    const t = document.getElementById('toast');
    t.textContent = msg;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.textContent = ''; }, 8000);
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.message ? body.message : 'HTTP ' + status);
      this.status = status;
      this.body = body;
    }
  }

  /* One API call with the session's token; answers the parsed JSON (null for 204). */
  async function api(method, path, body, extra) {
    const headers = Object.assign({ Authorization: 'Bearer ' + session.token,
      Accept: 'application/json' }, extra || {});
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let js = null;
    try {
      js = text ? JSON.parse(text) : null;
    } catch (e) {
      js = { message: text.slice(0, 200) };
    }
    if (r.status === 401 && session) {
      signOut('The hub refused the token (' + (js && js.message ? js.message : '401') + ').');
      throw new ApiError(401, js);
    }
    if (!r.ok) throw new ApiError(r.status, js);
    return js;
  }

  const isAdmin = () => session && session.mode === 'admin';
  const client = () => session.client;
  const adminTenant = () => '/admin/v1/tenants/' + enc(client());

  /* ---- pages -------------------------------------------------------------------------------- */

  /* who: 'admin' (admin token), 'tenant' (tenant key) or 'both'. */
  const PAGES = [
    { id: 'overview', title: 'Overview', who: 'both', render: pageOverview },
    { id: 'tenants', title: 'Tenants & keys', who: 'admin', render: pageTenants },
    { id: 'quality', title: 'Ingest & quality', who: 'both', render: pageQuality },
    { id: 'connectors', title: 'Connectors', who: 'admin', render: pageConnectors },
    { id: 'quarantine', title: 'Quarantine', who: 'admin', render: pageQuarantine },
    { id: 'outbox', title: 'Outbox', who: 'both', render: pageOutbox },
    { id: 'segments', title: 'Segments', who: 'tenant', render: pageSegments },
    { id: 'quotas', title: 'Vendor quotas', who: 'admin', render: pageQuotas },
    { id: 'alerts', title: 'Alerts', who: 'admin', render: pageAlerts },
  ];

  function visiblePages() {
    return PAGES.filter((p) => p.who === 'both' || p.who === (isAdmin() ? 'admin' : 'tenant'));
  }

  function heading(text, ...extra) {
    return el('div', { class: 'page-head' }, el('h1', { id: 'page-title', tabindex: '-1' }, text),
      extra);
  }

  function refreshButton(fn) {
    return el('button', { type: 'button', class: 'secondary', onclick: fn }, 'Refresh');
  }

  /* A table: cols [{label, cell(row) → node|string, num?, key?}] (key names the cells for
   * tests: data-col), a caption for screen readers. */
  function table(caption, cols, rows, empty) {
    if (!rows.length) return el('p', { class: 'empty' }, empty);
    return el('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
      el('table', {},
        el('caption', {}, caption),
        el('thead', {}, el('tr', {}, cols.map((c) =>
          el('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
        el('tbody', {}, rows.map((r) => el('tr', { 'data-id': r.__id || null },
          cols.map((c, i) => (i === 0
            ? el('th', { scope: 'row', 'data-col': c.key || null }, c.cell(r))
            : el('td', { class: c.num ? 'num' : null, 'data-col': c.key || null },
              c.cell(r)))))))));
  }

  function badge(state) {
    return el('span', { class: 'badge b-' + String(state).replace(/[^a-z_]/g, '') }, state);
  }

  function stat(label, value, key) {
    return el('div', { class: 'stat' }, el('dt', {}, label),
      el('dd', { 'data-stat': key, 'data-value': typeof value === 'number' ? value : null },
        num(value)));
  }

  async function pageOverview(root) {
    const s = await api('GET', isAdmin()
      ? adminTenant() + '/summary?environment=' + enc(session.env)
      : '/v1/' + enc(client()) + '/summary');
    add(root, heading('Overview'),
      el('p', {}, 'Records stored for ', el('strong', {}, s.client_id), ' in ',
        el('strong', {}, s.environment), ' now.'),
      el('dl', { class: 'stats', id: 'summary' },
        stat('Events', s.events, 'events'),
        stat('Customers', s.customers, 'customers'),
        stat('Sales', s.sales, 'sales')));
    const q = isAdmin()
      ? '/admin/v1/deliveries?state=dead&limit=1000&client_id=' + enc(client())
      : '/v1/' + enc(client()) + '/deliveries?state=dead&limit=1000';
    const dead = await api('GET', q);
    const n = dead.data.filter((d) => d.environment === session.env).length;
    add(root, el('h2', {}, 'Outbox'),
      el('dl', { class: 'stats' },
        stat('Dead letters' + (dead.has_more ? ' (first 1,000)' : ''), n, 'dead')),
      el('p', {}, el('a', { href: '#/outbox?state=dead' }, 'See the dead letters')));
  }

  /* -- ingest rate and data quality -- */

  /* Sum rows by the key fn returns; answers [{key, count, row}] largest first. */
  function tally(rows, keyFn) {
    const m = new Map();
    for (const r of rows) {
      const k = keyFn(r);
      const e = m.get(k) || { key: k, count: 0, row: r };
      e.count += r.count;
      m.set(k, e);
    }
    return [...m.values()].sort((a, b) => b.count - a.count);
  }

  /* Bars of accepted records per hour as SVG (attributes only: the CSP forbids inline styles);
   * each bar has a <title> and the chart an accessible summary. */
  function hourChart(hours) {
    return barChart(hours, (h) => h.key.replace('T', ' ').replace(':00:00Z', ':00 UTC'),
      'Records accepted per hour, ' + hours.length + ' hours');
  }

  /* bars: [{count}], label(bar) for its <title>, what for the chart's accessible name */
  function barChart(hours, label, what) {
    const max = Math.max(1, ...hours.map((h) => h.count));
    const w = 24;
    const svgNs = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(svgNs, 'svg');
    /* at least 24 slots, newest at the right: one point is a bar, not a wall */
    const slots = Math.max(hours.length, 24);
    const x0 = (slots - hours.length) * w;
    svg.setAttribute('viewBox', '0 0 ' + slots * w + ' 100');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', what + ', at most ' + NF.format(max));
    hours.forEach((h, i) => {
      const r = document.createElementNS(svgNs, 'rect');
      const ht = Math.max(h.count ? 1 : 0, (h.count / max) * 96);
      r.setAttribute('x', x0 + i * w + 2);
      r.setAttribute('y', 100 - ht);
      r.setAttribute('width', w - 4);
      r.setAttribute('height', ht);
      const t = document.createElementNS(svgNs, 'title');
      t.textContent = label(h) + ': ' + NF.format(h.count);
      r.appendChild(t);
      svg.appendChild(r);
    });
    return svg;
  }

  async function pageQuality(root) {
    const q = await api('GET', isAdmin() ? adminTenant() + '/quality'
      : '/v1/' + enc(client()) + '/quality');
    const env = (r) => r.environment === session.env;
    const accepted = q.accepted.filter(env);
    const rejected = q.rejected.filter(env);
    const answers = q.answers.filter(env);
    const sum = (rows) => rows.reduce((a, r) => a + r.count, 0);
    const byClass = (c) => sum(answers.filter((a) => a.class === c));
    /* every hour from since to now, the quiet ones as zero, so the bars keep their scale */
    const perHour = new Map(tally(accepted, (r) => r.hour).map((h) => [h.key, h.count]));
    const hours = [];
    for (let t = Date.parse(q.since); t <= Date.now() && hours.length < 24 * 31; t += 3600e3) {
      const key = new Date(t).toISOString().replace('.000Z', 'Z');
      hours.push({ key, count: perHour.get(key) || 0 });
    }
    const nRejected = sum(rejected);
    add(root, heading('Ingest & quality', refreshButton(() => route())),
      el('p', {}, 'Since ', when(q.since), ' in ', el('strong', {}, session.env),
        '. Counts reach this page within a minute.'),
      el('dl', { class: 'stats', id: 'quality' },
        stat('Records accepted', sum(accepted), 'accepted'),
        stat('Records rejected', nRejected, 'rejected'),
        stat('Answers 2xx', byClass('2xx'), '2xx'),
        stat('Answers 4xx', byClass('4xx'), '4xx'),
        stat('Answers 5xx', byClass('5xx'), '5xx')),
      el('h2', {}, 'Ingest rate'),
      accepted.length ? el('figure', { class: 'chart-box' }, hourChart(hours),
        el('figcaption', {}, 'Records accepted per hour, oldest left (hover a bar for its ' +
          'count).'))
        : el('p', { class: 'empty' }, 'Nothing accepted in this period.'),
      table('Accepted by source and kind', [
        { label: 'Source', cell: (t) => t.row.source },
        { label: 'Kind', cell: (t) => t.row.kind },
        { label: 'Records', num: true, cell: (t) => num(t.count) },
      ], tally(accepted, (r) => r.source + '\u0000' + r.kind), 'Nothing accepted.'),
      el('h2', {}, 'Errors by field'),
      table('Rejected fields by source, field and error', [
        { label: 'Field', cell: (t) => t.row.field },
        { label: 'Source', cell: (t) => t.row.source },
        { label: 'Error', cell: (t) => t.row.code },
        { key: 'count', label: 'Count', num: true, cell: (t) => num(t.count) },
        { label: 'Share', num: true, cell: (t) => (nRejected
          ? (100 * t.count / nRejected).toFixed(1) + ' %' : '—') },
      ], tally(rejected, (r) => [r.source, r.field, r.code].join('\u0000'))
        .map((t) => Object.assign({ __id: t.row.field + '/' + t.row.code }, t)),
      'No field was rejected.'),
      el('h2', {}, 'Answers by status'),
      table('Answers by route and status class', [
        { label: 'Route', cell: (t) => t.route },
        { label: '2xx', num: true, cell: (t) => num(t['2xx']) },
        { label: '4xx', num: true, cell: (t) => num(t['4xx']) },
        { label: '5xx', num: true, cell: (t) => num(t['5xx']) },
      ], routeClasses(answers), 'No answers counted.'),
      q.has_more ? el('p', {}, 'More than 10,000 rows: the oldest hours are left out.') : null);
  }

  function routeClasses(answers) {
    const m = new Map();
    for (const a of answers) {
      const e = m.get(a.route) || { route: a.route, '2xx': 0, '4xx': 0, '5xx': 0 };
      e[a.class] += a.count;
      m.set(a.route, e);
    }
    return [...m.values()].sort((a, b) => (a.route < b.route ? -1 : 1));
  }

  /* -- connectors -- */

  function progressText(st) {
    if (st.state !== 'running') return '—';
    const p = st.progress;
    if (p && typeof p === 'object') {
      return p.total ? num(p.done) + ' of ' + num(p.total) : num(p.done) + ' read';
    }
    return typeof p === 'number' ? num(p) + ' read' : 'running';
  }

  /* A run asked for from this page: the page polls until the connector's last run is a new
   * one (or two minutes passed), since the scheduler starts it a moment later. */
  let pendingRun = null;

  function runPending(c) {
    if (!pendingRun || pendingRun.id !== c.connector_id) return false;
    if (Date.now() > pendingRun.until || (c.status.state !== 'running' &&
        c.status.last_run !== pendingRun.since)) {
      pendingRun = null;
      return false;
    }
    return true;
  }

  async function runNow(c, after) {
    await api('POST', adminTenant() + '/connectors/' + enc(c.connector_id) + '/run');
    pendingRun = { id: c.connector_id, since: c.status.last_run, until: Date.now() + 120000 };
    toast('Run of ' + c.connector_id + ' queued.');
    after();
  }

  async function setSchedule(id, schedule, after) {
    await api('PATCH', adminTenant() + '/connectors/' + enc(id), { schedule });
    toast('Schedule of ' + id + ' set to "' + schedule + '".');
    after();
  }

  async function pageConnectors(root, arg) {
    if (arg) return pageConnector(root, arg);
    const js = await api('GET', adminTenant() + '/connectors');
    const rerender = () => route();
    const rows = js.data.map((c) => Object.assign({ __id: c.connector_id }, c));
    add(root, heading('Connectors', refreshButton(rerender)),
      table('Connectors of ' + client(), [
        { label: 'Connector', cell: (c) => el('a', { href: '#/connectors/' + enc(c.connector_id) },
          c.connector_id) },
        { label: 'Type', cell: (c) => c.type },
        { label: 'Env', cell: (c) => c.environment },
        { label: 'Schedule', cell: (c) => c.schedule },
        { key: 'state', label: 'State', cell: (c) => badge(c.status.state) },
        { label: 'Progress', cell: (c) => progressText(c.status) },
        { key: 'last_run', label: 'Last run', cell: (c) => when(c.status.last_run) },
        { key: 'records_in', label: 'In', num: true, cell: (c) => num(c.status.records_in) },
        { key: 'records_rejected', label: 'Rejected', num: true,
          cell: (c) => num(c.status.records_rejected) },
        { label: 'Last error', cell: (c) => el('span', { class: 'clip' },
          c.status.last_error || '—') },
        { label: 'Actions', cell: (c) => el('div', { class: 'actions' },
          /* targets (ids "tgt_…") only deliver what the outbox hands them: nothing to run */
          c.connector_id.startsWith('tgt_') ? null
            : el('button', { type: 'button', onclick: () => act(() => runNow(c, rerender)),
              'aria-label': 'Run ' + c.connector_id + ' now' }, 'Run now'),
          c.schedule.toLowerCase() !== 'manual'
            ? el('button', { type: 'button', class: 'secondary',
              'aria-label': 'Pause ' + c.connector_id,
              onclick: () => act(() => setSchedule(c.connector_id, 'manual', rerender)) }, 'Pause')
            : null) },
      ], rows, 'No connectors are configured for this tenant.'));
    if (rows.some((c) => c.status.state === 'running' || runPending(c))) poll(rerender, 1000);
  }

  async function pageConnector(root, id) {
    const path = adminTenant() + '/connectors/' + enc(id);
    const [c, runs] = await Promise.all([api('GET', path), api('GET', path + '/runs')]);
    const st = c.status;
    const rerender = () => route();
    const sched = el('input', { id: 'schedule', value: c.schedule,
      'aria-describedby': 'sched-help' });
    add(root, heading('Connector ' + c.connector_id, refreshButton(rerender)),
      el('p', {}, el('a', { href: '#/connectors' }, '← All connectors')),
      el('dl', { class: 'facts' },
        fact('Type', c.type), fact('Environment', c.environment),
        fact('State', badge(st.state)), fact('Progress', progressText(st)),
        fact('Last run', when(st.last_run)), fact('Last success', when(st.last_success)),
        fact('Records in (last run)', num(st.records_in)),
        fact('Rejected (last run)', num(st.records_rejected)),
        fact('Next run', when(st.next_run)), fact('Last error', st.last_error || '—'),
        fact('Last error at', when(st.last_error_at))),
      c.connector_id.startsWith('tgt_') ? null : el('div', { class: 'actions' },
        el('button', { type: 'button', onclick: () => act(() => runNow(c, rerender)) }, 'Run now')),
      el('form', { class: 'inline', onsubmit: (e) => {
        e.preventDefault();
        act(() => setSchedule(c.connector_id, sched.value.trim(), rerender));
      } },
      el('label', { for: 'schedule' }, 'Schedule'), sched,
      el('button', { type: 'submit' }, 'Save schedule'),
      el('button', { type: 'button', class: 'secondary',
        onclick: () => act(() => setSchedule(c.connector_id, 'manual', rerender)) }, 'Pause'),
      el('p', { class: 'help', id: 'sched-help' },
        'Pause sets the schedule to "manual": the connector then runs only when asked. ' +
        'Write a schedule ("every 15m", "daily at 02:00 Europe/Berlin", cron) to resume.')),
      el('h2', {}, 'Run history'),
      runsTable(runs.runs),
      runs.next_before ? el('p', {}, 'Showing the newest 50 runs.') : null,
      el('h2', {}, 'Settings (secrets redacted)'),
      el('pre', { class: 'json' }, JSON.stringify(c.settings, null, 2)));
    if (st.state === 'running' || runPending(c)) poll(rerender, 1000);
  }

  function runsTable(runs) {
    return el('div', { id: 'runs' }, table('Runs, newest first', [
      { key: 'started_at', label: 'Started', cell: (r) => when(r.started_at) },
      { label: 'Trigger', cell: (r) => r.trigger + (r.dry_run ? ' (dry run)' : '') },
      { key: 'status', label: 'Status', cell: (r) => badge(r.status) },
      { key: 'records_in', label: 'In', num: true, cell: (r) => num(r.records_in) },
      { key: 'records_rejected', label: 'Rejected', num: true,
        cell: (r) => num(r.records_rejected) },
      { label: 'Unchanged', num: true, cell: (r) => num(r.records_unchanged) },
      { key: 'duration_ms', label: 'Duration', num: true, cell: (r) => duration(r.duration_ms) },
      { label: 'Error', cell: (r) => el('span', { class: 'clip' }, r.error || '—') },
    ], runs.map((r) => Object.assign({ __id: r.run_id }, r)), 'No run has finished yet.'));
  }

  function duration(ms) {
    if (typeof ms !== 'number') return '—';
    return ms < 1000 ? ms + ' ms' : ms < 60000 ? (ms / 1000).toFixed(1) + ' s'
      : Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  }

  /* -- tenants and keys -- */

  async function pageTenants(root) {
    const [tenants, keys] = await Promise.all([api('GET', '/admin/v1/tenants'),
      api('GET', adminTenant() + '/keys')]);
    const rerender = () => route();
    const cid = el('input', { id: 'new-client', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}',
      autocomplete: 'off' });
    const name = el('input', { id: 'new-name', autocomplete: 'off' });
    const keyEnv = el('select', { id: 'new-key-env' },
      ['test', 'prod'].map((e) => el('option', { value: e, selected: e === session.env }, e)));
    const secret = el('div', { id: 'new-key', role: 'status' });
    add(root, heading('Tenants & keys', refreshButton(rerender)),
      table('Tenants', [
        { label: 'Client id', cell: (t) => t.client_id },
        { label: 'Name', cell: (t) => t.name || '—' },
        { label: 'Per minute', num: true, cell: (t) => num(t.per_minute) },
        { label: 'Burst', num: true, cell: (t) => num(t.burst) },
        { label: 'Created', cell: (t) => when(t.created_at) },
        { label: 'Open', cell: (t) => (t.client_id === client() ? 'shown'
          : el('button', { type: 'button', class: 'secondary', 'aria-label': 'Open ' + t.client_id,
            onclick: () => switchTenant(t.client_id, session.env) }, 'Open')) },
      ], tenants.data.map((t) => Object.assign({ __id: t.client_id }, t)), 'No tenants yet.'),
      el('form', { class: 'inline', id: 'tenant-form', onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = { client_id: cid.value.trim() };
          if (name.value.trim()) body.name = name.value.trim();
          await api('POST', '/admin/v1/tenants', body);
          toast('Tenant ' + body.client_id + ' created.');
          rerender();
        });
      } }, el('label', { for: 'new-client' }, 'New tenant: client id'), cid,
      el('label', { for: 'new-name' }, 'Name'), name,
      el('button', { type: 'submit' }, 'Create tenant')),
      el('h2', {}, 'API keys of ' + client()),
      table('Keys of ' + client(), [
        { label: 'Key id', cell: (k) => k.key_id },
        { label: 'Environment', cell: (k) => k.environment },
        { label: 'Created', cell: (k) => when(k.created_at) },
        { key: 'last_used_at', label: 'Last used', cell: (k) => when(k.last_used_at) },
        { key: 'state', label: 'State', cell: (k) => (k.revoked
          ? [badge('revoked'), ' ', when(k.revoked_at)] : badge('active')) },
        { label: 'Actions', cell: (k) => (k.revoked ? '—' : el('button', { type: 'button',
          class: 'danger', 'aria-label': 'Revoke ' + k.key_id, onclick: () => act(async () => {
            if (!window.confirm('Revoke ' + k.key_id + '? Requests with it fail from now on.')) {
              return;
            }
            await api('DELETE', adminTenant() + '/keys/' + enc(k.key_id));
            toast('Key ' + k.key_id + ' revoked.');
            rerender();
          }) }, 'Revoke')) },
      ], keys.data.map((k) => Object.assign({ __id: k.key_id }, k)), 'No keys yet.'),
      el('p', { class: 'help' }, 'Last use is recorded at most once a minute per key.'),
      el('form', { class: 'inline', id: 'key-form', onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const k = await api('POST', adminTenant() + '/keys', { environment: keyEnv.value });
          await rerender();
          /* the secret is shown once, here, and never again */
          document.getElementById('new-key').replaceChildren(
            el('p', {}, 'New ' + k.environment + ' key ' + k.key_id +
              ' — copy it now, it is not shown again:'),
            el('code', { class: 'secret', id: 'new-key-secret' }, k.key));
        });
      } }, el('label', { for: 'new-key-env' }, 'New key for'), keyEnv,
      el('button', { type: 'submit' }, 'Create key')),
      secret);
  }

  async function switchTenant(id, env) {
    try {
      await api('GET', '/admin/v1/tenants/' + enc(id));
    } catch (err) {
      toast('No tenant "' + id + '": ' + err.message);
      return;
    }
    session.client = id;
    session.env = env;
    save();
    chrome();
    toast('Showing ' + session.client + ' (' + session.env + ').');
    route();
  }

  function fact(label, value) {
    return el('div', {}, el('dt', {}, label), el('dd', {}, value));
  }

  /* -- quarantine -- */

  async function pageQuarantine(root) {
    const js = await api('GET', adminTenant() + '/quarantine?limit=500&environment=' +
      enc(session.env));
    const rerender = () => route();
    const connectors = [...new Set(js.quarantine.map((q) => q.connector_id))];
    add(root, heading('Quarantine', refreshButton(rerender)),
      el('p', {}, 'Objects a vendor sent that could not be stored yet, with the reason. ' +
        'A replay tries every quarantined object of a connector again.'),
      connectors.length ? el('div', { class: 'actions' }, connectors.map((id) =>
        el('button', { type: 'button', 'data-replay': id, onclick: () => act(async () => {
          const r = await api('POST', adminTenant() + '/connectors/' + enc(id) + '/replay');
          toast('Replay of ' + id + ': ' + r.applied + ' applied, ' + r.quarantined +
            ' still quarantined.');
          rerender();
        }) }, 'Replay ' + id))) : null,
      table('Quarantined objects', [
        { label: 'Id', cell: (q) => String(q.id) },
        { label: 'Connector', cell: (q) => q.connector_id },
        { label: 'Payload', num: true, cell: (q) => String(q.payload_id) },
        { key: 'reason', label: 'Reason', cell: (q) => q.reason },
        { label: 'Received', cell: (q) => when(q.received_at) },
        { label: 'Quarantined', cell: (q) => when(q.quarantined_at) },
      ], js.quarantine.map((q) => Object.assign({ __id: String(q.id) }, q)),
      'Nothing is in quarantine.'),
      js.next_after ? el('p', {}, 'Showing the first 500.') : null);
  }

  /* -- outbox -- */

  const STATES = ['', 'queued', 'sending', 'retrying', 'delivered', 'dead', 'cancelled'];

  async function deliveryAction(d, what, after) {
    if (what === 'cancel' && !window.confirm('Cancel ' + d.delivery_id + ' for good? It will ' +
        'not be sent.')) {
      return;
    }
    await api('POST', '/admin/v1/deliveries/' + enc(d.delivery_id) + '/' + what);
    toast({ retry: 'Replay', cancel: 'Cancel', 'send-now': 'Send now' }[what] + ' of ' +
      d.delivery_id + ' accepted.');
    after();
  }

  function deliveryActions(d, after, none = '—') {
    if (!isAdmin()) return none;
    const b = (label, what, cls) => el('button', { type: 'button', class: cls || null,
      'aria-label': label + ' ' + d.delivery_id,
      onclick: () => act(() => deliveryAction(d, what, after)) }, label);
    if (d.state === 'dead') return b('Replay', 'retry');
    if (d.state === 'queued' || d.state === 'retrying') {
      return el('div', { class: 'actions' }, b('Send now', 'send-now'),
        b('Cancel', 'cancel', 'danger'));
    }
    return none;
  }

  async function pageOutbox(root, arg, query) {
    if (arg) return pageDelivery(root, arg);
    const state = STATES.includes(query.get('state') || '') ? query.get('state') || '' : '';
    const base = isAdmin() ? '/admin/v1/deliveries?client_id=' + enc(client()) + '&'
      : '/v1/' + enc(client()) + '/deliveries?';
    const js = await api('GET', base + 'limit=200' + (state ? '&state=' + state : ''));
    const rows = js.data.filter((d) => d.environment === session.env)
      .map((d) => Object.assign({ __id: d.delivery_id }, d));
    const rerender = () => route();
    const select = el('select', { id: 'state-filter', onchange: (e) => {
      location.hash = '#/outbox' + (e.target.value ? '?state=' + e.target.value : '');
    } }, STATES.map((s) => el('option', { value: s, selected: s === state }, s || 'all')));
    add(root, heading('Outbox', refreshButton(rerender)),
      el('p', {}, 'Deliveries to vendors and targets. A dead letter failed for good; a replay ' +
        'queues it again with a new idempotency key.'),
      el('div', { class: 'inline' }, el('label', { for: 'state-filter' }, 'State'), select),
      table('Deliveries' + (state ? ' (' + state + ')' : ''), [
        { label: 'Delivery', cell: (d) => el('a', { href: '#/outbox/' + enc(d.delivery_id) },
          d.delivery_id) },
        { label: 'Target', cell: (d) => d.target_id },
        { label: 'Operation', cell: (d) => [d.operation, el('br'),
          el('span', { class: 'sub' }, d.subject.kind + ' ' + d.subject.id)] },
        { key: 'state', label: 'State', cell: (d) => badge(d.state) },
        { label: 'Attempts', num: true, cell: (d) => num(d.attempts) },
        { label: 'Last answer', cell: (d) => el('span', { class: 'clip' },
          d.last_status === null ? '—' : String(d.last_status),
          d.last_error ? ' · ' + d.last_error : '') },
        { label: 'Updated', cell: (d) => when(d.updated_at) },
        { label: 'Actions', cell: (d) => deliveryActions(d, rerender) },
      ], rows, 'No deliveries' + (state ? ' in state ' + state : '') + '.'),
      js.has_more ? el('p', {}, 'Showing the newest 200.') : null);
    if (rows.some((d) => ['queued', 'sending', 'retrying'].includes(d.state))) {
      poll(rerender, 1500);
    }
  }

  async function pageDelivery(root, id) {
    const d = await api('GET', isAdmin() ? '/admin/v1/deliveries/' + enc(id)
      : '/v1/' + enc(client()) + '/deliveries/' + enc(id));
    const rerender = () => route();
    add(root, heading('Delivery ' + d.delivery_id, refreshButton(rerender)),
      el('p', {}, el('a', { href: '#/outbox' }, '← All deliveries')),
      el('dl', { class: 'facts' },
        fact('State', badge(d.state)), fact('Target', d.target_id),
        fact('Operation', d.operation), fact('Subject', d.subject.kind + ' ' + d.subject.id),
        fact('Attempts', num(d.attempts) + ' of ' + num(d.max_attempts)),
        fact('Replays', num(d.replays)), fact('Next attempt', when(d.next_attempt_at)),
        fact('Last status', num(d.last_status)), fact('Last error', d.last_error || '—'),
        fact('Created', when(d.created_at)), fact('Delivered', when(d.delivered_at))),
      d.facts ? [el('h2', {}, 'What the target reported'),
        el('pre', { class: 'json', id: 'delivery-facts' }, JSON.stringify(d.facts, null, 2))]
        : null,
      el('div', { class: 'actions' }, deliveryActions(d, rerender, null)),
      table('Attempts', [
        { label: 'Attempt', cell: (h) => num(h.attempt) },
        { label: 'At', cell: (h) => when(h.at) },
        { label: 'Status', num: true, cell: (h) => num(h.status) },
        { label: 'Duration (ms)', num: true, cell: (h) => num(h.duration_ms) },
        { label: 'Error', cell: (h) => h.error || '—' },
      ], d.history || [], 'No attempt yet.'));
    if (['queued', 'sending', 'retrying'].includes(d.state)) poll(rerender, 1500);
  }

  /* -- segments (tenant key) -- */

  async function pageSegments(root, arg) {
    if (arg) return pageSegment(root, arg);
    const js = await api('GET', '/v1/' + enc(client()) + '/segments');
    add(root, heading('Segments', refreshButton(() => route())),
      table('Segments', [
        { label: 'Segment', cell: (s) => el('a', { href: '#/segments/' + enc(s.segment_id) },
          s.segment_name) },
        { label: 'Id', cell: (s) => s.segment_id },
        { key: 'members', label: 'Members', num: true, cell: (s) => num(s.member_count) },
        { label: 'Computed', cell: (s) => when(s.computed_at) },
        { label: 'Updated', cell: (s) => when(s.updated_at) },
      ], js.data.map((s) => Object.assign({ __id: s.segment_id }, s)), 'No segments yet.'));
  }

  async function pageSegment(root, id) {
    const base = '/v1/' + enc(client()) + '/segments/' + enc(id);
    const [seg, hist] = await Promise.all([api('GET', base), api('GET', base + '/history')]);
    const points = hist.points.map((p) => ({ at: p.at, count: p.member_count }));
    add(root, heading('Segment ' + seg.segment_name, refreshButton(() => route())),
      el('p', {}, el('a', { href: '#/segments' }, '← All segments')),
      el('dl', { class: 'facts' }, fact('Id', seg.segment_id),
        fact('Members', num(seg.member_count)), fact('Computed', when(seg.computed_at)),
        fact('Description', seg.description || '—')),
      el('h2', {}, 'Size over time'),
      points.length ? el('figure', { class: 'chart-box' },
        barChart(points, (p) => p.at.replace('T', ' ').replace('Z', ' UTC'),
          'Members at each computation, ' + points.length + ' points'),
        el('figcaption', {}, 'Members at each computation, oldest left.')) : null,
      el('div', { id: 'sizes' }, table('Sizes', [
        { label: 'At', cell: (p) => when(p.at) },
        { label: 'Members', num: true, cell: (p) => num(p.count) },
      ], points.slice().reverse(), 'Not computed yet.')),
      el('h2', {}, 'Pushed to'),
      el('div', { id: 'pushed' }, table('Targets this segment was pushed to', [
        { label: 'Target', cell: (p) => p.connector_id },
        { label: 'Newest delivery', cell: (p) => el('a', { href: '#/outbox/' +
          enc(p.delivery_id) }, p.delivery_id) },
        { key: 'state', label: 'State', cell: (p) => badge(p.state) },
        { label: 'At', cell: (p) => when(p.at) },
      ], (seg.pushed_to || []).map((p) => Object.assign({ __id: p.connector_id }, p)),
      'Not pushed anywhere yet.')),
      pushForm(seg),
      el('h2', {}, 'Rules'),
      el('pre', { class: 'json' }, JSON.stringify(seg.rules, null, 2)));
  }

  /* An Idempotency-Key for one click: a retry of the same request never pushes twice. */
  function requestKey() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    return 'ui-' + [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  }

  function pushForm(seg) {
    const known = [...new Set((seg.pushed_to || []).map((p) => p.connector_id))];
    const target = el('input', { id: 'push-target', list: 'push-targets', autocomplete: 'off',
      value: known[0] || '', 'aria-describedby': 'push-help' });
    const dry = el('input', { id: 'push-dry', type: 'checkbox' });
    const result = el('p', { id: 'push-result', role: 'status' });
    return el('form', { class: 'inline', id: 'push-form', onsubmit: (e) => {
      e.preventDefault();
      act(async () => {
        const path = '/v1/' + enc(client()) + '/segments/' + enc(seg.segment_id) + '/push' +
          (dry.checked ? '?dry_run=true' : '');
        const r = await api('POST', path, { target_id: target.value.trim() },
          { 'Idempotency-Key': requestKey() });
        result.replaceChildren((dry.checked ? 'Dry run queued: ' : 'Push queued: '),
          el('a', { href: '#/outbox/' + enc(r.delivery_id), id: 'push-delivery' },
            r.delivery_id));
      });
    } },
    el('h2', { class: 'full' }, 'Push'),
    el('label', { for: 'push-target' }, 'Target id'), target,
    el('datalist', { id: 'push-targets' }, known.map((k) => el('option', { value: k }))),
    el('label', { class: 'choice' }, dry, ' Dry run (report what the target would do, send ' +
      'nothing; only targets that support it)'),
    el('button', { type: 'submit' }, 'Push'),
    el('p', { class: 'help', id: 'push-help' }, 'The operator lists the targets (admin); ' +
      'the ones this segment went to before are offered.'),
    result);
  }

  /* -- quotas -- */

  async function pageQuotas(root) {
    const js = await api('GET', adminTenant() + '/quotas');
    const rows = [];
    for (const c of js.data) {
      for (const w of c.windows) {
        rows.push(Object.assign({ c, __id: c.connector_id + '/' + w.window }, w));
      }
    }
    add(root, heading('Vendor quotas', refreshButton(() => route())),
      el('p', {}, 'Calls used in the current window of each vendor credential, as of ',
        when(js.at), '. Instances sharing a credential share its quota.'),
      table('Quota use per window', [
        { label: 'Connector', cell: (q) => el('a', { href: '#/connectors/' +
          enc(q.c.connector_id) }, q.c.connector_id) },
        { label: 'Type', cell: (q) => q.c.type },
        { label: 'Env', cell: (q) => q.c.environment },
        { label: 'Window', cell: (q) => q.window },
        { key: 'used', label: 'Used', num: true, cell: (q) => num(q.used) },
        { key: 'limit', label: 'Limit', num: true, cell: (q) => num(q.limit) },
        { label: 'Share', cell: (q) => el('meter', { min: 0, max: q.limit, value: q.used,
          high: q.limit * 0.8, 'aria-label': 'share of ' + q.window + ' used' }) },
        { label: 'Reserved for writes', num: true, cell: (q) => num(q.reserved_for_writes) },
        { label: 'Resets', cell: (q) => when(q.resets_at) },
        { label: 'Shared with', cell: (q) => (q.c.credential_shared_with.length
          ? q.c.credential_shared_with.join(', ') : '—') },
      ], rows, 'No connector of this tenant has a vendor quota.'));
  }

  /* -- alerts -- */

  function ruleText(v) {
    if (v === false) return 'off';
    if (v === true) return 'on';
    if (v && typeof v === 'object') {
      return Object.entries(v).map(([k, x]) => k.replace(/_/g, ' ') + ' ' + x).join(', ');
    }
    return String(v);
  }

  async function pageAlerts(root) {
    const [cfg, hist] = await Promise.all([api('GET', adminTenant() + '/alerts'),
      api('GET', adminTenant() + '/alerts/history?limit=200')]);
    const rerender = () => route();
    const url = el('input', { id: 'alert-url', type: 'url', value: cfg.webhook_url || '',
      size: 40, autocomplete: 'off' });
    const secret = el('input', { id: 'alert-secret', type: 'password', autocomplete: 'off',
      'aria-describedby': 'alert-secret-help' });
    add(root, heading('Alerts', refreshButton(rerender)),
      el('h2', {}, 'Rules' + (cfg.defaults ? ' (defaults)' : '')),
      el('dl', { class: 'facts' }, Object.entries(cfg.rules).map(([k, v]) =>
        fact(k.replace(/_/g, ' '), ruleText(v)))),
      el('form', { class: 'inline', id: 'alert-form', onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          /* the rules go back as they are: a PUT without them would reset them to defaults */
          const body = { webhook_url: url.value.trim() || null, rules: cfg.rules };
          if (secret.value) body.secret = secret.value;
          await api('PUT', adminTenant() + '/alerts', body);
          toast('Alert webhook saved.');
          rerender();
        });
      } }, el('label', { for: 'alert-url' }, 'Webhook URL'), url,
      el('label', { for: 'alert-secret' }, 'Signing secret'), secret,
      el('button', { type: 'submit' }, 'Save'),
      el('p', { class: 'help', id: 'alert-secret-help' }, cfg.secret_set
        ? 'A secret is set (never shown); leave the field empty to keep it.'
        : 'No secret set: alerts are signed only once one is.')),
      el('h2', {}, 'History'),
      table('Alerts, newest first', [
        { label: 'Raised', cell: (a) => when(a.created_at) },
        { label: 'Rule', cell: (a) => a.rule.replace(/_/g, ' ') },
        { label: 'Subject', cell: (a) => a.subject },
        { label: 'Env', cell: (a) => a.environment },
        { label: 'Message', cell: (a) => el('span', { class: 'clip wide' }, a.message || '—') },
        { key: 'open', label: 'State', cell: (a) => (a.open ? badge('open')
          : [badge('resolved'), ' ', when(a.resolved_at)]) },
        { label: 'Sent', cell: (a) => [badge(a.delivery.state), a.delivery.last_error
          ? el('span', { class: 'sub' }, ' ' + a.delivery.last_error) : null] },
      ], hist.alerts.map((a) => Object.assign({ __id: a.alert_id }, a)),
      'No alert has been raised.'));
  }

  /* ---- router, chrome, sign-in -------------------------------------------------------------- */

  function poll(fn, ms) {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  }

  /* Run a user action; its error becomes the toast (the page stays). */
  async function act(fn) {
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) toast('Failed: ' + e.message);
    }
  }

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, '');
    const [path, qs] = h.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    return { page: parts[0] || 'overview', arg: parts[1] || '', query: new URLSearchParams(qs) };
  }

  let renderSeq = 0;
  let lastPage = null;

  async function route() {
    clearTimeout(timer);
    if (!session) return showLogin();
    const { page, arg, query } = parseHash();
    const pages = visiblePages();
    const p = pages.find((x) => x.id === page) || pages[0];
    for (const a of document.querySelectorAll('#nav-list a')) {
      if (a.dataset.page === p.id) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const seq = ++renderSeq;
    const root = el('div', { class: 'page', 'data-page': p.id });
    try {
      await p.render(root, arg, query);
    } catch (e) {
      if (!session) return;
      root.replaceChildren(heading(p.title),
        el('p', { class: 'error', role: 'alert' }, 'Could not load this page: ' + e.message));
    }
    if (seq !== renderSeq || !session) return;
    const host = document.getElementById('page');
    const keep = document.activeElement && host.contains(document.activeElement)
      ? document.activeElement.getAttribute('aria-label') || document.activeElement.id : null;
    host.replaceChildren(root);
    document.title = p.title + ' · stagedoor';
    const key = p.id + '/' + arg;
    if (key !== lastPage) {
      lastPage = key;
      const t = document.getElementById('page-title');
      if (t) t.focus();
    } else if (keep) {
      /* a refresh of the same page keeps the keyboard where it was */
      const again = [...host.querySelectorAll('[aria-label],[id]')].find((n) =>
        n.getAttribute('aria-label') === keep || n.id === keep);
      if (again) again.focus();
    }
  }

  function chrome() {
    const nav = document.getElementById('nav');
    const list = document.getElementById('nav-list');
    const who = document.getElementById('who');
    list.replaceChildren(...visiblePages().map((p) =>
      el('li', {}, el('a', { href: '#/' + p.id, 'data-page': p.id }, p.title))));
    const out = el('button', { type: 'button', class: 'secondary', onclick: () => signOut('') },
      'Sign out');
    if (isAdmin()) {
      const c = el('input', { id: 'who-client', value: client(), size: 10,
        'aria-label': 'Tenant client id' });
      const env = el('select', { id: 'who-env', 'aria-label': 'Environment' },
        ['test', 'prod'].map((e) => el('option', { value: e, selected: e === session.env }, e)));
      const list = el('datalist', { id: 'tenant-ids' });
      c.setAttribute('list', 'tenant-ids');
      api('GET', '/admin/v1/tenants').then((js) => list.replaceChildren(
        ...js.data.map((t) => el('option', { value: t.client_id }, t.name || t.client_id))))
        .catch(() => {});
      const form = el('form', { class: 'inline', onsubmit: (e) => {
        e.preventDefault();
        switchTenant(c.value.trim(), env.value);
      } }, el('span', { class: 'role' }, 'Operator'), c, list, env,
      el('button', { type: 'submit', class: 'secondary' }, 'Open'));
      who.replaceChildren(form, out);
    } else {
      who.replaceChildren(el('span', { class: 'role' }, 'Tenant ' + client() + ' (' +
        session.env + ')'), out);
    }
    nav.hidden = false;
    who.hidden = false;
  }

  function showLogin(msg) {
    document.getElementById('nav').hidden = true;
    document.getElementById('who').hidden = true;
    document.getElementById('page').hidden = true;
    document.getElementById('page').replaceChildren();
    document.getElementById('login').hidden = false;
    document.getElementById('login-error').textContent = msg || '';
    document.title = 'Sign in · stagedoor';
  }

  function signOut(msg) {
    clearTimeout(timer);
    session = null;
    lastPage = null;
    save();
    showLogin(msg);
  }

  async function signIn(e) {
    e.preventDefault();
    const f = e.target;
    const mode = f.mode.value;
    let clientId = f.client.value.trim();
    const errBox = document.getElementById('login-error');
    errBox.textContent = '';
    if (!clientId && mode === 'tenant') {
      errBox.textContent = 'Enter the tenant client id.';
      f.client.focus();
      return;
    }
    const token = (mode === 'admin' ? f.token.value : f.key.value).trim();
    if (!token) {
      errBox.textContent = mode === 'admin' ? 'Enter the admin token.' : 'Enter the API key.';
      (mode === 'admin' ? f.token : f.key).focus();
      return;
    }
    session = { mode, token, client: clientId, env: 'test' };
    try {
      if (mode === 'admin' && !clientId) {
        /* no tenant named: the first one (the list also proves the token) */
        const ts = await api('GET', '/admin/v1/tenants');
        if (!ts.data.length) throw new ApiError(404, { message: 'no tenant exists yet' });
        clientId = session.client = ts.data[0].client_id;
      } else if (mode === 'admin') {
        await api('GET', '/admin/v1/tenants/' + enc(clientId));
      } else {
        const s = await api('GET', '/v1/' + enc(clientId) + '/summary');
        session.env = s.environment;
      }
    } catch (err) {
      session = null;
      errBox.textContent = 'Sign-in failed: ' + (err.status === 401 ? (mode === 'admin'
        ? 'the admin token is not valid.' : 'the API key is not valid.') : err.message);
      return;
    }
    save();
    f.token.value = '';
    f.key.value = '';
    document.getElementById('login').hidden = true;
    document.getElementById('page').hidden = false;
    chrome();
    if (location.hash === '#/overview') route();
    else location.hash = '#/overview';
  }

  function init() {
    const form = document.getElementById('login-form');
    form.addEventListener('submit', signIn);
    for (const r of form.querySelectorAll('input[name=mode]')) {
      r.addEventListener('change', () => {
        const tenant = form.mode.value === 'tenant';
        document.getElementById('f-token').hidden = tenant;
        document.getElementById('f-key').hidden = !tenant;
      });
    }
    window.addEventListener('hashchange', route);
    if (session) {
      document.getElementById('login').hidden = true;
      document.getElementById('page').hidden = false;
      chrome();
      route();
    } else {
      showLogin();
    }
  }

  init();
})();
