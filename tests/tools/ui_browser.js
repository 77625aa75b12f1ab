/* ui_browser.js — drives the dashboard in headless Chromium for tests/tools/test_ui_browser.py.
 *
 * Input: SD_UI_CONFIG (JSON: base URL, admin token, demo key, client, the expected counts, the
 * connector to run, the dead delivery, where screenshots go). Output: one JSON line on stdout
 * with what the pages showed; the Python side compares it with the API. Exit 1 on any failure,
 * on a JavaScript error in the page, or on a Content-Security-Policy violation.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require(path.join(process.env.SD_TOOLING, 'node_modules', 'playwright-core'));

const cfg = JSON.parse(process.env.SD_UI_CONFIG);
const out = { screenshots: [], phone_overflow: [] };
const problems = [];
const WAIT = { timeout: 60000 };

function log(msg) {
  process.stderr.write('[ui_browser] ' + msg + '\n');
}

async function shot(page, name, main) {
  const file = name + '.png';
  /* the last action's notice would cover the table in the picture */
  await page.evaluate(() => { document.getElementById('toast').textContent = ''; });
  await page.screenshot({ path: path.join(cfg.artifacts, file), fullPage: true });
  out.screenshots.push(file);
  if (main && cfg.screenshots) {
    fs.mkdirSync(cfg.screenshots, { recursive: true });
    fs.copyFileSync(path.join(cfg.artifacts, file), path.join(cfg.screenshots, file));
  }
}

async function openPage(page, id) {
  /* by keyboard, as an operator without a mouse would: focus the link, press Enter */
  await page.focus(`#nav-list a[data-page="${id}"]`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#page .page[data-page="${id}"]`, WAIT);
}

async function cellText(page, rowId, col) {
  return page.$eval(`tr[data-id="${rowId}"] [data-col="${col}"]`, (n) => n.textContent.trim());
}

async function waitCell(page, rowId, col, want) {
  await page.waitForFunction(([sel, w]) => {
    const n = document.querySelector(sel);
    return n && n.textContent.trim() === w;
  }, [`tr[data-id="${rowId}"] [data-col="${col}"]`, want], WAIT);
}

async function waitText(page, sel, want) {
  await page.waitForFunction(([q, w]) => {
    const n = document.querySelector(q);
    return n && n.textContent.trim() === w;
  }, [sel, want], WAIT);
}

async function stats(page) {
  await page.waitForSelector('#summary [data-stat="sales"]', WAIT);
  const v = {};
  for (const k of ['events', 'customers', 'sales']) {
    v[k] = Number(await page.$eval(`#summary [data-stat="${k}"]`, (n) => n.dataset.value));
    const shown = await page.$eval(`#summary [data-stat="${k}"]`, (n) => n.textContent);
    if (Number(shown.replace(/,/g, '')) !== v[k]) problems.push(`${k} shown as ${shown}`);
  }
  return v;
}

async function signIn(page, mode, client, secret) {
  await page.check(`input[name="mode"][value="${mode}"]`);
  await page.fill('#client', client);
  await page.fill(mode === 'admin' ? '#token' : '#key', secret);
  await page.focus(mode === 'admin' ? '#token' : '#key');
  await page.keyboard.press('Enter');
}

async function main() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium, headless: true, args: ['--no-sandbox'],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[134]/.test(m.text())) {
        problems.push('console error: ' + m.text());
      }
    });

    log('sign-in page');
    const resp = await page.goto(cfg.base + '/ui');
    out.csp = resp.headers()['content-security-policy'] || '';
    await page.waitForSelector('#login-form', WAIT);
    await shot(page, 'login', false);

    log('admin sign-in, overview');
    await signIn(page, 'admin', cfg.client, cfg.token);
    out.overview = await stats(page);
    await shot(page, 'overview', true);

    log('connectors: run now');
    await openPage(page, 'connectors');
    await page.waitForSelector(`tr[data-id="${cfg.connector}"]`, WAIT);
    await page.click(`tr[data-id="${cfg.connector}"] button:has-text("Run now")`);
    await waitCell(page, cfg.connector, 'state', 'ok');
    await waitCell(page, cfg.connector, 'records_in', String(cfg.season_records));
    out.run = {
      records_in: Number((await cellText(page, cfg.connector, 'records_in')).replace(/,/g, '')),
      last_run: await page.$eval(`tr[data-id="${cfg.connector}"] [data-col="last_run"] time`,
        (n) => n.getAttribute('datetime')),
    };
    await shot(page, 'connectors', true);
    await page.click(`tr[data-id="${cfg.connector}"] a`);
    await page.waitForSelector('#runs tbody tr', WAIT);
    const runId = await page.$eval('#runs tbody tr', (n) => n.dataset.id);
    out.run.history = {
      run_id: runId,
      status: await cellText(page, runId, 'status'),
      records_in: Number((await cellText(page, runId, 'records_in')).replace(/,/g, '')),
      rows: await page.$$eval('#runs tbody tr', (rs) => rs.length),
    };
    await shot(page, 'connector', true);

    log('tenants and keys');
    await openPage(page, 'tenants');
    await page.waitForSelector('tr[data-id="demo"]', WAIT);
    await page.fill('#new-client', cfg.new_tenant);
    await page.fill('#new-name', 'Box office');
    await page.click('#tenant-form button[type="submit"]');
    await page.waitForSelector(`tr[data-id="${cfg.new_tenant}"]`, WAIT);
    await page.selectOption('#new-key-env', 'test');
    await page.click('#key-form button[type="submit"]');
    await page.waitForSelector('#new-key-secret', WAIT);
    const secret = await page.textContent('#new-key-secret');
    const newKeyId = (await page.textContent('#new-key p')).match(/key (key_\S+)/)[1];
    await page.waitForSelector(`tr[data-id="${newKeyId}"]`, WAIT);
    page.once('dialog', (d) => d.accept());
    await page.click(`tr[data-id="${newKeyId}"] button:has-text("Revoke")`);
    await page.waitForFunction((id) => {
      const n = document.querySelector(`tr[data-id="${id}"] [data-col="state"]`);
      return n && /revoked/.test(n.textContent);
    }, newKeyId, WAIT);
    out.keys = {
      created: newKeyId, secret_prefix: secret.slice(0, 8),
      demo_last_used: await page.$eval(`tr[data-id="${cfg.demo_key_id}"] [data-col="last_used_at"]`,
        (n) => (n.querySelector('time') ? n.querySelector('time').getAttribute('datetime') : '')),
    };
    await shot(page, 'tenants', true);

    log('ingest and quality');
    await openPage(page, 'quality');
    await page.waitForSelector('#quality [data-stat="rejected"]', WAIT);
    out.quality = {};
    for (const k of ['accepted', 'rejected', '2xx', '4xx']) {
      out.quality[k] = Number(await page.$eval(`#quality [data-stat="${k}"]`,
        (n) => n.dataset.value));
    }
    out.quality.fields = await page.$$eval('#page tr[data-id]',
      (rs) => rs.map((r) => r.dataset.id));
    await shot(page, 'quality', true);

    log('quarantine');
    await openPage(page, 'quarantine');
    await page.waitForSelector(`tr[data-id="${cfg.quarantined}"]`, WAIT);
    out.quarantine = { reason: await cellText(page, cfg.quarantined, 'reason') };
    await shot(page, 'quarantine', true);
    await page.click(`button[data-replay="${cfg.door}"]`);
    await page.waitForFunction(() => /Replay of .*: 1 applied, 0 still quarantined/.test(
      document.getElementById('toast').textContent), null, WAIT);
    await page.waitForSelector('#page .page[data-page="quarantine"] p.empty', WAIT);
    out.quarantine.after = await page.textContent('#page p.empty');

    log('outbox: replay the dead delivery');
    await openPage(page, 'outbox');
    await page.selectOption('#state-filter', 'dead');
    await page.waitForSelector(`tr[data-id="${cfg.dead}"]`, WAIT);
    await shot(page, 'outbox-dead', false);
    await page.click(`tr[data-id="${cfg.dead}"] button:has-text("Replay")`);
    await page.waitForFunction(() => /Replay of .* accepted/.test(
      document.getElementById('toast').textContent), null, WAIT);
    await page.selectOption('#state-filter', '');
    await page.waitForSelector(`tr[data-id="${cfg.dead}"]`, WAIT);
    await waitCell(page, cfg.dead, 'state', 'delivered');
    out.replayed_state = await cellText(page, cfg.dead, 'state');
    await shot(page, 'outbox', true);
    await page.click(`tr[data-id="${cfg.dead}"] a`);
    await page.waitForSelector('#page .page[data-page="outbox"] table', WAIT);
    await shot(page, 'delivery', true);

    log('quotas');
    await openPage(page, 'quotas');
    await page.waitForSelector('#page tr[data-id]', WAIT);
    out.quotas = await page.$$eval('#page tr[data-id]', (rs) => rs.map((r) => [r.dataset.id,
      Number(r.querySelector('[data-col="used"]').textContent.replace(/,/g, '')),
      Number(r.querySelector('[data-col="limit"]').textContent.replace(/,/g, ''))]));
    await shot(page, 'quotas', true);

    log('alerts');
    await openPage(page, 'alerts');
    await page.waitForSelector('#alert-form', WAIT);
    out.alerts = await page.$$eval('#page tr[data-id]', (rs) => rs.map((r) => r.dataset.id));
    await shot(page, 'alerts', true);

    log('phone width');
    await page.setViewportSize({ width: 390, height: 844 });
    for (const id of await page.$$eval('#nav-list a', (as) => as.map((a) => a.dataset.page))) {
      await openPage(page, id);
      const wide = await page.evaluate(() =>
        document.documentElement.scrollWidth > window.innerWidth + 1);
      if (wide) out.phone_overflow.push(id);
      await shot(page, 'phone-' + id, id === 'overview');
    }
    await page.setViewportSize({ width: 1280, height: 800 });

    log('tenant key');
    await page.click('button:has-text("Sign out")');
    await page.waitForSelector('#login-form', WAIT);
    await signIn(page, 'tenant', 'other', cfg.key);
    await page.waitForFunction(() => document.getElementById('login-error').textContent, null,
      WAIT);
    out.other_tenant_error = await page.textContent('#login-error');
    await signIn(page, 'tenant', cfg.client, cfg.key);
    out.tenant_overview = await stats(page);
    out.tenant_nav = await page.$$eval('#nav-list a', (as) => as.map((a) => a.dataset.page));
    await shot(page, 'tenant-overview', false);
    await openPage(page, 'segments');
    await page.waitForSelector('#page table', WAIT);
    out.tenant_segments = await page.textContent('#page table');
    await shot(page, 'tenant-segments', false);
    await page.click(`tr[data-id="${cfg.segment}"] a`);
    await page.waitForSelector('#pushed table', WAIT);
    out.segment = {
      sizes: await page.$$eval('#sizes tbody tr td', (ts) => ts.map((t) =>
        Number(t.textContent.replace(/,/g, '')))),
      pushed: await page.$$eval('#pushed tbody tr', (rs) => rs.map((r) => [r.dataset.id,
        r.querySelector('[data-col="state"]').textContent.trim()])),
    };
    await shot(page, 'segment', true);
    /* push it again from the page (the receiver accepts now) */
    await page.fill('#push-target', cfg.target);
    await page.click('#push-form button[type="submit"]');
    await page.waitForSelector('#push-delivery', WAIT);
    out.pushed_again = await page.textContent('#push-delivery');
    await page.click('#push-delivery');
    await waitText(page, '#page .facts .badge', 'delivered');
    await shot(page, 'tenant-delivery', false);
    await openPage(page, 'outbox');
    await page.waitForSelector(`tr[data-id="${cfg.dead}"]`, WAIT);
    /* a tenant key reads its deliveries; replay, cancel and send now are the operator's */
    out.tenant_outbox_buttons = await page.$$eval('#page tbody button', (bs) => bs.length);
    await shot(page, 'tenant-outbox', false);
  } catch (e) {
    /* what the page showed when it failed, for the log and the artefacts */
    const page = browser.contexts()[0] && browser.contexts()[0].pages()[0];
    if (page) {
      await page.screenshot({ path: path.join(cfg.artifacts, 'failure.png'), fullPage: true })
        .catch(() => {});
      log('page text at failure: ' + (await page.textContent('body').catch(() => '?')));
    }
    throw e;
  } finally {
    await browser.close();
  }
  if (problems.length) {
    throw new Error('problems in the page:\n' + problems.join('\n'));
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write('[ui_browser] FAILED: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
