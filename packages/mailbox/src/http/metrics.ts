/**
 * `/metrics` in the Prometheus text format (0.0.4): per-mailbox depth, in flight, delayed and
 * dead; broker counters (Prometheus derives rates from them); HTTP request counts and a
 * latency histogram per route. Written by hand: a handful of series needs no library.
 */
import type { Broker } from '../broker.js';
import { isDeadLetterName } from '../message.js';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

interface Histogram {
  readonly counts: number[];
  sum: number;
  count: number;
}

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export class HttpMetrics {
  readonly #requests = new Map<string, number>();
  readonly #latency = new Map<string, Histogram>();
  readonly #maxSeries: number;

  constructor(maxSeries = 1000) {
    this.#maxSeries = maxSeries;
  }

  /** Records one request: `route` is the route template (bounded), never the raw URL. */
  observe(route: string, method: string, status: number, seconds: number): void {
    const key = `route="${esc(route)}",method="${method}",status="${status}"`;
    if (this.#requests.has(key) || this.#requests.size < this.#maxSeries)
      this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    let h = this.#latency.get(route);
    if (h === undefined) {
      if (this.#latency.size >= this.#maxSeries) return;
      this.#latency.set(route, (h = { counts: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    }
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) h.counts[i]!++;
    h.sum += seconds;
    h.count++;
  }

  async render(broker: Broker, maxMailboxes: number): Promise<string> {
    const out: string[] = [];
    const gauge = (name: string, help: string, type = 'gauge'): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    const [mailboxes, stats] = await Promise.all([broker.mailboxes(), broker.stats()]);
    const shown = mailboxes.slice(0, maxMailboxes);
    const dead = new Map<string, number>();
    for (const mb of mailboxes)
      if (isDeadLetterName(mb.name)) dead.set(mb.name.slice(0, -5), mb.ready + mb.delayed + mb.inFlight);
    const perMailbox: [string, string, (mb: (typeof shown)[number]) => number][] = [
      ['switchyard_mailbox_depth', 'Messages queued and due now.', (mb) => mb.ready],
      ['switchyard_mailbox_delayed', 'Messages queued and due later (delays, retries).', (mb) => mb.delayed],
      ['switchyard_mailbox_in_flight', 'Messages leased to a receiver.', (mb) => mb.inFlight],
      ['switchyard_mailbox_confirmed', 'Confirmed messages still retained.', (mb) => mb.confirmed],
      [
        'switchyard_mailbox_dead',
        'Messages in the dead-letter mailbox <name>.dead.',
        (mb) => dead.get(mb.name) ?? 0,
      ],
    ];
    for (const [name, help, value] of perMailbox) {
      gauge(name, help);
      for (const mb of shown) out.push(`${name}{mailbox="${esc(mb.name)}"} ${value(mb)}`);
    }
    gauge(
      'switchyard_mailbox_mailboxes',
      'Mailboxes (all, including those past the per-mailbox series limit).',
    );
    out.push(`switchyard_mailbox_mailboxes ${mailboxes.length}`);
    const counters: [string, string, number][] = [
      ['switchyard_mailbox_sends_total', 'Messages stored by a send.', stats.sends],
      [
        'switchyard_mailbox_duplicate_sends_total',
        'Sends of a message already stored (idempotent).',
        stats.duplicateSends,
      ],
      ['switchyard_mailbox_delivered_total', 'Messages handed to a receiver under a lease.', stats.delivered],
      ['switchyard_mailbox_confirmed_total', 'Acks with status Confirmed.', stats.confirmed],
      ['switchyard_mailbox_rejected_total', 'Acks with status Rejected.', stats.rejected],
      ['switchyard_mailbox_timed_out_total', 'Leases that expired (Timeout attempts).', stats.timedOut],
      ['switchyard_mailbox_batches_total', 'Store transactions of the group commit.', stats.batches],
    ];
    for (const [name, help, v] of counters) {
      gauge(name, help, 'counter');
      out.push(`${name} ${v}`);
    }
    gauge('switchyard_mailbox_pending_ops', 'Operations waiting for a commit.');
    out.push(`switchyard_mailbox_pending_ops ${stats.pendingOps}`);
    gauge('switchyard_mailbox_waiters', 'Long polls waiting.');
    out.push(`switchyard_mailbox_waiters ${stats.waiters}`);
    gauge('switchyard_mailbox_store_messages', 'Messages in the store (any state).');
    out.push(`switchyard_mailbox_store_messages ${stats.store.messages}`);
    gauge('switchyard_mailbox_store_blob_bytes', 'Bytes of bodies in the blob store.');
    out.push(`switchyard_mailbox_store_blob_bytes ${stats.store.blobBytes}`);
    gauge('switchyard_http_requests_total', 'HTTP requests by route, method and status.', 'counter');
    for (const [k, v] of this.#requests) out.push(`switchyard_http_requests_total{${k}} ${v}`);
    gauge('switchyard_http_request_duration_seconds', 'HTTP request latency by route.', 'histogram');
    for (const [route, h] of this.#latency) {
      const r = esc(route);
      BUCKETS.forEach((b, i) =>
        out.push(`switchyard_http_request_duration_seconds_bucket{route="${r}",le="${b}"} ${h.counts[i]}`),
      );
      out.push(`switchyard_http_request_duration_seconds_bucket{route="${r}",le="+Inf"} ${h.count}`);
      out.push(`switchyard_http_request_duration_seconds_sum{route="${r}"} ${h.sum}`);
      out.push(`switchyard_http_request_duration_seconds_count{route="${r}"} ${h.count}`);
    }
    return `${out.join('\n')}\n`;
  }
}
