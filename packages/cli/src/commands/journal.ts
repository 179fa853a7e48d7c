/**
 * `switchyard journal inspect <path>` and `switchyard journal tail <path>`: look into an
 * @switchyard/shm journal from a shell. Both read without disturbing the writer or other
 * readers (a tail that parks takes one reader slot while it runs).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  inspectJournal,
  openJournal,
  ShmError,
  WAIT_STRATEGIES,
  type JournalHeader,
  type JournalInspection,
  type WaitStrategy,
} from '@switchyard/shm';
import type { CliIo } from '../program.js';

type Encoding = 'utf8' | 'hex' | 'base64';
const ENCODINGS: readonly Encoding[] = ['utf8', 'hex', 'base64'];

function position(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function headerJson(h: JournalHeader): Record<string, unknown> {
  return {
    version: h.version,
    writerId: h.writerId.toString(),
    channelId: h.channelId.toString(),
    capacity: h.capacity,
    maxMessageLength: h.maxMessageLength,
    timeout: h.timeout,
    tickUnit: h.tickUnit,
    timeoutMs: h.timeoutMs,
    createdAt: new Date(h.createdAtMs).toISOString(),
    readerSlots: h.readerSlots,
    headerBytes: h.headerBytes,
  };
}

function encode(bytes: Uint8Array, encoding: Encoding): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(encoding);
}

/** Where `record` starts, given the reader's position just after it (heartbeats skipped before it). */
function recordPosition(after: number, record: Uint8Array): number {
  return after - ((record.length + 15) & ~7);
}

interface RecordLine {
  position: number;
  length: number;
  data: string;
}

/** Reads up to `limit` records from `from` without waiting. */
function listRecords(path: string, from: number, limit: number, encoding: Encoding): RecordLine[] {
  const reader = openJournal(path);
  try {
    reader.seek(from);
    const out: RecordLine[] = [];
    while (out.length < limit) {
      const record = reader.tryRead();
      if (record === null) break;
      out.push({
        position: recordPosition(reader.position, record),
        length: record.length,
        data: encode(record, encoding),
      });
    }
    return out;
  } finally {
    reader.close();
  }
}

function inspectText(info: JournalInspection, records: RecordLine[]): string {
  const h = info.header;
  const lines = [
    `journal    ${info.path}`,
    `format     version ${h.version}, ${info.fileBytes} bytes (header ${h.headerBytes}, data ${h.capacity})`,
    `writer     id ${h.writerId}, pid ${info.writerPid}`,
    `channel    id ${h.channelId}`,
    `limits     max message ${h.maxMessageLength} bytes, timeout ${h.timeout} ${h.tickUnit}`,
    `created    ${new Date(h.createdAtMs).toISOString()}`,
    `heartbeat  ${new Date(info.lastHeartbeatMs).toISOString()}`,
    `state      ${info.state}${info.ended ? ' (end-of-channel mark written)' : ''}`,
    `records    ${info.records} (${info.payloadBytes} payload bytes), ${info.heartbeats} heartbeats`,
    `position   ${info.position} of ${h.capacity} (${info.freeBytes} bytes free)`,
    `readers    ${info.readers.length} of ${h.readerSlots} slots taken, ${info.parkedReaders} parked`,
  ];
  for (const r of info.readers) lines.push(`  slot ${r.slot}: pid ${r.pid}${r.parked ? ', parked' : ''}`);
  if (info.damage !== undefined) lines.push(`damage     ${info.damage}`);
  for (const r of records) lines.push(`  @${r.position} [${r.length}] ${r.data}`);
  return lines.join('\n') + '\n';
}

function fail(io: CliIo, setExitCode: (code: number) => void, error: unknown): void {
  if (error instanceof ShmError) {
    io.stderr(`switchyard journal: ${error.message} (${error.code})\n`);
    setExitCode(1);
    return;
  }
  throw error;
}

/** Adds the `journal` command group to `program`. */
export function registerJournalCommands(
  program: Command,
  io: CliIo,
  setExitCode: (code: number) => void,
): void {
  const journal = program.command('journal').description('inspect and tail @switchyard/shm journals');

  journal
    .command('inspect')
    .description('print the header, state, position, readers and (with --records) records of a journal')
    .argument('<path>', 'the journal file')
    .option('--json', 'print one JSON object')
    .option('--records <n>', 'also list up to n records', count, 0)
    .option('--from <position>', 'list records from this data position', position, 0)
    .addOption(
      new Option('--encoding <encoding>', 'how record data is printed').choices(ENCODINGS).default('utf8'),
    )
    .action(
      (path: string, options: { json?: boolean; records: number; from: number; encoding: Encoding }) => {
        try {
          const info = inspectJournal(path);
          const records =
            options.records > 0 ? listRecords(path, options.from, options.records, options.encoding) : [];
          if (options.json === true) {
            const { header, ...rest } = info;
            io.stdout(
              JSON.stringify({
                ...rest,
                header: headerJson(header),
                ...(options.records > 0 ? { records, encoding: options.encoding } : {}),
              }) + '\n',
            );
          } else {
            io.stdout(inspectText(info, records));
          }
          if (info.damage !== undefined) setExitCode(1);
        } catch (error) {
          fail(io, setExitCode, error);
        }
      },
    );

  journal
    .command('tail')
    .description('print records as they are written, until the end-of-channel mark (Ctrl-C stops)')
    .argument('<path>', 'the journal file')
    .option('--json', 'one JSON object per record: position, length, data')
    .option('--from <position>', 'start at this data position (default: replay from the start)', position)
    .option('--from-end', 'start after the last record written so far')
    .option('--no-follow', 'stop at the last record written so far instead of waiting for more')
    .option('--wait-for <ms>', 'wait this long for the journal to be created', count, 0)
    .addOption(
      new Option('--encoding <encoding>', 'how record data is printed').choices(ENCODINGS).default('utf8'),
    )
    .addOption(
      new Option('--wait <strategy>', 'how to wait for records').choices(WAIT_STRATEGIES).default('adaptive'),
    )
    .action(
      async (
        path: string,
        options: {
          json?: boolean;
          from?: number;
          fromEnd?: boolean;
          follow: boolean;
          waitFor: number;
          encoding: Encoding;
          wait: WaitStrategy;
        },
      ) => {
        const controller = new AbortController();
        const onSigint = (): void => controller.abort(new Error('interrupted'));
        process.once('SIGINT', onSigint);
        let reader: ReturnType<typeof openJournal> | undefined;
        try {
          reader = openJournal(path, { waitForMs: options.waitFor, wait: options.wait });
          if (options.fromEnd === true) reader.seek(inspectJournal(path).position);
          else if (options.from !== undefined) reader.seek(options.from);
          for (;;) {
            const record = options.follow
              ? await reader.read({ signal: controller.signal })
              : reader.tryRead();
            if (record === null) break;
            const data = encode(record, options.encoding);
            io.stdout(
              options.json === true
                ? JSON.stringify({
                    position: recordPosition(reader.position, record),
                    length: record.length,
                    data,
                  }) + '\n'
                : `${data}\n`,
            );
          }
        } catch (error) {
          if (controller.signal.aborted && error === controller.signal.reason) return;
          fail(io, setExitCode, error);
        } finally {
          process.removeListener('SIGINT', onSigint);
          reader?.close();
        }
      },
    );
}
