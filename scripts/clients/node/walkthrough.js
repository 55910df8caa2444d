#!/usr/bin/env node
// Finam Core from Node.js: the SQL API called with the standard `pg` package.
//
//   POSTGRES_DSN='postgresql://user:password@host:5432/dbname' node walkthrough.js [stream]
//
// The database must be migrated (`finam migrate`). Every step prints one line; the exit status
// is 0 on success, 1 with the error on stderr otherwise. See README.md in this folder.
'use strict';

const crypto = require('crypto');
const { Client } = require('pg');

const LISTENER_NAME = 'node-walkthrough';
const CHANNEL = 'finam_events';
const PAGE_SIZE = 2; // small on purpose, to show paging
const WAIT_MS = 15000; // how long to wait for a notification or for read_all to catch up

// ---------------------------------------------------------------------------- connection

// libpq's key=value form (`host=/tmp port=5432 dbname=finam`), which `pg` does not parse itself.
// Only the keys below are translated; anything else is refused rather than silently ignored.
const KEY_VALUE_KEYS = {
  host: 'host',
  port: 'port',
  user: 'user',
  password: 'password',
  dbname: 'database',
  application_name: 'application_name',
  options: 'options',
};

function parseKeyValue(dsn) {
  const config = {};
  const pair = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:\\.|[^'\\])*)'|((?:\\.|[^\s'\\])*))/y;
  let match;
  while (pair.lastIndex < dsn.length && (match = pair.exec(dsn)) !== null) {
    const [, key, quoted, bare] = match;
    const value = (quoted !== undefined ? quoted : bare).replace(/\\(.)/g, '$1');
    if (key === 'sslmode' && value === 'disable') continue;
    if (!(key in KEY_VALUE_KEYS)) {
      throw new Error(`POSTGRES_DSN: key '${key}' is not supported in key=value form here; use a URL ` +
                      `(postgresql://user:password@host:port/dbname?...)`);
    }
    config[KEY_VALUE_KEYS[key]] = value;
    if (dsn.slice(pair.lastIndex).trim() === '') break;
  }
  if (pair.lastIndex < dsn.length && dsn.slice(pair.lastIndex).trim() !== '') {
    throw new Error('POSTGRES_DSN: cannot parse the key=value connection string; use a URL');
  }
  return config;
}

// POSTGRES_DSN as a URL is handed to `pg` as is (for a Unix socket:
// postgresql://user@/dbname?host=/socket/dir&port=5432). Unset, `pg` uses PGHOST, PGPORT,
// PGUSER, PGPASSWORD and PGDATABASE, like libpq.
function connectionConfig() {
  const dsn = (process.env.POSTGRES_DSN || '').trim();
  if (dsn === '') return {};
  if (/^postgres(ql)?:\/\//i.test(dsn)) return { connectionString: dsn };
  return parseKeyValue(dsn);
}

async function connect(applicationName) {
  const client = new Client({ application_name: applicationName, ...connectionConfig() });
  await client.connect();
  return client;
}

// ---------------------------------------------------------------------------- SQL calls

async function appendEvent(client, stream, event, expectedVersion) {
  const { rows } = await client.query(
    `SELECT version, position, duplicate
       FROM finam.append_event(stream => $1, id => $2, type => $3, payload => $4,
                               expected_version => $5, metadata => $6)`,
    [stream, event.id, event.type, JSON.stringify(event.payload), expectedVersion,
     JSON.stringify(event.metadata || {})]);
  return rows[0]; // bigint columns arrive as strings: { version: '1', position: '17', duplicate: false }
}

async function appendEvents(client, stream, events, expectedVersion) {
  const { rows } = await client.query(
    `SELECT id, version, position, duplicate
       FROM finam.append_events(stream => $1, events => $2, expected_version => $3)`,
    [stream, JSON.stringify(events), expectedVersion]);
  return rows;
}

async function readAllPage(client, afterPosition, maxCount) {
  const { rows } = await client.query(
    `SELECT position, stream, version, type
       FROM finam.read_all(after_position => $1, max_count => $2)`,
    [afterPosition, maxCount]);
  return rows;
}

// Follow the store from a checkpoint: page by page until a page comes back empty. read_all holds
// back events committed after the server's oldest running transaction began, so an empty page can
// come early; like any tailing reader, poll again until `done(rows)` or the deadline.
async function tailReadAll(client, checkpoint, done) {
  const rows = [];
  let pages = 0;
  let position = checkpoint;
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const page = await readAllPage(client, position, PAGE_SIZE);
    if (page.length > 0) {
      pages += 1;
      rows.push(...page);
      position = page[page.length - 1].position; // resume after the last row received
      continue;
    }
    if (done(rows)) return { rows, pages, checkpoint: position };
    if (Date.now() > deadline) {
      throw new Error(`read_all after position ${checkpoint} did not return the expected events ` +
                      `within ${WAIT_MS} ms (a long-running transaction on the server holds them back)`);
    }
    await sleep(100);
  }
}

function waitForNotification(client, channel, payload, timeoutMs) {
  return new Promise((resolve, reject) => {
    const onNotification = (message) => {
      if (message.channel === channel && message.payload === payload) {
        clearTimeout(timer);
        client.removeListener('notification', onNotification);
        resolve(message);
      }
    };
    const timer = setTimeout(() => {
      client.removeListener('notification', onNotification);
      reject(new Error(`no NOTIFY ${channel} '${payload}' within ${timeoutMs} ms`));
    }, timeoutMs);
    client.on('notification', onNotification);
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function events(n) {
  return `${n} ${n === 1 ? 'event' : 'events'}`;
}

function ours(rows, stream) {
  return rows.filter((row) => row.stream === stream);
}

// ---------------------------------------------------------------------------- the walkthrough

async function main() {
  const stream = process.argv[2] || `nodewalk-${crypto.randomBytes(4).toString('hex')}`;
  const writer = await connect('finam-node-walkthrough');
  let listener = null;
  let registered = false;
  try {
    const { rows: [info] } = await writer.query(
      `SELECT current_database() AS database, current_setting('server_version') AS server,
              finam.schema_version() AS api`);
    console.log(`connected -> database ${info.database} PostgreSQL ${info.server} ` +
                `finam ${info.api} stream ${stream}`);

    // 1. One event, named arguments, on a new stream (expected version 0).
    const deposit = {
      id: crypto.randomUUID(),
      type: 'CashDeposited',
      payload: { currency: 'USD', amount: '100000.00' }, // money as strings, never floats
    };
    const first = await appendEvent(writer, stream, deposit, 0);
    console.log(`append_event -> version ${first.version} position ${first.position} ` +
                `duplicate ${first.duplicate}`);

    // 2. A batch, all or nothing, right after version 1.
    const signalId = crypto.randomUUID();
    const batch = await appendEvents(writer, stream, [
      { id: signalId, type: 'StrategySignalEvent',
        payload: { instrument: 'AAPL', side: 'BUY', quantity: '10' } },
      { id: crypto.randomUUID(), type: 'OrderRequested',
        payload: { instrument: 'AAPL', side: 'BUY', quantity: '10', limit_price: '187.25' },
        metadata: { causation_id: signalId } },
    ], 1);
    console.log('append_events -> ' + batch.map((row) =>
      `version ${row.version} position ${row.position} duplicate ${row.duplicate}`).join('; '));

    // 3. A stale expected version: FC001, DETAIL = {"stream", "expected", "actual"}; retry.
    const fill = {
      id: crypto.randomUUID(),
      type: 'OrderFilled',
      payload: { instrument: 'AAPL', side: 'BUY', quantity: '10', price: '187.20', fee: '1.00' },
    };
    try {
      await appendEvent(writer, stream, fill, 1);
      throw new Error('append_event with a stale expected version did not raise FC001');
    } catch (err) {
      if (err.code !== 'FC001') throw err;
      const detail = JSON.parse(err.detail);
      // A real client would re-read the stream from detail.actual and decide again here.
      const retried = await appendEvent(writer, stream, fill, detail.actual);
      console.log(`FC001 caught: expected ${detail.expected} actual ${detail.actual}; ` +
                  `retried -> version ${retried.version} position ${retried.position} ` +
                  `duplicate ${retried.duplicate}`);
    }

    // 4. The same id again (a retry after a lost reply): the stored result, nothing written.
    const again = await appendEvent(writer, stream, deposit, 0);
    console.log(`append_event same id again -> version ${again.version} position ${again.position} ` +
                `duplicate ${again.duplicate}`);

    // 5. The stream, in version order.
    const { rows: history } = await writer.query(
      `SELECT version, type, payload FROM finam.read_stream(stream => $1, from_version => 1, max_count => 100)`,
      [stream]);
    console.log(`read_stream -> ${events(history.length)}: ` +
                history.map((row) => `${row.version} ${row.type}`).join(', '));

    // 6. Tail everything after a checkpoint (here: the position of our first event).
    const head = history.length;
    const tail = await tailReadAll(writer, first.position, (rows) =>
      ours(rows, stream).some((row) => Number(row.version) === head));
    console.log(`read_all after checkpoint ${first.position} -> ${events(tail.rows.length)} ` +
                `(${ours(tail.rows, stream).length} of ${stream}) in ${tail.pages} pages of at most ` +
                `${PAGE_SIZE}, then an empty page; checkpoint ${tail.checkpoint}`);

    // 7. Wake-ups: register, LISTEN on a dedicated connection, append from another one.
    listener = await connect('finam-node-walkthrough-listener');
    const { rows: [registration] } = await listener.query(
      `SELECT finam.register_listener(name => $1, ttl => $2) AS expires_at`, [LISTENER_NAME, '30 seconds']);
    registered = true;
    console.log(`register_listener -> ${LISTENER_NAME} until ${registration.expires_at.toISOString()}`);
    await listener.query(`LISTEN ${CHANNEL}`);
    console.log(`LISTEN ${CHANNEL} on a dedicated connection`);
    const notified = waitForNotification(listener, CHANNEL, stream, WAIT_MS);
    notified.catch(() => {}); // handled by the await below
    const ping = await appendEvent(writer, stream, {
      id: crypto.randomUUID(),
      type: 'CashWithdrawn',
      payload: { currency: 'USD', amount: '2500.00' },
    }, head);
    console.log(`append_event from another connection -> version ${ping.version} position ${ping.position} ` +
                `duplicate ${ping.duplicate}`);
    const message = await notified;
    console.log(`notification: ${message.payload}`);

    // The notification is only a hint: read what arrived from the checkpoint.
    const woken = await tailReadAll(listener, tail.checkpoint, (rows) =>
      ours(rows, stream).some((row) => row.version === ping.version));
    console.log(`read_all after checkpoint ${tail.checkpoint} -> ${events(woken.rows.length)} ` +
                `(${ours(woken.rows, stream).length} of ${stream}); checkpoint ${woken.checkpoint}`);

    await listener.query(`UNLISTEN ${CHANNEL}`);
    const { rows: [removed] } = await listener.query(
      'SELECT finam.unregister_listener(name => $1) AS removed', [LISTENER_NAME]);
    registered = false;
    console.log(`unregister_listener -> ${removed.removed}`);

    const { rows: [final] } = await writer.query('SELECT finam.stream_version($1) AS version', [stream]);
    console.log(`done: stream ${stream} at version ${final.version}`);
  } finally {
    if (listener !== null) {
      if (registered) {
        await listener.query('SELECT finam.unregister_listener($1)', [LISTENER_NAME]).catch(() => {});
      }
      await listener.end().catch(() => {});
    }
    await writer.end().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    const code = err && err.code ? ` ${err.code}` : '';
    console.error(`error${code}: ${err && err.message ? err.message : err}`);
    if (err && err.detail) console.error(`detail: ${err.detail}`);
    process.exit(1);
  });
