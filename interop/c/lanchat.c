/*
 * lanchat.c - the lanchat C client: framing, JSON codec (cJSON), requests and
 * events. See lanchat.h for the contract.
 *
 * Reading keeps one buffer per client that grows on demand up to
 * max_server_line + 2 bytes (the line, a CR and the LF). A line that cannot
 * fit is reported as LC_ERR_LINE_TOO_LONG and its bytes are skipped up to the
 * next LF, the rule the server applies too, so memory stays bounded whatever
 * the peer sends.
 *
 * TLS (OpenSSL) sits under the same reader and writer: io_recv and io_send
 * are the only calls that move bytes, over the socket or through SSL_read and
 * SSL_write, and they tell their callers what to poll for (OpenSSL may need
 * to write while reading and the other way round). Before fill() waits in
 * poll it asks OpenSSL for application data it has already decrypted
 * (SSL_pending): such bytes never make the socket readable again. OpenSSL
 * reaches the socket through a small BIO of ours that uses send() with
 * MSG_NOSIGNAL, like the plain path, so a closed peer is an error status,
 * never a SIGPIPE.
 */
#define _POSIX_C_SOURCE 200809L

#include "lanchat.h"

#include <cJSON.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define LC_CLIENT_NAME "lanchat-c/" LC_VERSION

struct lc_queued {
    struct lc_queued *next;
    lc_event event;
};

struct lc_client {
    int fd;
    long long next_id;
    int timeout_ms;
    size_t max_line;        /* longest request line (welcome's limits.max_line) */
    size_t max_server_line; /* longest line accepted from the server */

    char *buf;            /* received bytes not yet returned as lines */
    size_t len;
    size_t cap;
    size_t scanned;       /* bytes of buf already searched for LF */
    int discarding;       /* inside an overlong line: skip to the next LF */
    int eof;              /* the peer closed its side */
    int broken;           /* a write failed half way: the stream is unusable */

    struct lc_queued *head; /* events read while waiting for a reply */
    struct lc_queued *tail;
    size_t queued;

    char *server_code;    /* code of the last error reply, or NULL */

    /* TLS: all NULL on a plain connection. */
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    BIO_METHOD *bio_method; /* the socket BIO's methods; outlives ssl's BIO */
    int ssl_failed;         /* a fatal TLS error: no close_notify may follow */
};

/* ---- names --------------------------------------------------------------- */

static const char *const event_names[] = {
    "unknown", "welcome", "ok", "error", "bye", "join", "leave",
    "message", "direct", "nick", "presence", "topic", "quit", "ping",
    "mode", "invite"
};

static const char *const request_names[] = {
    "hello", "join", "leave", "say", "dm", "nick", "status",
    "topic", "who", "rooms", "history", "ping", "pong", "quit",
    "register", "unregister",
    "mode", "invite", "kick", "op"
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *lc_event_kind_name(lc_event_kind kind)
{
    if ((size_t)kind < COUNT(event_names))
        return event_names[kind];
    return "unknown";
}

const char *lc_request_type_name(lc_request_type type)
{
    if ((size_t)type < COUNT(request_names))
        return request_names[type];
    return "?";
}

lc_status lc_request_type_from_name(const char *name, lc_request_type *out)
{
    size_t i;

    if (name == NULL || out == NULL)
        return LC_ERR_INVALID_ARG;
    for (i = 0; i < COUNT(request_names); i++) {
        if (strcmp(name, request_names[i]) == 0) {
            *out = (lc_request_type)i;
            return LC_OK;
        }
    }
    return LC_ERR_INVALID_ARG;
}

static lc_event_kind kind_from_name(const char *name)
{
    size_t i;

    for (i = 1; i < COUNT(event_names); i++) {
        if (strcmp(name, event_names[i]) == 0)
            return (lc_event_kind)i;
    }
    return LC_EV_UNKNOWN;
}

const char *lc_strerror(lc_status status)
{
    switch (status) {
    case LC_OK: return "success";
    case LC_ERR_INVALID_ARG: return "invalid argument";
    case LC_ERR_NOMEM: return "out of memory";
    case LC_ERR_RESOLVE: return "cannot resolve host";
    case LC_ERR_CONNECT: return "cannot connect";
    case LC_ERR_IO: return "socket error";
    case LC_ERR_CLOSED: return "connection closed by the server";
    case LC_ERR_TIMEOUT: return "timed out";
    case LC_ERR_PROTOCOL: return "invalid frame from the server";
    case LC_ERR_SERVER: return "the server replied with an error";
    case LC_ERR_LINE_TOO_LONG: return "line longer than the protocol maximum";
    case LC_ERR_QUEUE_FULL: return "too many unread events";
    case LC_ERR_TLS: return "TLS failed";
    case LC_ERR_FINGERPRINT: return "the server's certificate does not match the pinned fingerprint";
    }
    return "unknown status";
}

/* ---- small helpers ------------------------------------------------------- */

static char *dup_n(const char *s, size_t n)
{
    char *copy = malloc(n + 1);

    if (copy != NULL) {
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    return copy;
}

static char *dup_str(const char *s)
{
    return dup_n(s, strlen(s));
}

/* Monotonic milliseconds; deadlines are absolute, -1 meaning "never". */
static lc_status now_ms(long long *out)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return LC_ERR_IO;
    *out = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return LC_OK;
}

static lc_status deadline_in(int timeout_ms, long long *deadline)
{
    long long now;
    lc_status rc;

    if (timeout_ms < 0) {
        *deadline = -1;
        return LC_OK;
    }
    rc = now_ms(&now);
    if (rc == LC_OK)
        *deadline = now + timeout_ms;
    return rc;
}

/* Milliseconds left until deadline, as a poll() timeout. */
static lc_status time_left(long long deadline, int *left)
{
    long long now;
    lc_status rc;

    if (deadline < 0) {
        *left = -1;
        return LC_OK;
    }
    rc = now_ms(&now);
    if (rc != LC_OK)
        return rc;
    if (now >= deadline)
        *left = 0;
    else if (deadline - now > INT_MAX)
        *left = INT_MAX;
    else
        *left = (int)(deadline - now);
    return LC_OK;
}

/* Is s[0..len) well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF)? */
static int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        unsigned long cp;
        size_t k;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i - 1 < need)
            return 0;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        i += need + 1;
    }
    return 1;
}

/* ---- events: freeing and parsing ----------------------------------------- */

static void free_members(lc_member *members, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(members[i].nick);
        free(members[i].status);
        free(members[i].text);
    }
    free(members);
}

void lc_event_free(lc_event *ev)
{
    size_t i;

    if (ev == NULL)
        return;
    free(ev->type);
    free(ev->raw);
    free(ev->re);
    free(ev->cmd);
    free(ev->code);
    free(ev->message);
    free(ev->reason);
    free(ev->room);
    free(ev->nick);
    free(ev->from);
    free(ev->to);
    free(ev->text);
    free(ev->id);
    free(ev->old_nick);
    free(ev->new_nick);
    free(ev->status);
    free(ev->topic);
    free(ev->by);
    free(ev->next);
    free(ev->kicked_by);
    free(ev->away_text);
    free(ev->server);
    free(ev->name);
    free(ev->session);
    free(ev->motd);
    for (i = 0; i < ev->n_rooms; i++)
        free(ev->rooms[i]);
    free(ev->rooms);
    free_members(ev->members, ev->n_members);
    for (i = 0; i < ev->n_room_list; i++) {
        free(ev->room_list[i].name);
        free(ev->room_list[i].topic);
    }
    free(ev->room_list);
    for (i = 0; i < ev->n_messages; i++)
        lc_event_free(&ev->messages[i]);
    free(ev->messages);
    memset(ev, 0, sizeof *ev);
}

/* A field that is absent or JSON null counts as absent. */
static const cJSON *field(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsNull(item) ? NULL : item;
}

/* The optional array field `name` of obj, and its size (0 when absent or empty). */
static lc_status get_array(const cJSON *obj, const char *name, const cJSON **array, int *n)
{
    *array = field(obj, name);
    *n = 0;
    if (*array == NULL)
        return LC_OK;
    if (!cJSON_IsArray(*array))
        return LC_ERR_PROTOCOL;
    *n = cJSON_GetArraySize(*array);
    return LC_OK;
}

/* Copy an optional string field into *dest (left NULL when absent). */
static lc_status get_string(const cJSON *obj, const char *name, char **dest)
{
    const cJSON *item = field(obj, name);

    if (item == NULL)
        return LC_OK;
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return LC_ERR_PROTOCOL;
    *dest = dup_str(item->valuestring);
    return *dest != NULL ? LC_OK : LC_ERR_NOMEM;
}

/* JSON numbers reach us as doubles: accept only integral values in range. */
static int as_integer(const cJSON *item, long long *out)
{
    double d;

    if (!cJSON_IsNumber(item))
        return 0;
    d = item->valuedouble;
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0))
        return 0;
    if ((double)(long long)d != d)
        return 0;
    *out = (long long)d;
    return 1;
}

/* Doubles this large are always integral; the range is that of i64 and u64. */
static int beyond_2_53(double d)
{
    return (d > 9007199254740992.0 && d <= 18446744073709551616.0) ||
           (d < -9007199254740992.0 && d >= -9223372036854775808.0);
}

static lc_status get_integer(const cJSON *obj, const char *name, long long *dest, int *present)
{
    const cJSON *item = field(obj, name);

    if (item == NULL)
        return LC_OK;
    if (!as_integer(item, dest))
        return LC_ERR_PROTOCOL;
    if (present != NULL)
        *present = 1;
    return LC_OK;
}

/* A boolean field: absent or null leaves *dest and *present alone. */
static lc_status get_bool(const cJSON *obj, const char *name, int *dest, int *present)
{
    const cJSON *item = field(obj, name);

    if (item == NULL)
        return LC_OK;
    if (!cJSON_IsBool(item))
        return LC_ERR_PROTOCOL;
    *dest = cJSON_IsTrue(item) ? 1 : 0;
    if (present != NULL)
        *present = 1;
    return LC_OK;
}

/* The modes of ok mode and the mode event: all three, or none. */
static lc_status parse_modes(const cJSON *obj, lc_event *ev)
{
    int seen[3] = {0, 0, 0};
    lc_status rc = get_bool(obj, "invite_only", &ev->invite_only, &seen[0]);

    if (rc == LC_OK)
        rc = get_bool(obj, "has_key", &ev->has_key, &seen[1]);
    if (rc == LC_OK)
        rc = get_bool(obj, "topic_lock", &ev->topic_lock, &seen[2]);
    if (rc == LC_OK && seen[0] + seen[1] + seen[2] != 0) {
        if (seen[0] + seen[1] + seen[2] != 3)
            return LC_ERR_PROTOCOL;
        ev->has_modes = 1;
    }
    return rc;
}

static lc_status parse_re(const cJSON *obj, lc_event *ev)
{
    const cJSON *item = field(obj, "re");
    char digits[64];
    int n;

    if (item == NULL)
        return LC_OK;
    if (cJSON_IsString(item))
        return get_string(obj, "re", &ev->re);
    if (as_integer(item, &ev->re_int)) {
        ev->re_is_int = 1;
        n = snprintf(digits, sizeof digits, "%lld", ev->re_int);
    } else if (cJSON_IsNumber(item) && beyond_2_53(item->valuedouble)) {
        /* An i64/u64 id too big for a double to hold exactly: as near as cJSON allows. */
        n = snprintf(digits, sizeof digits, "%.0f", item->valuedouble);
    } else {
        return LC_ERR_PROTOCOL;
    }
    if (n < 0 || (size_t)n >= sizeof digits)
        return LC_ERR_PROTOCOL;
    ev->re = dup_str(digits);
    return ev->re != NULL ? LC_OK : LC_ERR_NOMEM;
}

static lc_status parse_limits(const cJSON *obj, lc_event *ev)
{
    const cJSON *limits = field(obj, "limits");
    lc_limits *l = &ev->limits;
    struct {
        const char *name;
        long long *dest;
    } const each[] = {
        {"max_line", &l->max_line},
        {"max_text", &l->max_text},
        {"rate_burst", &l->rate_burst},
        {"rate_per_sec", &l->rate_per_sec},
        {"ping_interval_s", &l->ping_interval_s},
        {"event_burst", &l->event_burst},
        {"events_per_sec", &l->events_per_sec},
        {"reply_bytes_burst", &l->reply_bytes_burst},
        {"reply_bytes_per_sec", &l->reply_bytes_per_sec},
        {"rooms_page", &l->rooms_page},
    };
    size_t i;

    if (limits == NULL)
        return LC_OK;
    if (!cJSON_IsObject(limits))
        return LC_ERR_PROTOCOL;
    ev->has_limits = 1;
    for (i = 0; i < sizeof each / sizeof each[0]; i++) {
        lc_status rc = get_integer(limits, each[i].name, each[i].dest, NULL);

        if (rc != LC_OK)
            return rc;
    }
    return LC_OK;
}

static lc_status parse_members(const cJSON *obj, lc_event *ev)
{
    const cJSON *array;
    const cJSON *item;
    int n;
    lc_status rc = get_array(obj, "members", &array, &n);

    if (rc != LC_OK || n == 0)
        return rc;
    ev->members = calloc((size_t)n, sizeof *ev->members);
    if (ev->members == NULL)
        return LC_ERR_NOMEM;
    cJSON_ArrayForEach(item, array) {
        lc_member *m = &ev->members[ev->n_members++];

        if (!cJSON_IsObject(item))
            return LC_ERR_PROTOCOL;
        rc = get_string(item, "nick", &m->nick);
        if (rc == LC_OK)
            rc = get_string(item, "status", &m->status);
        if (rc == LC_OK)
            rc = get_string(item, "text", &m->text);
        if (rc == LC_OK)
            rc = get_bool(item, "op", &m->op, NULL);
        if (rc != LC_OK)
            return rc;
        if (m->nick == NULL || m->status == NULL)
            return LC_ERR_PROTOCOL;
    }
    return LC_OK;
}

/* `rooms` is a list of names in welcome and a list of objects in ok rooms. */
static lc_status parse_rooms(const cJSON *obj, lc_event *ev)
{
    const cJSON *array;
    const cJSON *first;
    const cJSON *item;
    int n;
    lc_status rc = get_array(obj, "rooms", &array, &n);

    if (rc != LC_OK || n == 0)
        return rc;
    first = cJSON_GetArrayItem(array, 0);
    if (cJSON_IsString(first)) {
        ev->rooms = calloc((size_t)n, sizeof *ev->rooms);
        if (ev->rooms == NULL)
            return LC_ERR_NOMEM;
        cJSON_ArrayForEach(item, array) {
            if (!cJSON_IsString(item) || item->valuestring == NULL)
                return LC_ERR_PROTOCOL;
            ev->rooms[ev->n_rooms] = dup_str(item->valuestring);
            if (ev->rooms[ev->n_rooms] == NULL)
                return LC_ERR_NOMEM;
            ev->n_rooms++;
        }
        return LC_OK;
    }
    ev->room_list = calloc((size_t)n, sizeof *ev->room_list);
    if (ev->room_list == NULL)
        return LC_ERR_NOMEM;
    cJSON_ArrayForEach(item, array) {
        lc_room_info *r = &ev->room_list[ev->n_room_list++];
        int has_members = 0;

        if (!cJSON_IsObject(item))
            return LC_ERR_PROTOCOL;
        rc = get_string(item, "name", &r->name);
        if (rc == LC_OK)
            rc = get_integer(item, "members", &r->members, &has_members);
        if (rc == LC_OK)
            rc = get_string(item, "topic", &r->topic);
        if (rc != LC_OK)
            return rc;
        if (r->name == NULL || !has_members)
            return LC_ERR_PROTOCOL;
    }
    return LC_OK;
}

static lc_status event_from_object(const cJSON *obj, lc_event *ev);

/* ok history: each stored message is a full message frame. */
static lc_status parse_messages(const cJSON *obj, lc_event *ev)
{
    const cJSON *array;
    const cJSON *item;
    int n;
    lc_status rc = get_array(obj, "messages", &array, &n);

    if (rc != LC_OK || n == 0)
        return rc;
    ev->messages = calloc((size_t)n, sizeof *ev->messages);
    if (ev->messages == NULL)
        return LC_ERR_NOMEM;
    cJSON_ArrayForEach(item, array) {
        lc_event *m = &ev->messages[ev->n_messages++];

        if (!cJSON_IsObject(item))
            return LC_ERR_PROTOCOL;
        rc = event_from_object(item, m);
        if (rc != LC_OK)
            return rc;
        m->raw = cJSON_PrintUnformatted(item);
        if (m->raw == NULL)
            return LC_ERR_NOMEM;
    }
    return LC_OK;
}

/* The fields without which a frame of each kind is meaningless. */
static int has_required_fields(const lc_event *ev)
{
    switch (ev->kind) {
    case LC_EV_WELCOME:
        return ev->nick != NULL;
    case LC_EV_OK:
        return ev->cmd != NULL;
    case LC_EV_ERROR:
        return ev->code != NULL && ev->message != NULL;
    case LC_EV_BYE:
        return ev->reason != NULL;
    case LC_EV_JOIN:
    case LC_EV_LEAVE:
        return ev->room != NULL && ev->nick != NULL;
    case LC_EV_MESSAGE:
        return ev->id != NULL && ev->has_ts && ev->room != NULL && ev->from != NULL &&
               ev->text != NULL;
    case LC_EV_DIRECT:
        return ev->id != NULL && ev->has_ts && ev->from != NULL && ev->to != NULL &&
               ev->text != NULL;
    case LC_EV_NICK:
        return ev->old_nick != NULL && ev->new_nick != NULL;
    case LC_EV_PRESENCE:
        return ev->nick != NULL && ev->status != NULL;
    case LC_EV_TOPIC:
        return ev->room != NULL && ev->topic != NULL && ev->by != NULL;
    case LC_EV_QUIT:
        return ev->nick != NULL && ev->reason != NULL;
    case LC_EV_MODE:
        return ev->room != NULL && ev->by != NULL && ev->has_modes;
    case LC_EV_INVITE:
        return ev->room != NULL && ev->by != NULL;
    case LC_EV_PING:
    case LC_EV_UNKNOWN:
        return 1;
    }
    return 0;
}

/* Fill ev (zeroed by the caller) from a frame object. On failure ev may be
 * partly filled; the caller frees it. */
static lc_status event_from_object(const cJSON *obj, lc_event *ev)
{
    struct {
        const char *name;
        char **dest;
    } strings[] = {
        {"cmd", &ev->cmd}, {"code", &ev->code}, {"message", &ev->message},
        {"reason", &ev->reason}, {"room", &ev->room}, {"nick", &ev->nick},
        {"from", &ev->from}, {"to", &ev->to}, {"text", &ev->text},
        {"id", &ev->id}, {"old", &ev->old_nick}, {"new", &ev->new_nick},
        {"status", &ev->status}, {"topic", &ev->topic}, {"by", &ev->by},
        {"server", &ev->server}, {"name", &ev->name}, {"session", &ev->session},
        {"motd", &ev->motd}, {"next", &ev->next}, {"kicked_by", &ev->kicked_by},
        {"away_text", &ev->away_text},
    };
    lc_status rc;
    size_t i;

    rc = get_string(obj, "type", &ev->type);
    if (rc != LC_OK)
        return rc;
    if (ev->type == NULL)
        return LC_ERR_PROTOCOL;
    ev->kind = kind_from_name(ev->type);
    if (ev->kind == LC_EV_UNKNOWN)
        return LC_OK; /* a newer server's event: keep only type and raw */

    rc = parse_re(obj, ev);
    for (i = 0; rc == LC_OK && i < COUNT(strings); i++)
        rc = get_string(obj, strings[i].name, strings[i].dest);
    if (rc == LC_OK)
        rc = get_integer(obj, "ts", &ev->ts, &ev->has_ts);
    if (rc == LC_OK)
        rc = get_integer(obj, "retry_after_ms", &ev->retry_after_ms, &ev->has_retry_after);
    if (rc == LC_OK)
        rc = get_bool(obj, "persistent", &ev->persistent, &ev->has_persistent);
    if (rc == LC_OK)
        rc = get_bool(obj, "away", &ev->away, &ev->has_away);
    if (rc == LC_OK)
        rc = get_integer(obj, "protocol", &ev->protocol, NULL);
    if (rc == LC_OK)
        rc = parse_limits(obj, ev);
    if (rc == LC_OK)
        rc = parse_modes(obj, ev);
    if (rc == LC_OK)
        rc = parse_members(obj, ev);
    if (rc == LC_OK)
        rc = parse_rooms(obj, ev);
    if (rc == LC_OK)
        rc = parse_messages(obj, ev);
    if (rc == LC_OK && !has_required_fields(ev))
        rc = LC_ERR_PROTOCOL;
    return rc;
}

lc_status lc_parse_event(const char *line, size_t len, lc_event *ev)
{
    cJSON *root;
    lc_status rc;

    if (line == NULL || ev == NULL)
        return LC_ERR_INVALID_ARG;
    memset(ev, 0, sizeof *ev);
    if (!utf8_valid((const unsigned char *)line, len))
        return LC_ERR_PROTOCOL;
    root = cJSON_ParseWithLength(line, len);
    if (root == NULL)
        return LC_ERR_PROTOCOL;
    if (cJSON_IsObject(root))
        rc = event_from_object(root, ev);
    else
        rc = LC_ERR_PROTOCOL;
    cJSON_Delete(root);
    if (rc == LC_OK) {
        ev->raw = dup_n(line, len);
        if (ev->raw == NULL)
            rc = LC_ERR_NOMEM;
    }
    if (rc != LC_OK)
        lc_event_free(ev);
    return rc;
}

/* ---- requests: encoding -------------------------------------------------- */

/* Add a string field; NULL leaves an optional field out. */
static lc_status add_string(cJSON *obj, const char *name, const char *value, int required)
{
    if (value == NULL)
        return required ? LC_ERR_INVALID_ARG : LC_OK;
    return cJSON_AddStringToObject(obj, name, value) != NULL ? LC_OK : LC_ERR_NOMEM;
}

static lc_status add_integer(cJSON *obj, const char *name, long long value)
{
    return cJSON_AddNumberToObject(obj, name, (double)value) != NULL ? LC_OK : LC_ERR_NOMEM;
}

/* Is s a JSON integer within i64 or u64 range ("-9223372036854775808" to
 * "18446744073709551615")? Longer digit strings compare like numbers when
 * their lengths are equal. */
static int valid_id_int(const char *s)
{
    const char *digits = s[0] == '-' ? s + 1 : s;
    const char *limit = s[0] == '-' ? "9223372036854775808" : "18446744073709551615";
    size_t n = strlen(digits);
    size_t i;

    if (n == 0 || (n > 1 && digits[0] == '0'))
        return 0;
    for (i = 0; i < n; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            return 0;
    }
    return n < strlen(limit) || (n == strlen(limit) && strcmp(digits, limit) <= 0);
}

/* Integers go out as their exact digits: cJSON would print large ones as doubles. */
static lc_status add_integer_text(cJSON *obj, const char *name, const char *digits)
{
    if (!valid_id_int(digits))
        return LC_ERR_INVALID_ARG;
    return cJSON_AddRawToObject(obj, name, digits) != NULL ? LC_OK : LC_ERR_NOMEM;
}

/* A mode switch: LC_MODE_KEEP leaves it out, LC_MODE_ON/OFF send true/false. */
static lc_status add_mode(cJSON *obj, const char *name, int mode)
{
    if (mode == LC_MODE_KEEP)
        return LC_OK;
    if (mode != LC_MODE_ON && mode != LC_MODE_OFF)
        return LC_ERR_INVALID_ARG;
    return cJSON_AddBoolToObject(obj, name, mode == LC_MODE_ON) != NULL ? LC_OK : LC_ERR_NOMEM;
}

static lc_status add_fields(cJSON *obj, const lc_request *req)
{
    lc_status rc = LC_OK;

    switch (req->type) {
    case LC_REQ_HELLO:
        rc = add_string(obj, "nick", req->nick, 1);
        if (rc == LC_OK && req->protocol != 0)
            rc = add_integer(obj, "protocol", req->protocol);
        if (rc == LC_OK)
            rc = add_string(obj, "client", req->client, 0);
        if (rc == LC_OK)
            rc = add_string(obj, "password", req->password, 0);
        if (rc == LC_OK)
            rc = add_string(obj, "secret", req->secret, 0);
        if (rc == LC_OK)
            rc = add_mode(obj, "autojoin", req->autojoin);
        return rc;
    case LC_REQ_JOIN:
        rc = add_string(obj, "room", req->room, 1);
        return rc == LC_OK ? add_string(obj, "key", req->key, 0) : rc;
    case LC_REQ_LEAVE:
    case LC_REQ_WHO:
        return add_string(obj, "room", req->room, 1);
    case LC_REQ_MODE:
        rc = add_string(obj, "room", req->room, 1);
        if (rc == LC_OK)
            rc = add_mode(obj, "invite_only", req->invite_only);
        if (rc == LC_OK && req->clear_key)
            rc = cJSON_AddNullToObject(obj, "key") != NULL ? LC_OK : LC_ERR_NOMEM;
        else if (rc == LC_OK)
            rc = add_string(obj, "key", req->key, 0);
        if (rc == LC_OK)
            rc = add_mode(obj, "topic_lock", req->topic_lock);
        return rc;
    case LC_REQ_INVITE:
    case LC_REQ_OP:
        rc = add_string(obj, "room", req->room, 1);
        return rc == LC_OK ? add_string(obj, "nick", req->nick, 1) : rc;
    case LC_REQ_KICK:
        rc = add_string(obj, "room", req->room, 1);
        if (rc == LC_OK)
            rc = add_string(obj, "nick", req->nick, 1);
        return rc == LC_OK ? add_string(obj, "reason", req->reason, 0) : rc;
    case LC_REQ_SAY:
        rc = add_string(obj, "room", req->room, 1);
        return rc == LC_OK ? add_string(obj, "text", req->text, 1) : rc;
    case LC_REQ_DM:
        rc = add_string(obj, "to", req->to, 1);
        return rc == LC_OK ? add_string(obj, "text", req->text, 1) : rc;
    case LC_REQ_NICK:
        rc = add_string(obj, "nick", req->nick, 1);
        return rc == LC_OK ? add_string(obj, "secret", req->secret, 0) : rc;
    case LC_REQ_REGISTER:
        return add_string(obj, "secret", req->secret, 1);
    case LC_REQ_UNREGISTER:
        return LC_OK;
    case LC_REQ_STATUS:
        rc = add_string(obj, "status", req->status, 1);
        return rc == LC_OK ? add_string(obj, "text", req->text, 0) : rc;
    case LC_REQ_TOPIC:
        rc = add_string(obj, "room", req->room, 1);
        return rc == LC_OK ? add_string(obj, "topic", req->topic, 0) : rc;
    case LC_REQ_HISTORY:
        rc = add_string(obj, "room", req->room, 1);
        if (rc == LC_OK)
            rc = add_string(obj, "before", req->before, 0);
        if (rc == LC_OK)
            rc = add_string(obj, "after", req->after, 0);
        if (rc == LC_OK && req->limit != 0)
            rc = add_integer(obj, "limit", req->limit);
        return rc;
    case LC_REQ_QUIT:
        return add_string(obj, "reason", req->reason, 0);
    case LC_REQ_ROOMS:
        rc = add_string(obj, "after", req->after, 0);
        if (rc == LC_OK && req->limit != 0)
            rc = add_integer(obj, "limit", req->limit);
        return rc;
    case LC_REQ_PING:
    case LC_REQ_PONG:
        return LC_OK;
    }
    return LC_ERR_INVALID_ARG;
}

lc_status lc_encode_request(const lc_request *req, char **out, size_t *len_out)
{
    cJSON *obj;
    lc_status rc;

    if (req == NULL || out == NULL || (size_t)req->type >= COUNT(request_names))
        return LC_ERR_INVALID_ARG;
    *out = NULL;
    obj = cJSON_CreateObject();
    if (obj == NULL)
        return LC_ERR_NOMEM;
    rc = add_string(obj, "type", lc_request_type_name(req->type), 1);
    if (rc == LC_OK && req->id_str != NULL)
        rc = add_string(obj, "id", req->id_str, 1);
    else if (rc == LC_OK && req->id_int != NULL)
        rc = add_integer_text(obj, "id", req->id_int);
    if (rc == LC_OK)
        rc = add_fields(obj, req);
    if (rc == LC_OK) {
        *out = cJSON_PrintUnformatted(obj);
        if (*out == NULL)
            rc = LC_ERR_NOMEM;
        else if (len_out != NULL)
            *len_out = strlen(*out);
    }
    cJSON_Delete(obj);
    return rc;
}

/* ---- connection ---------------------------------------------------------- */

static lc_status set_socket_flags(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return LC_ERR_IO;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return LC_ERR_IO;
    return LC_OK;
}

lc_status lc_adopt_fd(int fd, lc_client **out)
{
    lc_client *c;

    if (out == NULL || fd < 0) {
        if (fd >= 0)
            (void)close(fd);
        return LC_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (set_socket_flags(fd) != LC_OK) {
        (void)close(fd);
        return LC_ERR_IO;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        (void)close(fd);
        return LC_ERR_NOMEM;
    }
    c->fd = fd;
    c->next_id = 1;
    c->timeout_ms = LC_DEFAULT_TIMEOUT_MS;
    c->max_line = LC_DEFAULT_MAX_LINE;
    c->max_server_line = LC_DEFAULT_MAX_SERVER_LINE;
    *out = c;
    return LC_OK;
}

/* Non-blocking connect bounded by timeout_ms; fd is left open for the caller. */
static lc_status connect_one(int fd, const struct addrinfo *ai, int timeout_ms)
{
    struct pollfd p;
    int err = 0;
    socklen_t err_len = sizeof err;
    int n;

    if (set_socket_flags(fd) != LC_OK)
        return LC_ERR_IO;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return LC_OK;
    if (errno != EINPROGRESS)
        return LC_ERR_CONNECT;
    p.fd = fd;
    p.events = POLLOUT;
    p.revents = 0;
    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return LC_ERR_IO;
    if (n == 0) {
        errno = ETIMEDOUT;
        return LC_ERR_TIMEOUT;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
        return LC_ERR_IO;
    if (err != 0) {
        errno = err;
        return LC_ERR_CONNECT;
    }
    return LC_OK;
}

lc_status lc_connect(const char *host, const char *port, lc_client **out)
{
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    const struct addrinfo *ai;
    lc_status rc = LC_ERR_CONNECT;
    int fd = -1;

    if (host == NULL || port == NULL || out == NULL)
        return LC_ERR_INVALID_ARG;
    *out = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &list) != 0)
        return LC_ERR_RESOLVE;
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rc = LC_ERR_IO;
            continue;
        }
        rc = connect_one(fd, ai, LC_DEFAULT_TIMEOUT_MS);
        if (rc == LC_OK)
            break;
        (void)close(fd);
        fd = -1;
    }
    freeaddrinfo(list);
    if (rc != LC_OK)
        return rc;
    return lc_adopt_fd(fd, out);
}

/* Wait until fd is ready for `events`, at most until deadline. LC_OK also
 * after EINTR: the caller's next attempt tells. */
static lc_status wait_fd(int fd, short events, long long deadline)
{
    struct pollfd p;
    int left;
    int n;
    lc_status rc = time_left(deadline, &left);

    if (rc != LC_OK)
        return rc;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    n = poll(&p, 1, left);
    if (n < 0 && errno == EINTR)
        return LC_OK;
    if (n < 0)
        return LC_ERR_IO;
    if (n == 0)
        return LC_ERR_TIMEOUT;
    return LC_OK;
}

/* ---- TLS ----------------------------------------------------------------- */

#define LC_SHA256_LEN 32
#define LC_TLS_SNI "lanchat"

/* OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a
 * closed peer. This one uses send(MSG_NOSIGNAL) and recv(2) on the client's
 * non-blocking socket, and tells OpenSSL to retry on EAGAIN. */
static int bio_write(BIO *bio, const char *data, int len)
{
    const lc_client *c = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    n = send(c->fd, data, (size_t)len, MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        BIO_set_retry_write(bio);
    return -1;
}

static int bio_read(BIO *bio, char *data, int len)
{
    const lc_client *c = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    n = recv(c->fd, data, (size_t)len, 0);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        BIO_set_retry_read(bio);
    return -1;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)bio;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is buffered here */
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)tolower((unsigned char)ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* 64 hex digits, either case, into 32 bytes. 0 when hex is anything else. */
static int parse_fingerprint(const char *hex, unsigned char out[LC_SHA256_LEN])
{
    size_t i;

    if (hex == NULL || strlen(hex) != LC_FINGERPRINT_HEX_LEN)
        return 0;
    for (i = 0; i < LC_SHA256_LEN; i++) {
        int hi = hex_digit(hex[2 * i]);
        int lo = hex_digit(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return 1;
}

int lc_fingerprint_valid(const char *hex)
{
    unsigned char scratch[LC_SHA256_LEN];

    return parse_fingerprint(hex, scratch);
}

static void to_hex(const unsigned char md[LC_SHA256_LEN], char out[LC_FINGERPRINT_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < LC_SHA256_LEN; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0x0f];
    }
    out[LC_FINGERPRINT_HEX_LEN] = '\0';
}

/* Why TLS failed: OpenSSL's last error when it has one, else `fallback`. */
static void tls_detail(lc_tls_info *info, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();

    if (e != 0)
        ERR_error_string_n(e, info->detail, sizeof info->detail);
    else if (snprintf(info->detail, sizeof info->detail, "%s", fallback) < 0)
        info->detail[0] = '\0';
}

/* The client's SSL, talking through our BIO. */
static lc_status tls_setup(lc_client *c)
{
    BIO *bio;

    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (c->ssl_ctx == NULL)
        return LC_ERR_TLS;
    if (SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION) != 1)
        return LC_ERR_TLS;
    /* The certificate is self-signed: trust comes from the pin, checked after
     * the handshake (which verifies the server holds the certificate's key). */
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_NONE, NULL);
    /* The returned values are the new mode and options bitmasks, not statuses.
     * Partial writes: write_all loops over what SSL_write took. */
    (void)SSL_CTX_set_mode(c->ssl_ctx,
                           SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A peer closing without close_notify is end of stream, as in plain TCP
     * (a cut partial line is never taken for a frame anyway). */
    (void)SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    c->ssl = SSL_new(c->ssl_ctx);
    if (c->ssl == NULL)
        return LC_ERR_TLS;
    if (SSL_set_tlsext_host_name(c->ssl, LC_TLS_SNI) != 1)
        return LC_ERR_TLS;
    c->bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "lanchat socket");
    if (c->bio_method == NULL || BIO_meth_set_write(c->bio_method, bio_write) != 1 ||
        BIO_meth_set_read(c->bio_method, bio_read) != 1 ||
        BIO_meth_set_ctrl(c->bio_method, bio_ctrl) != 1)
        return LC_ERR_TLS;
    bio = BIO_new(c->bio_method);
    if (bio == NULL)
        return LC_ERR_TLS;
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    SSL_set_bio(c->ssl, bio, bio); /* ssl owns bio from here */
    SSL_set_connect_state(c->ssl);
    return LC_OK;
}

static lc_status tls_handshake(lc_client *c, long long deadline, lc_tls_info *info)
{
    for (;;) {
        char why[128];
        short want;
        int ret;
        lc_status rc;

        ERR_clear_error();
        errno = 0;
        ret = SSL_connect(c->ssl);
        if (ret == 1)
            return LC_OK;
        switch (SSL_get_error(c->ssl, ret)) {
        case SSL_ERROR_WANT_READ:
            want = POLLIN;
            break;
        case SSL_ERROR_WANT_WRITE:
            want = POLLOUT;
            break;
        case SSL_ERROR_SYSCALL:
            c->ssl_failed = 1;
            if (errno == 0 || strerror_r(errno, why, sizeof why) != 0)
                strcpy(why, "the server closed the connection during the handshake");
            tls_detail(info, why);
            return LC_ERR_TLS;
        default:
            c->ssl_failed = 1;
            tls_detail(info, "handshake failed");
            return LC_ERR_TLS;
        }
        rc = wait_fd(c->fd, want, deadline);
        if (rc != LC_OK) {
            c->ssl_failed = 1;
            tls_detail(info, rc == LC_ERR_TIMEOUT ? "no handshake in time" : "poll failed");
            return rc;
        }
    }
}

/* SHA-256 of the peer certificate's DER against the pin, in constant time. */
static lc_status check_pin(lc_client *c, const unsigned char pin[LC_SHA256_LEN],
                           lc_tls_info *info)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    X509 *cert;
    int hashed;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    cert = SSL_get1_peer_certificate(c->ssl);
#else
    cert = SSL_get_peer_certificate(c->ssl);
#endif
    if (cert == NULL) {
        tls_detail(info, "the server presented no certificate");
        return LC_ERR_FINGERPRINT;
    }
    hashed = X509_digest(cert, EVP_sha256(), md, &md_len) == 1 && md_len == LC_SHA256_LEN;
    X509_free(cert);
    if (!hashed) {
        tls_detail(info, "cannot hash the server's certificate");
        return LC_ERR_TLS;
    }
    to_hex(md, info->presented);
    if (CRYPTO_memcmp(md, pin, LC_SHA256_LEN) != 0)
        return LC_ERR_FINGERPRINT;
    return LC_OK;
}

lc_status lc_connect_tls(const char *host, const char *port, const char *fingerprint_hex,
                         lc_client **out, lc_tls_info *info)
{
    unsigned char pin[LC_SHA256_LEN];
    lc_tls_info scratch;
    lc_tls_info *inf = info != NULL ? info : &scratch;
    lc_client *c = NULL;
    long long deadline;
    lc_status rc;

    memset(inf, 0, sizeof *inf);
    if (out != NULL)
        *out = NULL;
    if (host == NULL || port == NULL || out == NULL || !parse_fingerprint(fingerprint_hex, pin))
        return LC_ERR_INVALID_ARG;
    to_hex(pin, inf->pinned);
    rc = lc_connect(host, port, &c);
    if (rc != LC_OK)
        return rc;
    rc = deadline_in(LC_DEFAULT_TIMEOUT_MS, &deadline);
    if (rc == LC_OK) {
        rc = tls_setup(c);
        if (rc != LC_OK)
            tls_detail(inf, "cannot set up OpenSSL");
    }
    if (rc == LC_OK)
        rc = tls_handshake(c, deadline, inf);
    if (rc == LC_OK)
        rc = check_pin(c, pin, inf);
    if (rc != LC_OK) {
        c->ssl_failed = 1; /* not even close_notify to a server we do not trust */
        lc_close(c);
        return rc;
    }
    *out = c;
    return LC_OK;
}

int lc_is_tls(const lc_client *c)
{
    return c != NULL && c->ssl != NULL;
}

static void queue_clear(lc_client *c)
{
    while (c->head != NULL) {
        struct lc_queued *q = c->head;

        c->head = q->next;
        lc_event_free(&q->event);
        free(q);
    }
    c->tail = NULL;
    c->queued = 0;
}

void lc_close(lc_client *c)
{
    if (c == NULL)
        return;
    if (c->ssl != NULL) {
        if (!c->ssl_failed && !c->broken) {
            /* close_notify, best effort: the socket is non-blocking and nothing
             * waits for the server's answer, so the result does not matter. */
            ERR_clear_error();
            (void)SSL_shutdown(c->ssl);
        }
        SSL_free(c->ssl); /* and the BIO */
    }
    BIO_meth_free(c->bio_method);
    SSL_CTX_free(c->ssl_ctx);
    ERR_clear_error(); /* leave this thread's OpenSSL error queue empty */
    if (c->fd >= 0)
        (void)close(c->fd);
    queue_clear(c);
    free(c->buf);
    free(c->server_code);
    free(c);
}

int lc_fd(const lc_client *c)
{
    return c != NULL ? c->fd : -1;
}

int lc_pending(const lc_client *c)
{
    if (c == NULL)
        return 0;
    if (c->head != NULL || c->eof)
        return 1; /* an event, or the end of the stream, to report */
    if (c->len > 0 && memchr(c->buf, '\n', c->len) != NULL)
        return 1;
    return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

void lc_set_timeout(lc_client *c, int timeout_ms)
{
    if (c != NULL)
        c->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

lc_status lc_set_max_server_line(lc_client *c, size_t max_line)
{
    if (c == NULL || max_line == 0 || max_line > (size_t)-1 / 2)
        return LC_ERR_INVALID_ARG;
    c->max_server_line = max_line;
    return LC_OK;
}

size_t lc_max_line(const lc_client *c)
{
    return c != NULL ? c->max_line : 0;
}

const char *lc_server_code(const lc_client *c)
{
    return c != NULL && c->server_code != NULL ? c->server_code : "";
}

/* ---- reading ------------------------------------------------------------- */

#define LC_INITIAL_BUFFER 8192

/* Room to read more: grow (doubling) when full, up to a longest line, a CR
 * and the LF. next_line never lets len reach that bound without a verdict. */
static lc_status ensure_capacity(lc_client *c)
{
    size_t limit = c->max_server_line + 2;
    size_t want;
    char *bigger;

    if (c->len < c->cap)
        return LC_OK;
    want = c->cap == 0 ? LC_INITIAL_BUFFER : c->cap * 2;
    if (want > limit)
        want = limit;
    if (want <= c->len)
        return LC_ERR_LINE_TOO_LONG; /* unreachable: next_line rejects first */
    bigger = realloc(c->buf, want);
    if (bigger == NULL)
        return LC_ERR_NOMEM;
    c->buf = bigger;
    c->cap = want;
    return LC_OK;
}

static void drop(lc_client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->scanned = 0;
}

/* What an SSL_read or SSL_write that returned ret <= 0 means: LC_OK with
 * *want set when it is to be retried once the socket is ready for that, LC_OK
 * with c->eof set at the end of a read stream, or an error status. */
static lc_status ssl_status(lc_client *c, int ret, int reading, short *want)
{
    int saved = errno;

    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return LC_OK;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return LC_OK;
    case SSL_ERROR_ZERO_RETURN: /* close_notify: the server is done */
        if (!reading)
            return LC_ERR_CLOSED;
        c->eof = 1;
        return LC_OK;
    case SSL_ERROR_SYSCALL:
        c->ssl_failed = 1;
        if (saved == 0 || saved == ECONNRESET || saved == EPIPE) {
            if (!reading)
                return LC_ERR_CLOSED;
            c->eof = 1;
            return LC_OK;
        }
        errno = saved;
        return LC_ERR_IO;
    default:
        c->ssl_failed = 1;
        return LC_ERR_TLS;
    }
}

/* The one read of the I/O layer: at most cap bytes into dst, through TLS or
 * straight from the socket. LC_OK with *got > 0; or LC_OK with c->eof set;
 * or LC_OK with *got == 0, to retry once poll reports *want. */
static lc_status io_recv(lc_client *c, char *dst, size_t cap, size_t *got, short *want)
{
    *got = 0;
    *want = POLLIN;
    if (c->ssl == NULL) {
        ssize_t n = recv(c->fd, dst, cap, 0);

        if (n > 0) {
            *got = (size_t)n;
            return LC_OK;
        }
        if (n == 0 || errno == ECONNRESET) {
            c->eof = 1;
            return LC_OK;
        }
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return LC_OK;
        return LC_ERR_IO;
    } else {
        int n;

        ERR_clear_error();
        errno = 0;
        n = SSL_read(c->ssl, dst, cap > INT_MAX ? INT_MAX : (int)cap);
        if (n > 0) {
            *got = (size_t)n;
            return LC_OK;
        }
        return ssl_status(c, n, 1, want);
    }
}

/* The one write of the I/O layer: *sent bytes of data went out (possibly
 * fewer than len, possibly 0 with *want saying what to poll for). */
static lc_status io_send(lc_client *c, const char *data, size_t len, size_t *sent, short *want)
{
    *sent = 0;
    *want = POLLOUT;
    if (c->ssl == NULL) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

        if (n >= 0) {
            *sent = (size_t)n;
            return LC_OK;
        }
        if (errno == EPIPE || errno == ECONNRESET)
            return LC_ERR_CLOSED;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return LC_OK;
        return LC_ERR_IO;
    } else {
        int n;

        ERR_clear_error();
        errno = 0;
        n = SSL_write(c->ssl, data, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0) {
            *sent = (size_t)n;
            return LC_OK;
        }
        return ssl_status(c, n, 0, want);
    }
}

/* Read what the connection has into the buffer, waiting at most until deadline. */
static lc_status fill(lc_client *c, long long deadline)
{
    short want = POLLIN;

    for (;;) {
        size_t got = 0;
        lc_status rc;

        /* Bytes OpenSSL has already decrypted do not make the socket readable:
         * waiting in poll for them could stall until the server's next write. */
        if (!(c->ssl != NULL && want == POLLIN && SSL_pending(c->ssl) > 0)) {
            rc = wait_fd(c->fd, want, deadline);
            if (rc != LC_OK)
                return rc;
        }
        rc = io_recv(c, c->buf + c->len, c->cap - c->len, &got, &want);
        if (rc != LC_OK)
            return rc;
        if (got > 0) {
            c->len += got;
            return LC_OK;
        }
        if (c->eof)
            return LC_OK;
    }
}

/* Find the next non-empty line. On LC_OK it is buf[0..*line_len); the caller
 * drops *used bytes once done with it. */
static lc_status next_line(lc_client *c, long long deadline, size_t *line_len, size_t *used)
{
    for (;;) {
        char *lf = c->len > c->scanned ? memchr(c->buf + c->scanned, '\n', c->len - c->scanned)
                                       : NULL;
        lc_status rc;

        if (lf != NULL && c->discarding) {
            drop(c, (size_t)(lf - c->buf) + 1);
            c->discarding = 0;
            continue;
        } else if (lf != NULL) {
            size_t n = (size_t)(lf - c->buf);

            *used = n + 1;
            if (n > 0 && c->buf[n - 1] == '\r')
                n--;
            if (n > c->max_server_line) {
                drop(c, *used);
                return LC_ERR_LINE_TOO_LONG;
            }
            if (n == 0) {
                drop(c, *used);
                continue;
            }
            *line_len = n;
            return LC_OK;
        } else if (c->discarding) {
            c->len = 0;
            c->scanned = 0;
        } else {
            c->scanned = c->len;
            if (c->len >= c->max_server_line + 2) {
                /* No LF within the limit: reject the line, skip the rest of it. */
                c->len = 0;
                c->scanned = 0;
                c->discarding = 1;
                return LC_ERR_LINE_TOO_LONG;
            }
        }
        if (c->eof)
            return LC_ERR_CLOSED; /* a partial last line is not a frame */
        rc = ensure_capacity(c);
        if (rc == LC_OK)
            rc = fill(c, deadline);
        if (rc != LC_OK)
            return rc;
    }
}

/* The next frame from the socket (never from the queue). */
static lc_status read_wire(lc_client *c, long long deadline, lc_event *ev)
{
    size_t line_len = 0;
    size_t used = 0;
    lc_status rc;

    memset(ev, 0, sizeof *ev);
    rc = next_line(c, deadline, &line_len, &used);
    if (rc != LC_OK)
        return rc;
    rc = lc_parse_event(c->buf, line_len, ev);
    drop(c, used);
    if (rc == LC_OK && ev->kind == LC_EV_WELCOME && ev->has_limits && ev->limits.max_line > 0)
        c->max_line = (size_t)ev->limits.max_line;
    return rc;
}

static lc_status enqueue(lc_client *c, lc_event *ev)
{
    struct lc_queued *q;

    if (c->queued >= LC_MAX_QUEUED_EVENTS)
        return LC_ERR_QUEUE_FULL;
    q = malloc(sizeof *q);
    if (q == NULL)
        return LC_ERR_NOMEM;
    q->next = NULL;
    q->event = *ev;
    memset(ev, 0, sizeof *ev);
    if (c->tail != NULL)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    c->queued++;
    return LC_OK;
}

lc_status lc_read_event(lc_client *c, int timeout_ms, lc_event *ev)
{
    long long deadline;
    lc_status rc;

    if (c == NULL || ev == NULL)
        return LC_ERR_INVALID_ARG;
    memset(ev, 0, sizeof *ev);
    if (c->head != NULL) {
        struct lc_queued *q = c->head;

        c->head = q->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->queued--;
        *ev = q->event;
        free(q);
        return LC_OK;
    }
    rc = deadline_in(timeout_ms, &deadline);
    if (rc != LC_OK)
        return rc;
    return read_wire(c, deadline, ev);
}

/* ---- writing and requests ------------------------------------------------ */

static lc_status write_all(lc_client *c, const char *data, size_t len)
{
    long long deadline;
    size_t sent = 0;
    lc_status rc = deadline_in(c->timeout_ms, &deadline);

    while (rc == LC_OK && sent < len) {
        size_t n = 0;
        short want = POLLOUT;

        rc = io_send(c, data + sent, len - sent, &n, &want);
        if (rc != LC_OK)
            break;
        if (n > 0) {
            sent += n;
            continue;
        }
        rc = wait_fd(c->fd, want, deadline);
    }
    /* Half a line went out: nothing after it can be framed. Over TLS even none
     * of it may be pending in OpenSSL, which must be retried with the same
     * bytes: the stream is unusable after any failed write. */
    if (rc != LC_OK && (sent > 0 || c->ssl != NULL))
        c->broken = 1;
    return rc;
}

lc_status lc_send(lc_client *c, const lc_request *req, long long *id_out)
{
    lc_request numbered;
    char digits[32];
    char *json = NULL;
    char *line;
    size_t len = 0;
    lc_status rc;

    if (c == NULL || req == NULL)
        return LC_ERR_INVALID_ARG;
    if (c->broken)
        return LC_ERR_IO;
    numbered = *req;
    numbered.id_str = NULL;
    numbered.id_int = NULL;
    if (req->type != LC_REQ_PONG) { /* pong gets no reply: nothing to match */
        if (snprintf(digits, sizeof digits, "%lld", c->next_id) < 0)
            return LC_ERR_INVALID_ARG;
        numbered.id_int = digits;
    }
    rc = lc_encode_request(&numbered, &json, &len);
    if (rc != LC_OK)
        return rc;
    if (len > c->max_line) {
        free(json);
        return LC_ERR_LINE_TOO_LONG;
    }
    /* One buffer with the LF, so the frame leaves in one send(). */
    line = realloc(json, len + 2);
    if (line == NULL) {
        free(json);
        return LC_ERR_NOMEM;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    rc = write_all(c, line, len + 1);
    free(line);
    if (rc != LC_OK)
        return rc;
    if (id_out != NULL)
        *id_out = numbered.id_int != NULL ? c->next_id : 0;
    if (numbered.id_int != NULL)
        c->next_id++;
    return LC_OK;
}

static int is_reply(const lc_event *ev, long long id, lc_request_type type)
{
    int replies = ev->kind == LC_EV_OK || ev->kind == LC_EV_ERROR ||
                  ev->kind == LC_EV_WELCOME || ev->kind == LC_EV_BYE;

    if (replies && ev->re_is_int && ev->re_int == id)
        return 1;
    /* bye carries no re: for quit it is the reply. */
    return type == LC_REQ_QUIT && ev->kind == LC_EV_BYE;
}

static lc_status remember_server_code(lc_client *c, const lc_event *reply)
{
    free(c->server_code);
    c->server_code = NULL;
    if (reply->code == NULL)
        return LC_OK;
    c->server_code = dup_str(reply->code);
    return c->server_code != NULL ? LC_OK : LC_ERR_NOMEM;
}

lc_status lc_request_wait(lc_client *c, const lc_request *req, int timeout_ms,
                          lc_event *reply)
{
    lc_event scratch;
    lc_event *out = reply != NULL ? reply : &scratch;
    long long deadline;
    long long id = 0;
    lc_status rc;

    memset(out, 0, sizeof *out); /* first: lc_event_free(reply) is safe whatever happens */
    if (c == NULL || req == NULL || req->type == LC_REQ_PONG)
        return LC_ERR_INVALID_ARG;
    rc = deadline_in(timeout_ms, &deadline);
    if (rc == LC_OK)
        rc = lc_send(c, req, &id);
    while (rc == LC_OK) {
        lc_event ev;

        rc = read_wire(c, deadline, &ev);
        if (rc != LC_OK)
            break;
        if (is_reply(&ev, id, req->type)) {
            *out = ev;
            break;
        }
        if (ev.kind == LC_EV_BYE) {
            *out = ev; /* the server is closing on its own: no reply will come */
            rc = LC_ERR_CLOSED;
            break;
        }
        rc = enqueue(c, &ev);
        if (rc != LC_OK)
            lc_event_free(&ev);
    }
    if (rc == LC_OK && out->kind == LC_EV_ERROR) {
        rc = remember_server_code(c, out);
        if (rc == LC_OK)
            rc = LC_ERR_SERVER;
    }
    if (out == &scratch)
        lc_event_free(&scratch);
    return rc;
}

/* The shorthands below differ only in the fields they set. */
static lc_status request(lc_client *c, lc_request *req, lc_event *reply)
{
    return lc_request_wait(c, req, c != NULL ? c->timeout_ms : 0, reply);
}

lc_status lc_hello(lc_client *c, const char *nick, const char *password, lc_event *reply)
{
    return lc_hello_secret(c, nick, password, NULL, reply);
}

lc_status lc_hello_secret(lc_client *c, const char *nick, const char *password,
                          const char *secret, lc_event *reply)
{
    lc_request req = {
        .type = LC_REQ_HELLO,
        .nick = nick,
        .password = password,
        .secret = secret,
        .protocol = LC_PROTOCOL_VERSION,
        .client = LC_CLIENT_NAME,
    };

    return request(c, &req, reply);
}

lc_status lc_register(lc_client *c, const char *secret, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_REGISTER, .secret = secret};

    return request(c, &req, reply);
}

lc_status lc_unregister(lc_client *c, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_UNREGISTER};

    return request(c, &req, reply);
}

lc_status lc_join(lc_client *c, const char *room, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_JOIN, .room = room};

    return request(c, &req, reply);
}

lc_status lc_join_key(lc_client *c, const char *room, const char *key, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_JOIN, .room = room, .key = key};

    return request(c, &req, reply);
}

lc_status lc_mode(lc_client *c, const char *room, int invite_only, const char *key,
                  int clear_key, int topic_lock, lc_event *reply)
{
    lc_request req = {
        .type = LC_REQ_MODE,
        .room = room,
        .invite_only = invite_only,
        .key = key,
        .clear_key = clear_key,
        .topic_lock = topic_lock,
    };

    return request(c, &req, reply);
}

lc_status lc_invite(lc_client *c, const char *room, const char *nick, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_INVITE, .room = room, .nick = nick};

    return request(c, &req, reply);
}

lc_status lc_kick(lc_client *c, const char *room, const char *nick, const char *reason,
                  lc_event *reply)
{
    lc_request req = {.type = LC_REQ_KICK, .room = room, .nick = nick, .reason = reason};

    return request(c, &req, reply);
}

lc_status lc_op(lc_client *c, const char *room, const char *nick, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_OP, .room = room, .nick = nick};

    return request(c, &req, reply);
}

lc_status lc_leave(lc_client *c, const char *room, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_LEAVE, .room = room};

    return request(c, &req, reply);
}

lc_status lc_say(lc_client *c, const char *room, const char *text, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_SAY, .room = room, .text = text};

    return request(c, &req, reply);
}

lc_status lc_dm(lc_client *c, const char *to, const char *text, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_DM, .to = to, .text = text};

    return request(c, &req, reply);
}

lc_status lc_nick(lc_client *c, const char *nick, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_NICK, .nick = nick};

    return request(c, &req, reply);
}

lc_status lc_set_status(lc_client *c, const char *status, const char *text, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_STATUS, .status = status, .text = text};

    return request(c, &req, reply);
}

lc_status lc_ping(lc_client *c, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_PING};

    return request(c, &req, reply);
}

lc_status lc_quit(lc_client *c, const char *reason, lc_event *reply)
{
    lc_request req = {.type = LC_REQ_QUIT, .reason = reason};

    return request(c, &req, reply);
}

lc_status lc_pong(lc_client *c)
{
    lc_request req = {.type = LC_REQ_PONG};

    return lc_send(c, &req, NULL);
}
