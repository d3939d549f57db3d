// What the tests of the node client share: a real keywayd.
//
// The daemon is the one built in KEYWAY_BUILDDIR (with its modules from
// KEYWAY_MODULE_DIR), serving clients/testdata/keywayd.conf from a new
// directory under TMPDIR: a SQLite store holding an org's key and a user's,
// and a quota of 2 a day per user on the org's.  The keys and the master
// key come from KWCLIENT_MASTER, KWCLIENT_KEY_ORG and KWCLIENT_KEY_USER when
// they are set (tests/cli/clients.sh sets them, and searches everything
// written for them), else from the defaults below.  The directory is
// removed when the daemon stops, unless KWCLIENT_KEEP is set.
//
// By hand, from a build directory:
//     KEYWAY_BUILDDIR=$PWD KEYWAY_MODULE_DIR=$PWD/modules/.libs \
//         node --test SRCDIR/clients/node/test/*.test.js

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const CONF = path.join(here, '..', '..', 'testdata', 'keywayd.conf');

export const MASTER = process.env.KWCLIENT_MASTER ||
	'6b1d2e3f405162738495a6b7c8d9eaf00f1e2d3c4b5a69788796a5b4c3d2e1f0';
export const KEY_ORG = process.env.KWCLIENT_KEY_ORG ||
	'sk-ant-nodeclient-org-acme-0001cc';
export const KEY_USER = process.env.KWCLIENT_KEY_USER ||
	'sk-ant-nodeclient-user-alice-02dd';
export const SECRETS = [MASTER, KEY_ORG, KEY_USER];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The files under dir that hold any of the secrets.
export function leaks(dir, secrets = SECRETS) {
	const hits = [];
	for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, ent.name);
		if (ent.isDirectory()) {
			hits.push(...leaks(p, secrets));
		} else if (ent.isFile()) {
			const data = fs.readFileSync(p);
			if (secrets.some((s) => data.includes(s)))
				hits.push(p);
		}
	}
	return hits;
}

// Start keywayd; resolves to { dir, socket, log, stop() }.  stop() sends
// SIGTERM and resolves to keywayd's exit status.
export async function startDaemon() {
	const build = process.env.KEYWAY_BUILDDIR;
	if (!build || !process.env.KEYWAY_MODULE_DIR)
		throw new Error('KEYWAY_BUILDDIR and KEYWAY_MODULE_DIR must name a build directory of keyway and its modules/.libs (see clients/node/test/keywayd.js)');
	const kw = path.join(build, 'cli', 'keyway');
	const kwd = path.join(build, 'daemon', 'keywayd');
	for (const p of [kw, kwd])
		fs.accessSync(p, fs.constants.X_OK);

	// The daily quota must not roll over during the tests.
	const left = 86400 - Math.floor(Date.now() / 1000) % 86400;
	if (left < 60)
		await sleep((left + 2) * 1000);

	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyway-node-'));
	// Another user (a refused caller) must reach the socket.
	fs.chmodSync(dir, 0o711);
	const conf = path.join(dir, 'keyway.conf');
	fs.copyFileSync(CONF, conf);
	fs.chmodSync(conf, 0o600);
	const env = { ...process.env, KEYWAY_MASTER_KEY: MASTER, LC_ALL: 'C' };
	for (const v of ['KEYWAY_CONFIG', 'KEYWAY_SOCKET', 'ANTHROPIC_API_KEY',
		'API_KEY_ENCRYPTION_KEY', 'KEYWAY_PASSPHRASE'])
		delete env[v];
	const kwrun = (args, key) => {
		try {
			execFileSync(kw, ['-c', conf, ...args], {
				env, input: key === undefined ? '' : `${key}\n`,
				stdio: ['pipe', 'ignore', 'pipe'], timeout: 60000,
			});
		} catch (e) {
			throw new Error(`keyway ${args.join(' ')} failed: ${String(e.stderr).trim()}`);
		}
	};
	kwrun(['init']);
	kwrun(['put', 'org_keys', 'anthropic', '--scope', 'org', '--owner', 'acme'], KEY_ORG);
	kwrun(['put', 'user_keys', 'anthropic', '--scope', 'user', '--owner', 'alice'], KEY_USER);

	const socket = path.join(dir, 'keyway.sock');
	const log = path.join(dir, 'keywayd.log');
	const logfd = fs.openSync(log, 'a');
	const proc = spawn(kwd, ['-c', conf, '--socket', socket], {
		env, stdio: ['ignore', logfd, logfd],
	});
	fs.closeSync(logfd);
	let exited = null;
	const exit = new Promise((r) => proc.on('exit', (code, sig) => {
		exited = code ?? sig;
		r(exited);
	}));
	for (let i = 0; i < 200 && exited === null && !fs.existsSync(socket); i++)
		await sleep(50);
	if (!fs.existsSync(socket)) {
		proc.kill('SIGKILL');
		throw new Error(`keywayd did not start: ${fs.readFileSync(log, 'utf8')}`);
	}
	return {
		dir, socket, log,
		async stop() {
			if (exited === null)
				proc.kill('SIGTERM');
			return exit;
		},
		remove() {
			if (!process.env.KWCLIENT_KEEP)
				fs.rmSync(dir, { recursive: true, force: true });
		},
	};
}
