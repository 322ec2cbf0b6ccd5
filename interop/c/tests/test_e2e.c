/*
 * test_e2e.c - the C client against the real lanchat-server.
 *
 * Starts `lanchat-server --listen 127.0.0.1:0 --no-announce` (path from
 * LANCHAT_SERVER_BIN), reads its `listening 127.0.0.1:PORT` line, and drives
 * it with library clients, the lanchat-c CLI (LANCHAT_C_BIN) and the echo bot
 * (LANCHAT_ECHO_BOT_BIN) as subprocesses. Every wait is bounded by poll()
 * timeouts; every child is killed and reaped at the end, on failure too.
 *
 * TLS: servers print `tls_sha256 <hex>` after their listening line; the TLS
 * tests pin that, check what the client computes against it, and run a
 * --require-tls server. The servers keep their certificate under a private
 * XDG_STATE_HOME made here and removed at the end, never in the real home.
 */
#define _XOPEN_SOURCE 700 /* nftw, for removing that directory */

#include "check.h"
#include "lanchat.h"

#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000 /* generous: the tests may run under valgrind */
#define LINE_MAX_BYTES 16384 /* the TLS test's big line fits */

struct child {
    pid_t pid;
    int in;  /* its stdin, or -1 */
    int out; /* its stdout */
    int err; /* its stderr, or -1 */
};

/* Lines from a child's pipe. */
struct reader {
    int fd;
    char buf[LINE_MAX_BYTES];
    size_t len;
};

struct paths {
    const char *server;
    const char *cli;
    const char *bot;
};

static long long now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_until(long long deadline)
{
    long long left = deadline - now_ms();

    return left < 0 ? 0 : (int)left;
}

/* ---- child processes ------------------------------------------------------ */

static void close_fd(int *fd)
{
    if (*fd >= 0)
        (void)close(*fd);
    *fd = -1;
}

static int cloexec_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return 0;
    if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
        close_fd(&fds[0]);
        close_fd(&fds[1]);
        return 0;
    }
    return 1;
}

/* Start argv[0] with stdout piped, and stdin / stderr piped when asked. */
static int spawn(struct child *ch, char *const argv[], int pipe_in, int pipe_err)
{
    int in[2] = {-1, -1};
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    pid_t pid;

    ch->pid = -1;
    ch->in = ch->out = ch->err = -1;
    if ((pipe_in && !cloexec_pipe(in)) || !cloexec_pipe(out) || (pipe_err && !cloexec_pipe(err)))
        goto fail;
    pid = fork();
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        /* dup2 clears FD_CLOEXEC on the copies, so only they survive exec. */
        if ((pipe_in && dup2(in[0], STDIN_FILENO) < 0) || dup2(out[1], STDOUT_FILENO) < 0 ||
            (pipe_err && dup2(err[1], STDERR_FILENO) < 0))
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    ch->pid = pid;
    ch->in = in[1];
    ch->out = out[0];
    ch->err = err[0];
    return 1;
fail:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&out[1]);
    close_fd(&err[0]);
    close_fd(&err[1]);
    return 0;
}

/* Wait (bounded) until fd reaches end of file, discarding what it says. */
static int drain_to_eof(int fd, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    char scratch[4096];

    for (;;) {
        struct pollfd p;
        ssize_t n;

        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, ms_until(deadline)) != 1)
            return 0;
        n = read(fd, scratch, sizeof scratch);
        if (n == 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
}

/* Wait for a child to exit on its own (its stdout closing is the signal),
 * killing it if it does not within timeout_ms. Returns its wait status. */
static int reap(struct child *ch, int timeout_ms, int *exited_alone)
{
    int status = -1;

    *exited_alone = 0;
    if (ch->pid <= 0)
        return -1;
    close_fd(&ch->in);
    if (ch->out >= 0 && drain_to_eof(ch->out, timeout_ms))
        *exited_alone = 1;
    else
        (void)kill(ch->pid, SIGKILL);
    while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR)
        continue;
    ch->pid = -1;
    close_fd(&ch->out);
    close_fd(&ch->err);
    return status;
}

static int exited_with(int status, int code)
{
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == code;
}

static int write_text(int fd, const char *s)
{
    size_t len = strlen(s);
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, s + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        done += (size_t)n;
    }
    return 1;
}

/* The next line (without LF) within timeout_ms; 0 on timeout or end of file. */
static int read_line(struct reader *r, int timeout_ms, char *out, size_t size)
{
    long long deadline = now_ms() + timeout_ms;

    for (;;) {
        char *lf = memchr(r->buf, '\n', r->len);
        struct pollfd p;
        ssize_t n;

        if (lf != NULL) {
            size_t len = (size_t)(lf - r->buf);

            if (len >= size)
                len = size - 1;
            memcpy(out, r->buf, len);
            out[len] = '\0';
            memmove(r->buf, lf + 1, r->len - (size_t)(lf - r->buf) - 1);
            r->len -= (size_t)(lf - r->buf) + 1;
            return 1;
        }
        if (r->len == sizeof r->buf)
            r->len = 0; /* a line too long to matter here */
        p.fd = r->fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, ms_until(deadline)) != 1)
            return 0;
        n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (n == 0 || (n < 0 && errno != EINTR))
            return 0;
        if (n > 0)
            r->len += (size_t)n;
    }
}

/* Read lines until one contains `want`. */
static int wait_output(struct reader *r, const char *want)
{
    long long deadline = now_ms() + WAIT_MS;
    char line[LINE_MAX_BYTES];

    while (read_line(r, ms_until(deadline), line, sizeof line)) {
        if (strstr(line, want) != NULL)
            return 1;
    }
    printf("  no output line containing \"%s\"\n", want);
    return 0;
}

/* The next line that is not valgrind's ("==PID== ..."), within WAIT_MS; 0 at
 * end of file or on timeout. */
static int own_line(struct reader *r, char *out, size_t size)
{
    long long deadline = now_ms() + WAIT_MS;

    while (read_line(r, ms_until(deadline), out, size)) {
        if (strncmp(out, "==", 2) != 0)
            return 1;
    }
    return 0;
}

/* Whether the next line of r that is not valgrind's is exactly want. */
static int next_own_line_is(struct reader *r, const char *want)
{
    char line[LINE_MAX_BYTES];

    if (!own_line(r, line, sizeof line)) {
        printf("  no line where \"%s\" was expected\n", want);
        return 0;
    }
    if (strcmp(line, want) != 0) {
        printf("  got \"%s\", expected \"%s\"\n", line, want);
        return 0;
    }
    return 1;
}

/* Start a server on 127.0.0.1, port chosen by the system. When fingerprint is
 * not NULL (LC_FINGERPRINT_HEX_LEN + 1 bytes) also read the `tls_sha256 HEX`
 * line the server prints after its listening lines. */
static int start_server(const char *bin, char *const extra[], struct child *server,
                        char *port, size_t port_size, char *fingerprint)
{
    char *argv[16];
    struct reader r;
    char line[256];
    const char *prefix = "listening 127.0.0.1:";
    const char *fp_prefix = "tls_sha256 ";
    long long deadline = now_ms() + WAIT_MS;
    size_t n = 0;

    argv[n++] = (char *)bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--no-announce";
    while (extra != NULL && *extra != NULL && n < 15)
        argv[n++] = *extra++;
    argv[n] = NULL;
    if (!spawn(server, argv, 0, 0))
        return 0;
    memset(&r, 0, sizeof r);
    r.fd = server->out;
    /* Bytes after the first line stay unread in the pipe: the server prints nothing more. */
    if (!read_line(&r, WAIT_MS, line, sizeof line) || strncmp(line, prefix, strlen(prefix)) != 0 ||
        strlen(line + strlen(prefix)) >= port_size) {
        printf("  server did not print \"%sPORT\"\n", prefix);
        return 0;
    }
    strcpy(port, line + strlen(prefix));
    if (fingerprint == NULL)
        return 1;
    while (read_line(&r, ms_until(deadline), line, sizeof line)) {
        if (strncmp(line, fp_prefix, strlen(fp_prefix)) == 0 &&
            strlen(line + strlen(fp_prefix)) == LC_FINGERPRINT_HEX_LEN) {
            strcpy(fingerprint, line + strlen(fp_prefix));
            return 1;
        }
    }
    printf("  server did not print \"%sHEX\"\n", fp_prefix);
    return 0;
}

static void stop_server(struct child *server)
{
    int alone;

    if (server->pid > 0) {
        (void)kill(server->pid, SIGTERM);
        (void)reap(server, WAIT_MS, &alone);
    }
}

/* ---- library helpers ------------------------------------------------------ */

static lc_client *connect_as(struct checks *t, const char *port, const char *nick)
{
    lc_client *c = NULL;

    if (!CHECK(t, lc_connect("127.0.0.1", port, &c) == LC_OK))
        return NULL;
    lc_set_timeout(c, WAIT_MS);
    if (!CHECK(t, lc_hello(c, nick, NULL, NULL) == LC_OK)) {
        lc_close(c);
        return NULL;
    }
    return c;
}

/* The nick an event is about, for matching. */
static const char *who(const lc_event *ev)
{
    if (ev->kind == LC_EV_MESSAGE || ev->kind == LC_EV_DIRECT)
        return ev->from;
    if (ev->kind == LC_EV_NICK)
        return ev->new_nick;
    return ev->nick;
}

/* Read events until one of `kind` about `nick` in `room` (NULL = any) arrives.
 * Others are skipped; the server's pings are answered. */
static int wait_event_in(lc_client *c, lc_event_kind kind, const char *nick, const char *room,
                         lc_event *ev)
{
    long long deadline = now_ms() + WAIT_MS;

    for (;;) {
        lc_status rc = lc_read_event(c, ms_until(deadline), ev);

        if (rc != LC_OK) {
            printf("  waiting for %s from %s: %s\n", lc_event_kind_name(kind),
                   nick != NULL ? nick : "anyone", lc_strerror(rc));
            return 0;
        }
        if (ev->kind == kind && (nick == NULL || (who(ev) != NULL && strcmp(who(ev), nick) == 0)) &&
            (room == NULL || (ev->room != NULL && strcmp(ev->room, room) == 0)))
            return 1;
        if (ev->kind == LC_EV_PING && lc_pong(c) != LC_OK)
            printf("  cannot answer ping\n");
        lc_event_free(ev);
    }
}

static int wait_event(lc_client *c, lc_event_kind kind, const char *nick, lc_event *ev)
{
    return wait_event_in(c, kind, nick, NULL, ev);
}

static int streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void quit_client(struct checks *t, lc_client *c)
{
    if (c != NULL)
        CHECK(t, lc_quit(c, NULL, NULL) == LC_OK);
    lc_close(c);
}

/* ---- the tests ------------------------------------------------------------ */

static void test_session(struct checks *t, lc_client *a, lc_client *b)
{
    const char *text = "h\xc3\xa9llo \"w\xc3\xb6rld\" \\ \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89\n"
                       "second line\tend";
    lc_event reply;
    lc_event ev;

    CHECK(t, wait_event(a, LC_EV_JOIN, "bob", &ev) && streq(ev.room, "lobby"));
    lc_event_free(&ev);

    CHECK(t, lc_join(a, "den", &reply) == LC_OK && streq(reply.cmd, "join") &&
                 streq(reply.room, "den") && reply.n_members == 1 &&
                 streq(reply.members[0].nick, "alice"));
    lc_event_free(&reply);
    CHECK(t, lc_join(b, "den", &reply) == LC_OK && reply.n_members == 2);
    lc_event_free(&reply);
    CHECK(t, wait_event(a, LC_EV_JOIN, "bob", &ev) && streq(ev.room, "den"));
    lc_event_free(&ev);

    /* say: the others get the message, with the id and ts of the sender's ok. */
    CHECK(t, lc_say(a, "den", text, &reply) == LC_OK && streq(reply.cmd, "say") &&
                 reply.id != NULL && reply.has_ts);
    CHECK(t, wait_event(b, LC_EV_MESSAGE, "alice", &ev) && streq(ev.room, "den") &&
                 streq(ev.text, text) && streq(ev.id, reply.id) && ev.ts == reply.ts);
    lc_event_free(&ev);
    lc_event_free(&reply);

    /* dm */
    CHECK(t, lc_dm(b, "alice", "psst", &reply) == LC_OK && streq(reply.cmd, "dm"));
    lc_event_free(&reply);
    CHECK(t, wait_event(a, LC_EV_DIRECT, "bob", &ev) && streq(ev.to, "alice") &&
                 streq(ev.text, "psst"));
    lc_event_free(&ev);

    /* error replies surface as LC_ERR_SERVER with the code */
    CHECK(t, lc_say(a, "nowhere", "hello?", &reply) == LC_ERR_SERVER &&
                 reply.kind == LC_EV_ERROR && streq(reply.code, "not_in_room") && reply.re_is_int);
    lc_event_free(&reply);
    CHECK(t, streq(lc_server_code(a), "not_in_room"));
    CHECK(t, lc_dm(a, "nobody", "hi", NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(a), "no_such_nick"));
    CHECK(t, lc_hello(a, "alice", NULL, NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(a), "already_registered"));

    /* events that arrive while a request waits are queued, in order */
    CHECK(t, lc_say(b, "den", "one", NULL) == LC_OK);
    CHECK(t, lc_say(b, "den", "two", NULL) == LC_OK);
    CHECK(t, lc_ping(a, &reply) == LC_OK && streq(reply.cmd, "ping"));
    lc_event_free(&reply);
    CHECK(t, wait_event(a, LC_EV_MESSAGE, "bob", &ev) && streq(ev.text, "one"));
    lc_event_free(&ev);
    CHECK(t, wait_event(a, LC_EV_MESSAGE, "bob", &ev) && streq(ev.text, "two"));
    lc_event_free(&ev);

    /* nick and status reach the others once */
    CHECK(t, lc_nick(b, "bobby", &reply) == LC_OK && streq(reply.nick, "bobby"));
    lc_event_free(&reply);
    CHECK(t, wait_event(a, LC_EV_NICK, "bobby", &ev) && streq(ev.old_nick, "bob"));
    lc_event_free(&ev);
    CHECK(t, lc_set_status(a, "away", "lunch", &reply) == LC_OK && streq(reply.status, "away"));
    lc_event_free(&reply);
    CHECK(t, wait_event(b, LC_EV_PRESENCE, "alice", &ev) && streq(ev.status, "away") &&
                 streq(ev.text, "lunch"));
    lc_event_free(&ev);

    /* rooms, a page at a time: den, then lobby, then nothing follows */
    {
        lc_request req;

        memset(&req, 0, sizeof req);
        req.type = LC_REQ_ROOMS;
        req.limit = 1;
        CHECK(t, lc_request_wait(a, &req, 5000, &reply) == LC_OK && reply.n_room_list == 1 &&
                     streq(reply.room_list[0].name, "den") && reply.room_list[0].members == 2 &&
                     streq(reply.next, "den"));
        lc_event_free(&reply);
        req.after = "den";
        req.limit = 0;
        CHECK(t, lc_request_wait(a, &req, 5000, &reply) == LC_OK && reply.n_room_list == 1 &&
                     streq(reply.room_list[0].name, "lobby") && reply.next == NULL);
        lc_event_free(&reply);
    }

    CHECK(t, lc_leave(b, "den", &reply) == LC_OK && streq(reply.room, "den"));
    lc_event_free(&reply);
    CHECK(t, wait_event(a, LC_EV_LEAVE, "bobby", &ev) && streq(ev.room, "den"));
    lc_event_free(&ev);
}

/* Private rooms (extension): invisible and unreadable to a non-member, working for members.
 * Runs after test_session: a is "alice", b is "bobby". */
static void test_private_rooms(struct checks *t, lc_client *a, lc_client *b)
{
    lc_request req;
    lc_event reply;
    lc_event ev;

    CHECK(t, lc_join(a, "vault", &reply) == LC_OK && reply.n_members == 1 &&
                 reply.members[0].op == 1);
    lc_event_free(&reply);
    CHECK(t, lc_mode(a, "vault", LC_MODE_ON, "s3cret", 0, LC_MODE_KEEP, &reply) == LC_OK &&
                 streq(reply.cmd, "mode") && reply.has_modes && reply.invite_only &&
                 reply.has_key && !reply.topic_lock);
    lc_event_free(&reply);
    CHECK(t, lc_say(a, "vault", "hidden", NULL) == LC_OK);

    /* bobby, not a member: no members, no history, not listed; join refused */
    memset(&req, 0, sizeof req);
    req.type = LC_REQ_WHO;
    req.room = "vault";
    CHECK(t, lc_request_wait(b, &req, WAIT_MS, &reply) == LC_OK && reply.n_members == 0);
    lc_event_free(&reply);
    req.type = LC_REQ_HISTORY;
    CHECK(t, lc_request_wait(b, &req, WAIT_MS, &reply) == LC_OK && reply.n_messages == 0);
    lc_event_free(&reply);
    memset(&req, 0, sizeof req);
    req.type = LC_REQ_ROOMS;
    if (CHECK(t, lc_request_wait(b, &req, WAIT_MS, &reply) == LC_OK && reply.n_room_list > 0)) {
        size_t i;

        for (i = 0; i < reply.n_room_list; i++)
            CHECK(t, !streq(reply.room_list[i].name, "vault"));
    }
    lc_event_free(&reply);
    CHECK(t, lc_join_key(b, "vault", "s3cret", NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(b), "not_invited"));
    CHECK(t, lc_kick(b, "vault", "alice", NULL, NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(b), "not_in_room"));

    /* invited, bobby joins once and reads what members read */
    CHECK(t, lc_invite(a, "vault", "bobby", &reply) == LC_OK && streq(reply.nick, "bobby"));
    lc_event_free(&reply);
    CHECK(t, wait_event_in(b, LC_EV_INVITE, NULL, "vault", &ev) && streq(ev.by, "alice"));
    lc_event_free(&ev);
    CHECK(t, lc_join(b, "vault", &reply) == LC_OK && reply.n_members == 2);
    lc_event_free(&reply);
    CHECK(t, wait_event_in(a, LC_EV_JOIN, "bobby", "vault", &ev));
    lc_event_free(&ev);
    CHECK(t, lc_op(b, "vault", "bobby", NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(b), "not_operator"));

    /* a mode change tells the members (never the key); a kick is a leave with kicked_by */
    CHECK(t, lc_mode(a, "vault", LC_MODE_KEEP, NULL, 1, LC_MODE_ON, NULL) == LC_OK);
    CHECK(t, wait_event_in(b, LC_EV_MODE, NULL, "vault", &ev) && streq(ev.by, "alice") &&
                 ev.has_modes && ev.invite_only && !ev.has_key && ev.topic_lock &&
                 strstr(ev.raw, "s3cret") == NULL);
    lc_event_free(&ev);
    CHECK(t, lc_kick(a, "vault", "bobby", "bye", &reply) == LC_OK && streq(reply.cmd, "kick"));
    lc_event_free(&reply);
    CHECK(t, wait_event_in(b, LC_EV_LEAVE, "bobby", "vault", &ev) &&
                 streq(ev.kicked_by, "alice") && streq(ev.reason, "bye"));
    lc_event_free(&ev);
}

static void test_library(struct checks *t, const char *port)
{
    lc_client *a = NULL;
    lc_client *b = NULL;
    lc_client *c = NULL;
    lc_event welcome;
    lc_event ev;

    if (!CHECK(t, lc_connect("127.0.0.1", port, &a) == LC_OK))
        return;
    lc_set_timeout(a, WAIT_MS);
    CHECK(t, lc_hello(a, "alice", NULL, &welcome) == LC_OK && welcome.kind == LC_EV_WELCOME &&
                 streq(welcome.nick, "alice") && welcome.protocol == 1 && welcome.n_rooms == 1 &&
                 streq(welcome.rooms[0], "lobby") && welcome.limits.max_line > 0 &&
                 welcome.re_is_int && welcome.re_int == 1);
    lc_event_free(&welcome);
    CHECK(t, lc_max_line(a) == 16384);

    b = connect_as(t, port, "bob");
    if (b != NULL) {
        test_session(t, a, b);
        test_private_rooms(t, a, b);
    }

    /* nick_taken leaves the connection open for another hello */
    if (CHECK(t, lc_connect("127.0.0.1", port, &c) == LC_OK)) {
        lc_set_timeout(c, WAIT_MS);
        CHECK(t, lc_hello(c, "ALICE", NULL, NULL) == LC_ERR_SERVER &&
                     streq(lc_server_code(c), "nick_taken"));
        CHECK(t, lc_hello(c, "carl", NULL, NULL) == LC_OK);
        lc_close(c); /* no quit: the others see "connection lost" */
        if (b != NULL) {
            CHECK(t, wait_event(b, LC_EV_QUIT, "carl", &ev) &&
                         streq(ev.reason, "connection lost"));
            lc_event_free(&ev);
        }
    }

    /* quit gets bye, then the stream ends; the others get quit with the reason */
    CHECK(t, lc_quit(a, "done for today", &ev) == LC_OK && ev.kind == LC_EV_BYE &&
                 streq(ev.reason, "quit"));
    lc_event_free(&ev);
    for (;;) {
        lc_status rc = lc_read_event(a, WAIT_MS, &ev);

        lc_event_free(&ev);
        if (rc != LC_OK) {
            CHECK(t, rc == LC_ERR_CLOSED);
            break;
        }
    }
    if (b != NULL) {
        CHECK(t, wait_event(b, LC_EV_QUIT, "alice", &ev) && streq(ev.reason, "done for today"));
        lc_event_free(&ev);
    }
    lc_close(a);
    quit_client(t, b);
}

/* --help and -h: usage on stdout, nothing on stderr, exit 0. Bad arguments:
 * exactly one line on stderr (valgrind's aside), nothing on stdout, exit 2. */
static void test_cli_arguments(struct checks *t, const struct paths *paths)
{
    static const char *const help_flags[] = {"--help", "-h"};
    char fp_short[] = "--tls-fingerprint=abcd";
    char *bad[][7] = {
        {(char *)paths->cli, "127.0.0.1", "7878", "ann", "--secret-file", NULL},
        {(char *)paths->cli, "--secret-file", "/nonexistent/lanchat-secret", "127.0.0.1", "7878",
         "ann", NULL},
        {(char *)paths->cli, NULL},
        {(char *)paths->cli, "127.0.0.1", "7878", NULL},
        {(char *)paths->cli, "127.0.0.1", "http", "ann", NULL},
        {(char *)paths->cli, "--bogus", "127.0.0.1", "7878", "ann", NULL},
        {(char *)paths->cli, "127.0.0.1", "7878", "ann", "extra", NULL},
        {(char *)paths->cli, fp_short, "127.0.0.1", "7878", "ann", NULL},
    };
    char line[LINE_MAX_BYTES];
    struct child cli;
    struct reader out;
    struct reader err;
    size_t i;
    int alone;

    for (i = 0; i < sizeof help_flags / sizeof help_flags[0]; i++) {
        char *argv[] = {(char *)paths->cli, (char *)help_flags[i], NULL};

        if (!CHECK(t, spawn(&cli, argv, 0, 1)))
            continue;
        memset(&out, 0, sizeof out);
        out.fd = cli.out;
        memset(&err, 0, sizeof err);
        err.fd = cli.err;
        CHECK(t, next_own_line_is(&out, "usage: lanchat-c [--tls-fingerprint HEX] [--secret-file F] HOST PORT NICK"));
        CHECK(t, wait_output(&out, "/quit [REASON]"));
        CHECK(t, !own_line(&err, line, sizeof line)); /* stderr ends empty */
        CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 0) && alone);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(t, spawn(&cli, bad[i], 0, 1)))
            continue;
        memset(&out, 0, sizeof out);
        out.fd = cli.out;
        memset(&err, 0, sizeof err);
        err.fd = cli.err;
        CHECK(t, own_line(&err, line, sizeof line) && strncmp(line, "lanchat-c: ", 11) == 0 &&
                     strstr(line, "usage: lanchat-c [--tls-fingerprint HEX] [--secret-file F] HOST PORT NICK") != NULL);
        CHECK(t, !own_line(&err, line, sizeof line)); /* that one line only */
        CHECK(t, !read_line(&out, WAIT_MS, line, sizeof line)); /* nothing on stdout */
        CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 2));
    }
}

/* Accounts (extension): a registered nick needs its secret once its owner has left. */
static void test_accounts(struct checks *t, const char *port)
{
    static const char secret[] = "tWv2x9Qm4bLk7rZp";
    lc_client *owner = connect_as(t, port, "dana");
    lc_client *other = NULL;
    lc_event ev;

    if (owner == NULL)
        return;
    CHECK(t, lc_register(owner, secret, &ev) == LC_OK && ev.kind == LC_EV_OK &&
                 streq(ev.cmd, "register") && streq(ev.nick, "dana") && ev.has_persistent &&
                 ev.persistent == 0);
    lc_event_free(&ev);
    CHECK(t, lc_register(owner, "short", NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(owner), "bad_frame"));
    quit_client(t, owner);

    if (!CHECK(t, lc_connect("127.0.0.1", port, &other) == LC_OK))
        return;
    lc_set_timeout(other, WAIT_MS);
    CHECK(t, lc_hello(other, "DANA", NULL, NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(other), "nick_registered"));
    CHECK(t, lc_hello_secret(other, "dana", NULL, "not the secret", NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(other), "nick_registered"));
    CHECK(t, lc_hello_secret(other, "dana", NULL, secret, &ev) == LC_OK &&
                 ev.kind == LC_EV_WELCOME && streq(ev.nick, "dana"));
    lc_event_free(&ev);
    CHECK(t, lc_unregister(other, &ev) == LC_OK && streq(ev.cmd, "unregister") &&
                 streq(ev.nick, "dana"));
    lc_event_free(&ev);
    quit_client(t, other);
}

static void test_cli(struct checks *t, const char *port, const struct paths *paths)
{
    char *argv[] = {(char *)paths->cli, "127.0.0.1", (char *)port, "carol", NULL};
    char *bad_argv[] = {(char *)paths->cli, "127.0.0.1", NULL};
    lc_client *w = connect_as(t, port, "watcher");
    struct child cli;
    struct reader out;
    struct reader err;
    lc_event ev;
    int alone;
    int status;

    if (w == NULL)
        return;
    CHECK(t, lc_join(w, "den", NULL) == LC_OK);
    if (!CHECK(t, spawn(&cli, argv, 1, 1))) {
        quit_client(t, w);
        return;
    }
    memset(&out, 0, sizeof out);
    out.fd = cli.out;
    memset(&err, 0, sizeof err);
    err.fd = cli.err;
    CHECK(t, wait_output(&out, "* connected to"));
    CHECK(t, wait_event(w, LC_EV_JOIN, "carol", &ev) && streq(ev.room, "lobby"));
    lc_event_free(&ev);

    /* a stdin line is said to lobby */
    CHECK(t, write_text(cli.in, "hello from the C CLI \xe2\x9c\x93 \"quoted\"\n"));
    CHECK(t, wait_event(w, LC_EV_MESSAGE, "carol", &ev) && streq(ev.room, "lobby") &&
                 streq(ev.text, "hello from the C CLI \xe2\x9c\x93 \"quoted\""));
    lc_event_free(&ev);

    /* what others say is printed */
    CHECK(t, lc_say(w, "lobby", "hi carol", NULL) == LC_OK);
    CHECK(t, wait_output(&out, "[lobby] <watcher> hi carol"));

    /* a backslash is shown as sent, once (it used to be shown doubled), and
     * one typed is sent as one */
    CHECK(t, lc_say(w, "lobby", "C:\\barra \\ end", NULL) == LC_OK);
    CHECK(t, next_own_line_is(&out, "[lobby] <watcher> C:\\barra \\ end"));
    CHECK(t, write_text(cli.in, "back\\slash\n"));
    CHECK(t, wait_event(w, LC_EV_MESSAGE, "carol", &ev) && streq(ev.text, "back\\slash"));
    lc_event_free(&ev);

    /* an unknown command gets one line naming it, a missing argument the
     * command's usage; /help lists the commands */
    CHECK(t, write_text(cli.in, "/frobnicate now\n/join\n/help\n"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: unknown command /frobnicate (/help lists the commands)"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /join ROOM [KEY]"));
    CHECK(t, next_own_line_is(&err, "commands:"));
    CHECK(t, wait_output(&err, "/msg NICK TEXT"));

    /* /msg and /join */
    CHECK(t, write_text(cli.in, "/msg watcher psst\n"));
    CHECK(t, wait_event(w, LC_EV_DIRECT, "carol", &ev) && streq(ev.text, "psst"));
    lc_event_free(&ev);
    CHECK(t, write_text(cli.in, "/join den\nnow in den\n"));
    CHECK(t, wait_output(&out, "* joined den"));
    CHECK(t, wait_event(w, LC_EV_MESSAGE, "carol", &ev) && streq(ev.room, "den") &&
                 streq(ev.text, "now in den"));
    lc_event_free(&ev);

    /* end of stdin: quit, bye, exit 0 */
    close_fd(&cli.in);
    CHECK(t, wait_output(&out, "* bye (quit)"));
    status = reap(&cli, WAIT_MS, &alone);
    CHECK(t, alone && exited_with(status, 0));
    CHECK(t, wait_event(w, LC_EV_QUIT, "carol", &ev));
    lc_event_free(&ev);
    quit_client(t, w);

    /* bad arguments: usage on stderr, exit 2 */
    if (CHECK(t, spawn(&cli, bad_argv, 0, 1))) {
        memset(&err, 0, sizeof err);
        err.fd = cli.err;
        CHECK(t, wait_output(&err, "usage: lanchat-c [--tls-fingerprint HEX] [--secret-file F] HOST PORT NICK"));
        status = reap(&cli, WAIT_MS, &alone);
        CHECK(t, exited_with(status, 2));
    }
    test_cli_arguments(t, paths);
}

/* Write text to a new file named by the template (mkstemp). 1 on success. */
static int make_file(char *template, const char *text)
{
    int fd = mkstemp(template);
    int ok;

    if (fd < 0)
        return 0;
    ok = write_text(fd, text);
    if (close(fd) != 0)
        ok = 0;
    return ok;
}

/* Start the CLI (argv) with stdin, stdout and stderr piped; the readers on them. */
static int spawn_cli(struct child *cli, char *const argv[], struct reader *out, struct reader *err)
{
    if (!spawn(cli, argv, 1, 1))
        return 0;
    memset(out, 0, sizeof *out);
    out->fd = cli->out;
    memset(err, 0, sizeof *err);
    err->fd = cli->err;
    return 1;
}

/* End of stdin: the CLI quits, prints the bye and exits 0. */
static void end_cli(struct checks *t, struct child *cli, struct reader *out)
{
    int alone;

    close_fd(&cli->in);
    CHECK(t, wait_output(out, "* bye (quit)"));
    CHECK(t, exited_with(reap(cli, WAIT_MS, &alone), 0) && alone);
}

/* The private-room and account commands of the CLI: erin registers her nick,
 * makes a room invite-only and invites frank (a library client), who gets the
 * invite event and can join; /op and /kick; bad arguments get one usage line.
 * Then erin's nick is refused without its secret (the CLI prints the error
 * and exits 1) and given back with --secret-file. */
static void test_cli_private(struct checks *t, const char *port, const struct paths *paths)
{
    char secret_path[] = "/tmp/lanchat-c-secret-XXXXXX";
    char secret_opt[64];
    char *argv[] = {(char *)paths->cli, "127.0.0.1", (char *)port, "erin", NULL};
    char *with_secret[] = {(char *)paths->cli, "--secret-file", secret_path, "127.0.0.1",
                           (char *)port, "erin", NULL};
    char *with_secret_eq[] = {(char *)paths->cli, secret_opt, "127.0.0.1", (char *)port, "erin",
                              NULL};
    lc_client *f = connect_as(t, port, "frank");
    struct child cli;
    struct reader out;
    struct reader err;
    char line[LINE_MAX_BYTES];
    lc_event ev;
    int alone;

    if (f == NULL)
        return;
    if (!CHECK(t, make_file(secret_path, "q7Lp2mX9vRt4sWz8\nnot this line\n"))) {
        quit_client(t, f);
        return;
    }
    CHECK(t, (size_t)snprintf(secret_opt, sizeof secret_opt, "--secret-file=%s", secret_path) <
                 sizeof secret_opt);
    if (!CHECK(t, spawn_cli(&cli, argv, &out, &err)))
        goto done;
    CHECK(t, wait_output(&out, "* connected to"));

    /* bad arguments: one usage line each, nothing sent */
    CHECK(t, write_text(cli.in, "/mode +x\n/mode +k\n/invite\n/kick\n/op\n/register\n"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /mode [+i|-i] [+k KEY|-k] [+t|-t]"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /mode [+i|-i] [+k KEY|-k] [+t|-t]"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /invite NICK"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /kick NICK [REASON]"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /op NICK"));
    CHECK(t, next_own_line_is(&err, "lanchat-c: usage: /register SECRET"));
    CHECK(t, write_text(cli.in, "/help\n"));
    CHECK(t, wait_output(&err, "/mode [+i|-i] [+k KEY|-k] [+t|-t]"));
    CHECK(t, wait_output(&err, "/unregister"));

    /* /register, then a room of erin's that is invite-only and has a key */
    CHECK(t, write_text(cli.in, "/register q7Lp2mX9vRt4sWz8\n"));
    CHECK(t, next_own_line_is(&out, "* registered erin"));
    CHECK(t, write_text(cli.in, "/join hideout\n/mode +i +k door +t\n/mode\n"));
    CHECK(t, wait_output(&out, "* joined hideout (erin)"));
    CHECK(t, next_own_line_is(&out, "* modes of hideout: invite-only key topic-locked"));
    CHECK(t, next_own_line_is(&out, "* modes of hideout: invite-only key topic-locked"));
    CHECK(t, lc_join_key(f, "hideout", "door", NULL) == LC_ERR_SERVER &&
                 streq(lc_server_code(f), "not_invited"));

    /* /invite: frank gets the invite event and can join (with the key) */
    CHECK(t, write_text(cli.in, "/invite frank\n"));
    CHECK(t, next_own_line_is(&out, "* invited frank in hideout"));
    CHECK(t, wait_event_in(f, LC_EV_INVITE, NULL, "hideout", &ev) && streq(ev.by, "erin"));
    lc_event_free(&ev);
    CHECK(t, lc_join_key(f, "hideout", "door", &ev) == LC_OK && streq(ev.room, "hideout") &&
                 ev.n_members == 2);
    lc_event_free(&ev);
    CHECK(t, next_own_line_is(&out, "* frank joined hideout"));

    /* /op, then /kick with a reason */
    CHECK(t, write_text(cli.in, "/op frank\n"));
    CHECK(t, next_own_line_is(&out, "* made operator frank in hideout"));
    CHECK(t, write_text(cli.in, "/kick frank out you go\n"));
    CHECK(t, wait_event_in(f, LC_EV_LEAVE, "frank", "hideout", &ev) &&
                 streq(ev.kicked_by, "erin") && streq(ev.reason, "out you go"));
    lc_event_free(&ev);
    CHECK(t, wait_output(&out, "* kicked frank in hideout"));

    /* /mode -i -k -t opens it again; /join ROOM KEY on a keyed room */
    CHECK(t, write_text(cli.in, "/mode -i -k -t\n"));
    CHECK(t, next_own_line_is(&out, "* modes of hideout: public"));
    CHECK(t, lc_join(f, "keyed", NULL) == LC_OK);
    CHECK(t, lc_mode(f, "keyed", LC_MODE_KEEP, "latch", 0, LC_MODE_KEEP, NULL) == LC_OK);
    CHECK(t, write_text(cli.in, "/join keyed wrong\n"));
    CHECK(t, own_line(&out, line, sizeof line) && strncmp(line, "! bad_key: ", 11) == 0);
    CHECK(t, write_text(cli.in, "/join keyed latch\n"));
    CHECK(t, wait_output(&out, "* joined keyed ("));
    CHECK(t, wait_event_in(f, LC_EV_JOIN, "erin", "keyed", &ev));
    lc_event_free(&ev);
    end_cli(t, &cli, &out);

    /* without the secret the registered nick is refused: the error, exit 1 */
    if (CHECK(t, spawn_cli(&cli, argv, &out, &err))) {
        close_fd(&cli.in);
        CHECK(t, own_line(&out, line, sizeof line) &&
                     strncmp(line, "! nick_registered: ", 19) == 0);
        CHECK(t, next_own_line_is(&err, "lanchat-c: hello: the server replied with an error"));
        CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 1) && alone);
    }

    /* --secret-file F (and --secret-file=F): the nick is erin's again */
    if (CHECK(t, spawn_cli(&cli, with_secret_eq, &out, &err))) {
        CHECK(t, wait_output(&out, "* connected to"));
        end_cli(t, &cli, &out);
    }
    if (CHECK(t, spawn_cli(&cli, with_secret, &out, &err))) {
        CHECK(t, own_line(&out, line, sizeof line) && strstr(line, " as erin") != NULL);
        CHECK(t, write_text(cli.in, "/unregister\n"));
        CHECK(t, next_own_line_is(&out, "* unregistered erin"));
        end_cli(t, &cli, &out);
    }
    /* unregistered: the nick is free without a secret */
    if (CHECK(t, spawn_cli(&cli, argv, &out, &err))) {
        CHECK(t, own_line(&out, line, sizeof line) && strstr(line, " as erin") != NULL);
        end_cli(t, &cli, &out);
    }
done:
    CHECK(t, unlink(secret_path) == 0);
    quit_client(t, f);
}

/* The bot stays connected until the server stops; main reaps it then. */
static void test_echo_bot(struct checks *t, const char *port, const struct paths *paths,
                          struct child *bot)
{
    char *argv[] = {(char *)paths->bot, "127.0.0.1", (char *)port, "echo", "den", NULL};
    lc_client *p = connect_as(t, port, "pinger");
    lc_event ev;

    if (p == NULL)
        return;
    CHECK(t, lc_join(p, "den", NULL) == LC_OK);
    if (CHECK(t, spawn(bot, argv, 0, 0))) {
        CHECK(t, wait_event_in(p, LC_EV_JOIN, "echo", "den", &ev));
        lc_event_free(&ev);
        CHECK(t, lc_say(p, "den", "!ping", NULL) == LC_OK);
        CHECK(t, wait_event(p, LC_EV_MESSAGE, "echo", &ev) && streq(ev.room, "den") &&
                     streq(ev.text, "pong"));
        lc_event_free(&ev);
        CHECK(t, lc_say(p, "lobby", "!ping", NULL) == LC_OK);
        CHECK(t, wait_event(p, LC_EV_MESSAGE, "echo", &ev) && streq(ev.room, "lobby") &&
                     streq(ev.text, "pong"));
        lc_event_free(&ev);
        CHECK(t, lc_dm(p, "echo", "!ping", NULL) == LC_OK);
        CHECK(t, wait_event(p, LC_EV_DIRECT, "echo", &ev) && streq(ev.text, "pong"));
        lc_event_free(&ev);
    }
    quit_client(t, p);
}

/* With a 1 s ping interval: answering ping keeps a session alive, and the CLI answers too. */
static void test_keepalive(struct checks *t, const struct paths *paths)
{
    char *extra[] = {"--ping-interval", "1", NULL};
    struct child server;
    struct child cli;
    struct reader out;
    char port[16];
    lc_client *c = NULL;
    lc_event ev;
    int alone;

    if (!CHECK(t, start_server(paths->server, extra, &server, port, sizeof port, NULL))) {
        stop_server(&server);
        return;
    }
    c = connect_as(t, port, "keeper");
    if (c != NULL) {
        char *argv[] = {(char *)paths->cli, "127.0.0.1", port, "dora", NULL};

        /* Silence brings ping; pong earns another ping instead of bye ping_timeout. */
        CHECK(t, lc_read_event(c, WAIT_MS, &ev) == LC_OK && ev.kind == LC_EV_PING);
        lc_event_free(&ev);
        CHECK(t, lc_pong(c) == LC_OK);
        CHECK(t, lc_read_event(c, WAIT_MS, &ev) == LC_OK && ev.kind == LC_EV_PING);
        lc_event_free(&ev);
        CHECK(t, lc_pong(c) == LC_OK);

        /* The CLI, idle for more than two intervals, is still there to speak. */
        if (CHECK(t, spawn(&cli, argv, 1, 0))) {
            long long deadline;

            memset(&out, 0, sizeof out);
            out.fd = cli.out;
            CHECK(t, wait_event(c, LC_EV_JOIN, "dora", &ev));
            lc_event_free(&ev);
            deadline = now_ms() + 3500;
            while (ms_until(deadline) > 0) {
                lc_status rc = lc_read_event(c, ms_until(deadline), &ev);

                /* Failures only: how many pings fit in the window varies. */
                if (rc == LC_OK && ev.kind == LC_EV_PING && lc_pong(c) != LC_OK)
                    CHECK(t, !"pong failed");
                if (rc == LC_OK && ev.kind == LC_EV_QUIT)
                    CHECK(t, !"the CLI was dropped: it did not answer ping");
                lc_event_free(&ev);
                if (rc != LC_OK && rc != LC_ERR_TIMEOUT)
                    break;
            }
            CHECK(t, write_text(cli.in, "still here\n"));
            CHECK(t, wait_event(c, LC_EV_MESSAGE, "dora", &ev) && streq(ev.text, "still here"));
            lc_event_free(&ev);
            close_fd(&cli.in);
            CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 0) && alone);
        }
        quit_client(t, c);
    }
    stop_server(&server);
}

/* ---- TLS ------------------------------------------------------------------ */

/* A private XDG_STATE_HOME for the servers' certificates, removed at the end. */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

/* `fp` with its first hex digit changed: a pin that cannot match. */
static void wrong_pin(const char *fp, char *out)
{
    strcpy(out, fp);
    out[0] = out[0] == '0' ? '1' : '0';
}

static int has_member(const lc_event *reply, const char *nick)
{
    size_t i;

    for (i = 0; i < reply->n_members; i++) {
        if (streq(reply->members[i].nick, nick))
            return 1;
    }
    return 0;
}

static lc_client *connect_tls_as(struct checks *t, const char *port, const char *fp,
                                 const char *nick)
{
    lc_client *c = NULL;
    lc_tls_info info;

    if (!CHECK(t, lc_connect_tls("127.0.0.1", port, fp, &c, &info) == LC_OK)) {
        printf("  TLS connect: %s\n", info.detail);
        return NULL;
    }
    lc_set_timeout(c, WAIT_MS);
    if (!CHECK(t, lc_hello(c, nick, NULL, NULL) == LC_OK)) {
        lc_close(c);
        return NULL;
    }
    return c;
}

/* Pins that are not 64 hex digits are refused before any connection. */
static void test_tls_bad_pins(struct checks *t, const char *port, const char *fp)
{
    char short_pin[LC_FINGERPRINT_HEX_LEN + 1];
    char long_pin[LC_FINGERPRINT_HEX_LEN + 2];
    char not_hex[LC_FINGERPRINT_HEX_LEN + 1];
    char spaced[LC_FINGERPRINT_HEX_LEN + 2];
    const char *bad[5];
    lc_client *c = NULL;
    lc_tls_info info;
    size_t i;

    memcpy(short_pin, fp, LC_FINGERPRINT_HEX_LEN - 1);
    short_pin[LC_FINGERPRINT_HEX_LEN - 1] = '\0';
    strcpy(long_pin, fp);
    strcat(long_pin, "0");
    strcpy(not_hex, fp);
    not_hex[10] = 'g';
    spaced[0] = ' ';
    memcpy(spaced + 1, fp, LC_FINGERPRINT_HEX_LEN); /* 65 bytes: a space, then 64 digits */
    spaced[LC_FINGERPRINT_HEX_LEN + 1] = '\0';
    bad[0] = "";
    bad[1] = short_pin;
    bad[2] = long_pin;
    bad[3] = not_hex;
    bad[4] = spaced;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(t, !lc_fingerprint_valid(bad[i]));
        CHECK(t, lc_connect_tls("127.0.0.1", port, bad[i], &c, &info) == LC_ERR_INVALID_ARG &&
                     c == NULL && info.presented[0] == '\0');
    }
    CHECK(t, lc_connect_tls("127.0.0.1", port, NULL, &c, NULL) == LC_ERR_INVALID_ARG && c == NULL);
    CHECK(t, !lc_fingerprint_valid(NULL));
    CHECK(t, lc_fingerprint_valid(fp));
}

/* A TLS client and a plain one in one room; the pin is what the server printed. */
static void test_tls_library(struct checks *t, const char *port, const char *fp)
{
    char upper[LC_FINGERPRINT_HEX_LEN + 1];
    char wrong[LC_FINGERPRINT_HEX_LEN + 1];
    char big[3001];
    lc_client *tc = NULL;
    lc_client *pc = NULL;
    lc_client *spy = NULL;
    lc_tls_info info;
    lc_request req;
    lc_event reply;
    lc_event ev;
    size_t i;
    int seen;

    test_tls_bad_pins(t, port, fp);

    /* Either case pins; the client computes the server's tls_sha256. */
    for (i = 0; i <= LC_FINGERPRINT_HEX_LEN; i++)
        upper[i] = (char)toupper((unsigned char)fp[i]);
    if (!CHECK(t, lc_connect_tls("127.0.0.1", port, upper, &tc, &info) == LC_OK)) {
        printf("  TLS connect: %s\n", info.detail);
        return;
    }
    CHECK(t, lc_is_tls(tc) && streq(info.presented, fp) && streq(info.pinned, fp) &&
                 info.detail[0] == '\0');
    lc_set_timeout(tc, WAIT_MS);
    CHECK(t, lc_hello(tc, "tess", NULL, &reply) == LC_OK && streq(reply.nick, "tess"));
    lc_event_free(&reply);
    pc = connect_as(t, port, "pat");
    if (pc == NULL) {
        quit_client(t, tc);
        return;
    }
    CHECK(t, !lc_is_tls(pc));

    CHECK(t, lc_join(tc, "vault", NULL) == LC_OK);
    CHECK(t, lc_join(pc, "vault", &reply) == LC_OK && has_member(&reply, "tess"));
    lc_event_free(&reply);
    CHECK(t, wait_event_in(tc, LC_EV_JOIN, "pat", "vault", &ev));
    lc_event_free(&ev);
    CHECK(t, lc_say(tc, "vault", "from TLS \xe2\x9c\x93", NULL) == LC_OK);
    CHECK(t, wait_event(pc, LC_EV_MESSAGE, "tess", &ev) && streq(ev.room, "vault") &&
                 streq(ev.text, "from TLS \xe2\x9c\x93"));
    lc_event_free(&ev);
    CHECK(t, lc_say(pc, "vault", "from plain", NULL) == LC_OK);
    CHECK(t, wait_event(tc, LC_EV_MESSAGE, "pat", &ev) && streq(ev.text, "from plain"));
    lc_event_free(&ev);
    CHECK(t, lc_dm(pc, "tess", "psst", NULL) == LC_OK);
    CHECK(t, wait_event(tc, LC_EV_DIRECT, "pat", &ev) && streq(ev.text, "psst"));
    lc_event_free(&ev);

    /* Lines longer than a TLS record (16 KiB): a history reply of 12 texts of 3000 bytes. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (i = 0; i < 12; i++) {
        big[0] = (char)('a' + i);
        CHECK(t, lc_say(pc, "vault", big, NULL) == LC_OK);
    }
    for (i = 0; i < 12; i++) {
        big[0] = (char)('a' + i);
        CHECK(t, wait_event(tc, LC_EV_MESSAGE, "pat", &ev) && streq(ev.text, big));
        lc_event_free(&ev);
    }
    memset(&req, 0, sizeof req);
    req.type = LC_REQ_HISTORY;
    req.room = "vault";
    req.limit = 50;
    CHECK(t, lc_request_wait(tc, &req, WAIT_MS, &reply) == LC_OK && streq(reply.cmd, "history") &&
                 reply.n_messages == 14 && strlen(reply.raw) > 36000 &&
                 streq(reply.messages[0].text, "from TLS \xe2\x9c\x93") &&
                 streq(reply.messages[13].text, big));
    lc_event_free(&reply);

    /* A wrong pin: the fingerprint error, both fingerprints, no client, nothing sent. */
    wrong_pin(fp, wrong);
    CHECK(t, lc_connect_tls("127.0.0.1", port, wrong, &spy, &info) == LC_ERR_FINGERPRINT &&
                 spy == NULL && streq(info.pinned, wrong) && streq(info.presented, fp));
    lc_close(spy);

    /* The TLS session ends like a plain one: bye, then end of stream. */
    CHECK(t, lc_quit(tc, "bye from TLS", &ev) == LC_OK && ev.kind == LC_EV_BYE &&
                 streq(ev.reason, "quit"));
    lc_event_free(&ev);
    seen = 0;
    while (!seen) {
        lc_status rc = lc_read_event(tc, WAIT_MS, &ev);

        lc_event_free(&ev);
        if (rc != LC_OK) {
            CHECK(t, rc == LC_ERR_CLOSED);
            seen = 1;
        }
    }
    lc_close(tc);
    CHECK(t, wait_event(pc, LC_EV_QUIT, "tess", &ev) && streq(ev.reason, "bye from TLS"));
    lc_event_free(&ev);
    quit_client(t, pc);
}

#define BURST 200
#define BIG_TEXT 12000 /* more than 8 KiB, less than a 16 KiB TLS record */

/* The CLI over TLS: it talks, it receives a burst of BURST lines through its
 * poll loop, all of them, in order; a wrong pin makes it exit 2 before hello. */
static void test_tls_cli(struct checks *t, const char *port, const char *fp,
                         const struct paths *paths)
{
    char wrong[LC_FINGERPRINT_HEX_LEN + 1];
    char *argv[] = {(char *)paths->cli, "--tls-fingerprint", (char *)fp, "127.0.0.1",
                    (char *)port, "tina", NULL};
    char *wrong_argv[] = {(char *)paths->cli, "--tls-fingerprint", wrong, "127.0.0.1",
                          (char *)port, "mallory", NULL};
    lc_client *w = connect_as(t, port, "feeder");
    struct child cli;
    struct reader out;
    struct reader err;
    char line[LINE_MAX_BYTES];
    char want[LINE_MAX_BYTES];
    char text[128];
    char *big;
    long long deadline;
    lc_request req;
    lc_event reply;
    lc_event ev;
    int mismatch_lines = 0;
    int other_lines = 0;
    int alone;
    int i;

    if (w == NULL)
        return;
    wrong_pin(fp, wrong);

    /* A wrong pin: one line on stderr naming both fingerprints, nothing on
     * stdout, exit 2, and the server never registers the nick. */
    if (CHECK(t, spawn(&cli, wrong_argv, 1, 1))) {
        memset(&err, 0, sizeof err);
        err.fd = cli.err;
        deadline = now_ms() + WAIT_MS;
        while (read_line(&err, ms_until(deadline), line, sizeof line)) {
            if (strncmp(line, "lanchat-c:", 10) != 0)
                continue; /* valgrind's own lines, when it runs the CLI */
            if (strstr(line, "certificate fingerprint mismatch") != NULL &&
                strstr(line, wrong) != NULL && strstr(line, fp) != NULL)
                mismatch_lines++;
            else
                other_lines++;
        }
        memset(&out, 0, sizeof out);
        out.fd = cli.out;
        CHECK(t, !read_line(&out, WAIT_MS, line, sizeof line)); /* end of file, no line */
        CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 2));
        CHECK(t, mismatch_lines == 1 && other_lines == 0);
    }
    /* The server keeps no member by that name, and tells nobody one joined. */
    memset(&req, 0, sizeof req);
    req.type = LC_REQ_WHO;
    req.room = "lobby";
    CHECK(t, lc_request_wait(w, &req, WAIT_MS, &reply) == LC_OK && has_member(&reply, "feeder") &&
                 !has_member(&reply, "mallory"));
    lc_event_free(&reply);

    if (!CHECK(t, spawn(&cli, argv, 1, 1))) {
        quit_client(t, w);
        return;
    }
    memset(&out, 0, sizeof out);
    out.fd = cli.out;
    memset(&err, 0, sizeof err);
    err.fd = cli.err;
    CHECK(t, wait_output(&out, "* connected to"));
    /* The first join feeder hears is tina's: mallory's never came. */
    CHECK(t, wait_event(w, LC_EV_JOIN, NULL, &ev) && streq(ev.nick, "tina"));
    lc_event_free(&ev);

    CHECK(t, write_text(cli.in, "hello over TLS\n"));
    CHECK(t, wait_event(w, LC_EV_MESSAGE, "tina", &ev) && streq(ev.text, "hello over TLS"));
    lc_event_free(&ev);

    /* The burst: BURST says pipelined, so the server writes them in few large
     * TLS records, more than the CLI reads in one go. */
    for (i = 0; i < BURST; i++) {
        if (snprintf(text, sizeof text, "burst %03d %s", i,
                     "padding to make the records fill up ........................") < 0)
            break;
        memset(&req, 0, sizeof req);
        req.type = LC_REQ_SAY;
        req.room = "lobby";
        req.text = text;
        if (!CHECK(t, lc_send(w, &req, NULL) == LC_OK))
            break;
    }
    deadline = now_ms() + WAIT_MS;
    for (i = 0; i < BURST; i++) {
        if (snprintf(want, sizeof want, "[lobby] <feeder> burst %03d %s", i,
                     "padding to make the records fill up ........................") < 0)
            break;
        if (!read_line(&out, ms_until(deadline), line, sizeof line)) {
            printf("  the CLI printed %d of %d burst lines in time\n", i, BURST);
            CHECK(t, !"burst line missing");
            break;
        }
        if (!CHECK(t, streq(line, want))) {
            printf("  line %d: \"%s\"\n", i, line);
            break;
        }
    }
    CHECK(t, i == BURST);
    /* feeder's BURST ok replies */
    for (i = 0; i < BURST; i++) {
        if (!CHECK(t, lc_read_event(w, WAIT_MS, &ev) == LC_OK && ev.kind == LC_EV_OK &&
                          streq(ev.cmd, "say"))) {
            lc_event_free(&ev);
            break;
        }
        lc_event_free(&ev);
    }

    /* One line longer than the CLI's first 8 KiB buffer, alone in one TLS
     * record: the first SSL_read leaves its tail inside OpenSSL and the socket
     * has nothing more, so only SSL_pending handling brings that tail out. */
    big = malloc(BIG_TEXT + 1);
    if (CHECK(t, big != NULL)) {
        memset(big, 'y', BIG_TEXT);
        memcpy(big, "big ", 4);
        memcpy(big + BIG_TEXT - 4, " end", 4);
        big[BIG_TEXT] = '\0';
        CHECK(t, lc_say(w, "lobby", big, NULL) == LC_OK);
        CHECK(t, read_line(&out, WAIT_MS, line, sizeof line) &&
                     strncmp(line, "[lobby] <feeder> big ", 21) == 0 &&
                     strcmp(line + 17, big) == 0);
        free(big);
    }

    close_fd(&cli.in);
    CHECK(t, wait_output(&out, "* bye (quit)"));
    CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 0) && alone);
    CHECK(t, wait_event(w, LC_EV_QUIT, "tina", &ev));
    lc_event_free(&ev);
    quit_client(t, w);
}

/* Something on the port that is not a TLS server: it answers the handshake
 * with the plain lines a full lanchat server sends (error and bye
 * server_full). The client reports LC_ERR_TLS with OpenSSL's reason. */
static void test_tls_not_tls(struct checks *t, const char *any_pin)
{
    const char *lines = "{\"type\":\"error\",\"code\":\"server_full\",\"message\":\"full\"}\n"
                        "{\"type\":\"bye\",\"reason\":\"server_full\",\"message\":\"full\"}\n";
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    lc_client *c = NULL;
    lc_tls_info info;
    char port[16];
    pid_t pid;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int status;

    if (!CHECK(t, lfd >= 0))
        return;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (!CHECK(t, bind(lfd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(lfd, 1) == 0 &&
                      getsockname(lfd, (struct sockaddr *)&addr, &addr_len) == 0 &&
                      snprintf(port, sizeof port, "%u", (unsigned)ntohs(addr.sin_port)) > 0)) {
        close_fd(&lfd);
        return;
    }
    pid = fork();
    if (pid == 0) {
        /* Accept, read the ClientHello, answer in plain, wait for the client to
         * close: every step bounded, so the parent's waitpid is too. */
        char scratch[4096];
        struct pollfd p;
        int fd;

        p.fd = lfd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, WAIT_MS) != 1)
            _exit(1);
        fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(1);
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, WAIT_MS) != 1 || read(fd, scratch, sizeof scratch) <= 0)
            _exit(2);
        if (!write_text(fd, lines))
            _exit(3);
        /* The client leaves our lines unread, so its close may come as a reset. */
        for (;;) {
            ssize_t n;

            p.revents = 0;
            if (poll(&p, 1, WAIT_MS) != 1)
                _exit(4);
            n = read(fd, scratch, sizeof scratch);
            if (n == 0 || (n < 0 && errno == ECONNRESET))
                _exit(0);
            if (n < 0 && errno != EINTR)
                _exit(5);
        }
    }
    close_fd(&lfd);
    if (!CHECK(t, pid > 0))
        return;
    CHECK(t, lc_connect_tls("127.0.0.1", port, any_pin, &c, &info) == LC_ERR_TLS && c == NULL &&
                 info.detail[0] != '\0' && info.presented[0] == '\0');
    if (info.detail[0] != '\0')
        printf("  (expected) TLS to a plain peer: %s\n", info.detail);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        continue;
    if (!CHECK(t, exited_with(status, 0))) /* the client closed its socket */
        printf("  the fake peer's wait status: %d\n", status);
}

/* A server with TLS on (no rate limit, for the burst; long texts, for the big line). */
static void test_tls(struct checks *t, const struct paths *paths)
{
    char *extra[] = {"--rate-per-sec", "0", "--max-line", "32768", "--max-text", "12000", NULL};
    char fp[LC_FINGERPRINT_HEX_LEN + 1];
    struct child server;
    char port[16];

    if (CHECK(t, start_server(paths->server, extra, &server, port, sizeof port, fp))) {
        test_tls_library(t, port, fp);
        test_tls_cli(t, port, fp, paths);
        test_tls_not_tls(t, fp);
    }
    stop_server(&server);
}

/* --require-tls: plain clients get error and bye tls_required; TLS ones are served. */
static void test_require_tls(struct checks *t, const struct paths *paths)
{
    char *extra[] = {"--require-tls", NULL};
    char fp[LC_FINGERPRINT_HEX_LEN + 1];
    struct child server;
    struct child cli;
    struct reader out;
    struct reader err;
    char port[16];
    lc_client *c = NULL;
    lc_event reply;
    lc_event ev;
    int alone;

    if (!CHECK(t, start_server(paths->server, extra, &server, port, sizeof port, fp))) {
        stop_server(&server);
        return;
    }
    if (CHECK(t, lc_connect("127.0.0.1", port, &c) == LC_OK)) {
        lc_set_timeout(c, WAIT_MS);
        /* The error comes first, without re: queued; the bye ends the hello. */
        CHECK(t, lc_hello(c, "plain", NULL, &reply) == LC_ERR_CLOSED &&
                     reply.kind == LC_EV_BYE && streq(reply.reason, "tls_required"));
        lc_event_free(&reply);
        CHECK(t, lc_read_event(c, WAIT_MS, &ev) == LC_OK && ev.kind == LC_EV_ERROR &&
                     streq(ev.code, "tls_required") && ev.re == NULL);
        lc_event_free(&ev);
        CHECK(t, lc_read_event(c, WAIT_MS, &ev) == LC_ERR_CLOSED);
        lc_event_free(&ev);
        lc_close(c);
    }
    c = connect_tls_as(t, port, fp, "secure");
    if (c != NULL) {
        CHECK(t, lc_join(c, "vault", NULL) == LC_OK);
        quit_client(t, c);
    }
    /* The plain CLI says why and how to fix it, and exits 1. */
    {
        char *argv[] = {(char *)paths->cli, "127.0.0.1", port, "plain", NULL};

        if (CHECK(t, spawn(&cli, argv, 1, 1))) {
            memset(&out, 0, sizeof out);
            out.fd = cli.out;
            memset(&err, 0, sizeof err);
            err.fd = cli.err;
            CHECK(t, wait_output(&out, "! tls_required: "));
            CHECK(t, wait_output(&out, "* bye (tls_required)"));
            CHECK(t, wait_output(&err, "run again with --tls-fingerprint HEX"));
            CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 1));
        }
    }
    /* And over TLS the CLI is served. */
    {
        char *argv[] = {(char *)paths->cli, "--tls-fingerprint", fp, "127.0.0.1", port, "tls", NULL};

        if (CHECK(t, spawn(&cli, argv, 1, 0))) {
            memset(&out, 0, sizeof out);
            out.fd = cli.out;
            CHECK(t, wait_output(&out, "* connected to"));
            close_fd(&cli.in);
            CHECK(t, wait_output(&out, "* bye (quit)"));
            CHECK(t, exited_with(reap(&cli, WAIT_MS, &alone), 0) && alone);
        }
    }
    stop_server(&server);
}

int main(void)
{
    struct checks t = {0, 0};
    struct paths paths;
    struct child server;
    struct child bot;
    char state_dir[] = "/tmp/lanchat-c-e2e-XXXXXX";
    char port[16];
    int alone;
    int status;

    paths.server = getenv("LANCHAT_SERVER_BIN");
    if (paths.server == NULL || paths.server[0] == '\0')
        paths.server = "../../target/debug/lanchat-server";
    paths.cli = getenv("LANCHAT_C_BIN");
    if (paths.cli == NULL || paths.cli[0] == '\0')
        paths.cli = "build/lanchat-c";
    paths.bot = getenv("LANCHAT_ECHO_BOT_BIN");
    if (paths.bot == NULL || paths.bot[0] == '\0')
        paths.bot = "build/echo_bot";

    if (access(paths.server, X_OK) != 0) {
        printf("FAIL: no lanchat-server at %s: run `cargo build --workspace --bins` first "
               "(or set LANCHAT_SERVER_BIN)\n",
               paths.server);
        t.failed++;
        return finish_checks(&t, "e2e");
    }
    if (!CHECK(&t, signal(SIGPIPE, SIG_IGN) != SIG_ERR) ||
        !CHECK(&t, setenv("RUST_LOG", "warn", 0) == 0))
        return finish_checks(&t, "e2e");
    /* Every server this test starts keeps its certificate here, not in the real home. */
    if (!CHECK(&t, mkdtemp(state_dir) != NULL) ||
        !CHECK(&t, setenv("XDG_STATE_HOME", state_dir, 1) == 0))
        return finish_checks(&t, "e2e");

    bot.pid = -1;
    bot.in = bot.out = bot.err = -1;
    if (CHECK(&t, start_server(paths.server, NULL, &server, port, sizeof port, NULL))) {
        test_library(&t, port);
        test_accounts(&t, port);
        test_cli(&t, port, &paths);
        test_cli_private(&t, port, &paths);
        test_echo_bot(&t, port, &paths, &bot);
    }
    stop_server(&server);
    if (bot.pid > 0) {
        /* The server's bye shutting_down ends the bot's session: it exits 0. */
        status = reap(&bot, WAIT_MS, &alone);
        CHECK(&t, alone && exited_with(status, 0));
    }
    test_keepalive(&t, &paths);
    test_tls(&t, &paths);
    test_require_tls(&t, &paths);
    CHECK(&t, nftw(state_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    return finish_checks(&t, "e2e");
}
