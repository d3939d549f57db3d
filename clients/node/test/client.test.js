// The node client against a real keywayd (keywayd.js starts it).
//
// Each test that counts against the quota (2 a day per user on org_keys)
// asks as a user of its own.  No assertion compares a key with
// assert.equal: a failure would print it; they use sameKey(), whose
// message names what differs, not the values.

import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';

import * as keyway from '../index.js';
import { KEY_ORG, KEY_USER, leaks, startDaemon } from './keywayd.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sameKey(got, want, what) {
	assert.ok(got === want, `${what}: another key than expected`);
}

async function rejectsWith(promise, Cls, status) {
	try {
		await promise;
	} catch (e) {
		assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e && e.name}: ${e && e.message}`);
		assert.equal(e.status, status);
		assert.ok(e instanceof keyway.KeywayError);
		assert.ok(e instanceof Error);
		return e;
	}
	assert.fail(`expected ${Cls.name}, got an answer`);
}

// The sockets this process has open, by inode.
function socketsOpen() {
	const out = new Set();
	for (const fd of fs.readdirSync('/proc/self/fd')) {
		try {
			const link = fs.readlinkSync(`/proc/self/fd/${fd}`);
			if (link.startsWith('socket:'))
				out.add(link);
		} catch {
			// gone meanwhile
		}
	}
	return out;
}

// Run child.js as a process of its own; resolves to what it said.
function child(socket, user, opts = {}) {
	return new Promise((resolve) => {
		const said = {};
		const c = fork(path.join(here, 'child.js'), [socket, user],
			{ stdio: ['ignore', 'ignore', 'pipe', 'ipc'], ...opts });
		let err = '';
		c.stderr.on('data', (b) => { err += b; });
		c.on('message', (m) => Object.assign(said, m));
		c.on('exit', (code) => resolve({ ...said, code, stderr: err }));
	});
}

describe('keyway node client against keywayd', () => {
	let d;
	let client;

	// The sockets open before any call.
	let baseline;

	before(async () => {
		d = await startDaemon();
		baseline = socketsOpen();
		client = new keyway.Client({ socket: d.socket, timeout: 10000 });
	});

	after(async () => {
		if (!d)
			return;
		const code = await d.stop();
		const found = leaks(d.dir);
		d.remove();
		assert.equal(code, 0, 'keywayd exits with status 0 on SIGTERM');
		assert.deepEqual(found, [], 'a key or the master key is in a file keywayd wrote');
	});

	// ---- resolve, explain, health ----

	it('resolves an org key', async () => {
		const r = await client.resolve({ provider: 'anthropic', user: 'res', org: 'acme' });
		sameKey(r.key, KEY_ORG, 'resolve');
		assert.equal(r.backend, 'org_keys');
		assert.match(r.lease, /^[0-9a-f]{32}$/);
		await r.reportUsed();
		assert.equal(r.outcome, 'used');
	});

	it('falls through to the user key', async () => {
		const r = await client.resolve({ provider: 'anthropic', user: 'alice' });
		sameKey(r.key, KEY_USER, 'resolve for alice');
		assert.equal(r.backend, 'user_keys');
		await r.reportUnused();
	});

	it('module functions use KEYWAY_SOCKET, and socket: wins over it', async () => {
		const saved = process.env.KEYWAY_SOCKET;
		try {
			process.env.KEYWAY_SOCKET = d.socket;
			assert.equal((await keyway.health()).status, 'ok');
			const r = await keyway.resolve({ provider: 'anthropic', user: 'alice' });
			sameKey(r.key, KEY_USER, 'keyway.resolve');
			await keyway.report(r.lease, 'unused');
			assert.equal(new keyway.Client().socket, d.socket);
			process.env.KEYWAY_SOCKET = path.join(d.dir, 'nothing-here.sock');
			await rejectsWith(keyway.health(), keyway.UnavailableError, 'unavail');
			const s = await keyway.resolve({ provider: 'anthropic', user: 'alice', socket: d.socket });
			await s.reportUnused();
			delete process.env.KEYWAY_SOCKET;
			assert.equal(new keyway.Client().socket, '/run/keyway/keyway.sock');
		} finally {
			if (saved === undefined)
				delete process.env.KEYWAY_SOCKET;
			else
				process.env.KEYWAY_SOCKET = saved;
		}
	});

	it('health', async () => {
		const h = await client.health();
		assert.equal(h.status, 'ok');
		assert.equal(typeof h.leases, 'number');
	});

	it('explain charges nothing and holds no key', async () => {
		for (let i = 0; i < 3; i++) {
			const e = await client.explain({ provider: 'anthropic', user: 'expl', org: 'acme' });
			assert.equal(e.result, 'found');
			assert.equal(e.backend, 'org_keys');
			assert.equal(e.chain, 'default');
			assert.ok(e.steps.length > 0);
			assert.ok(!JSON.stringify(e).includes(KEY_ORG), 'explain holds the key');
		}
		const a = await client.resolve({ provider: 'anthropic', user: 'expl', org: 'acme' });
		const b = await client.resolve({ provider: 'anthropic', user: 'expl', org: 'acme' });
		await a.reportUsed();
		await b.reportUsed();
		const e = await keyway.explain({ provider: 'anthropic', user: 'expl', org: 'acme', socket: d.socket });
		assert.equal(e.result, 'denied');
	});

	// ---- report: a refund gives the quota back ----

	it('report unused refunds the quota', async () => {
		const q = { provider: 'anthropic', user: 'refund', org: 'acme' };
		const a = await client.resolve(q);
		const b = await client.resolve(q);
		await rejectsWith(client.resolve(q), keyway.DeniedError, 'denied');
		await a.reportUnused();
		const c = await client.resolve(q);
		sameKey(c.key, KEY_ORG, 'the resolve after the refund');
		await rejectsWith(client.resolve(q), keyway.DeniedError, 'denied');
		await b.reportUsed();
		await rejectsWith(client.resolve(q), keyway.DeniedError, 'denied');
		await c.reportUsed();
	});

	it('a lease reported twice is a conflict', async () => {
		const r = await client.resolve({ provider: 'anthropic', user: 'twice', org: 'acme' });
		await r.reportUnused();
		const e = await rejectsWith(r.reportUnused(), keyway.ConflictError, 'conflict');
		assert.equal(e.httpStatus, 409);
		assert.ok(e.message.includes(r.lease));
		await rejectsWith(client.report('0'.repeat(32), 'used'), keyway.NotFoundError, 'notfound');
		await assert.rejects(r.report('maybe'), TypeError);
	});

	// ---- withKey ----

	it('withKey: a function that reads the key reports used', async () => {
		const q = { provider: 'anthropic', user: 'wk-used', org: 'acme' };
		let lease;
		const got = await client.withKey(q, async (r) => {
			lease = r;
			sameKey(r.key, KEY_ORG, 'in withKey');
			return 42;
		});
		assert.equal(got, 42);
		assert.equal(lease.outcome, 'used');
		assert.equal(lease.reportError, null);
		await client.withKey(q, (r) => r.key);
		await rejectsWith(client.resolve(q), keyway.DeniedError, 'denied');
	});

	it('withKey: a function that throws before reading the key reports unused', async () => {
		const q = { provider: 'anthropic', user: 'wk-throw', org: 'acme' };
		for (let i = 0; i < 4; i++) {
			let lease;
			await assert.rejects(client.withKey(q, async (r) => {
				lease = r;
				throw new RangeError('before the key');
			}), RangeError);
			assert.equal(lease.outcome, 'unused');
		}
		await (await client.resolve(q)).reportUsed();
	});

	it('withKey: a function that throws after reading the key reports used', async () => {
		let lease;
		await assert.rejects(keyway.withKey({ provider: 'anthropic', user: 'wk-late', org: 'acme', socket: d.socket }, async (r) => {
			lease = r;
			void r.key;
			throw new Error('the upstream request failed');
		}), /the upstream request failed/);
		assert.equal(lease.outcome, 'used');
	});

	it('withKey: a function that never reads the key reports unused', async () => {
		for (let i = 0; i < 3; i++) {
			let lease;
			await client.withKey({ provider: 'anthropic', user: 'wk-unread', org: 'acme' }, (r) => { lease = r; });
			assert.equal(lease.outcome, 'unused');
		}
	});

	it('withKey: a function that reports itself is not reported again', async () => {
		const q = { provider: 'anthropic', user: 'wk-self', org: 'acme' };
		let lease;
		await client.withKey(q, async (r) => {
			lease = r;
			void r.key;
			await r.reportUnused();
		});
		assert.equal(lease.outcome, 'unused');
		assert.equal(lease.reportError, null);
		await (await client.resolve(q)).reportUsed();
		await (await client.resolve(q)).reportUsed();
	});

	it('withKey: a report that fails throws nothing', async () => {
		let lease;
		const warned = [];
		const onWarning = (w) => warned.push(w.message);
		process.on('warning', onWarning);
		try {
			const got = await client.withKey({ provider: 'anthropic', user: 'wk-gone', org: 'acme' }, async (r) => {
				lease = r;
				await client.report(r.lease, 'used');
				return 'done';
			});
			assert.equal(got, 'done');
			await sleep(20);
		} finally {
			process.off('warning', onWarning);
		}
		assert.ok(lease.reportError instanceof keyway.ConflictError);
		assert.ok(warned.some((m) => m.includes(lease.lease)), 'the failed report is warned about');
	});

	// ---- errors ----

	it('denied by the quota', async () => {
		const q = { provider: 'anthropic', user: 'deny', org: 'acme' };
		await (await client.resolve(q)).reportUsed();
		await (await client.resolve(q)).reportUsed();
		const e = await rejectsWith(client.resolve(q), keyway.DeniedError, 'denied');
		assert.equal(e.httpStatus, 429);
		// until the day's window ends
		assert.ok(Number.isInteger(e.retryAfter) && e.retryAfter > 0 && e.retryAfter <= 86400,
			`retryAfter ${e.retryAfter}`);
		assert.equal(e.name, 'DeniedError');
		assert.match(e.message, /^chain "default", provider "anthropic": org_keys answered denied: quota org_keys 2\/day per user used up for user deny /);
		assert.ok(!e.message.includes('\n'));
	});

	it('a provider without a key is notfound', async () => {
		const e = await rejectsWith(client.resolve({ provider: 'openai', user: 'nf', org: 'acme' }),
			keyway.NotFoundError, 'notfound');
		assert.equal(e.httpStatus, 404);
		assert.equal(e.retryAfter, null);
		assert.equal(e.message, 'chain "default": no backend has a key for provider "openai"');
		await rejectsWith(client.resolve({ provider: 'nosuchprovider', user: 'nf', org: 'acme' }),
			keyway.NotFoundError, 'notfound');
	});

	it('invalid names and chains', async () => {
		const e = await rejectsWith(client.resolve({ provider: 'Not A Provider!', user: 'inv' }),
			keyway.InvalidError, 'invalid');
		assert.equal(e.httpStatus, 400);
		const c = await rejectsWith(client.resolve({ provider: 'anthropic', user: 'inv', chain: 'nosuchchain' }),
			keyway.InvalidError, 'invalid');
		assert.ok(c.message.includes('no chain "nosuchchain"'), c.message);
		await assert.rejects(client.resolve({}), TypeError);
		await assert.rejects(client.explain({ provider: 3 }), TypeError);
		await assert.rejects(keyway.resolve(), TypeError);
		await assert.rejects(client.report(null, 'used'), TypeError);
		await assert.rejects(client.resolve({ provider: 'anthropic', user: 7 }), TypeError);
	});

	it('daemon down: no socket', async () => {
		const p = path.join(d.dir, 'gone.sock');
		const e = await rejectsWith(keyway.resolve({ provider: 'anthropic', user: 'down', socket: p }),
			keyway.UnavailableError, 'unavail');
		assert.equal(e.httpStatus, null);
		assert.equal(e.message, `cannot reach keywayd: no socket ${p} (is keywayd running? the socket is KEYWAY_SOCKET or socket:)`);
	});

	it('daemon down: nothing listens', async () => {
		const p = path.join(d.dir, 'stale.sock');
		const srv = net.createServer();
		await new Promise((r) => srv.listen(p, r));
		// Closing the server unlinks its path: make a stale socket by
		// keeping a hard link to it.
		fs.linkSync(p, `${p}.kept`);
		await new Promise((r) => srv.close(r));
		const e = await rejectsWith(keyway.health({ socket: `${p}.kept` }),
			keyway.UnavailableError, 'unavail');
		assert.equal(e.message, `cannot reach keywayd: nothing listens on ${p}.kept (is keywayd running?)`);
	});

	it('refused for another user', async (t) => {
		if (process.getuid() !== 0) {
			t.skip('needs root, to become nobody');
			return;
		}
		const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n')
			.find((l) => l.startsWith('nobody:'));
		if (!line) {
			t.skip('no user nobody');
			return;
		}
		const [, , uid, gid] = line.split(':');
		const got = await child(d.socket, 'other', { uid: Number(uid), gid: Number(gid) });
		if (!got.loaded) {
			t.skip(`nobody cannot run the client from here: ${got.stderr.split('\n')[0]}`);
			return;
		}
		assert.deepEqual([got.error, got.httpStatus, got.status],
			['RefusedError', 403, 'refused'], JSON.stringify(got));
	});

	it('no key in inspect, JSON or String', async () => {
		const r = await client.resolve({ provider: 'anthropic', user: 'repr', org: 'acme' });
		for (const s of [inspect(r), inspect(r, { showHidden: true, getters: true }),
			JSON.stringify(r), String(r), `${r}`, JSON.stringify({ ...r }),
			Object.keys(r).join(' ')])
			assert.ok(!s.includes(KEY_ORG), 'the key shows');
		assert.equal(r.keyRead, false);
		await r.reportUnused();
	});

	// ---- processes and concurrency ----

	it('keeps no socket open between calls', async () => {
		const r = await client.resolve({ provider: 'anthropic', user: 'fds', org: 'acme' });
		await client.explain({ provider: 'anthropic', user: 'fds', org: 'acme' });
		await client.health();
		await r.reportUnused();
		// A socket is closed a moment after its answer has been read.
		let left = [];
		for (let i = 0; i < 100; i++) {
			left = [...socketsOpen()].filter((s) => !baseline.has(s));
			if (left.length === 0)
				break;
			await sleep(20);
		}
		assert.deepEqual(left, [], 'a socket is still open 2 s after a call');
	});

	it('resolve in the parent, then in a child process', async () => {
		const q = { provider: 'anthropic', user: 'fork', org: 'acme' };
		const a = await client.resolve(q);
		const got = await child(d.socket, 'fork');
		assert.equal(got.code, 0, got.stderr);
		assert.equal(got.sha, createHash('sha256').update(KEY_ORG).digest('hex'),
			`the child: ${got.error ?? 'another key'}`);
		assert.equal(got.backend, 'org_keys');
		assert.notEqual(got.lease, a.lease);
		// The child's refund: one more for the parent, then the quota is used.
		const b = await client.resolve(q);
		await rejectsWith(client.resolve(q), keyway.DeniedError, 'denied');
		await a.reportUsed();
		await b.reportUsed();
	});

	it('12 resolves at once against a quota of 2: exactly 2 admitted', async () => {
		const all = await Promise.allSettled(Array.from({ length: 12 },
			() => client.resolve({ provider: 'anthropic', user: 'many', org: 'acme' })));
		const got = all.map((p) => (p.status === 'fulfilled'
			? (p.value.key === KEY_ORG ? 'ok' : 'another key')
			: p.reason.status)).sort();
		assert.deepEqual(got, [...Array(10).fill('denied'), 'ok', 'ok']);
	});
});

