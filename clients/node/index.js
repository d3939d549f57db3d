// keyway: ask keywayd(8) for API keys, with node's standard library only.
//
//     import { resolve } from 'keyway';
//     const r = await resolve({ provider: 'anthropic', user: 'alice', org: 'acme' });
//     try { await callTheApi(r.key); } finally { await r.reportUsed(); }
//
// Every call opens its own connection to keywayd's Unix socket
// (KEYWAY_SOCKET, else /run/keyway/keyway.sock) and closes it once answered:
// nothing is kept between calls, so a process forked or spawned (cluster,
// child_process) shares no socket with its parent.  The protocol is keyway's
// docs/daemon-protocol.md.

import http from 'node:http';
import { inspect } from 'node:util';

export const DEFAULT_SOCKET = '/run/keyway/keyway.sock';
// Milliseconds a call may take, connect to last byte: a chain may wait for
// a backend's own timeouts and retries (Vault's), so it is not short.
export const DEFAULT_TIMEOUT = 30000;
// An answer is one short line of JSON; more is not keywayd.
export const MAX_ANSWER = 1 << 20;

// ---- errors ----

// A request keywayd did not answer with what was asked.  status is
// keywayd's word ('denied', 'notfound', 'refused', 'unavail', 'invalid',
// 'limited', 'conflict', 'error'), httpStatus the answer's HTTP status (null
// when there was no answer), message the one line that says what is wrong.
// No message ever holds a key.  code says which error an 'error' is
// ('backend', 'crypto', 'config', 'module', 'nomem', 'io', 'perm', 'exists',
// 'unsupported', 'internal'), else null.  retryAfter is the seconds keywayd
// said to wait (its Retry-After: a quota used up, until its window ends),
// else null.
export class KeywayError extends Error {
	constructor(message, status, httpStatus = null, code = null,
		retryAfter = null) {
		super(message);
		this.name = new.target.name;
		this.status = status ?? new.target.defaultStatus;
		this.httpStatus = httpStatus;
		this.code = code;
		this.retryAfter = retryAfter;
	}

	static defaultStatus = 'error';
}

// 429 or 403 denied: the key exists but may not be handed out (429: a quota
// used up; 403: a key disabled).
export class DeniedError extends KeywayError {
	static defaultStatus = 'denied';
}

// 404 notfound: no backend of the chain has the key; or, from report, no
// such lease for this caller.
export class NotFoundError extends KeywayError {
	static defaultStatus = 'notfound';
}

// 403 refused: this caller (its uid, as the kernel says) may not use the
// chain.
export class RefusedError extends KeywayError {
	static defaultStatus = 'refused';
}

// 503 unavail: a backend could not be asked; or keywayd itself could not be
// reached (no socket, nobody listening, no answer in time), when httpStatus
// is null.
export class UnavailableError extends KeywayError {
	static defaultStatus = 'unavail';
}

// 400 (also 404, 405, 413) invalid: a malformed request, an unknown chain,
// provider or name.
export class InvalidError extends KeywayError {
	static defaultStatus = 'invalid';
}

// 429 limited: this caller is over daemon.rate_limit.
export class LimitedError extends KeywayError {
	static defaultStatus = 'limited';
}

// 409 conflict: the lease was already reported, or expired (and was
// counted as used).
export class ConflictError extends KeywayError {
	static defaultStatus = 'conflict';
}

const BY_STATUS = new Map([DeniedError, NotFoundError, RefusedError,
	UnavailableError, InvalidError, LimitedError, ConflictError]
	.map((c) => [c.defaultStatus, c]));
// When the answer carries no status word: what its HTTP status says.
const BY_HTTP = new Map([[400, InvalidError], [403, DeniedError],
	[404, NotFoundError], [405, InvalidError], [409, ConflictError],
	[413, InvalidError], [429, LimitedError], [503, UnavailableError]]);

function oneLine(s) {
	return s.split(/\r?\n|\r/).join(' ');
}

function errorFrom(code, body, what, retryAfter = null) {
	let word = null;
	let msg = null;
	let kind = null;
	try {
		const doc = JSON.parse(body);
		if (doc && typeof doc === 'object' && !Array.isArray(doc)) {
			if (typeof doc.status === 'string')
				word = doc.status;
			if (typeof doc.code === 'string')
				kind = doc.code;
			if (typeof doc.error === 'string' && doc.error)
				msg = doc.error;
		}
	} catch {
		// not JSON: the HTTP status says what it is
	}
	if (msg === null)
		msg = `keywayd answered ${what} with HTTP ${code}`;
	const Cls = (word !== null && BY_STATUS.get(word)) ||
		BY_HTTP.get(code) || KeywayError;
	return new Cls(oneLine(msg), word, code, kind, retryAfter);
}

// ---- the client ----

function checkName(field, value, required = false) {
	if (value === undefined || value === null) {
		if (required)
			throw new TypeError(`keyway: ${field} is required`);
		return;
	}
	if (typeof value !== 'string')
		throw new TypeError(`keyway: ${field} must be a string, not ${typeof value}`);
}

function requestBody(request) {
	const { provider, user, org, chain } = request ?? {};
	checkName('provider', provider, true);
	checkName('user', user);
	checkName('org', org);
	checkName('chain', chain);
	const doc = { provider };
	for (const [k, v] of [['user', user], ['org', org], ['chain', chain]])
		if (v !== undefined && v !== null)
			doc[k] = v;
	return doc;
}

// keywayd on one socket.  socket: its path (default: KEYWAY_SOCKET, else
// /run/keyway/keyway.sock, read when the Client is made); timeout:
// milliseconds each call may take.  A Client holds no connection.
export class Client {
	constructor({ socket, timeout } = {}) {
		if (socket !== undefined && socket !== null && typeof socket !== 'string')
			throw new TypeError('keyway: socket must be a path string');
		this.socket = socket || process.env.KEYWAY_SOCKET || DEFAULT_SOCKET;
		this.timeout = timeout ?? DEFAULT_TIMEOUT;
	}

	[inspect.custom]() {
		return `Client { socket: ${JSON.stringify(this.socket)} }`;
	}

	// [HTTP status, body string, Retry-After seconds or null] of one
	// request on a new connection.
	#call(method, path, doc) {
		const what = `${method} ${path}`;
		const body = doc === undefined ? null : JSON.stringify(doc);
		const headers = { Connection: 'close' };
		if (body !== null) {
			headers['Content-Type'] = 'application/json';
			headers['Content-Length'] = Buffer.byteLength(body);
		}
		return new Promise((resolvePromise, reject) => {
			let done = false;
			const finish = (err, val) => {
				if (done)
					return;
				done = true;
				clearTimeout(timer);
				if (err) {
					req.destroy();
					reject(err);
				} else {
					resolvePromise(val);
				}
			};
			const req = http.request({
				socketPath: this.socket, path, method, headers,
				agent: false, host: 'keyway',
			}, (res) => {
				const chunks = [];
				let n = 0;
				res.on('data', (b) => {
					n += b.length;
					if (n > MAX_ANSWER) {
						finish(new KeywayError(`keywayd on ${this.socket} answered ${what} with more than ${MAX_ANSWER} bytes`, 'error', res.statusCode));
						return;
					}
					chunks.push(b);
				});
				const retry = res.headers['retry-after'];
				res.on('end', () => finish(null,
					[res.statusCode, Buffer.concat(chunks).toString('utf8'),
						/^\d+$/.test(retry ?? '') ? Number(retry) : null]));
				// node 20 says 'error' ("aborted"), others only 'close'
				const cut = () => finish(new UnavailableError(`keywayd on ${this.socket}: ${what} failed: the connection closed before the whole answer came`));
				res.on('error', cut);
				res.on('close', () => {
					if (!res.complete)
						cut();
				});
			});
			const timer = setTimeout(() => finish(new UnavailableError(
				`keywayd on ${this.socket} did not answer ${what} within ${this.timeout}ms`)),
			this.timeout);
			req.on('error', (e) => finish(this.#unreachable(e, what)));
			req.end(body ?? undefined);
		});
	}

	#unreachable(e, what) {
		switch (e.code) {
		case 'ENOENT':
			return new UnavailableError(`cannot reach keywayd: no socket ${this.socket} (is keywayd running? the socket is KEYWAY_SOCKET or socket:)`);
		case 'ECONNREFUSED':
			return new UnavailableError(`cannot reach keywayd: nothing listens on ${this.socket} (is keywayd running?)`);
		case 'EACCES':
		case 'EPERM':
			return new UnavailableError(`cannot reach keywayd: permission denied on ${this.socket} (the socket's mode and group, or a directory above it, keep this user out)`);
		default:
			return new UnavailableError(`keywayd on ${this.socket}: ${what} failed: ${oneLine(e.message || String(e.code))}`);
		}
	}

	// The answer's object when it is 200, else the error.
	async #json(method, path, doc) {
		const [code, body, retry] = await this.#call(method, path, doc);
		if (code !== 200)
			throw errorFrom(code, body, `${method} ${path}`, retry);
		let out = null;
		try {
			out = JSON.parse(body);
		} catch {
			// said below
		}
		if (!out || typeof out !== 'object' || Array.isArray(out))
			throw new KeywayError(`keywayd on ${this.socket} answered ${method} ${path} with something that is not a JSON object`, 'error', code);
		return out;
	}

	// The key for provider, as a Lease.
	async resolve(request) {
		const out = await this.#json('POST', '/v1/resolve', requestBody(request));
		const { key, backend, lease } = out;
		if (![key, backend, lease].every((v) => typeof v === 'string' && v))
			throw new KeywayError(`keywayd on ${this.socket} answered resolve without a key, a backend and a lease`, 'error', 200);
		return new Lease(this, key, backend, lease);
	}

	// How the request resolves: keywayd's object (chain, result, backend,
	// summary, steps).  Charges nothing, holds no key.
	async explain(request) {
		return this.#json('POST', '/v1/explain', requestBody(request));
	}

	// { status: 'ok', version, leases } (leases only to a caller
	// allowed some chain)
	async health() {
		return this.#json('GET', '/v1/health');
	}

	// Report a lease (its id, or a Lease) 'used' or 'unused'.
	async report(lease, outcome) {
		const id = lease instanceof Lease ? lease.lease : lease;
		checkName('lease', id, true);
		if (outcome !== 'used' && outcome !== 'unused')
			throw new TypeError(`keyway: outcome must be 'used' or 'unused', not ${JSON.stringify(outcome)}`);
		return this.#json('POST', '/v1/report', { lease: id, outcome });
	}

	// Resolve, run fn(lease), and report: see withKey below.
	async withKey(request, fn) {
		if (typeof fn !== 'function')
			throw new TypeError('keyway: withKey takes a function to run with the lease');
		const lease = await this.resolve(request);
		let result;
		try {
			result = await fn(lease);
		} finally {
			if (lease.outcome === null) {
				const outcome = lease.keyRead ? 'used' : 'unused';
				try {
					await lease.report(outcome);
				} catch (e) {
					lease.reportError = e;
					process.emitWarning(`keyway: could not report lease ${lease.lease} ${outcome}: ${e.message}`);
				}
			}
		}
		return result;
	}
}

// A key keywayd handed out, held under a lease until reported.  key: the
// key (reading it sets keyRead); backend: the chain entry that answered;
// lease: the lease id; outcome: null, 'used' or 'unused' once reported
// through this object.  The key is not an own property: console.log,
// util.inspect and JSON.stringify never show it.
export class Lease {
	#client;
	#key;

	constructor(client, key, backend, lease) {
		this.#client = client;
		this.#key = key;
		this.backend = backend;
		this.lease = lease;
		this.outcome = null;
		this.keyRead = false;
		this.reportError = null;
	}

	get key() {
		this.keyRead = true;
		return this.#key;
	}

	toJSON() {
		return { backend: this.backend, lease: this.lease, outcome: this.outcome };
	}

	[inspect.custom]() {
		return `Lease ${inspect(this.toJSON())}`;
	}

	toString() {
		return `[keyway Lease ${this.lease} from ${this.backend}]`;
	}

	async report(outcome) {
		await this.#client.report(this.lease, outcome);
		this.outcome = outcome;
	}

	// The request the key was for was never sent: refund the quota.
	reportUnused() {
		return this.report('unused');
	}

	// The request was sent.
	reportUsed() {
		return this.report('used');
	}
}

// ---- on the default socket ----

function clientFor(opts) {
	return new Client({ socket: opts?.socket, timeout: opts?.timeout });
}

// resolve({ provider, user, org, chain, socket, timeout }) -> Lease
export async function resolve(opts) {
	return clientFor(opts).resolve(opts);
}

// explain({ provider, user, org, chain, socket, timeout }) -> object
export async function explain(opts) {
	return clientFor(opts).explain(opts);
}

// health({ socket, timeout }) -> { status, version, leases }
export async function health(opts) {
	return clientFor(opts).health();
}

// report(leaseId, 'used' | 'unused', { socket, timeout })
export async function report(lease, outcome, opts) {
	return clientFor(opts).report(lease, outcome);
}

// withKey({ provider, ... }, async (lease) => ...): resolve, run the
// function, then report the lease unless the function did: 'unused' when
// it never read lease.key (whether it threw or not: the key cannot have
// been sent, and the quota is refunded), 'used' when it did (whether it
// threw or not: keyway cannot tell whether the request that carried the key
// went out; a function that knows it was not sent calls reportUnused()).
// A report that fails there throws nothing (the lease's reportError keeps
// it; a lease never reported counts as used after daemon.lease_ttl); the
// function's own error or result is what withKey gives.
export async function withKey(opts, fn) {
	return clientFor(opts).withKey(opts, fn);
}
