/*
 * redis_floor.c - the floor under the Redis ledger's charges: PROCS
 * processes, each on its own connection, sending EVALSHA of a script that
 * does the key operations an admitted charge of one quota does (two GETs,
 * two INCRs, an EXPIREAT on a new counter, two SETs and an XADD), one
 * round trip after another, with no keyway in between.
 *
 *     redis_floor -P PORT -p PROCS -u USERS -m PER_USER
 *
 * The password, if Redis wants one, is in $KW_BENCH_REDIS_PASS.  Every
 * user's counter is charged PER_USER times in all, the processes going
 * through the users in the same order, as bench/quota does.  Prints one
 * JSON line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "benchutil.h"

static const char *prog = "redis_floor";

static const char floor_lua[] =
	"local done = redis.call('GET', KEYS[1])\n"
	"if done then return {1, tonumber(done), 0, 0} end\n"
	"local c = tonumber(redis.call('GET', KEYS[4]) or '0')\n"
	"if c >= tonumber(ARGV[1]) then return {0, 0, 1, c} end\n"
	"local id = redis.call('INCR', KEYS[2])\n"
	"if redis.call('INCR', KEYS[4]) == 1 then\n"
	"  redis.call('EXPIREAT', KEYS[4], ARGV[2])\n"
	"end\n"
	"redis.call('SET', KEYS[1], id, 'EX', 300)\n"
	"redis.call('SET', 'floor:c:' .. id, '1', 'EXAT', ARGV[2])\n"
	"redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[3], '*', 't', ARGV[4],\n"
	"           'chain', 'default', 'backend', 'server_env',\n"
	"           'provider', 'anthropic', 'outcome', 'admitted',\n"
	"           'user', ARGV[5], 'id', id)\n"
	"return {1, id, 0, 0}\n";

static redisContext *floor_connect(int port, char sha[41])
{
	const char *pass = getenv("KW_BENCH_REDIS_PASS");
	redisContext *c = redisConnect("127.0.0.1", port);
	redisReply *r;

	if (c == NULL || c->err != 0)
		return NULL;
	if (pass != NULL && pass[0] != '\0') {
		r = redisCommand(c, "AUTH %s", pass);
		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			return NULL;
		freeReplyObject(r);
	}
	r = redisCommand(c, "SCRIPT LOAD %s", floor_lua);
	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40)
		return NULL;
	memcpy(sha, r->str, 41);
	freeReplyObject(r);
	return c;
}

static void child(int port, unsigned procs, unsigned p, uint64_t users,
		  uint64_t per_user, int ready, int go, int out)
{
	uint64_t n = users * per_user / procs, ok = 0;
	char sha[41], tok[40], counter[64], user[32], now[24], exp[24];
	char limit[24], minid[24];
	redisContext *c = floor_connect(port, sha);
	char byte = 0;
	time_t t = time(NULL);

	snprintf(now, sizeof(now), "%lld", (long long)t);
	snprintf(exp, sizeof(exp), "%lld", (long long)(t / 86400 + 1) * 86400 + 300);
	snprintf(limit, sizeof(limit), "%" PRIu64, per_user);
	snprintf(minid, sizeof(minid), "%lld", (long long)(t - 35 * 86400) * 1000);
	if (write(ready, &byte, 1) != 1)
		_exit(1);
	while (read(go, &byte, 1) < 0 && errno == EINTR)
		;
	for (uint64_t k = 0; c != NULL && k < n; k++) {
		const char *argv[13];
		redisReply *r;

		snprintf(user, sizeof(user), "u%07" PRIu64, k % users);
		snprintf(tok, sizeof(tok), "floor:t:%u:%" PRIu64, p, k);
		snprintf(counter, sizeof(counter), "floor:q:%s:%lld", user,
			 (long long)(t / 86400 * 86400));
		argv[0] = "EVALSHA";
		argv[1] = sha;
		argv[2] = "4";
		argv[3] = tok;
		argv[4] = "floor:seq";
		argv[5] = "floor:usage";
		argv[6] = counter;
		argv[7] = limit;
		argv[8] = exp;
		argv[9] = minid;
		argv[10] = now;
		argv[11] = user;
		r = redisCommandArgv(c, 12, argv, NULL);
		if (r == NULL)
			break;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
		    r->element[0]->integer == 1)
			ok++;
		freeReplyObject(r);
	}
	if (write(out, &ok, sizeof(ok)) != (ssize_t)sizeof(ok))
		_exit(1);
	_exit(c != NULL ? 0 : 1);
}

int main(int argc, char **argv)
{
	unsigned procs = 1;
	uint64_t users = 0, per_user = 0, total = 0, ok;
	int port = 0, ready[2], go[2], out[2], c;
	uint64_t t0, t1;
	char byte;

	while ((c = getopt(argc, argv, "P:p:u:m:")) != -1) {
		switch (c) {
		case 'P':
			port = atoi(optarg);
			break;
		case 'p':
			procs = (unsigned)bu_count(prog, "-p", optarg);
			break;
		case 'u':
			users = bu_count(prog, "-u", optarg);
			break;
		case 'm':
			per_user = bu_count(prog, "-m", optarg);
			break;
		default:
			fprintf(stderr, "usage: %s -P PORT -p PROCS -u USERS "
				"-m PER_USER\n", prog);
			return 2;
		}
	}
	if (port <= 0 || users == 0 || per_user == 0 ||
	    per_user % procs != 0)
		return 2;
	if (pipe(ready) != 0 || pipe(go) != 0 || pipe(out) != 0)
		return 1;
	for (unsigned p = 0; p < procs; p++) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			close(go[1]);
			child(port, procs, p, users, per_user, ready[1], go[0],
			      out[1]);
		}
	}
	close(ready[1]);
	close(go[0]);
	close(out[1]);
	for (unsigned p = 0; p < procs; p++)
		if (read(ready[0], &byte, 1) != 1)
			return 1;
	t0 = bu_now_ns();
	close(go[1]);
	for (unsigned p = 0; p < procs; p++) {
		if (read(out[0], &ok, sizeof(ok)) != (ssize_t)sizeof(ok)) {
			fprintf(stderr, "%s: a process died\n", prog);
			return 1;
		}
		total += ok;
	}
	t1 = bu_now_ns();
	while (wait(NULL) > 0)
		;
	printf("{\"bench\": \"redis_floor\", \"procs\": %u, \"calls\": %"
	       PRIu64 ", \"seconds\": %.6f, \"calls_per_s\": %.1f}\n",
	       procs, total, (double)(t1 - t0) / 1e9,
	       (double)total * 1e9 / (double)(t1 - t0));
	return total == users * per_user ? 0 : 1;
}
