/*
 * test_framing.c - the client's line reader and request matching, driven over
 * a socketpair: the test plays the server byte by byte, so overlong lines,
 * split reads and out-of-order events are exact and need no network.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"
#include "lanchat.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 2000

/* A client wired to `peer`, the test's end of the socketpair. */
struct pair {
    lc_client *client;
    int peer;
};

static int open_pair(struct checks *t, struct pair *p)
{
    int sv[2];

    p->client = NULL;
    p->peer = -1;
    if (!CHECK(t, socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0))
        return 0;
    p->peer = sv[1];
    return CHECK(t, lc_adopt_fd(sv[0], &p->client) == LC_OK);
}

static void close_pair(struct pair *p)
{
    lc_close(p->client);
    if (p->peer >= 0)
        (void)close(p->peer);
    p->client = NULL;
    p->peer = -1;
}

/* What the fake server sends. */
static int peer_send(struct checks *t, const struct pair *p, const char *bytes)
{
    size_t len = strlen(bytes);
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(p->peer, bytes + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (!CHECK(t, n > 0))
            return 0;
        done += (size_t)n;
    }
    return 1;
}

static int peer_send_repeated(struct checks *t, const struct pair *p, char c, size_t n)
{
    char *bytes = malloc(n + 1);
    int ok;

    if (!CHECK(t, bytes != NULL))
        return 0;
    memset(bytes, c, n);
    bytes[n] = '\0';
    ok = peer_send(t, p, bytes);
    free(bytes);
    return ok;
}

/* Read the next line the client sent (without LF) into out. */
static int peer_line(const struct pair *p, char *out, size_t size)
{
    size_t len = 0;

    while (len + 1 < size) {
        struct pollfd pfd;
        ssize_t n;

        pfd.fd = p->peer;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, WAIT_MS) != 1)
            return 0;
        n = read(p->peer, out + len, 1);
        if (n != 1)
            return 0;
        if (out[len] == '\n') {
            out[len] = '\0';
            return 1;
        }
        len++;
    }
    return 0;
}

static lc_event_kind next_kind(const struct pair *p, int timeout_ms, lc_status *rc_out)
{
    lc_event ev;
    lc_status rc = lc_read_event(p->client, timeout_ms, &ev);
    lc_event_kind kind = ev.kind;

    lc_event_free(&ev);
    *rc_out = rc;
    return rc == LC_OK ? kind : LC_EV_UNKNOWN;
}

static int reads(const struct pair *p, lc_status want_rc, lc_event_kind want_kind)
{
    lc_status rc;
    lc_event_kind kind = next_kind(p, WAIT_MS, &rc);

    return rc == want_rc && (rc != LC_OK || kind == want_kind);
}

static void test_line_endings(struct checks *t)
{
    struct pair p;
    lc_status rc;

    if (open_pair(t, &p) && peer_send(t, &p, "\r\n\n{\"type\":\"ping\"}\r\n{\"type\":\"pi")) {
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
        next_kind(&p, 0, &rc);
        CHECK(t, rc == LC_ERR_TIMEOUT); /* half a line is not an event */
        if (peer_send(t, &p, "ng\"}\n"))
            CHECK(t, reads(&p, LC_OK, LC_EV_PING));
        if (peer_send(t, &p, "{\"type\":\"ping\"}\n{\"type\":\"ping\"}\n{\"type\":\"pi")) {
            CHECK(t, reads(&p, LC_OK, LC_EV_PING));
            CHECK(t, reads(&p, LC_OK, LC_EV_PING));
            (void)close(p.peer);
            p.peer = -1;
            CHECK(t, reads(&p, LC_ERR_CLOSED, LC_EV_UNKNOWN)); /* partial last line */
            CHECK(t, reads(&p, LC_ERR_CLOSED, LC_EV_UNKNOWN));
        }
    }
    close_pair(&p);
}

/* lc_pending is 1 exactly when lc_read_event can go on without the socket
 * becoming readable (here: whole lines already read into the buffer). */
static void test_pending(struct checks *t)
{
    struct pair p;

    CHECK(t, lc_pending(NULL) == 0 && lc_is_tls(NULL) == 0);
    if (open_pair(t, &p)) {
        CHECK(t, lc_pending(p.client) == 0 && !lc_is_tls(p.client));
        /* One write, so the client's first recv takes all of it. */
        if (peer_send(t, &p, "{\"type\":\"ping\"}\n{\"type\":\"ping\"}\n{\"type\":\"pi")) {
            CHECK(t, lc_pending(p.client) == 0); /* still in the socket: poll sees it */
            CHECK(t, reads(&p, LC_OK, LC_EV_PING));
            CHECK(t, lc_pending(p.client) == 1); /* the second line is buffered */
            CHECK(t, reads(&p, LC_OK, LC_EV_PING));
            CHECK(t, lc_pending(p.client) == 0); /* half a line: wait for the socket */
            (void)close(p.peer);
            p.peer = -1;
            CHECK(t, reads(&p, LC_ERR_CLOSED, LC_EV_UNKNOWN));
            CHECK(t, lc_pending(p.client) == 1); /* the end, to report again at once */
        }
    }
    close_pair(&p);
}

static void test_overlong_lines(struct checks *t)
{
    struct pair p;

    /* Server lines may exceed max_line (history replies): 100 kB is read whole. */
    if (open_pair(t, &p) && peer_send(t, &p, "{\"type\":\"ping\",\"pad\":\"") &&
        peer_send_repeated(t, &p, 'x', 100000) && peer_send(t, &p, "\"}\n"))
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
    close_pair(&p);

    /* Past the read bound a line is rejected whole and the next one is fine. */
    if (open_pair(t, &p) && CHECK(t, lc_set_max_server_line(p.client, 16384) == LC_OK) &&
        peer_send_repeated(t, &p, 'x', 20000) &&
        peer_send(t, &p, "\n{\"type\":\"ping\"}\n")) {
        CHECK(t, reads(&p, LC_ERR_LINE_TOO_LONG, LC_EV_UNKNOWN));
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
    }
    close_pair(&p);

    /* Exactly at a 16-byte bound, with and without CR; one byte more is refused. */
    if (open_pair(t, &p) && CHECK(t, lc_set_max_server_line(p.client, 16) == LC_OK) &&
        peer_send(t, &p, "{\"type\":\"ping\" }\n{\"type\":\"ping\" }\r\n"
                         "{\"type\":\"ping\"  }\n{\"type\":\"ping\"}\n")) {
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
        CHECK(t, reads(&p, LC_ERR_LINE_TOO_LONG, LC_EV_UNKNOWN));
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
        /* An overlong line arriving in pieces is reported once. */
        if (peer_send_repeated(t, &p, 'y', 40) && peer_send_repeated(t, &p, 'z', 40)) {
            CHECK(t, reads(&p, LC_ERR_LINE_TOO_LONG, LC_EV_UNKNOWN));
            if (peer_send_repeated(t, &p, 'w', 40) && peer_send(t, &p, "\n{\"type\":\"ping\"}\n"))
                CHECK(t, reads(&p, LC_OK, LC_EV_PING));
        }
    }
    close_pair(&p);

    /* A request longer than welcome's max_line is refused before sending. */
    if (open_pair(t, &p) &&
        peer_send(t, &p, "{\"type\":\"welcome\",\"re\":1,\"nick\":\"ann\","
                         "\"limits\":{\"max_line\":64}}\n")) {
        lc_request req;
        char sent[256];

        CHECK(t, lc_hello(p.client, "ann", NULL, NULL) == LC_OK && lc_max_line(p.client) == 64);
        CHECK(t, peer_line(&p, sent, sizeof sent));
        memset(&req, 0, sizeof req);
        req.type = LC_REQ_SAY;
        req.room = "lobby";
        req.text = "far too long for a sixty-four byte line, once framed as JSON";
        CHECK(t, lc_send(p.client, &req, NULL) == LC_ERR_LINE_TOO_LONG);
        req.text = "short";
        CHECK(t, lc_send(p.client, &req, NULL) == LC_OK);
        CHECK(t, peer_line(&p, sent, sizeof sent) &&
                     strcmp(sent, "{\"type\":\"say\",\"id\":2,\"room\":\"lobby\",\"text\":\"short\"}") == 0);
    }
    close_pair(&p);
}

static void test_bad_frames(struct checks *t)
{
    struct pair p;

    if (open_pair(t, &p) &&
        peer_send(t, &p, "not json\n[1]\n{\"type\":\"sparkle\",\"x\":1}\n{\"type\":\"ping\"}\n")) {
        CHECK(t, reads(&p, LC_ERR_PROTOCOL, LC_EV_UNKNOWN));
        CHECK(t, reads(&p, LC_ERR_PROTOCOL, LC_EV_UNKNOWN));
        CHECK(t, reads(&p, LC_OK, LC_EV_UNKNOWN)); /* a newer event: passed on, not an error */
        CHECK(t, reads(&p, LC_OK, LC_EV_PING));
    }
    close_pair(&p);
}

static void test_welcome_sets_max_line(struct checks *t)
{
    struct pair p;

    if (open_pair(t, &p) &&
        peer_send(t, &p, "{\"type\":\"welcome\",\"re\":1,\"protocol\":1,\"server\":\"s\","
                         "\"name\":\"n\",\"session\":\"x\",\"nick\":\"ann\",\"rooms\":[\"lobby\"],"
                         "\"motd\":\"\",\"limits\":{\"max_line\":32768,\"max_text\":4096,"
                         "\"rate_burst\":10,\"rate_per_sec\":5,\"ping_interval_s\":60}}\n")) {
        lc_event welcome;
        char sent[256];

        CHECK(t, lc_hello(p.client, "ann", "pw", &welcome) == LC_OK);
        CHECK(t, welcome.kind == LC_EV_WELCOME && welcome.re_int == 1);
        CHECK(t, lc_max_line(p.client) == 32768); /* applies to requests */
        CHECK(t, peer_line(&p, sent, sizeof sent) &&
                     strcmp(sent, "{\"type\":\"hello\",\"id\":1,\"nick\":\"ann\",\"protocol\":1,"
                                  "\"client\":\"lanchat-c/" LC_VERSION "\",\"password\":\"pw\"}") == 0);
        lc_event_free(&welcome);
    }
    close_pair(&p);
}

/* Events that arrive before a reply are kept, in order, for lc_read_event. */
static void test_request_wait_queues_events(struct checks *t)
{
    struct pair p;
    lc_event reply;
    lc_event ev;
    char sent[256];

    if (!open_pair(t, &p) ||
        !peer_send(t, &p, "{\"type\":\"join\",\"room\":\"lobby\",\"nick\":\"bob\"}\n"
                          "{\"type\":\"message\",\"id\":\"m1\",\"ts\":5,\"room\":\"lobby\","
                          "\"from\":\"bob\",\"text\":\"hi\"}\n"
                          "{\"type\":\"ok\",\"cmd\":\"ping\",\"re\":99}\n"
                          "{\"type\":\"ok\",\"cmd\":\"ping\",\"re\":1}\n")) {
        close_pair(&p);
        return;
    }
    CHECK(t, lc_ping(p.client, &reply) == LC_OK);
    CHECK(t, reply.kind == LC_EV_OK && reply.re_is_int && reply.re_int == 1);
    lc_event_free(&reply);
    CHECK(t, peer_line(&p, sent, sizeof sent) && strcmp(sent, "{\"type\":\"ping\",\"id\":1}") == 0);

    CHECK(t, lc_read_event(p.client, 0, &ev) == LC_OK && ev.kind == LC_EV_JOIN);
    lc_event_free(&ev);
    CHECK(t, lc_read_event(p.client, 0, &ev) == LC_OK && ev.kind == LC_EV_MESSAGE &&
                 strcmp(ev.text, "hi") == 0 && ev.ts == 5);
    lc_event_free(&ev);
    CHECK(t, lc_read_event(p.client, 0, &ev) == LC_OK && ev.kind == LC_EV_OK && ev.re_int == 99);
    lc_event_free(&ev);
    CHECK(t, lc_read_event(p.client, 0, &ev) == LC_ERR_TIMEOUT);
    close_pair(&p);
}

static void test_error_reply_and_timeout(struct checks *t)
{
    struct pair p;
    lc_event reply;
    char sent[256];

    if (!open_pair(t, &p) ||
        !peer_send(t, &p, "{\"type\":\"error\",\"code\":\"not_in_room\","
                          "\"message\":\"you are not in room x\",\"re\":1}\n")) {
        close_pair(&p);
        return;
    }
    CHECK(t, lc_say(p.client, "x", "hello", &reply) == LC_ERR_SERVER);
    CHECK(t, reply.kind == LC_EV_ERROR && strcmp(reply.code, "not_in_room") == 0);
    CHECK(t, strcmp(lc_server_code(p.client), "not_in_room") == 0);
    lc_event_free(&reply);
    CHECK(t, peer_line(&p, sent, sizeof sent) &&
                 strcmp(sent, "{\"type\":\"say\",\"id\":1,\"room\":\"x\",\"text\":\"hello\"}") == 0);

    /* No answer: the wait is bounded, and a late reply still reaches the reader. */
    lc_set_timeout(p.client, 50);
    CHECK(t, lc_join(p.client, "den", NULL) == LC_ERR_TIMEOUT);
    if (peer_send(t, &p, "{\"type\":\"ok\",\"cmd\":\"join\",\"re\":2,\"room\":\"den\","
                         "\"topic\":\"\",\"members\":[]}\n")) {
        lc_event late;

        CHECK(t, lc_read_event(p.client, WAIT_MS, &late) == LC_OK && late.kind == LC_EV_OK &&
                     late.re_int == 2 && strcmp(late.room, "den") == 0);
        lc_event_free(&late);
    }
    close_pair(&p);
}

static void test_quit_and_bye(struct checks *t)
{
    struct pair p;
    lc_event reply;
    char sent[256];

    /* bye answers quit whether or not it carries re. */
    if (open_pair(t, &p) &&
        peer_send(t, &p, "{\"type\":\"bye\",\"reason\":\"quit\",\"message\":\"goodbye\"}\n")) {
        CHECK(t, lc_quit(p.client, "done", &reply) == LC_OK && reply.kind == LC_EV_BYE);
        lc_event_free(&reply);
        CHECK(t, peer_line(&p, sent, sizeof sent) &&
                     strcmp(sent, "{\"type\":\"quit\",\"id\":1,\"reason\":\"done\"}") == 0);
        (void)close(p.peer);
        p.peer = -1;
        CHECK(t, reads(&p, LC_ERR_CLOSED, LC_EV_UNKNOWN));
    }
    close_pair(&p);

    /* A bye the server sends on its own ends a wait with LC_ERR_CLOSED. */
    if (open_pair(t, &p) &&
        peer_send(t, &p, "{\"type\":\"bye\",\"reason\":\"shutting_down\",\"message\":\"m\"}\n")) {
        CHECK(t, lc_ping(p.client, &reply) == LC_ERR_CLOSED && reply.kind == LC_EV_BYE &&
                     strcmp(reply.reason, "shutting_down") == 0);
        lc_event_free(&reply);
    }
    close_pair(&p);

    /* pong carries no id and gets no reply. */
    if (open_pair(t, &p)) {
        CHECK(t, lc_pong(p.client) == LC_OK);
        CHECK(t, peer_line(&p, sent, sizeof sent) && strcmp(sent, "{\"type\":\"pong\"}") == 0);
    }
    close_pair(&p);
}

int main(void)
{
    struct checks t = {0, 0};

    test_line_endings(&t);
    test_overlong_lines(&t);
    test_bad_frames(&t);
    test_welcome_sets_max_line(&t);
    test_request_wait_queues_events(&t);
    test_error_reply_and_timeout(&t);
    test_quit_and_bye(&t);
    test_pending(&t);
    return finish_checks(&t, "framing");
}
