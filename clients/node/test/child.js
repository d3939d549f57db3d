// A child process of client.test.js: resolves once on the socket given
// as argv[2], as the user argv[3], reports the lease unused, and tells its
// parent over IPC what it got: the key's SHA-256 (never the key), the
// backend, the lease id, or the error's class and status.

import { createHash } from 'node:crypto';
import { Client, KeywayError } from '../index.js';

const [socket, user] = process.argv.slice(2);
process.send({ loaded: true });
try {
	const r = await new Client({ socket }).resolve({ provider: 'anthropic', user, org: 'acme' });
	const sha = createHash('sha256').update(r.key).digest('hex');
	await r.reportUnused();
	process.send({ sha, backend: r.backend, lease: r.lease });
} catch (e) {
	process.send({
		error: e instanceof KeywayError ? e.name : 'other',
		status: e.status, httpStatus: e.httpStatus,
	});
}
process.disconnect();
