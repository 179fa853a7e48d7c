/**
 * The web UI, in Debian's Chromium (playwright-core, no downloaded browser): load the page,
 * send through the form and see the depth and the chart change, open a message with its
 * delivery record, redrive dead letters and purge (with confirmation), page through a mailbox,
 * check that message values are shown as text, and sign in through the token prompt.
 * Screenshots go to test-output/ui/ at 1440×900 and 390×844.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { MailboxServer } from '@switchyard/mailbox';
import type { UiBrowser } from './helpers/ui-browser.js';
import {
  LAPTOP,
  PHONE,
  chromiumMissing,
  launchBrowser,
  screenshot,
  screenshotDir,
} from './helpers/ui-browser.js';
import { raw, startServer } from './http-helpers.js';

// The few browser globals the page functions below touch (the test project has no DOM lib:
// these functions run in Chromium, not in Node).
interface BrowserElement {
  readonly textContent: string | null;
  readonly dataset: Record<string, string | undefined>;
  getAttribute(name: string): string | null;
}
declare const document: {
  querySelector(selector: string): BrowserElement | null;
  querySelectorAll(selector: string): Iterable<BrowserElement> & { readonly length: number };
  readonly documentElement: { readonly scrollWidth: number };
};
declare const window: {
  readonly innerWidth: number;
  readonly switchyardUi: { tick(): Promise<void>; chartData(): number[][] };
};
declare const sessionStorage: { getItem(key: string): string | null };

const TOKEN = 'ui-test-token-0123456789';
const SCOPED = 'ui-scoped-token-0123456789';

/** Waits until the text of the first element matching `selector` satisfies `pattern`. */
async function waitText(page: Page, selector: string, pattern: string | RegExp): Promise<string> {
  const source =
    typeof pattern === 'string' ? `^${pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$` : pattern.source;
  const handle = await page.waitForFunction(
    ([sel, src]) => {
      const el = document.querySelector(sel);
      const text = el?.textContent?.trim() ?? '';
      return el !== null && new RegExp(src).test(text) ? text : false;
    },
    [selector, source] as const,
  );
  return (await handle.jsonValue()) as string;
}

async function openUi(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForSelector('#conn[data-state="ok"]');
}

describe('static assets', () => {
  let server: MailboxServer;
  before(async () => {
    server = await startServer({ tokens: [TOKEN], auth: true });
  });
  after(() => server.close());

  test('serves the page and its modules without a token, with a strict CSP; the API still needs one', async () => {
    const page = await raw(server.url, 'GET', '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.match(page.text, /<script type="module" src="\/ui\/app\.js"><\/script>/);
    assert.doesNotMatch(page.text, /<script>/, 'no inline script');
    for (const [path, type] of [
      ['/ui/app.js', /^text\/javascript/],
      ['/ui/api.js', /^text\/javascript/],
      ['/ui/dom.js', /^text\/javascript/],
      ['/ui/style.css', /^text\/css/],
      ['/ui/vendor/uPlot.esm.js', /^text\/javascript/],
      ['/ui/vendor/uPlot.min.css', /^text\/css/],
    ] as const) {
      const r = await raw(server.url, 'GET', path);
      assert.equal(r.status, 200, path);
      assert.match(String(r.headers['content-type']), type, path);
    }
    assert.equal((await raw(server.url, 'GET', '/v1/mailboxes')).status, 401);
  });

  test('answers 404 for unknown files and never reaches outside ui/', async () => {
    for (const path of [
      '/ui/nope.js',
      '/ui/../package.json',
      '/ui/%2e%2e/package.json',
      '/ui/..%2f..%2fpackage.json',
      '/ui/vendor/../../src/http/ui.ts',
      '/ui/',
    ]) {
      const r = await raw(server.url, 'GET', path);
      assert.equal(r.status, 404, path);
      assert.doesNotMatch(r.text, /"name": "@switchyard/, path);
    }
  });
});

test('a missing Chromium skips the browser tests with a reason, but fails them under CI=true', () => {
  assert.equal(chromiumMissing(process.execPath, { CI: 'true' }), undefined);
  assert.match(chromiumMissing('/nonexistent/chromium', {}) ?? '', /\/nonexistent\/chromium is missing/);
  assert.throws(() => chromiumMissing('/nonexistent/chromium', { CI: 'true' }), /is missing/);
});

const missing = chromiumMissing();
if (missing !== undefined) console.warn(`skipping the web UI browser tests: ${missing}`);

describe('web UI in Chromium', { skip: missing ?? false }, () => {
  let browser: UiBrowser;
  let server: MailboxServer;

  before(async () => {
    [browser, server] = await Promise.all([launchBrowser(), startServer()]);
  });
  after(async () => {
    await Promise.all([browser?.close(), server?.close()]);
  });

  test('sends through the form; the depth and the chart update', async () => {
    const { page, errors } = await browser.page(LAPTOP);
    await openUi(page, server.url);
    await waitText(page, '[data-testid=kpi-ready]', '0');
    await page.fill('#send-form [name=receiver]', 'orders');
    await page.fill('#send-form [name=delay]', '');
    const rows = page.locator('#fields .field-row');
    await rows.nth(0).locator('[name=field-name]').fill('item');
    await rows.nth(0).locator('[name=field-value]').fill('book');
    await page.click('#add-field');
    await rows.nth(1).locator('[name=field-name]').fill('item');
    await rows.nth(1).locator('[name=field-value]').fill('pen');
    await page.click('#add-field');
    await rows.nth(2).locator('[name=field-name]').fill('note');
    await rows.nth(2).locator('[name=field-value]').fill('two lines\nof text');
    await page.click('#send-form [type=submit]');
    await waitText(page, '#send-result', /^Sent .+ to orders$/);

    await waitText(page, '[data-mailbox="orders"] .c-ready', '1');
    await waitText(page, '[data-testid=kpi-ready]', '1');
    const [stored] = await server.broker.headers('orders');
    assert.ok(stored);
    const m = await server.broker.get(stored.mid);
    assert.deepEqual(m?.body, { item: ['book', 'pen'], note: 'two lines\nof text' });
    assert.equal(m?.sender, 'ui');

    // The chart draws sends/s from /v1/stats: the send shows up as a positive rate.
    await page.waitForFunction(() => {
      return Math.max(0, ...window.switchyardUi.chartData()[1]!) > 0;
    });
    assert.ok((await page.locator('#chart canvas').count()) >= 1, 'uPlot drew a canvas');
    const points = Number(await page.getAttribute('#chart', 'data-points'));
    assert.ok(points >= 1);

    // A delayed send is counted as delayed, not ready.
    await page.fill('#send-form [name=delay]', '1h');
    await rows.nth(0).locator('[name=field-value]').fill('later');
    await page.click('#send-form [type=submit]');
    await waitText(page, '[data-mailbox="orders"] .c-delayed', '1');
    await waitText(page, '[data-mailbox="orders"] .c-ready', '1');

    // A bad delay is refused by the API and said in the form; nothing is stored.
    await page.fill('#send-form [name=delay]', 'soon');
    await page.click('#send-form [type=submit]');
    await waitText(page, '#send-result', /delay "soon" is not a Go duration/);
    assert.equal((await server.broker.headers('orders')).length, 2);

    // A field value without a name is caught before any request.
    await page.fill('#send-form [name=delay]', '');
    await rows.nth(0).locator('[name=field-name]').fill('');
    await page.click('#send-form [type=submit]');
    await waitText(page, '#send-result', 'Every body field needs a name.');
    assert.equal((await server.broker.headers('orders')).length, 2);

    // A refresh with nothing changed keeps the rows (a click across a refresh is not lost).
    const purge = await page.$('[data-mailbox="orders"] [data-action=purge]');
    await page.evaluate(() => window.switchyardUi.tick());
    await page.evaluate(() => window.switchyardUi.tick());
    assert.equal(
      await purge!.evaluate((el) => (el as unknown as { isConnected: boolean }).isConnected),
      true,
    );

    // Let the chart gather a few more samples before the picture.
    await page.waitForFunction(
      () => Number(document.querySelector('#chart')?.getAttribute('data-points')) >= 3,
    );
    await screenshot(page, 'dashboard-1440x900', false);
    // The one console error allowed is the browser logging the 400 of the bad delay.
    assert.deepEqual(
      errors.filter((e) => !/status of 400/.test(e)),
      [],
    );
    await page.close();
  });

  test('opens a message: headers, body fields and the record of every delivery attempt', async () => {
    const sent = await server.broker.send({
      sender: 'billing',
      receiver: 'invoices',
      body: { customer: 'ACME Corp', amount: '129.90', tag: ['urgent', 'eu'] },
    });
    const first = await server.broker.fetch('invoices', { consumer: 'worker-7', leaseMs: 30_000 });
    assert.equal(first?.mid, sent.mid);
    await server.broker.ack(first.mid, first.lid!, 2); // rejected once: one attempt on record
    const { page, errors } = await browser.page(LAPTOP);
    await openUi(page, server.url);
    await page.click('[data-mailbox="invoices"] td.name .link');
    await page.click(`#messages tr[data-mid="${sent.mid}"]`);
    await waitText(page, '#message-detail dl dd', sent.mid);
    const detail = page.locator('#message-detail');
    const text = (await detail.textContent()) ?? '';
    for (const s of ['billing', 'ACME Corp', '129.90', 'urgent', 'eu', 'worker-7', 'Rejected'])
      assert.ok(text.includes(s), `the detail shows ${s}`);
    assert.equal(await page.locator('[data-testid=attempts] tbody tr').count(), 1);
    assert.equal(await page.locator('[data-testid=body-fields] tbody tr').count(), 3);
    await screenshot(page, 'message-1440x900', false);
    await page.click('#message-dialog [data-close]');
    assert.equal(await page.locator('#message-dialog').isVisible(), false);

    // Open by mid; an unknown mid says so, a malformed one is caught before any request.
    await page.fill('#find-mid-input', sent.mid.toUpperCase());
    await page.click('#find-mid [type=submit]');
    await waitText(page, '#message-detail dl dd', sent.mid);
    await page.click('#message-dialog [data-close]');
    await page.fill('#find-mid-input', 'f'.repeat(40));
    await page.click('#find-mid [type=submit]');
    await waitText(page, '#message-detail .error', `no message has mid ${'f'.repeat(40)}`);
    await page.click('#message-dialog [data-close]');
    await page.fill('#find-mid-input', 'not-a-mid');
    await page.click('#find-mid [type=submit]');
    await waitText(page, '#toasts .toast-error', 'A mid is 40 (or 64) hexadecimal digits.');
    // The one console error allowed is the browser logging the 404 of the unknown mid.
    assert.deepEqual(
      errors.filter((e) => !/status of 404/.test(e)),
      [],
    );
    await page.close();
  });

  test('shows message values as text: a <script> body never runs', async () => {
    const evil = '<script>alert(1)</script>';
    const sent = await server.broker.send({
      sender: 'x',
      receiver: 'xss',
      body: { '<b onmouseover=alert(3)>name</b>': evil, html: '<iframe src="javascript:alert(4)"></iframe>' },
    });
    // The consumer is free text too, and shows in the delivery record.
    const held = await server.broker.fetch('xss', { consumer: '<img src=x onerror=alert(2)>' });
    await server.broker.ack(held!.mid, held!.lid!, 2);
    const { page, errors } = await browser.page(LAPTOP);
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await openUi(page, server.url);
    await page.click('[data-mailbox="xss"] td.name .link');
    await page.click(`#messages tr[data-mid="${sent.mid}"]`);
    await waitText(
      page,
      '[data-testid=body-fields] tbody tr:nth-child(1) td:nth-child(1)',
      '<b onmouseover=alert(3)>name</b>',
    );
    await waitText(page, '[data-testid=body-fields] tbody tr:nth-child(1) .value', evil);
    await waitText(
      page,
      '[data-testid=body-fields] tbody tr:nth-child(2) .value',
      '<iframe src="javascript:alert(4)"></iframe>',
    );
    await waitText(page, '[data-testid=attempts] tbody td:nth-child(2)', '<img src=x onerror=alert(2)>');
    const injected = await page.evaluate(
      () =>
        document.querySelectorAll('main script, dialog script, main img, dialog img, dialog iframe, dialog b')
          .length,
    );
    assert.equal(injected, 0, 'no element was made from a message value');
    await page.hover('[data-testid=body-fields] tbody tr:nth-child(1) td:nth-child(1)');
    await screenshot(page, 'escaping-1440x900', false);
    assert.deepEqual(dialogs, []);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('redrives dead letters and purges a mailbox, each after a confirmation', async () => {
    await server.broker.configure('jobs', { maxDeliveries: 1, retryDelayMs: 0 });
    const sent = await server.broker.send({ sender: 'cron', receiver: 'jobs', body: { job: 'resize' } });
    const m = await server.broker.fetch('jobs', { consumer: 'worker-1' });
    await server.broker.ack(m!.mid, m!.lid!, 2); // one delivery allowed: now dead
    for (let i = 0; i < 3; i++)
      await server.broker.send({ sender: 'x', receiver: 'trash', body: { i: String(i) } });

    const { page, errors } = await browser.page(LAPTOP);
    await openUi(page, server.url);
    await waitText(page, '[data-mailbox="jobs"] .c-dead', '1');
    await waitText(page, '[data-mailbox="jobs"] .c-ready', '0');
    // The dead count opens the dead letters.
    await page.click('[data-mailbox="jobs"] .c-dead .link');
    await waitText(page, '#br-title', 'Messages in jobs.dead');
    await page.waitForSelector(`#messages tr[data-mid="${sent.mid}"]`);
    await screenshot(page, 'dead-letters-1440x900', false);

    // Cancel changes nothing.
    await page.click('[data-mailbox="jobs"] [data-action=redrive]');
    await waitText(page, '#cf-title', 'Redrive dead letters?');
    await screenshot(page, 'confirm-1440x900', false);
    await page.click('#confirm-dialog button[value=cancel]');
    await page.evaluate(() => window.switchyardUi.tick());
    await waitText(page, '[data-mailbox="jobs"] .c-dead', '1');
    assert.equal((await server.broker.headers('jobs.dead')).length, 1);

    await page.click('[data-mailbox="jobs"] [data-action=redrive]');
    await page.click('#cf-ok');
    await waitText(page, '#toasts .toast', 'Redrove 1 message to jobs');
    await waitText(page, '[data-mailbox="jobs"] .c-dead', '0');
    await waitText(page, '[data-mailbox="jobs"] .c-ready', '1');
    const back = await server.broker.headers('jobs');
    assert.deepEqual(
      back.map((h) => [h.mid, h.mailbox, h.state]),
      [[sent.mid, 'jobs', 'queued']],
    );

    await waitText(page, '[data-mailbox="trash"] .c-ready', '3');
    await page.click('[data-mailbox="trash"] [data-action=purge]');
    await waitText(page, '#cf-title', 'Purge mailbox?');
    await page.click('#cf-ok');
    await waitText(page, '[data-mailbox="trash"] .c-ready', '0');
    assert.equal((await server.broker.headers('trash')).length, 0);
    assert.equal(await page.locator('[data-mailbox="trash"] [data-action=purge]').isDisabled(), true);

    await page.click('#reenqueue');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#toasts .toast')].some((t) =>
        /^Reenqueued \d+ expired/.test(t.textContent ?? ''),
      ),
    );
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('pages through a mailbox without losing or repeating messages sent in one millisecond', async () => {
    const sent = await server.broker.sendMany(
      Array.from({ length: 60 }, (_, i) => ({ sender: 'bulk', receiver: 'many', body: { i: String(i) } })),
    );
    assert.equal(new Set(sent.map((m) => m.receivedAt.getTime())).size, 1, 'one batch, one millisecond');
    const { page, errors } = await browser.page(LAPTOP);
    const asked: URLSearchParams[] = [];
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname === '/v1/mailboxes/many/headers') asked.push(u.searchParams);
    });
    await openUi(page, server.url);
    await page.click('[data-mailbox="many"] td.name .link');
    const seen: string[] = [];
    const readPage = async (info: string): Promise<void> => {
      await waitText(page, '#page-info', info);
      const mids = await page
        .locator('#messages tbody tr[data-mid]')
        .evaluateAll((trs) => trs.map((tr) => (tr as unknown as BrowserElement).dataset.mid!));
      seen.push(...mids);
    };
    await readPage('Page 1 · 1–25');
    assert.equal(await page.locator('#page-prev').isDisabled(), true);
    await page.click('#page-next');
    await readPage('Page 2 · 26–50');
    await page.click('#page-next');
    await readPage('Page 3 · 51–60 (last)');
    assert.equal(await page.locator('#page-next').isDisabled(), true);
    assert.deepEqual(
      seen,
      sent.map((m) => m.mid),
    );
    // The pages after the first follow the server's cursor, a page's worth at a time. (The
    // page's periodic refresh may ask for the page on show again on a slow machine: a repeat
    // of the same query is not a new page.)
    const distinct = asked.filter((q, i) => i === 0 || q.toString() !== asked[i - 1]!.toString());
    assert.deepEqual(
      distinct.map((q) => [q.get('limit'), q.has('after'), q.has('cursor')]),
      [
        ['25', false, false],
        ['25', false, true],
        ['25', false, true],
      ],
    );
    await page.click('#page-prev');
    await waitText(page, '#page-info', 'Page 2 · 26–50');
    await page.click('#page-first');
    await waitText(page, '#page-info', 'Page 1 · 1–25');

    // Query by time, as pandora's UI: two messages sent in a later second than the first 60.
    const lastAt = sent.at(-1)!.receivedAt.getTime();
    const nextSecond = Math.floor(lastAt / 1000) * 1000 + 1000;
    await new Promise((r) => setTimeout(r, nextSecond - Date.now() + 20));
    const late = await server.broker.sendMany(
      ['a', 'b'].map((x) => ({ sender: 'late', receiver: 'many', body: { x } })),
    );
    assert.ok(late.every((m) => m.receivedAt.getTime() >= nextSecond));
    await page.evaluate((ms) => {
      const d = new Date(ms);
      const p = (n: number): string => String(n).padStart(2, '0');
      const local = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
      (document.querySelector('#filter-after') as unknown as { value: string }).value = local;
    }, nextSecond);
    await page.click('#filter [type=submit]');
    await waitText(page, '#page-info', /^Page 1 · 1–2 \(last\) · since /);
    assert.deepEqual(
      await page
        .locator('#messages tbody tr[data-mid]')
        .evaluateAll((trs) => trs.map((tr) => (tr as unknown as BrowserElement).dataset.mid!)),
      late.map((m) => m.mid),
    );
    await page.click('#filter-clear');
    await waitText(page, '#page-info', 'Page 1 · 1–25');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('fits a narrow screen (390×844) without sideways scrolling', async () => {
    const { page, errors } = await browser.page(PHONE);
    await openUi(page, server.url);
    await page.waitForSelector('#chart canvas');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await screenshot(page, 'dashboard-390x844');
    await page.click('[data-mailbox="many"] td.name .link');
    await waitText(page, '#page-info', /^Page 1 · 1–25/);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(wide <= 0, `with the browser open the page is ${wide}px wider than the screen`);
    await page.locator('#browser').screenshot({ path: `${screenshotDir()}/browser-390x844.png` });
    await page.click('[data-mailbox="invoices"] td.name .link');
    // The rows and the title render together: once the title names invoices, so do the rows
    // (clicking earlier could open a message of the previous mailbox, one without attempts).
    await waitText(page, '#br-title', /^Messages in invoices$/);
    await page.click('#messages tbody tr[data-mid]');
    await page.waitForSelector('[data-testid=attempts]');
    await screenshot(page, 'message-390x844', false);
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('web UI token prompt in Chromium', { skip: missing ?? false }, () => {
  let browser: UiBrowser;
  let server: MailboxServer;

  before(async () => {
    [browser, server] = await Promise.all([
      launchBrowser(),
      startServer({
        tokens: [
          TOKEN,
          { token: SCOPED, name: 'orders-app', scopes: ['send', 'receive'], mailboxes: ['secured'] },
        ],
        auth: true,
      }),
    ]);
  });
  after(async () => {
    await Promise.all([browser?.close(), server?.close()]);
  });

  test('asks for a token, refuses a wrong one, keeps the right one in sessionStorage and sends it as a bearer', async () => {
    await server.broker.send({ sender: 's', receiver: 'secured', body: { a: '1' } });
    const { page, errors } = await browser.page(LAPTOP);
    const authHeaders = new Set<string>();
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/v1/'))
        authHeaders.add(r.headers().authorization ?? '(none)');
    });
    await page.goto(server.url);
    await page.waitForSelector('#token-dialog[open]');
    await waitText(page, '#conn', 'token required');
    await screenshot(page, 'token-prompt-1440x900', false);
    await page.fill('#token-input', 'wrong-token-123');
    await page.click('#token-form button[value=ok]');
    await waitText(page, '#token-error', 'That token was refused; try another.');
    assert.ok(await page.locator('#token-dialog').isVisible());
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button[value=ok]');
    await page.waitForSelector('#conn[data-state="ok"]');
    await waitText(page, '[data-mailbox="secured"] .c-ready', '1');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('switchyard.mailbox.token')), TOKEN);
    assert.ok(authHeaders.has(`Bearer ${TOKEN}`));
    assert.ok(authHeaders.has('Bearer wrong-token-123'));

    // A reload in the same tab keeps the token: no prompt.
    await page.reload();
    await page.waitForSelector('#conn[data-state="ok"]');
    assert.equal(await page.locator('#token-dialog').isVisible(), false);

    // "Forget token" drops it and asks again.
    await page.click('#signout');
    await page.waitForSelector('#token-dialog[open]');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('switchyard.mailbox.token')), null);
    // Console errors here are the browser logging the 401 answers it was given.
    assert.deepEqual(
      errors.filter((e) => !/status of 401/.test(e)),
      [],
    );
    await page.close();
  });
  test('a token without the admin scope sees its mailboxes, no counters, and a refused action says why', async () => {
    await server.broker.send({ sender: 's', receiver: 'other', body: { a: '1' } });
    const { page, errors } = await browser.page(LAPTOP);
    await page.goto(server.url);
    await page.waitForSelector('#token-dialog[open]');
    await page.fill('#token-input', SCOPED);
    await page.click('#token-form button[value=ok]');
    await page.waitForSelector('#conn[data-state="ok"]');
    await waitText(page, '[data-mailbox="secured"] .c-ready', /^\d+$/);
    assert.equal(
      await page.locator('[data-mailbox="other"]').count(),
      0,
      'only the mailboxes the token may use',
    );
    await waitText(page, '#legend', 'needs the admin scope');
    await waitText(page, '#stats', /need a token with the admin scope/);
    await page.click('[data-mailbox="secured"] [data-action=purge]');
    await page.click('#cf-ok');
    await waitText(page, '#toasts .toast-error', /orders-app may not admin/);
    assert.ok((await server.broker.headers('secured')).length >= 1, 'nothing was purged');
    assert.deepEqual(
      errors.filter((e) => !/status of 40[13]/.test(e)),
      [],
    );
    await page.close();
  });
});
