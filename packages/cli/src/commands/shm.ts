/**
 * `switchyard shm ls` and `switchyard shm rm`: list the @switchyard/shm pub/sub regions in a
 * directory (default /dev/shm) and remove those a dead process left behind. A region whose
 * publisher is alive is removed only with --force.
 */
import { Command } from 'commander';
import {
  ShmError,
  inspectRegionFile,
  listRegions,
  regionPath,
  removeRegionFiles,
  type RegionInspection,
} from '@switchyard/shm';
import type { CliIo } from '../program.js';

const DEFAULT_DIR = '/dev/shm';

function fail(io: CliIo, setExitCode: (code: number) => void, error: unknown): void {
  if (error instanceof ShmError) {
    io.stderr(`switchyard shm: ${error.message} (${error.code})\n`);
    setExitCode(1);
    return;
  }
  throw error;
}

function status(r: RegionInspection): string {
  if (r.state === 'closed') return 'closed';
  if (!r.publisherAlive) return 'dead';
  if (r.dead) return 'stale';
  return 'live';
}

function regionJson(r: RegionInspection): Record<string, unknown> {
  return {
    name: r.name,
    path: r.path,
    status: status(r),
    dead: r.dead,
    state: r.state,
    publisherPid: r.publisherPid,
    publisherAlive: r.publisherAlive,
    heartbeatAgeMs: r.heartbeatAgeMs,
    bytes: r.header.totalBytes,
    blockCount: r.header.blockCount,
    blockSize: r.header.blockSize,
    ringDepth: r.header.ringDepth,
    slowSubscriber: r.header.slowSubscriber,
    published: r.head,
    blocks: r.blocks,
    subscribers: r.subscribers,
  };
}

function pad(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return (
    rows
      .map((row) =>
        row
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** Adds the `shm` command group to `program`. */
export function registerShmCommands(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  const shm = program.command('shm').description('list and clean up @switchyard/shm pub/sub regions');

  shm
    .command('ls')
    .description('list pub/sub regions: publisher, liveness, subscribers, blocks')
    .option('--dir <dir>', 'directory of the region files', DEFAULT_DIR)
    .option('--json', 'one JSON object per region')
    .action((options: { dir: string; json?: boolean }) => {
      try {
        const listing = listRegions(options.dir);
        if (options.json === true) {
          for (const entry of listing) {
            io.stdout(
              JSON.stringify(
                'region' in entry
                  ? regionJson(entry.region)
                  : { name: entry.name, path: entry.path, status: 'unreadable', error: entry.error.code },
              ) + '\n',
            );
          }
          return;
        }
        if (listing.length === 0) {
          io.stdout(`no pub/sub regions in ${options.dir}\n`);
          return;
        }
        const rows = [
          ['NAME', 'STATUS', 'PID', 'HEARTBEAT', 'SUBSCRIBERS', 'BLOCKS FREE/USED', 'PUBLISHED', 'SIZE'],
        ];
        for (const entry of listing) {
          if (!('region' in entry)) {
            rows.push([entry.name, `unreadable (${entry.error.code})`, '-', '-', '-', '-', '-', '-']);
            continue;
          }
          const r = entry.region;
          const live = r.subscribers.filter((s) => s.alive).length;
          rows.push([
            r.name,
            status(r),
            String(r.publisherPid),
            `${(r.heartbeatAgeMs / 1000).toFixed(1)} s ago`,
            `${live} of ${r.header.subscriberSlots}` +
              (r.subscribers.length > live ? ` (+${r.subscribers.length - live} dead)` : ''),
            `${r.blocks.free}/${r.blocks.loaned + r.blocks.referenced}`,
            String(r.head),
            `${(r.header.totalBytes / 2 ** 20).toFixed(1)} MiB`,
          ]);
        }
        io.stdout(pad(rows));
      } catch (error) {
        fail(io, setExitCode, error);
      }
    });

  shm
    .command('rm')
    .description('remove regions (and their doorbell FIFOs) whose publisher is dead, closed or stale')
    .argument('[names...]', 'region names (as `shm ls` shows them)')
    .option('--dir <dir>', 'directory of the region files', DEFAULT_DIR)
    .option('--dead', 'remove every region in the directory whose publisher is gone')
    .option('--force', 'remove even a region whose publisher is alive')
    .action((names: string[], options: { dir: string; dead?: boolean; force?: boolean }) => {
      try {
        if (names.length === 0 && options.dead !== true) {
          io.stderr('switchyard shm rm: name a region, or pass --dead\n');
          setExitCode(2);
          return;
        }
        if (options.dead === true) {
          for (const entry of listRegions(options.dir)) {
            if ('region' in entry && entry.region.dead) {
              removeRegionFiles(entry.path);
              io.stdout(
                `removed ${entry.name} (publisher ${entry.region.publisherPid} ${status(entry.region)})\n`,
              );
            }
          }
        }
        for (const name of names) {
          const path = regionPath(options.dir, name);
          let region: RegionInspection | undefined;
          try {
            region = inspectRegionFile(path);
          } catch (error) {
            if (!(error instanceof ShmError)) throw error;
            if (error.code === 'SHM_ERR_SYSTEM') {
              fail(io, setExitCode, error);
              continue;
            }
            // Unreadable (corrupt, never published): only with --force.
            if (options.force !== true) {
              io.stderr(
                `switchyard shm rm: ${name}: ${error.message} (${error.code}); use --force to remove it\n`,
              );
              setExitCode(1);
              continue;
            }
          }
          if (region !== undefined && !region.dead && options.force !== true) {
            io.stderr(
              `switchyard shm rm: ${name}: its publisher (pid ${region.publisherPid}) is alive; use --force to remove it anyway\n`,
            );
            setExitCode(1);
            continue;
          }
          removeRegionFiles(path);
          io.stdout(`removed ${name}\n`);
        }
      } catch (error) {
        fail(io, setExitCode, error);
      }
    });
}
