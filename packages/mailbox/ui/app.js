// The mailbox broker's web UI: totals, a live throughput chart, the mailboxes with their
// counts and actions, a paged message browser with the full record of a message, and a send
// form. Everything comes from the /v1/ API; the chart's rates are the differences between
// successive /v1/stats counters.
import uPlot from '/ui/vendor/uPlot.esm.js';
import { ApiError, api, getToken, onUnauthorized, seg, setToken } from '/ui/api.js';
import {
  $,
  $$,
  fill,
  keyed,
  fmtBytes,
  fmtMs,
  fmtNum,
  fmtRate,
  fmtRel,
  fmtTime,
  h,
  statusName,
} from '/ui/dom.js';

const POLL_MS = 1000;
const CHART_POINTS = 300; // five minutes at one sample a second
const PAGE_SIZE = 25;

const state = {
  loaded: false,
  mailboxes: [],
  stats: null,
  statsError: null,
  prev: null, // the last stats sample: { t, sends, confirmed, failed }
  series: [[], [], [], []], // time (s), sends/s, confirmed/s, rejected+timed out/s
  selected: null,
  view: 'pending',
  pages: [], // cursors of the pages before the current one
  cursor: null, // the server's cursor of the current page, or null for the first page
  after: null, // the time filter (ms), or null
  next: null,
  rows: [],
  loads: 0, // numbers the page loads: only the latest one renders
  timer: null,
};

// ---- token prompt ----------------------------------------------------------------------

onUnauthorized(
  (reason) =>
    new Promise((resolve) => {
      const dialog = $('#token-dialog');
      const input = $('#token-input');
      fill($('#token-error'), reason);
      input.value = '';
      const onClose = () => {
        const token = input.value.trim();
        if (token === '') {
          dialog.showModal();
          return;
        }
        dialog.removeEventListener('close', onClose);
        $('#signout').hidden = false;
        resolve(token);
      };
      dialog.addEventListener('close', onClose);
      setConn('locked', 'token required');
      if (!dialog.open) dialog.showModal();
      input.focus();
    }),
);

$('#token-dialog').addEventListener('cancel', (e) => e.preventDefault());
$('#signout').hidden = getToken() === null;
$('#signout').addEventListener('click', () => {
  setToken(null);
  $('#signout').hidden = true;
  void tick();
});

// ---- toasts, confirmation ----------------------------------------------------------------

function toast(text, kind = 'ok') {
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  $('#toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

function confirmAction(title, text, okLabel) {
  const dialog = $('#confirm-dialog');
  fill($('#cf-title'), title);
  fill($('#cf-text'), text);
  fill($('#cf-ok'), okLabel);
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) =>
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }),
  );
}

function reportError(error) {
  toast(error instanceof Error ? error.message : String(error), 'error');
}

function setConn(kind, text) {
  const el = $('#conn');
  el.dataset.state = kind;
  fill(el, text);
}

// ---- chart -----------------------------------------------------------------------------

const COLORS = { sends: '#2563eb', confirmed: '#16a34a', failed: '#dc2626' };
let chart = null;

function makeChart() {
  const el = $('#chart');
  const width = Math.max(260, el.clientWidth);
  const axis = {
    stroke: '#6b7280',
    grid: { stroke: '#eef0f3', width: 1 },
    ticks: { stroke: '#e5e7eb', width: 1 },
    font: '11px system-ui, sans-serif',
  };
  chart = new uPlot(
    {
      width,
      height: 200,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least a minute of axis, so the first samples do not stretch across the chart.
        x: {
          time: true,
          range: (_u, min, max) => {
            const hi = max ?? Date.now() / 1000;
            return [Math.min(min ?? hi, hi - 60), hi];
          },
        },
        y: { range: (_u, _min, max) => [0, Math.max(5, max * 1.15)] },
      },
      axes: [
        { ...axis, space: 70, values: (_u, ticks) => ticks.map((t) => fmtTime(t * 1000).slice(-12, -4)) },
        { ...axis, size: 48, values: (_u, ticks) => ticks.map((v) => fmtRate(v)) },
      ],
      series: [
        {},
        {
          label: 'sends/s',
          stroke: COLORS.sends,
          width: 2,
          fill: 'rgba(37,99,235,0.08)',
          points: { show: false },
        },
        { label: 'confirmed/s', stroke: COLORS.confirmed, width: 2, points: { show: false } },
        {
          label: 'rejected + timed out/s',
          stroke: COLORS.failed,
          width: 1.5,
          dash: [4, 3],
          points: { show: false },
        },
      ],
    },
    state.series,
    el,
  );
  new ResizeObserver(() => chart.setSize({ width: Math.max(260, el.clientWidth), height: 200 })).observe(el);
}

function sample(stats) {
  const t = Date.now() / 1000;
  const now = {
    t,
    sends: stats.sends,
    confirmed: stats.confirmed,
    failed: stats.rejected + stats.timedOut,
  };
  const prev = state.prev;
  state.prev = now;
  if (prev === null || now.sends < prev.sends) return; // first sample, or the broker restarted
  const dt = Math.max(0.001, t - prev.t);
  const [ts, sends, confirmed, failed] = state.series;
  ts.push(t);
  sends.push((now.sends - prev.sends) / dt);
  confirmed.push((now.confirmed - prev.confirmed) / dt);
  failed.push((now.failed - prev.failed) / dt);
  if (ts.length > CHART_POINTS) for (const s of state.series) s.shift();
  chart.setData(state.series);
  $('#chart').dataset.points = String(ts.length);
  renderLegend();
}

function renderLegend() {
  const last = (i) => state.series[i].at(-1);
  const item = (key, label, i) =>
    h(
      'span',
      { class: 'legend-item' },
      h('span', { class: 'swatch', style: `background:${COLORS[key]}` }),
      `${label} `,
      h('strong', { 'data-testid': `rate-${key}` }, fmtRate(last(i))),
    );
  fill(
    $('#legend'),
    item('sends', 'sends/s', 1),
    item('confirmed', 'confirmed/s', 2),
    item('failed', 'rejected + timed out/s', 3),
  );
}

// ---- totals and counters ---------------------------------------------------------------

function kpi(label, value, testid, sub) {
  return h(
    'div',
    { class: 'kpi' },
    h('div', { class: 'kpi-label' }, label),
    h('div', { class: 'kpi-value', 'data-testid': testid }, value),
    sub ? h('div', { class: 'kpi-sub' }, sub) : null,
  );
}

function renderTotals() {
  if (!state.loaded) {
    const dash = (label, testid) => kpi(label, '—', testid);
    fill(
      $('#kpis'),
      dash('Ready', 'kpi-ready'),
      dash('In flight', 'kpi-inflight'),
      dash('Delayed', 'kpi-delayed'),
      dash('Dead letters', 'kpi-dead'),
      dash('Mailboxes', 'kpi-mailboxes'),
    );
    fill($('#stats'), h('p', { class: 'muted' }, 'loading…'));
    return;
  }
  const mbs = state.mailboxes;
  const sum = (f) => mbs.reduce((a, m) => a + f(m), 0);
  const dead = sum((m) => (isDead(m.name) ? m.ready + m.delayed + m.inFlight : 0));
  const s = state.stats;
  fill(
    $('#kpis'),
    kpi('Ready', fmtNum(sum((m) => (isDead(m.name) ? 0 : m.ready))), 'kpi-ready'),
    kpi('In flight', fmtNum(sum((m) => m.inFlight)), 'kpi-inflight'),
    kpi('Delayed', fmtNum(sum((m) => (isDead(m.name) ? 0 : m.delayed))), 'kpi-delayed'),
    kpi('Dead letters', fmtNum(dead), 'kpi-dead'),
    kpi(
      'Mailboxes',
      fmtNum(mbs.filter((m) => !isDead(m.name)).length),
      'kpi-mailboxes',
      s ? `${fmtNum(s.store.blobs)} blobs · ${fmtBytes(s.store.blobBytes)}` : null,
    ),
  );
  const stats = $('#stats');
  if (s === null) {
    fill(stats, h('p', { class: 'muted' }, state.statsError ?? 'loading…'));
    return;
  }
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  fill(
    stats,
    row('Sends', fmtNum(s.sends)),
    row('Duplicate sends', fmtNum(s.duplicateSends)),
    row('Delivered', fmtNum(s.delivered)),
    row('Confirmed', fmtNum(s.confirmed)),
    row('Rejected', fmtNum(s.rejected)),
    row('Timed out', fmtNum(s.timedOut)),
    row('Long polls waiting', fmtNum(s.waiters)),
    row('Store batches', `${fmtNum(s.batches)} (largest ${fmtNum(s.largestBatch)})`),
    row('Messages stored', fmtNum(s.store.messages)),
  );
}

// ---- mailboxes -------------------------------------------------------------------------

const isDead = (name) => name.endsWith('.dead');

function renderMailboxes() {
  const all = state.mailboxes;
  const byName = new Map(all.map((m) => [m.name, m]));
  const shown = all.filter((m) => !isDead(m.name) || !byName.has(m.name.slice(0, -5)));
  const tbody = $('#mailboxes tbody');
  fill($('#mb-count'), `${shown.length} ${shown.length === 1 ? 'mailbox' : 'mailboxes'}`);
  fill(
    $('#mailbox-names'),
    shown.filter((m) => !isDead(m.name)).map((m) => h('option', { value: m.name })),
  );
  if (shown.length === 0) {
    fill(
      tbody,
      h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No mailboxes yet. Send a message to create one.')),
    );
    return;
  }
  keyed(
    tbody,
    shown,
    (m) => m.name,
    (m) => JSON.stringify([m, byName.get(`${m.name}.dead`) ?? null, state.selected === m.name]),
    (m) => {
      const deadBox = isDead(m.name) ? m : byName.get(`${m.name}.dead`);
      const dead = deadBox ? deadBox.ready + deadBox.delayed + deadBox.inFlight : 0;
      const own = isDead(m.name) ? 0 : m.ready + m.delayed;
      const base = isDead(m.name) ? m.name.slice(0, -5) : m.name;
      const n = (v, cls, label) => h('td', { class: `num ${cls}`, 'data-label': label }, fmtNum(v));
      return h(
        'tr',
        {
          dataset: { mailbox: m.name },
          class: state.selected === m.name ? 'selected' : null,
        },
        h(
          'td',
          { class: 'name' },
          h('button', { type: 'button', class: 'link', onclick: () => select(m.name, 'pending') }, m.name),
          h(
            'div',
            { class: 'sub' },
            `max ${m.settings.maxDeliveries} ${m.settings.maxDeliveries === 1 ? 'delivery' : 'deliveries'} · retry ${fmtMs(m.settings.retryDelayMs)}`,
          ),
        ),
        n(isDead(m.name) ? 0 : m.ready, 'c-ready', 'Ready'),
        n(m.inFlight, 'c-inflight', 'In flight'),
        n(isDead(m.name) ? 0 : m.delayed, 'c-delayed', 'Delayed'),
        h(
          'td',
          { class: `num c-dead${dead > 0 ? ' warn' : ''}`, 'data-label': 'Dead' },
          dead > 0
            ? h(
                'button',
                { type: 'button', class: 'link', onclick: () => select(m.name, 'dead') },
                fmtNum(dead),
              )
            : '0',
        ),
        n(m.confirmed, 'c-confirmed', 'Confirmed'),
        h(
          'td',
          { class: 'actions' },
          h(
            'button',
            {
              type: 'button',
              class: 'btn btn-sm',
              'data-action': 'redrive',
              disabled: dead === 0,
              title: `Move the dead letters of ${base} back to it`,
              onclick: () => redrive(base, dead),
            },
            'Redrive',
          ),
          h(
            'button',
            {
              type: 'button',
              class: 'btn btn-sm btn-danger-ghost',
              'data-action': 'purge',
              disabled: own === 0,
              title: `Delete the queued messages of ${m.name}`,
              onclick: () => purge(m.name, own),
            },
            'Purge',
          ),
        ),
      );
    },
  );
}

async function redrive(name, count) {
  const ok = await confirmAction(
    'Redrive dead letters?',
    `Move ${fmtNum(count)} dead ${count === 1 ? 'letter' : 'letters'} from ${name}.dead back to ${name}, due now, with fresh delivery counts.`,
    'Redrive',
  );
  if (!ok) return;
  try {
    const r = await api('POST', `/v1/mailboxes/${seg(name)}/redrive`, {});
    toast(`Redrove ${fmtNum(r.count)} ${r.count === 1 ? 'message' : 'messages'} to ${name}`);
  } catch (error) {
    reportError(error);
  }
  await tick();
}

async function purge(name, count) {
  const ok = await confirmAction(
    'Purge mailbox?',
    `Delete the ${fmtNum(count)} queued ${count === 1 ? 'message' : 'messages'} of ${name}. Leased messages stay. This cannot be undone.`,
    'Purge',
  );
  if (!ok) return;
  try {
    const r = await api('POST', `/v1/mailboxes/${seg(name)}/purge`, {});
    toast(`Purged ${fmtNum(r.count)} ${r.count === 1 ? 'message' : 'messages'} from ${name}`);
  } catch (error) {
    reportError(error);
  }
  await tick();
}

$('#reenqueue').addEventListener('click', async () => {
  try {
    const r = await api('POST', '/v1/reenqueue');
    toast(`Reenqueued ${fmtNum(r.count)} expired ${r.count === 1 ? 'lease' : 'leases'}`);
  } catch (error) {
    reportError(error);
  }
  await tick();
});

// ---- message browser -------------------------------------------------------------------

function select(name, view) {
  // A dead-letter mailbox listed on its own is browsed as a mailbox.
  state.selected = name;
  state.view = isDead(name) ? 'pending' : view;
  state.pages = [];
  state.cursor = firstCursor();
  $('#browser').hidden = false;
  renderMailboxes();
  void loadPage().then(() => $('#browser').scrollIntoView({ block: 'nearest' }));
}

for (const tab of $$('#browser .tab'))
  tab.addEventListener('click', () => {
    if (state.selected !== null) select(state.selected, tab.dataset.view);
  });

/**
 * Pages follow the server's cursor (`next`), which orders by (receivedAt, send order): a page
 * boundary inside one millisecond neither skips nor repeats a message. The first page starts at
 * the time filter (inclusive) or at the oldest message.
 */
async function loadPage() {
  const name = state.selected;
  if (name === null) return;
  const seq = ++state.loads;
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.cursor !== null) q.set('cursor', state.cursor);
  else if (state.after !== null) q.set('after', new Date(state.after - 1).toISOString());
  const route = state.view === 'dead' ? 'dead' : 'headers';
  let page;
  try {
    page = await api('GET', `/v1/mailboxes/${seg(name)}/${route}?${q}`);
  } catch (error) {
    if (seq === state.loads) renderRows([], String(error.message ?? error));
    return;
  }
  if (seq !== state.loads) return; // a later load (another page or mailbox) wins
  state.rows = page.messages;
  state.next = page.next ?? null;
  renderRows(state.rows);
}

function renderRows(rows, error) {
  const name = state.selected;
  const where = state.view === 'dead' ? `${name}.dead` : name;
  fill($('#br-title'), 'Messages in ', h('span', { class: 'mono' }, where));
  for (const tab of $$('#browser .tab')) {
    tab.setAttribute('aria-selected', String(tab.dataset.view === state.view));
    tab.hidden = isDead(name) && tab.dataset.view === 'dead';
  }
  const tbody = $('#messages tbody');
  if (error !== undefined) fill(tbody, h('tr', {}, h('td', { colspan: 6, class: 'empty error' }, error)));
  else if (rows.length === 0)
    fill(
      tbody,
      h(
        'tr',
        {},
        h(
          'td',
          { colspan: 6, class: 'empty' },
          state.view === 'dead' ? 'No dead letters.' : 'No pending messages.',
        ),
      ),
    );
  else
    keyed(
      tbody,
      rows,
      (m) => m.mid,
      // The badge of a delayed message counts down, so its text is part of the signature.
      (m) => JSON.stringify(m) + fmtRel(m.dueAt),
      (m) =>
        h(
          'tr',
          {
            dataset: { mid: m.mid },
            tabindex: 0,
            onclick: () => openMessage(m.mid),
            onkeydown: (e) => e.key === 'Enter' && openMessage(m.mid),
          },
          h('td', { class: 'mono', title: m.mid }, shortMid(m.mid)),
          h('td', { class: 'ellipsis hide-narrow', title: m.sender }, m.sender),
          h('td', { class: 'nowrap', title: m.receivedAt }, fmtTime(m.receivedAt)),
          h('td', {}, stateBadge(m)),
          h('td', { class: 'num' }, fmtNum(m.deliveryCount)),
          h('td', { class: 'num nowrap hide-narrow' }, fmtBytes(m.bodyBytes)),
        ),
    );
  const page = state.pages.length + 1;
  const first = state.pages.length * PAGE_SIZE + 1;
  const since = state.after === null ? '' : ` · since ${fmtTime(state.after)}`;
  fill(
    $('#page-info'),
    rows.length === 0
      ? `Page ${page}${since}`
      : `Page ${page} · ${first}–${first + rows.length - 1}${state.next ? '' : ' (last)'}${since}`,
  );
  $('#page-first').disabled = state.pages.length === 0;
  $('#page-prev').disabled = state.pages.length === 0;
  $('#page-next').disabled = state.next === null;
}

/** The mid starts with the client time; its hash part tells messages apart. */
const shortMid = (mid) => `${mid.slice(12, 22)}…`;

function stateBadge(m) {
  if (isDead(m.mailbox) || m.status === 16) return h('span', { class: 'badge badge-dead' }, 'dead');
  if (m.state === 'leased') return h('span', { class: 'badge badge-leased' }, 'in flight');
  if (m.state === 'confirmed') return h('span', { class: 'badge badge-o1' }, 'confirmed');
  if (m.dueAt && new Date(m.dueAt).getTime() > Date.now())
    return h(
      'span',
      { class: 'badge badge-delayed', title: `due ${fmtTime(m.dueAt)}` },
      `due ${fmtRel(m.dueAt)}`,
    );
  return h('span', { class: 'badge badge-ready' }, 'ready');
}

$('#page-next').addEventListener('click', () => {
  if (state.next === null) return;
  state.pages.push(state.cursor);
  state.cursor = state.next;
  void loadPage();
});
$('#page-prev').addEventListener('click', () => {
  if (state.pages.length === 0) return;
  state.cursor = state.pages.pop();
  void loadPage();
});
$('#page-first').addEventListener('click', () => {
  state.pages = [];
  state.cursor = firstCursor();
  void loadPage();
});

/** The first page has no cursor: it starts from the time filter, or from the oldest message. */
function firstCursor() {
  return null;
}

function applyFilter(value) {
  const ms = value === '' ? NaN : new Date(value).getTime();
  state.after = Number.isNaN(ms) ? null : ms;
  state.pages = [];
  state.cursor = firstCursor();
  void loadPage();
}

$('#filter').addEventListener('submit', (e) => {
  e.preventDefault();
  applyFilter($('#filter-after').value);
});
$('#filter-clear').addEventListener('click', () => {
  $('#filter-after').value = '';
  applyFilter('');
});

// ---- one message -----------------------------------------------------------------------

async function openMessage(mid) {
  const dialog = $('#message-dialog');
  const body = $('#message-detail');
  fill(body, h('p', { class: 'muted' }, 'loading…'));
  fill($('#md-title'), 'Message');
  if (!dialog.open) dialog.showModal();
  let m;
  try {
    m = await api('GET', `/v1/messages/${seg(mid)}`);
  } catch (error) {
    fill(body, h('p', { class: 'error' }, error.message));
    return;
  }
  fill($('#md-title'), 'Message ', h('span', { class: 'mono' }, shortMid(m.mid)), ' ', stateBadge(m));
  const field = (k, v, cls) => [h('dt', {}, k), h('dd', { class: cls }, v)];
  const when = (v) => (v ? `${fmtTime(v)} (${fmtRel(v)})` : '—');
  const fields = Object.keys(m.body);
  fill(
    body,
    h(
      'dl',
      { class: 'kv' },
      field('Mid', m.mid, 'mono break'),
      field('Mailbox', m.mailbox, 'mono'),
      field('Sender', m.sender),
      field('Receiver', m.receiver, 'mono'),
      field('State', m.state),
      field('Status', `${statusName(m.status)} (${m.status})`),
      field('Deliveries', fmtNum(m.deliveryCount)),
      field('Client time', when(m.clientTime)),
      field('Received', when(m.receivedAt)),
      field('Send when', `${when(m.sendWhen)}${m.delayMs ? ` · delay ${fmtMs(m.delayMs)}` : ''}`),
      field('Due', when(m.dueAt)),
      field('Leased until', when(m.leasedUntil)),
      field('Lease id', m.lid ?? '—', 'mono break'),
      field('Fence', m.fence === null ? '—' : String(m.fence)),
      field('Body', `${fmtBytes(m.bodyBytes)} · blob ${m.blobKey}`, 'mono break'),
    ),
    h('h3', {}, `Body fields (${fields.length})`),
    fields.length === 0
      ? h('p', { class: 'muted' }, 'The body is empty.')
      : h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table body-table', 'data-testid': 'body-fields' },
            h(
              'thead',
              {},
              h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Value')),
            ),
            h(
              'tbody',
              {},
              fields.map((k) => {
                const v = m.body[k];
                const values = Array.isArray(v) ? v : [v];
                return h(
                  'tr',
                  {},
                  h('td', { class: 'mono field-name' }, k),
                  h(
                    'td',
                    { class: 'field-value' },
                    values.map((x) => h('div', { class: 'value' }, x)),
                  ),
                );
              }),
            ),
          ),
        ),
    h('h3', {}, `Delivery attempts (${(m.attempts ?? []).length})`),
    (m.attempts ?? []).length === 0
      ? h('p', { class: 'muted' }, 'Not delivered yet.')
      : h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table', 'data-testid': 'attempts' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                h('th', { scope: 'col', class: 'num' }, '#'),
                h('th', { scope: 'col' }, 'Consumer'),
                h('th', { scope: 'col' }, 'Fetched'),
                h('th', { scope: 'col', class: 'hide-narrow' }, 'Ended'),
                h('th', { scope: 'col', class: 'num hide-narrow' }, 'Held'),
                h('th', { scope: 'col' }, 'Outcome'),
              ),
            ),
            h(
              'tbody',
              {},
              m.attempts.map((a) =>
                h(
                  'tr',
                  {},
                  h('td', { class: 'num' }, String(a.n)),
                  h('td', { class: 'ellipsis', title: a.consumer }, a.consumer || '—'),
                  h('td', { class: 'nowrap' }, fmtTime(a.fetchedAt)),
                  h('td', { class: 'nowrap hide-narrow' }, fmtTime(a.endedAt)),
                  h(
                    'td',
                    { class: 'num nowrap hide-narrow' },
                    fmtMs(new Date(a.endedAt) - new Date(a.fetchedAt)),
                  ),
                  h('td', {}, h('span', { class: `badge badge-o${a.outcome}` }, statusName(a.outcome))),
                ),
              ),
            ),
          ),
        ),
  );
}

$('#find-mid').addEventListener('submit', (e) => {
  e.preventDefault();
  const mid = $('#find-mid-input').value.trim().toLowerCase();
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(mid)) {
    toast('A mid is 40 (or 64) hexadecimal digits.', 'error');
    return;
  }
  void openMessage(mid);
});

$('#message-dialog [data-close]').addEventListener('click', () => $('#message-dialog').close());
$('#message-dialog').addEventListener('click', (e) => {
  if (e.target === e.currentTarget) e.currentTarget.close(); // a click on the backdrop
});

// ---- send form -------------------------------------------------------------------------

function fieldRow(name = '', value = '') {
  const row = h(
    'div',
    { class: 'field-row' },
    h('input', { name: 'field-name', placeholder: 'field', 'aria-label': 'Field name', maxlength: 200 }),
    h('textarea', { name: 'field-value', placeholder: 'value', 'aria-label': 'Field value', rows: 1 }),
    h(
      'button',
      {
        type: 'button',
        class: 'btn btn-ghost btn-icon',
        title: 'Remove field',
        'aria-label': 'Remove field',
        onclick: () => row.remove(),
      },
      '×',
    ),
  );
  row.querySelector('[name=field-name]').value = name;
  row.querySelector('[name=field-value]').value = value;
  return row;
}

$('#fields').append(fieldRow());
$('#add-field').addEventListener('click', () => {
  const row = fieldRow();
  $('#fields').append(row);
  row.querySelector('input').focus();
});

$('#send-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const out = $('#send-result');
  const body = {};
  for (const row of $$('.field-row', form)) {
    const k = row.querySelector('[name=field-name]').value;
    const v = row.querySelector('[name=field-value]').value;
    if (k === '' && v === '') continue;
    if (k === '') {
      fill(out, h('span', { class: 'error' }, 'Every body field needs a name.'));
      return;
    }
    const prev = body[k];
    body[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const msg = { sender: form.sender.value, receiver: form.receiver.value.trim(), body };
  const delay = form.delay.value.trim();
  if (delay !== '') msg.delay = delay;
  const button = form.querySelector('[type=submit]');
  button.disabled = true;
  try {
    const m = await api('POST', '/v1/messages', msg);
    fill(
      out,
      h('span', { class: 'ok' }, 'Sent '),
      h('button', { type: 'button', class: 'link mono', onclick: () => openMessage(m.mid) }, shortMid(m.mid)),
      ` to ${m.receiver}`,
    );
    await tick();
  } catch (error) {
    fill(out, h('span', { class: 'error' }, error instanceof ApiError ? error.message : String(error)));
  } finally {
    button.disabled = false;
  }
});

// ---- polling ---------------------------------------------------------------------------

let ticking = null;

/** One refresh of everything; overlapping calls share it. */
function tick() {
  ticking ??= refresh().finally(() => {
    ticking = null;
  });
  return ticking;
}

async function refresh() {
  try {
    const [mbs, stats] = await Promise.all([
      api('GET', '/v1/mailboxes'),
      api('GET', '/v1/stats').catch((error) => {
        // A token without the admin scope still sees its mailboxes, but no counters.
        if (error instanceof ApiError && error.status === 403) return error;
        throw error;
      }),
    ]);
    state.mailboxes = mbs.mailboxes;
    state.loaded = true;
    if (stats instanceof ApiError) {
      state.stats = null;
      state.statsError = `Counters and rates need a token with the admin scope (${stats.message}).`;
      fill($('#legend'), h('span', { class: 'muted' }, 'needs the admin scope'));
    } else {
      state.stats = stats;
      state.statsError = null;
      sample(stats);
    }
    renderTotals();
    renderMailboxes();
    if (state.selected !== null) await loadPage();
    setConn('ok', `live · ${fmtTime(Date.now()).slice(0, 8)}`);
  } catch (error) {
    setConn('error', error instanceof ApiError ? error.message : 'broker unreachable');
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    if (!document.hidden) await tick();
    schedule();
  }, POLL_MS);
}

renderLegend();
makeChart();
renderTotals();
// Lets tests and the curious force a refresh and read what the chart draws.
window.switchyardUi = { tick, chartData: () => state.series.map((s) => s.slice()) };
void tick().then(schedule);
