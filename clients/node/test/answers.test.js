// Every answer keywayd documents (docs/daemon-protocol.md, Statuses), and
// answers it never gives, from a stand-in on a Unix socket: each maps to
// its error class, with the daemon's status word and its one line.  The
// statuses a real keywayd gives in client.test.js are here too, so that
// the table is whole.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';

import * as keyway from '../index.js';

describe('answers of a stand-in for keywayd', () => {
	let dir;
	let srv;
	let client;
	// What the stand-in answers: [HTTP status, body, milliseconds first].
	let answer = [200, '{}', 0];
	const got = [];
	const timers = new Set();

	before(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyway-node-stand-in-'));
		const socket = path.join(dir, 'stand-in.sock');
		srv = http.createServer((req, res) => {
			const chunks = [];
			req.on('data', (b) => chunks.push(b));
			req.on('end', () => {
				got.push([req.method, req.url, Buffer.concat(chunks).toString()]);
				const [code, body, delay] = answer;
				const t = setTimeout(() => {
					timers.delete(t);
					if (body === 'cut') {
						// says 100 bytes, sends 10, and hangs up
						res.writeHead(code, { 'Content-Length': '100' });
						res.write('{"status":');
						setTimeout(() => res.socket.destroy(), 20);
						return;
					}
					res.writeHead(code, { 'Content-Type': 'application/json' });
					res.end(body);
				}, delay);
				timers.add(t);
			});
		});
		await new Promise((r) => srv.listen(socket, r));
		client = new keyway.Client({ socket, timeout: 2000 });
	});

	after(async () => {
		for (const t of timers)
			clearTimeout(t);
		srv.closeAllConnections?.();
		await new Promise((r) => srv.close(r));
		fs.rmSync(dir, { recursive: true, force: true });
	});

	const err = (word, msg) => `{"error":"${msg}","status":"${word}"}\n`;
	const table = [
		[404, 'notfound', keyway.NotFoundError],
		[403, 'denied', keyway.DeniedError],
		[503, 'unavail', keyway.UnavailableError],
		[400, 'invalid', keyway.InvalidError],
		[403, 'refused', keyway.RefusedError],
		[413, 'invalid', keyway.InvalidError],
		[429, 'limited', keyway.LimitedError],
		[404, 'invalid', keyway.InvalidError],
		[405, 'invalid', keyway.InvalidError],
		[409, 'conflict', keyway.ConflictError],
		[500, 'error', keyway.KeywayError],
	];
	for (const [code, word, Cls] of table) {
		it(`HTTP ${code} ${word} is ${Cls.name}`, async () => {
			answer = [code, err(word, 'what is wrong, on one line'), 0];
			await assert.rejects(client.resolve({ provider: 'anthropic', user: 'u' }), (e) => {
				assert.equal(e.constructor, Cls);
				assert.deepEqual([e.status, e.httpStatus, e.message, e.name],
					[word, code, 'what is wrong, on one line', Cls.name]);
				return true;
			});
		});
	}

	it('a status word it does not know keeps the word', async () => {
		answer = [418, err('teapot', 'short and stout'), 0];
		await assert.rejects(client.health(), (e) => {
			assert.equal(e.constructor, keyway.KeywayError);
			assert.deepEqual([e.status, e.httpStatus], ['teapot', 418]);
			return true;
		});
	});

	it('an error without a JSON body goes by its HTTP status', async () => {
		answer = [503, '<html>Service Unavailable</html>', 0];
		await assert.rejects(client.resolve({ provider: 'anthropic' }), (e) => {
			assert.ok(e instanceof keyway.UnavailableError);
			assert.equal(e.message, 'keywayd answered POST /v1/resolve with HTTP 503');
			return true;
		});
		answer = [502, '', 0];
		await assert.rejects(client.resolve({ provider: 'anthropic' }), (e) => {
			assert.deepEqual([e.constructor, e.status, e.httpStatus], [keyway.KeywayError, 'error', 502]);
			return true;
		});
	});

	it('a message of many lines is made one', async () => {
		answer = [500, '{"error":"one\\ntwo\\r\\nthree","status":"error"}', 0];
		await assert.rejects(client.resolve({ provider: 'anthropic' }), { message: 'one two three' });
	});

	it('an error names which error in code', async () => {
		answer = [500, '{"error":"sealed value does not open","status":"error","code":"crypto"}', 0];
		await assert.rejects(client.resolve({ provider: 'anthropic' }), (e) => {
			assert.deepEqual([e.status, e.code], ['error', 'crypto']);
			return true;
		});
		answer = [404, err('notfound', 'no key'), 0];
		await assert.rejects(client.resolve({ provider: 'anthropic' }), (e) => {
			assert.ok(e instanceof keyway.NotFoundError);
			assert.equal(e.code, null);
			return true;
		});
	});

	it('a 200 that is not an answer', async () => {
		for (const body of ['not json', '[1, 2]', '{"key":"k","backend":"b"}',
			'{"key":"","backend":"b","lease":"l"}']) {
			answer = [200, body, 0];
			await assert.rejects(client.resolve({ provider: 'anthropic' }), (e) => {
				assert.equal(e.constructor, keyway.KeywayError, body);
				assert.equal(e.httpStatus, 200);
				return true;
			});
		}
	});

	it('an answer too large', async () => {
		answer = [200, 'x'.repeat(keyway.MAX_ANSWER + 10), 0];
		await assert.rejects(client.health(), (e) => {
			assert.ok(e.message.includes(`more than ${keyway.MAX_ANSWER} bytes`), e.message);
			return true;
		});
	});

	it('no answer in time', async () => {
		answer = [200, '{}', 3000];
		const c = new keyway.Client({ socket: client.socket, timeout: 300 });
		const t = Date.now();
		await assert.rejects(c.resolve({ provider: 'anthropic' }), (e) => {
			assert.ok(e instanceof keyway.UnavailableError);
			assert.equal(e.message, `keywayd on ${client.socket} did not answer POST /v1/resolve within 300ms`);
			return true;
		});
		assert.ok(Date.now() - t < 2500, `${Date.now() - t}ms`);
	});

	it('an answer cut short', async () => {
		answer = [200, 'cut', 0];
		await assert.rejects(client.health(), (e) => {
			assert.ok(e instanceof keyway.UnavailableError, e.message);
			assert.equal(e.message, `keywayd on ${client.socket}: GET /v1/health failed: the connection closed before the whole answer came`);
			return true;
		});
	});

	it('what is sent', async () => {
		got.length = 0;
		answer = [200, '{"key":"k","backend":"b","lease":"l"}', 0];
		await client.resolve({ provider: 'anthropic', user: 'alice', org: 'acme', chain: 'batch' });
		await client.resolve({ provider: 'anthropic', user: null });
		await client.explain({ provider: 'openai', org: 'acme' });
		answer = [200, '{"status":"ok"}', 0];
		await client.health();
		await client.report('l', 'unused');
		assert.deepEqual(got.map(([m, p, b]) => [m, p, b ? JSON.parse(b) : null]), [
			['POST', '/v1/resolve', { provider: 'anthropic', user: 'alice', org: 'acme', chain: 'batch' }],
			['POST', '/v1/resolve', { provider: 'anthropic' }],
			['POST', '/v1/explain', { provider: 'openai', org: 'acme' }],
			['GET', '/v1/health', null],
			['POST', '/v1/report', { lease: 'l', outcome: 'unused' }],
		]);
	});
});
