/*
 * lanchat.h - a C99 client for the lanchat line protocol (PROTOCOL.md, v1).
 *
 * One JSON object per line over TCP. The client sends requests, each with an
 * increasing integer id, and reads events: replies (welcome, ok, error, bye)
 * carry `re` = the id of the request they answer; everything else (message,
 * join, ...) is pushed by the server.
 *
 * Ownership: the caller owns every lc_client it gets from lc_connect() (free
 * it with lc_close()) and every lc_event it passes in to be filled (free its
 * contents with lc_event_free()). Strings passed in are only borrowed for the
 * duration of the call. There is no global state: one lc_client may be used
 * from one thread at a time; distinct clients are independent.
 *
 * Errors: every call returns an lc_status. LC_ERR_SERVER means the server
 * answered with an `error` frame; its code is in the reply event (`code`) and
 * in lc_server_code().
 */
#ifndef LANCHAT_H
#define LANCHAT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LC_VERSION "0.1.0"
#define LC_PROTOCOL_VERSION 1
#define LC_DEFAULT_PORT "7878"
/* Longest request line (bytes, without the LF) until welcome announces max_line. */
#define LC_DEFAULT_MAX_LINE 16384
/* Longest server line read. Server lines are not bound by max_line (a history
 * reply can be megabytes); PROTOCOL.md recommends 16 MiB to clients. */
#define LC_DEFAULT_MAX_SERVER_LINE (16L * 1024 * 1024)
/* Default bound on every wait done by the request calls (lc_set_timeout). */
#define LC_DEFAULT_TIMEOUT_MS 5000
/* Events that arrive while a request waits for its reply are queued, up to this many. */
#define LC_MAX_QUEUED_EVENTS 4096

typedef enum lc_status {
    LC_OK = 0,
    LC_ERR_INVALID_ARG,   /* a required argument is missing or malformed */
    LC_ERR_NOMEM,         /* memory allocation failed */
    LC_ERR_RESOLVE,       /* getaddrinfo could not resolve the host/port */
    LC_ERR_CONNECT,       /* no address accepted the connection (errno says why) */
    LC_ERR_IO,            /* a socket call failed (errno says why) */
    LC_ERR_CLOSED,        /* the server closed the connection */
    LC_ERR_TIMEOUT,       /* nothing arrived (or could be sent) in time */
    LC_ERR_PROTOCOL,      /* the server sent a line that is not a valid frame */
    LC_ERR_SERVER,        /* the server replied `error`; see the reply's code */
    LC_ERR_LINE_TOO_LONG, /* a line exceeds the maximum; it was rejected whole */
    LC_ERR_QUEUE_FULL,    /* LC_MAX_QUEUED_EVENTS unread events: one was dropped */
    LC_ERR_TLS,           /* the TLS handshake failed, or the TLS stream broke */
    LC_ERR_FINGERPRINT    /* the server's certificate does not match the pinned fingerprint */
} lc_status;

/* What a server frame is; the names match the wire `type` (LC_EV_OK is "ok"). */
typedef enum lc_event_kind {
    LC_EV_UNKNOWN = 0, /* a `type` this client does not know: ignore it */
    LC_EV_WELCOME,
    LC_EV_OK,
    LC_EV_ERROR,
    LC_EV_BYE,
    LC_EV_JOIN,
    LC_EV_LEAVE,
    LC_EV_MESSAGE,
    LC_EV_DIRECT,
    LC_EV_NICK,
    LC_EV_PRESENCE,
    LC_EV_TOPIC,
    LC_EV_QUIT,
    LC_EV_PING,
    LC_EV_MODE,  /* private rooms (extension): a room's modes changed */
    LC_EV_INVITE /* private rooms (extension): you may join a room once */
} lc_event_kind;

/* A room member: in `ok` replies to join and who. */
typedef struct lc_member {
    char *nick;
    char *status; /* "online", "away" or "busy" */
    char *text;   /* status text, NULL when none */
    int op;       /* extension: 1 for an operator of the room */
} lc_member;

/* One entry of the `ok` reply to rooms. */
typedef struct lc_room_info {
    char *name;
    long long members; /* how many members it has */
    char *topic;       /* "" when none */
} lc_room_info;

/* The limits announced in welcome (0 where the server left one out). */
typedef struct lc_limits {
    long long max_line;
    long long max_text;
    long long rate_burst;
    long long rate_per_sec; /* 0 = no rate limit */
    long long ping_interval_s;
    /* Extensions (0 where the server left them out): requests that tell others
     * (join, leave, nick, status, topic set) and bytes of history/rooms replies. */
    long long event_burst;
    long long events_per_sec;
    long long reply_bytes_burst;
    long long reply_bytes_per_sec;
    /* Extension: the most rooms one `rooms` reply lists (a longer list is paged). */
    long long rooms_page;
} lc_limits;

/*
 * One server frame. Every pointer is owned by the event and is NULL when the
 * frame did not carry that field; free them all with lc_event_free().
 * Which fields are set, by kind (see PROTOCOL.md for the full list):
 *   welcome   re, protocol, server, name, session, nick, rooms, motd, limits
 *   ok        re, cmd and that command's data: room, topic, members, id, ts,
 *             to, nick, status, text, room_list and next (cmd "rooms"), messages
 *             (cmd "history")
 *   error     re (when the request had an id), code, message, retry_after_ms
 *             (rate_limited, and nick_registered when throttled)
 *             Codes of the accounts extension: nick_registered (the nick
 *             needs its secret), too_many_accounts; bye reason "replaced".
 *   ok register / unregister (extension): nick, and persistent (register)
 *   ok dm (extension): has_away and away (recipient away or busy), away_text
 *   bye       reason, message
 *   join      room, nick              leave     room, nick
 *   message   id, ts, room, from, text
 *   direct    id, ts, from, to, text
 *   nick      old_nick, new_nick      presence  nick, status, text
 *   topic     room, topic, by         quit      nick, reason
 *   ping      nothing (answer with lc_pong)
 * Private rooms (extension): a leave by kick also has kicked_by and reason;
 *   mode      room, by, has_modes, invite_only, has_key, topic_lock
 *   invite    room, by
 *   ok mode   room, has_modes, invite_only, has_key, topic_lock; ok invite/kick/op room, nick
 */
typedef struct lc_event {
    lc_event_kind kind;
    char *type; /* the wire `type`, useful when kind is LC_EV_UNKNOWN */
    char *raw;  /* the whole frame as received, without its line ending */

    /* The id of the request answered, as text; NULL when absent. cJSON holds
     * numbers as doubles, so integer ids beyond 2^53 (which lc_send never
     * uses) come out as the nearest double. */
    char *re;
    int re_is_int;     /* 1 when `re` was a JSON integer within 2^53 ... */
    long long re_int;  /* ... whose value this is */

    char *cmd;     /* ok: the request type answered */
    char *code;    /* error: machine-readable code, e.g. "not_in_room" */
    char *message; /* error, bye: human-readable text */
    char *reason;  /* bye: why the server closes; quit: why the user left */

    char *room;
    char *nick;
    char *from;
    char *to;
    char *text;
    char *id;      /* message id (a UUIDv7 string) */
    int has_ts;
    long long ts;  /* milliseconds since the Unix epoch */
    int has_retry_after;       /* error rate_limited (extension): ... */
    long long retry_after_ms;  /* ... how long until the request would be accepted */
    char *old_nick;
    char *new_nick;
    char *status;
    char *topic;
    char *by;
    char *next;    /* ok rooms (extension): the last room listed when more follow
                    * (pass it as `after` for the next page); NULL on the last page */
    int has_persistent; /* ok register (extension, accounts): ... */
    int persistent;     /* ... 1 when the server keeps accounts on disk */
    char *kicked_by; /* leave (extension): the operator who removed `nick` */
    int has_away;    /* ok dm (extension): ... */
    int away;        /* ... 1 when the recipient is away or busy */
    char *away_text; /* ok dm (extension): the recipient's status text, with away */
    /* ok mode and the mode event (extension): the room's modes, never its key */
    int has_modes;
    int invite_only;
    int has_key;
    int topic_lock;

    long long protocol; /* welcome */
    char *server;
    char *name;
    char *session;
    char *motd;
    int has_limits;
    lc_limits limits;

    char **rooms;            /* welcome: room names */
    size_t n_rooms;
    lc_member *members;      /* ok join / who */
    size_t n_members;
    lc_room_info *room_list; /* ok rooms */
    size_t n_room_list;
    struct lc_event *messages; /* ok history: message events, oldest first */
    size_t n_messages;
} lc_event;

/* The request types a client can send; the names match the wire `type`. */
typedef enum lc_request_type {
    LC_REQ_HELLO,
    LC_REQ_JOIN,
    LC_REQ_LEAVE,
    LC_REQ_SAY,
    LC_REQ_DM,
    LC_REQ_NICK,
    LC_REQ_STATUS,
    LC_REQ_TOPIC,
    LC_REQ_WHO,
    LC_REQ_ROOMS,
    LC_REQ_HISTORY,
    LC_REQ_PING,
    LC_REQ_PONG,
    LC_REQ_QUIT,
    LC_REQ_REGISTER,   /* extension (accounts): register the current nick */
    LC_REQ_UNREGISTER, /* extension (accounts): release it */
    LC_REQ_MODE,   /* private rooms (extension) */
    LC_REQ_INVITE,
    LC_REQ_KICK,
    LC_REQ_OP
} lc_request_type;

/* lc_request.invite_only and .topic_lock: leave the mode as it is, or turn it on or off. */
#define LC_MODE_KEEP 0
#define LC_MODE_ON 1
#define LC_MODE_OFF (-1)

/*
 * A request to encode. Zero-initialise it, set `type` and the fields that
 * type uses; NULL strings and zero integers are left out of the frame.
 * Fields per type: hello nick [client password protocol autojoin]; join/leave/who
 * room; say room text; dm to text; nick nick; status status [text];
 * topic room [topic] ("" clears, NULL reads); history room [before after
 * limit]; rooms [after limit]; quit [reason]; ping, pong: none.
 * Accounts (extension): hello and nick [secret]; register secret;
 * unregister: none. A secret is 8 to 256 bytes, no control characters.
 * Private rooms (extension): join room [key]; mode room [invite_only key
 * clear_key topic_lock]; invite/op room nick; kick room nick [reason].
 */
typedef struct lc_request {
    lc_request_type type;
    const char *id_int; /* an integer id in decimal, any i64 or u64 value ("42") */
    const char *id_str; /* or a string id (at most 64 bytes); wins over id_int */
    const char *nick;
    const char *client;
    const char *password;
    int protocol;       /* hello: protocol version, 0 = leave out */
    int autojoin;       /* hello (extension): LC_MODE_KEEP leaves it out (the default room
                           is joined), LC_MODE_OFF sends false (no room), LC_MODE_ON true */
    const char *room;
    const char *text;
    const char *to;
    const char *status;
    const char *topic;
    const char *before;
    const char *after;
    int limit;          /* history: 1..200; rooms: 1..500; 0 = leave out */
    const char *reason;
    const char *secret; /* hello, nick, register: a registered nick's secret */
    const char *key;    /* join, mode: a room key (1..64 characters) */
    int clear_key;      /* mode: 1 sends "key":null (removes the key); wins over key */
    int invite_only;    /* mode: LC_MODE_KEEP, LC_MODE_ON or LC_MODE_OFF */
    int topic_lock;     /* mode: likewise */
} lc_request;

typedef struct lc_client lc_client;

/* ---- connection ---------------------------------------------------------- */

/* Resolve host/port (e.g. "127.0.0.1", "7878") and connect over TCP,
 * waiting at most LC_DEFAULT_TIMEOUT_MS. On success *out is a new client. */
lc_status lc_connect(const char *host, const char *port, lc_client **out);

/*
 * TLS (PROTOCOL.md, "TLS"): the server accepts TLS on its TCP port and is known
 * by its fingerprint, the SHA-256 of its certificate in DER, which it prints at
 * start (`tls_sha256 <hex>`) and puts in every beacon (`tls_sha256`). The
 * certificate is self-signed: trust comes only from that pin. Host names,
 * authorities and dates are not checked.
 *
 * lc_connect_tls connects like lc_connect, then does a TLS handshake (TLS 1.2
 * at least, SNI "lanchat") bounded by LC_DEFAULT_TIMEOUT_MS, hashes the
 * certificate the server presented and compares it with the pin in constant
 * time before anything else is sent. fingerprint_hex is 64 hex digits, either
 * case; anything else is LC_ERR_INVALID_ARG, before any connection is made.
 * Statuses beyond lc_connect's:
 *   LC_ERR_FINGERPRINT  the certificate is not the pinned one (info->presented
 *                       says what it hashes to); the connection is closed, no
 *                       line was sent over it. Never fall back to plain TCP.
 *   LC_ERR_TLS          the handshake failed (info->detail says why), e.g. the
 *                       peer answered in plain: a server started with --no-tls,
 *                       or one at capacity (its server_full lines: try later)
 *   LC_ERR_TIMEOUT      the handshake did not finish in time
 * On LC_OK *out is a client that works exactly like a plain one: every call
 * below reads and writes through TLS (and may return LC_ERR_TLS when the TLS
 * stream breaks). info may be NULL; when given it is filled on every return
 * (with "" where unknown).
 */
#define LC_FINGERPRINT_HEX_LEN 64 /* SHA-256 as hex digits */

typedef struct lc_tls_info {
    char pinned[LC_FINGERPRINT_HEX_LEN + 1];    /* the pin, in lowercase */
    char presented[LC_FINGERPRINT_HEX_LEN + 1]; /* the server certificate's SHA-256,
                                                   lowercase; "" if none was seen */
    char detail[256];                           /* why the handshake failed, or "" */
} lc_tls_info;

lc_status lc_connect_tls(const char *host, const char *port, const char *fingerprint_hex,
                         lc_client **out, lc_tls_info *info);

/* 1 when hex is exactly LC_FINGERPRINT_HEX_LEN hex digits (either case), else 0. */
int lc_fingerprint_valid(const char *hex);

/* 1 when the client speaks TLS, 0 for plain connections (and NULL). */
int lc_is_tls(const lc_client *client);

/* Wrap an already connected stream socket (TCP or Unix domain). The client
 * takes ownership of fd and closes it in lc_close(), even on failure. */
lc_status lc_adopt_fd(int fd, lc_client **out);

/* Close the connection and free the client, including unread events. NULL is fine.
 * Over TLS it first sends close_notify when it can without waiting. */
void lc_close(lc_client *client);

/* The socket, to poll for POLLIN next to other descriptors. Events may already
 * be buffered, so after poll call lc_read_event with timeout 0 until it
 * returns LC_ERR_TIMEOUT. Over TLS the socket is not the whole story: OpenSSL
 * may hold bytes it has already decrypted, for which poll would never wake.
 * lc_read_event consumes those before it reports LC_ERR_TIMEOUT, so the loop
 * above stays correct; lc_pending tells whether anything is buffered. The other
 * way round, poll may wake for TLS records that carry no line (session
 * tickets): lc_read_event with timeout 0 then simply returns LC_ERR_TIMEOUT. */
int lc_fd(const lc_client *client);

/* 1 when lc_read_event can make progress without the socket becoming readable:
 * a queued event, a whole line in the client's buffer, or application data
 * OpenSSL has decrypted but not handed over yet (SSL_pending). Do not block in
 * poll while it returns 1. 0 otherwise (and for NULL). */
int lc_pending(const lc_client *client);

/* Bound for every wait inside the request calls below (default 5000 ms; -1 = none). */
void lc_set_timeout(lc_client *client, int timeout_ms);

/* Longest request line the server accepts: LC_DEFAULT_MAX_LINE, then what
 * welcome announced. lc_send refuses longer requests (LC_ERR_LINE_TOO_LONG). */
size_t lc_max_line(const lc_client *client);

/* Longest server line to accept (default LC_DEFAULT_MAX_SERVER_LINE). The read
 * buffer grows on demand up to this bound and no further; a longer line is
 * rejected with LC_ERR_LINE_TOO_LONG, never truncated. 0 is LC_ERR_INVALID_ARG. */
lc_status lc_set_max_server_line(lc_client *client, size_t max_line);

/* The code of the last `error` reply a request call returned LC_ERR_SERVER
 * for ("" if none). Owned by the client, valid until its next call. */
const char *lc_server_code(const lc_client *client);

/* ---- requests ------------------------------------------------------------ */

/* Send a request without waiting. The client assigns the next integer id
 * (req's id fields are ignored) and stores it in *id_out when id_out is not NULL. Its
 * reply arrives later through lc_read_event with re_int == that id. */
lc_status lc_send(lc_client *client, const lc_request *req, long long *id_out);

/* Send a request and wait for its reply, at most timeout_ms (-1 = forever).
 * Events that arrive meanwhile are queued and returned, in order, by the next
 * lc_read_event calls. The reply is stored in *reply (which may be NULL when
 * the caller does not need it; the caller must lc_event_free it otherwise):
 *   LC_OK          ok / welcome (or bye for quit)
 *   LC_ERR_SERVER  an error reply; reply->code says which
 *   LC_ERR_CLOSED  the server said bye (in *reply) or closed without a reply
 * After LC_ERR_TIMEOUT the reply, if it comes, is returned by lc_read_event. */
lc_status lc_request_wait(lc_client *client, const lc_request *req, int timeout_ms,
                          lc_event *reply);

/* Shorthands for lc_request_wait with the client's timeout. `reply` may be NULL. */
lc_status lc_hello(lc_client *client, const char *nick, const char *password,
                   lc_event *reply);
lc_status lc_join(lc_client *client, const char *room, lc_event *reply);
/* Private rooms (extension). key may be NULL. A room that will not have you
 * replies with code "not_invited" or "bad_key". */
lc_status lc_join_key(lc_client *client, const char *room, const char *key, lc_event *reply);
/* Read (all LC_MODE_KEEP, key NULL, clear_key 0) or change a room's modes. */
lc_status lc_mode(lc_client *client, const char *room, int invite_only, const char *key,
                  int clear_key, int topic_lock, lc_event *reply);
lc_status lc_invite(lc_client *client, const char *room, const char *nick, lc_event *reply);
lc_status lc_kick(lc_client *client, const char *room, const char *nick, const char *reason,
                  lc_event *reply);
lc_status lc_op(lc_client *client, const char *room, const char *nick, lc_event *reply);
lc_status lc_leave(lc_client *client, const char *room, lc_event *reply);
lc_status lc_say(lc_client *client, const char *room, const char *text, lc_event *reply);
lc_status lc_dm(lc_client *client, const char *to, const char *text, lc_event *reply);
lc_status lc_nick(lc_client *client, const char *nick, lc_event *reply);
/* The `status` request (named lc_set_status because lc_status is the result type). */
lc_status lc_set_status(lc_client *client, const char *status, const char *text,
                        lc_event *reply);
lc_status lc_ping(lc_client *client, lc_event *reply);
/* Accounts (extension): hello with a registered nick's secret (password and
 * secret may be NULL); register the current nick with a secret; release it. */
lc_status lc_hello_secret(lc_client *client, const char *nick, const char *password,
                          const char *secret, lc_event *reply);
lc_status lc_register(lc_client *client, const char *secret, lc_event *reply);
lc_status lc_unregister(lc_client *client, lc_event *reply);
/* Sends quit (reason may be NULL) and waits for the server's bye. */
lc_status lc_quit(lc_client *client, const char *reason, lc_event *reply);

/* Answer the server's `ping` event. Never gets a reply. */
lc_status lc_pong(lc_client *client);

/* ---- events -------------------------------------------------------------- */

/* The next event: a queued one, else one read from the socket, waiting at most
 * timeout_ms (0 = only what is already there, -1 = forever). *event is
 * overwritten (free it first if it holds one). Beyond the statuses above:
 * LC_ERR_LINE_TOO_LONG and LC_ERR_PROTOCOL drop only the offending line,
 * so reading may go on; LC_ERR_CLOSED comes after the server's bye. */
lc_status lc_read_event(lc_client *client, int timeout_ms, lc_event *event);

/* Free everything an event owns and zero it. Safe on a zeroed event. */
void lc_event_free(lc_event *event);

/* ---- codec (no I/O; used by the calls above and by the vector tests) ------ */

/* Parse one server line (without its LF) into *event. LC_ERR_PROTOCOL for
 * invalid UTF-8 or JSON, a non-object, or a known frame missing a field. */
lc_status lc_parse_event(const char *line, size_t len, lc_event *event);

/* Encode a request as one compact JSON object, without the line's LF, into a
 * new NUL-terminated string *out (free() it) of *len_out bytes. */
lc_status lc_encode_request(const lc_request *req, char **out, size_t *len_out);

const char *lc_strerror(lc_status status);
const char *lc_event_kind_name(lc_event_kind kind);
const char *lc_request_type_name(lc_request_type type);
/* LC_ERR_INVALID_ARG when name is not a request type. */
lc_status lc_request_type_from_name(const char *name, lc_request_type *out);

#ifdef __cplusplus
}
#endif

#endif /* LANCHAT_H */
