/* pub.h: the SP PUB socket vmmd's events go out on.  Its subscribers are
 * nng SUB sockets and raw peers; the loop is run by the test. */
#include <errno.h>
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
#include "libcommon/pub.h"

#define QUEUE_MAX 4
#define HELLO_MS  200
#define BIG	  (64 * 1024)

static const unsigned char sub_hello[8] = {0, 'S', 'P', 0, 0, 0x21, 0, 0};
static const unsigned char pub_hello[8] = {0, 'S', 'P', 0, 0, 0x20, 0, 0};

struct fx {
	uv_loop_t loop;
	struct qpub *pub;
	char dir[40];
	char path[80]; /* within sun_path */
};

static int setup(void **state)
{
	static const struct qpub_opts opts = {.queue_max = QUEUE_MAX, .hello_ms = HELLO_MS};
	struct fx *fx = calloc(1, sizeof(*fx));
	struct qerr err = {0};

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/quiver-test-pub-XXXXXX");
	if (!mkdtemp(fx->dir) || uv_loop_init(&fx->loop) != 0)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/events.sock", fx->dir);
	if (qpub_listen(&fx->loop, fx->path, &opts, &fx->pub, &err) < 0) {
		print_error("%s\n", err.msg);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	qpub_close(fx->pub);
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
	return qpub_peers(fx->pub) == 0;
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

/* A raw subscriber that has greeted and got the publisher's greeting. */
static int raw_subscriber(struct fx *fx)
{
	unsigned char got[8];
	int fd = raw_connect(fx);

	assert_int_equal(send(fd, sub_hello, sizeof(sub_hello), 0), 8);
	assert_int_equal(read_while_spinning(fx, fd, got, 8, 2000), 8);
	assert_memory_equal(got, pub_hello, 8);
	spin(fx, 10, NULL, NULL); /* ours went at accept: now let it read theirs */
	return fd;
}

static void send_seq(struct fx *fx, uint32_t seq, size_t len)
{
	unsigned char *m = calloc(1, len);

	assert_non_null(m);
	memcpy(m, &seq, sizeof(seq));
	qpub_send(fx->pub, m, len);
	free(m);
}

/* The next frame on a raw subscriber: its length, its first 4 bytes. */
static size_t read_frame(struct fx *fx, int fd, uint32_t *seq)
{
	unsigned char head[9];
	uint64_t len = 0;

	assert_int_equal(read_while_spinning(fx, fd, head, 9, 2000), 9);
	assert_int_equal(head[0], 1);
	for (int i = 1; i < 9; i++)
		len = len << 8 | head[i];
	assert_true(len >= 4 && len <= BIG);
	unsigned char *body = malloc(len);
	assert_non_null(body);
	assert_int_equal(read_while_spinning(fx, fd, body, len, 2000), (ssize_t)len);
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
		qpub_send(fx->pub, qmsg_data(&m), qmsg_size(&m));
		spin(fx, 2, NULL, NULL);
		got = qnng_recv(sub, &ev, &err);
		if (got == 0)
			qmsg_in_free(&ev);
	}
	assert_int_equal(got, 0);
	for (int i = 1; i <= 3; i++) {
		qmsg_begin(&m, "event", 1);
		qmsg_put_int(&m, "seq", i);
		qpub_send(fx->pub, qmsg_data(&m), qmsg_size(&m));
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
	assert_int_equal(qpub_dropped(fx->pub), 0);
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
	static const unsigned char req_hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
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
	uint64_t dropped = qpub_dropped(fx->pub);
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
	assert_int_equal(qpub_dropped(fx->pub), dropped);
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
	assert_int_equal(qpub_peers(fx->pub), 1);
	qpub_close(fx->pub);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_nng_subscriber, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hangups_in_the_handshake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_or_silent_peer_closed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_subscriber, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_with_queued_messages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_uid_refused, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN); /* as vmmd does: pub.h */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
