/**
 * Helpers of the web UI tests: Debian's Chromium driven by playwright-core (never a downloaded
 * browser), a fresh profile per run, and screenshots into test-output/ui/.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { repoRoot } from '@switchyard/testkit';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_ARGS = Object.freeze([
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]);

export const LAPTOP = Object.freeze({ width: 1440, height: 900 });
export const PHONE = Object.freeze({ width: 390, height: 844 });

/**
 * Why the browser tests cannot run here, or undefined when they can. Under `CI=true` a missing
 * Chromium is a failure (`.ci/run` installs it), so this throws instead of skipping.
 */
export function chromiumMissing(
  path: string = CHROMIUM_PATH,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string | undefined {
  if (existsSync(path)) return undefined;
  const why = `${path} is missing (apt-get install chromium); the web UI tests need Debian's Chromium`;
  if (env.CI === 'true') throw new Error(why);
  return why;
}

/** A browser with a fresh profile; `close()` ends it and deletes the profile. */
export interface UiBrowser extends AsyncDisposable {
  readonly context: BrowserContext;
  /** A new tab (its own sessionStorage) at `size`, with page errors collected. */
  page(size?: { width: number; height: number }): Promise<{ page: Page; errors: string[] }>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<UiBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'switchyard-ui-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: { ...LAPTOP },
      timeout: 20_000,
    });
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
  // Generous for a loaded 2-core machine; a passing run takes a fraction of it.
  context.setDefaultTimeout(10_000);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= context.close().finally(() => rmSync(profile, { recursive: true, force: true }));
    return closing;
  };
  return {
    context,
    async page(size = LAPTOP) {
      const page = await context.newPage();
      await page.setViewportSize({ ...size });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console: ${m.text()}`);
      });
      return { page, errors };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** test-output/ui/ (git-ignored), created on demand. */
export function screenshotDir(): string {
  const dir = join(repoRoot(), 'test-output', 'ui');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function screenshot(page: Page, name: string, fullPage = true): Promise<string> {
  const path = join(screenshotDir(), `${name}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}
