// Types of keyway's node client (index.js).

export declare const DEFAULT_SOCKET: string;
export declare const DEFAULT_TIMEOUT: number;
export declare const MAX_ANSWER: number;

export type StatusWord =
	| 'denied' | 'notfound' | 'refused' | 'unavail' | 'invalid'
	| 'limited' | 'conflict' | 'error';

export type ErrorCode =
	| 'backend' | 'crypto' | 'config' | 'module' | 'nomem' | 'io' | 'perm'
	| 'exists' | 'unsupported' | 'internal';

export declare class KeywayError extends Error {
	constructor(message: string, status?: string | null, httpStatus?: number | null,
		code?: string | null, retryAfter?: number | null);
	/** keywayd's word for what went wrong. */
	readonly status: StatusWord | string;
	/** The answer's HTTP status; null when keywayd could not be reached. */
	readonly httpStatus: number | null;
	/** Which error an 'error' is; null for the other words. */
	readonly code: ErrorCode | string | null;
	/** Seconds keywayd said to wait (Retry-After: a quota used up); else null. */
	readonly retryAfter: number | null;
	static readonly defaultStatus: string;
}
export declare class DeniedError extends KeywayError {}
export declare class NotFoundError extends KeywayError {}
export declare class RefusedError extends KeywayError {}
export declare class UnavailableError extends KeywayError {}
export declare class InvalidError extends KeywayError {}
export declare class LimitedError extends KeywayError {}
export declare class ConflictError extends KeywayError {}

export interface Request {
	provider: string;
	user?: string | null;
	org?: string | null;
	/** Default: the chain "default". */
	chain?: string | null;
}

export interface CallOptions {
	/** keywayd's socket; default KEYWAY_SOCKET, else /run/keyway/keyway.sock. */
	socket?: string;
	/** Milliseconds a call may take; default 30000. */
	timeout?: number;
}

export type Outcome = 'used' | 'unused';

export interface ExplainStep {
	index: number;
	backend: string;
	module: string;
	status: string;
	action: string;
	skip: number;
	detail: string;
	masked?: string;
}

export interface Explanation {
	chain: string;
	result: string;
	backend?: string;
	summary: string;
	steps: ExplainStep[];
}

export interface Health {
	status: 'ok';
	version: string;
	/* Keys held unreported: told only to a caller allowed some chain. */
	leases?: number;
}

export interface Report {
	lease: string;
	outcome: Outcome;
}

export declare class Lease {
	/** The key; reading it sets keyRead. */
	readonly key: string;
	readonly backend: string;
	readonly lease: string;
	outcome: Outcome | null;
	keyRead: boolean;
	reportError: unknown;
	report(outcome: Outcome): Promise<void>;
	reportUnused(): Promise<void>;
	reportUsed(): Promise<void>;
	toJSON(): { backend: string; lease: string; outcome: Outcome | null };
}

export declare class Client {
	constructor(options?: CallOptions);
	readonly socket: string;
	timeout: number;
	resolve(request: Request): Promise<Lease>;
	explain(request: Request): Promise<Explanation>;
	health(): Promise<Health>;
	report(lease: string | Lease, outcome: Outcome): Promise<Report>;
	withKey<T>(request: Request, fn: (lease: Lease) => T | Promise<T>): Promise<T>;
}

export declare function resolve(request: Request & CallOptions): Promise<Lease>;
export declare function explain(request: Request & CallOptions): Promise<Explanation>;
export declare function health(options?: CallOptions): Promise<Health>;
export declare function report(lease: string | Lease, outcome: Outcome, options?: CallOptions): Promise<Report>;
export declare function withKey<T>(request: Request & CallOptions,
	fn: (lease: Lease) => T | Promise<T>): Promise<T>;
