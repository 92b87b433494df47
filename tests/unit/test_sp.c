/* sp.h: the daemons' SP sockets, PUB (vmmd's events) and REP (vmmd's and
 * poold's control).  Their peers are nng sockets and raw ones; the loop is
 * run by the test, or by a thread of its own while an nng REQ dials. */
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/msg.h"
#include "libcommon/sp.h"
#include "libcommon/sp_client.h"

#define QUEUE_MAX   4
#define HELLO_MS    200
#define BIG	    (64 * 1024)
#define MAX_REQUEST 4096
#define BIG_REQUEST (1024 * 1024) /* the daemons' limit */

static const unsigned char sub_hello[8] = {0, 'S', 'P', 0, 0, 0x21, 0, 0};
static const unsigned char pub_hello[8] = {0, 'S', 'P', 0, 0, 0x20, 0, 0};
static const unsigned char req_hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
static const unsigned char rep_hello[8] = {0, 'S', 'P', 0, 0, 0x31, 0, 0};
static const unsigned char zeros[BIG];

struct fx {
	uv_loop_t loop;
	struct qsp *pub; /* the socket under test, PUB or REP */
	char dir[40];
	char path[80]; /* within sun_path */
	int served;
	uv_async_t stop;
	pthread_t thread;
};

static void echo(void *arg, const void *body, size_t len, struct qmsg_out *reply);

static int setup_role(void **state, enum qsp_role role, size_t max_request)
{
	struct qsp_opts opts = {
	    .role = role,
	    .queue_max = QUEUE_MAX,
	    .hello_ms = HELLO_MS,
	    .max_request = max_request,
	    .on_request = echo,
	};
	struct fx *fx = calloc(1, sizeof(*fx));
	struct qerr err = {0};

	if (!fx)
		return -1;
	opts.arg = fx;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/quiver-test-sp-XXXXXX");
	if (!mkdtemp(fx->dir) || uv_loop_init(&fx->loop) != 0)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/a.sock", fx->dir);
	if (qsp_listen(&fx->loop, fx->path, &opts, &fx->pub, &err) < 0) {
		print_error("%s\n", err.msg);
		return -1;
	}
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	return setup_role(state, QSP_PUB, MAX_REQUEST);
}

static int setup_rep(void **state)
{
	return setup_role(state, QSP_REP, MAX_REQUEST);
}

static int setup_rep_big(void **state)
{
	return setup_role(state, QSP_REP, BIG_REQUEST);
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	qsp_close(fx->pub);
	uv_run(&fx->loop, UV_RUN_DEFAULT); /* the close callbacks, then nothing is left */
	int rc = uv_loop_close(&fx->loop);
	unlink(fx->path);
	rmdir(fx->dir);
	free(fx);
	return rc == 0 ? 0 : -1;
}

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Run the loop for about ms, or until done(arg) says so. */
static bool spin(struct fx *fx, int ms, bool (*done)(struct fx *, void *), void *arg)
{
	int64_t end = now_ms() + ms;

	do {
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (done && done(fx, arg))
			return true;
		usleep(1000);
	} while (now_ms() < end);
	return false;
}

static bool no_peers(struct fx *fx, void *arg)
{
	(void)arg;
	return qsp_peers(fx->pub) == 0;
}

static int raw_connect(struct fx *fx)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Read n bytes from fd while running the loop: n, or what came before EOF
 * (-1 on a timeout). */
static ssize_t read_while_spinning(struct fx *fx, int fd, void *buf, size_t n, int ms)
{
	int64_t end = now_ms() + ms;
	size_t got = 0;

	while (got < n) {
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		ssize_t k = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
		/* closed with unread bytes of ours (the rest of a bad greeting):
		 * a reset after the data, not an EOF */
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			return (ssize_t)got;
		if (k > 0) {
			got += (size_t)k;
			continue;
		}
		assert_true(errno == EAGAIN);
		if (now_ms() > end)
			return -1;
		usleep(500);
	}
	return (ssize_t)got;
}

/* A raw peer that has sent its greeting (mine) and got the socket's (want). */
static int raw_greeted(struct fx *fx, const unsigned char *mine, const unsigned char *want)
{
	unsigned char got[8];
	int fd = raw_connect(fx);

	assert_int_equal(send(fd, mine, 8, 0), 8);
	assert_int_equal(read_while_spinning(fx, fd, got, 8, 2000), 8);
	assert_memory_equal(got, want, 8);
	spin(fx, 10, NULL, NULL); /* ours went at accept: now let it read theirs */
	return fd;
}

static int raw_subscriber(struct fx *fx)
{
	return raw_greeted(fx, sub_hello, pub_hello);
}

static void send_seq(struct fx *fx, uint32_t seq, size_t len)
{
	unsigned char *m = calloc(1, len);

	assert_non_null(m);
	memcpy(m, &seq, sizeof(seq));
	qsp_publish(fx->pub, m, len);
	free(m);
}

/* The next frame on a raw peer: its message (malloc'd), *len its length. */
static unsigned char *read_message(struct fx *fx, int fd, size_t *len)
{
	unsigned char head[9], *msg;
	uint64_t n = 0;

	assert_int_equal(read_while_spinning(fx, fd, head, 9, 2000), 9);
	assert_int_equal(head[0], 1);
	for (int i = 1; i < 9; i++)
		n = n << 8 | head[i];
	assert_true(n < (1u << 20));
	assert_non_null(msg = malloc(n ? n : 1));
	assert_int_equal(read_while_spinning(fx, fd, msg, n, 2000), (ssize_t)n);
	*len = n;
	return msg;
}

/* The next frame on a raw subscriber: its length, its first 4 bytes. */
static size_t read_frame(struct fx *fx, int fd, uint32_t *seq)
{
	size_t len;
	unsigned char *body = read_message(fx, fd, &len);

	assert_true(len >= 4 && len <= BIG);
	memcpy(seq, body, 4);
	free(body);
	return len;
}

/* An nng SUB socket (what loadgen and other platforms use) gets each
 * message whole, in order. */
static void test_nng_subscriber(void **state)
{
	struct fx *fx = *state;
	char url[160];
	struct qerr err = {0};
	struct qmsg_out m;
	struct qmsg_in ev;
	nng_socket sub;
	int got = -1;

	snprintf(url, sizeof(url), "ipc://%s", fx->path);
	assert_int_equal(qnng_sub_dial(&sub, url, &err), 0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5), 0);
	qmsg_out_init(&m);
	/* Nothing is sent to it until its greeting is in. */
	for (int i = 0; i < 400 && got < 0; i++) {
		qmsg_begin(&m, "event", 1);
		qmsg_put_int(&m, "seq", 0);
		qsp_publish(fx->pub, qmsg_data(&m), qmsg_size(&m));
		spin(fx, 2, NULL, NULL);
		got = qnng_recv(sub, &ev, &err);
		if (got == 0)
			qmsg_in_free(&ev);
	}
	assert_int_equal(got, 0);
	for (int i = 1; i <= 3; i++) {
		qmsg_begin(&m, "event", 1);
		qmsg_put_int(&m, "seq", i);
		qsp_publish(fx->pub, qmsg_data(&m), qmsg_size(&m));
	}
	for (int i = 1; i <= 3; i++) {
		int64_t seq = -1;
		got = -1;
		for (int k = 0; k < 400 && got < 0; k++) {
			spin(fx, 2, NULL, NULL);
			got = qnng_recv(sub, &ev, &err);
		}
		assert_int_equal(got, 0);
		assert_string_equal(ev.op, "event");
		assert_int_equal(qmsg_get_int(ev.root, "seq", 0, 10, &seq, &err), 0);
		assert_int_equal(seq, i);
		qmsg_in_free(&ev);
	}
	assert_int_equal(qsp_dropped(fx->pub), 0);
	qmsg_out_free(&m);
	nng_close(sub);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* nng 1.5.2's PUB listener stopped serving for good after this; ours
 * forgets such peers and serves the next subscriber. */
static void test_hangups_in_the_handshake(void **state)
{
	struct fx *fx = *state;
	uint32_t seq;

	for (int i = 0; i < 3; i++)
		close(raw_connect(fx));
	int half = raw_connect(fx); /* half a greeting, then gone */
	assert_int_equal(send(half, sub_hello, 3, 0), 3);
	close(half);
	assert_true(spin(fx, 2000, no_peers, NULL));

	int fd = raw_subscriber(fx);
	send_seq(fx, 7, 16);
	assert_int_equal(read_frame(fx, fd, &seq), 16);
	assert_int_equal(seq, 7);
	close(fd);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* A peer of another protocol, or one that says nothing, is closed. */
static void test_wrong_or_silent_peer_closed(void **state)
{
	struct fx *fx = *state;
	unsigned char got[16];

	int req = raw_connect(fx), http = raw_connect(fx), silent = raw_connect(fx);
	assert_int_equal(send(req, req_hello, 8, 0), 8);
	assert_int_equal(send(http, "GET / HTTP/1.0\r\n", 16, 0), 16);
	int64_t t0 = now_ms();
	/* Each gets the greeting, then the end of the stream. */
	assert_int_equal(read_while_spinning(fx, req, got, 16, 2000), 8);
	assert_int_equal(read_while_spinning(fx, http, got, 16, 2000), 8);
	assert_int_equal(read_while_spinning(fx, silent, got, 16, 2000), 8);
	assert_true(now_ms() - t0 >= HELLO_MS - 20); /* the silent one waited out its deadline */
	assert_memory_equal(got, pub_hello, 8);
	close(req);
	close(http);
	close(silent);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* A subscriber that does not read loses new messages, never part of one;
 * the rest come in order, and it gets new ones once it has read. */
static void test_slow_subscriber(void **state)
{
	struct fx *fx = *state;
	int fd = raw_subscriber(fx);
	uint32_t seq, last = 0;
	size_t frames = 0;

	for (uint32_t i = 1; i <= 64; i++) {
		send_seq(fx, i, BIG);
		spin(fx, 1, NULL, NULL);
	}
	uint64_t dropped = qsp_dropped(fx->pub);
	assert_true(dropped > 0 && dropped < 64);
	while (frames < 64 - dropped) {
		assert_int_equal(read_frame(fx, fd, &seq), BIG);
		assert_true(seq > last);
		last = seq;
		frames++;
	}
	assert_int_equal(recv(fd, &seq, 1, MSG_DONTWAIT), -1); /* nothing more */
	send_seq(fx, 65, BIG);
	assert_int_equal(read_frame(fx, fd, &seq), BIG);
	assert_int_equal(seq, 65);
	assert_int_equal(qsp_dropped(fx->pub), dropped);
	close(fd);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* Closing with messages still queued for a subscriber frees them
 * (teardown: the loop closes with no handle left; ASan in the SAN build). */
static void test_close_with_queued_messages(void **state)
{
	struct fx *fx = *state;
	int fd = raw_subscriber(fx);

	for (uint32_t i = 1; i <= 16; i++)
		send_seq(fx, i, BIG);
	assert_int_equal(qsp_peers(fx->pub), 1);
	qsp_close(fx->pub);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	fx->pub = NULL;
	unsigned char head[9];
	/* What was written before the close may still be read; then EOF. */
	while (recv(fd, head, sizeof(head), 0) > 0)
		;
	close(fd);
}

/* The socket is 0600, and a peer of another uid is closed even when the
 * mode lets it connect. */
static void test_other_uid_refused(void **state)
{
	struct fx *fx = *state;
	struct stat st;

	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	if (geteuid() != 0) {
		skip();
		return;
	}
	assert_int_equal(chmod(fx->dir, 0755), 0);
	assert_int_equal(chmod(fx->path, 0666), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct timeval tv = {.tv_sec = 2};
		unsigned char got[8];
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx->path);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(5);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (send(fd, sub_hello, 8, 0) != 8)
			_exit(3);
		/* no greeting: the end, or a reset (our greeting was unread) */
		ssize_t n = recv(fd, got, sizeof(got), MSG_WAITALL);
		_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 4);
	}
	int status = -1;
	for (int i = 0; i < 3000 && waitpid(pid, &status, WNOHANG) == 0; i++)
		spin(fx, 1, NULL, NULL);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* ---- REP ---- */

/* The REP handler: {op:"echo", seq, pad} → {op:"ok", seq, pad: pad zero
 * bytes}; {op:"fail"} → an EBUSY error reply; an unparsable request gets
 * an error reply, as in the daemons. */
static void echo(void *arg, const void *body, size_t len, struct qmsg_out *reply)
{
	struct fx *fx = arg;
	struct qmsg_in in;
	struct qerr err = {0};
	int64_t seq = 0, pad = 0;

	fx->served++;
	if (qmsg_parse(&in, body, len, &err) < 0) {
		qmsg_error_reply(reply, &err);
		return;
	}
	if (strcmp(in.op, "fail") == 0) {
		qmsg_in_free(&in);
		qerr_set(&err, EBUSY, "busy");
		qmsg_error_reply(reply, &err);
		return;
	}
	(void)qmsg_get_int(in.root, "seq", 0, INT32_MAX, &seq, &err);
	(void)qmsg_get_int(in.root, "pad", 0, BIG, &pad, &err);
	qmsg_in_free(&in);
	qmsg_begin(reply, "ok", pad ? 2 : 1);
	qmsg_put_int(reply, "seq", seq);
	if (pad) {
		qmsg_put_key(reply, "pad");
		msgpack_pack_bin(&reply->pk, (size_t)pad);
		msgpack_pack_bin_body(&reply->pk, zeros, (size_t)pad);
	}
}

static void on_stop(uv_async_t *a)
{
	uv_stop(a->loop);
}

static void *loop_main(void *arg)
{
	struct fx *fx = arg;
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* nng's REQ dials and calls block: the loop runs in a thread meanwhile. */
static void loop_thread_start(struct fx *fx)
{
	assert_int_equal(uv_async_init(&fx->loop, &fx->stop, on_stop), 0);
	assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
}

static void loop_thread_stop(struct fx *fx)
{
	uv_async_send(&fx->stop);
	pthread_join(fx->thread, NULL);
	uv_close((uv_handle_t *)&fx->stop, NULL);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
}

/* The request frame {op:"echo", seq, pad} with the backtrace words
 * (hops without the top bit, then the id with it). */
static size_t request_frame(unsigned char *buf, size_t cap, const uint32_t *words, int nwords,
			    int64_t seq, int64_t pad)
{
	struct qmsg_out m;
	size_t len;

	qmsg_out_init(&m);
	qmsg_begin(&m, "echo", 2);
	qmsg_put_int(&m, "seq", seq);
	qmsg_put_int(&m, "pad", pad);
	len = 4 * (size_t)nwords + qmsg_size(&m);
	assert_true(9 + len <= cap);
	buf[0] = 1;
	for (int i = 0; i < 8; i++)
		buf[1 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	for (int w = 0; w < nwords; w++)
		for (int i = 0; i < 4; i++)
			buf[9 + 4 * w + i] = (unsigned char)(words[w] >> (24 - 8 * i));
	memcpy(buf + 9 + 4 * nwords, qmsg_data(&m), qmsg_size(&m));
	qmsg_out_free(&m);
	return 9 + len;
}

/* The next reply on a raw client: it must start with the words sent; its
 * seq is returned. */
static int64_t read_reply(struct fx *fx, int fd, const uint32_t *words, int nwords)
{
	size_t len;
	unsigned char *body = read_message(fx, fd, &len);
	struct qmsg_in in;
	struct qerr err = {0};
	int64_t seq = -1;

	assert_true(len >= 4 * (size_t)nwords);
	for (int w = 0; w < nwords; w++) {
		uint32_t got = (uint32_t)body[4 * w] << 24 | (uint32_t)body[4 * w + 1] << 16 |
			       (uint32_t)body[4 * w + 2] << 8 | body[4 * w + 3];
		assert_int_equal(got, words[w]);
	}
	assert_int_equal(qmsg_parse(&in, body + 4 * nwords, len - 4 * (size_t)nwords, &err), 0);
	assert_string_equal(in.op, "ok");
	assert_int_equal(qmsg_get_int(in.root, "seq", 0, INT32_MAX, &seq, &err), 0);
	qmsg_in_free(&in);
	free(body);
	return seq;
}

/* nng's REQ socket (vmmd's client of poold, loadgen) is served, also after
 * peers hung up in the handshake, which broke nng 1.5.2's REP listener. */
static void test_rep_nng_client(void **state)
{
	struct fx *fx = *state;
	char url[160];
	struct qerr err = {0};
	struct qmsg_out m;
	struct qmsg_in reply;
	nng_socket req;
	int64_t seq = -1;

	snprintf(url, sizeof(url), "ipc://%s", fx->path);
	loop_thread_start(fx);
	for (int i = 0; i < 3; i++)
		close(raw_connect(fx));
	assert_int_equal(qnng_req_dial(&req, url, 2000, &err), 0);
	qmsg_out_init(&m);
	for (int i = 1; i <= 3; i++) {
		qmsg_begin(&m, "echo", 1);
		qmsg_put_int(&m, "seq", i);
		assert_int_equal(qnng_call(req, &m, &reply, &err), 0);
		assert_string_equal(reply.op, "ok");
		assert_int_equal(qmsg_get_int(reply.root, "seq", 0, 10, &seq, &err), 0);
		assert_int_equal(seq, i);
		qmsg_in_free(&reply);
	}
	/* not msgpack: the handler's error reply comes back as the error */
	assert_int_equal(nng_send(req, "\x92\x01\x02", 3, 0), 0);
	assert_int_equal(qnng_recv(req, &reply, &err), 0);
	assert_int_equal(qmsg_reply_error(&reply, &err), -EBADMSG);
	qmsg_in_free(&reply);
	qmsg_out_free(&m);
	nng_close(req);
	loop_thread_stop(fx);
	assert_int_equal(fx->served, 4);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* Requests sent back to back, in one write, are answered in order, each
 * with its own backtrace (a hop word before the id is echoed too). */
static void test_rep_pipelined(void **state)
{
	struct fx *fx = *state;
	unsigned char buf[512];
	uint32_t id1[] = {0x80000001}, id2[] = {0x00000007, 0x80000002};
	int fd = raw_greeted(fx, req_hello, rep_hello);
	size_t n = request_frame(buf, sizeof(buf), id1, 1, 11, 0);

	n += request_frame(buf + n, sizeof(buf) - n, id2, 2, 12, 0);
	assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
	assert_int_equal(read_reply(fx, fd, id1, 1), 11);
	assert_int_equal(read_reply(fx, fd, id2, 2), 12);
	/* a frame that comes a byte at a time */
	n = request_frame(buf, sizeof(buf), id1, 1, 13, 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(send(fd, buf + i, 1, 0), 1);
		spin(fx, 1, NULL, NULL);
	}
	assert_int_equal(read_reply(fx, fd, id1, 1), 13);
	assert_int_equal(fx->served, 3);
	close(fd);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* A frame of another type, a request over max_request, one without a
 * request id, a SUB at a REP: each closes its peer, and the socket serves
 * on. */
static void test_rep_protocol_errors(void **state)
{
	static const unsigned char bad_type[9] = {2, 0, 0, 0, 0, 0, 0, 0, 0};
	static const unsigned char too_big[9] = {1, 0, 0, 0, 0, 0, 0, 0x10, 1}; /* 4097 */
	static const unsigned char no_id[13] = {1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1};
	const unsigned char *bad[] = {bad_type, too_big, no_id};
	const size_t bad_len[] = {sizeof(bad_type), sizeof(too_big), sizeof(no_id)};
	struct fx *fx = *state;
	unsigned char got[16], buf[512];
	uint32_t id[] = {0x80000009};

	for (int i = 0; i < 3; i++) {
		int fd = raw_greeted(fx, req_hello, rep_hello);
		assert_int_equal(send(fd, bad[i], bad_len[i], 0), (ssize_t)bad_len[i]);
		assert_int_equal(read_while_spinning(fx, fd, got, sizeof(got), 2000), 0);
		close(fd);
	}
	int sub = raw_connect(fx);
	assert_int_equal(send(sub, sub_hello, 8, 0), 8);
	assert_int_equal(read_while_spinning(fx, sub, got, sizeof(got), 2000), 8);
	close(sub);
	assert_true(spin(fx, 2000, no_peers, NULL));
	assert_int_equal(fx->served, 0);

	int fd = raw_greeted(fx, req_hello, rep_hello);
	size_t n = request_frame(buf, sizeof(buf), id, 1, 5, 0);
	assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
	assert_int_equal(read_reply(fx, fd, id, 1), 5);
	close(fd);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* A client that does not read its replies is dropped once queue_max of
 * them wait, rather than held in the daemon's memory. */
static void test_rep_unread_replies(void **state)
{
	struct fx *fx = *state;
	unsigned char buf[512];
	uint32_t id[] = {0x80000001};
	int fd = raw_greeted(fx, req_hello, rep_hello);

	for (int i = 0; i < 32 && qsp_peers(fx->pub) == 1; i++) {
		size_t n = request_frame(buf, sizeof(buf), id, 1, i, BIG);
		if (send(fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
		spin(fx, 2, NULL, NULL);
	}
	assert_true(spin(fx, 2000, no_peers, NULL));
	assert_true(fx->served > QUEUE_MAX && fx->served < 32);
	close(fd);
}

/* Send all n bytes on a non-blocking socket, running the loop meanwhile. */
static void send_while_spinning(struct fx *fx, int fd, const unsigned char *buf, size_t n)
{
	size_t off = 0;
	int64_t end = now_ms() + 5000;

	while (off < n) {
		ssize_t k = send(fd, buf + off, n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k > 0)
			off += (size_t)k;
		else
			assert_true(k < 0 && errno == EAGAIN);
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		assert_true(now_ms() < end);
	}
}

/* A request near the daemons' 1 MiB limit is served, and the client's
 * input buffer then goes back to 64 KiB: 1024 clients that once sent a
 * big request must not hold 1 GiB between them. */
static void test_rep_big_request_buffer_shrinks(void **state)
{
	struct fx *fx = *state;
	uint32_t id[] = {0x80000003};
	unsigned char small[512];
	struct qmsg_out m;
	size_t junk = BIG_REQUEST - 64, len;
	int fd = raw_greeted(fx, req_hello, rep_hello);

	qmsg_out_init(&m);
	qmsg_begin(&m, "echo", 2);
	qmsg_put_int(&m, "seq", 21);
	qmsg_put_key(&m, "junk");
	msgpack_pack_bin(&m.pk, junk);
	for (size_t left = junk; left > 0; left -= left < BIG ? left : BIG)
		msgpack_pack_bin_body(&m.pk, zeros, left < BIG ? left : BIG);
	len = 4 + qmsg_size(&m);
	assert_true(len <= BIG_REQUEST);
	unsigned char *frame = malloc(9 + len);
	assert_non_null(frame);
	frame[0] = 1;
	for (int i = 0; i < 8; i++)
		frame[1 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	memcpy(frame + 9, (const unsigned char[]){0x80, 0, 0, 3}, 4);
	memcpy(frame + 13, qmsg_data(&m), qmsg_size(&m));
	qmsg_out_free(&m);
	send_while_spinning(fx, fd, frame, 9 + len);
	free(frame);
	assert_int_equal(read_reply(fx, fd, id, 1), 21);
	assert_true(qsp_buffered(fx->pub) <= 64 * 1024);
	/* and it is served on */
	size_t n = request_frame(small, sizeof(small), id, 1, 22, 0);
	assert_int_equal(send(fd, small, n, 0), (ssize_t)n);
	assert_int_equal(read_reply(fx, fd, id, 1), 22);
	assert_true(qsp_buffered(fx->pub) <= 64 * 1024);
	close(fd);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* libcommon/sp_client.c, the daemons' and qctl's client: calls in order,
 * an error reply leaves the connection open; a peer that closed is seen
 * before the next call, and a call that fails or times out closes it. */
static void test_rep_qspc_client(void **state)
{
	struct fx *fx = *state;
	struct qspc c = QSPC_INIT("the test's REP");
	struct qerr err = {0};
	struct qmsg_out m;
	struct qmsg_in reply;
	int64_t seq = -1;
	int sv[2];

	loop_thread_start(fx);
	assert_false(qspc_peer_closed(&c));
	assert_int_equal(qspc_dial(&c, fx->path, &err), 0);
	qmsg_out_init(&m);
	for (int i = 1; i <= 3; i++) {
		qmsg_begin(&m, "echo", 1);
		qmsg_put_int(&m, "seq", i);
		assert_int_equal(qspc_call(&c, &m, &reply, 2000, &err), 0);
		assert_int_equal(qmsg_get_int(reply.root, "seq", 0, 10, &seq, &err), 0);
		assert_int_equal(seq, i);
		qmsg_in_free(&reply);
	}
	qmsg_begin(&m, "fail", 0);
	assert_int_equal(qspc_call(&c, &m, &reply, 2000, &err), -EBUSY);
	assert_string_equal(err.msg, "busy");
	assert_true(c.fd >= 0);
	assert_false(qspc_peer_closed(&c));
	qspc_close(&c);
	loop_thread_stop(fx);
	assert_int_equal(fx->served, 4);

	/* a connection (its greetings done) whose peer closed; one whose
	 * peer never answers */
	for (int silent = 0; silent < 2; silent++) {
		assert_int_equal(
		    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
		c.fd = sv[0];
		if (!silent)
			close(sv[1]);
		assert_int_equal(qspc_peer_closed(&c), !silent);
		qmsg_begin(&m, "echo", 0);
		assert_int_equal(qspc_call(&c, &m, &reply, 100, &err),
				 silent ? -ETIMEDOUT : -EPIPE);
		assert_int_equal(c.fd, -1);
		if (silent)
			close(sv[1]);
	}
	qmsg_out_free(&m);
	assert_true(spin(fx, 2000, no_peers, NULL));
}

/* The client dials only a listener of its own uid (root's daemons: not a
 * socket another user put in their place). */
static void test_qspc_refuses_other_uid_listener(void **state)
{
	struct fx *fx = *state;
	struct qspc c = QSPC_INIT("another user's socket");
	struct qerr err = {0};
	char path[sizeof(fx->path) + 8];
	int ready[2];

	snprintf(path, sizeof(path), "%s/o.sock", fx->dir);
	assert_int_equal(chmod(fx->dir, 0777), 0);
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (setgid(65534) < 0 || setuid(65534) < 0 ||
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
		    listen(fd, 4) < 0 || write(ready[1], "r", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	close(ready[1]);
	char b;
	assert_int_equal(read(ready[0], &b, 1), 1);
	close(ready[0]);
	int r = qspc_dial(&c, path, &err);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(path);
	assert_int_equal(chmod(fx->dir, 0700), 0);
	assert_int_equal(r, -EPERM);
	assert_int_equal(c.fd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_nng_subscriber, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hangups_in_the_handshake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_or_silent_peer_closed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_subscriber, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_with_queued_messages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_uid_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rep_nng_client, setup_rep, teardown),
	    cmocka_unit_test_setup_teardown(test_rep_pipelined, setup_rep, teardown),
	    cmocka_unit_test_setup_teardown(test_rep_protocol_errors, setup_rep, teardown),
	    cmocka_unit_test_setup_teardown(test_rep_unread_replies, setup_rep, teardown),
	    cmocka_unit_test_setup_teardown(test_rep_qspc_client, setup_rep, teardown),
	    cmocka_unit_test_setup_teardown(test_qspc_refuses_other_uid_listener, setup_rep,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_rep_big_request_buffer_shrinks, setup_rep_big,
					    teardown),
	};

	signal(SIGPIPE, SIG_IGN); /* as vmmd does: pub.h */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
