/*
 * lanchat-c [--tls-fingerprint HEX] [--secret-file F] HOST PORT NICK - a line-oriented
 * lanchat client.
 * lanchat-c --help (or -h) prints the usage and the commands on stdout, exit 0;
 * bad arguments print one line on stderr and exit 2.
 *
 * With --tls-fingerprint it speaks TLS and accepts only the server whose
 * certificate hashes to HEX (the server's tls_sha256); a mismatch prints one
 * line and exits 2, before anything is sent.
 *
 * Multiplexes stdin and the server socket with poll(). A plain stdin line is
 * said to the current room (lobby until /join); /join ROOM [KEY], /leave ROOM,
 * /msg NICK TEXT, /nick NEW, /mode [+i|-i] [+k KEY|-k] [+t|-t], /invite NICK,
 * /kick NICK [REASON], /op NICK (the private-room commands act on the current
 * room), /register SECRET, /unregister, /quit [REASON] and /help are commands
 * ("//text" says "/text"); an unknown command gets one line naming it.
 *
 * --secret-file F: the first line of F is the secret of the registered nick,
 * sent with hello. Without it a registered nick is refused (nick_registered):
 * the error is printed and the client exits 1.
 * Every event is printed on one line. When stdin closes the client sends
 * quit, waits for the server's bye and exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include "lanchat.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INPUT_MAX 65536
#define ROOM_MAX 256

struct input {
    char buf[INPUT_MAX];
    size_t len;
    int overlong; /* skipping the rest of a line that did not fit */
};

struct session {
    lc_client *client;
    char room[ROOM_MAX];      /* where plain lines go */
    char prev_room[ROOM_MAX]; /* where they went before the pending /join */
    long long join_id;        /* id of that /join, 0 when none is pending */
    int done;                 /* the server said bye or closed */
    int bye_quit;             /* ... after our quit */
};

#define USAGE "usage: lanchat-c [--tls-fingerprint HEX] [--secret-file F] HOST PORT NICK"
#define MODE_USAGE "usage: /mode [+i|-i] [+k KEY|-k] [+t|-t]"
#define SECRET_MAX 1024 /* the server takes 8 to 256 bytes; longer is its to refuse */

static const char COMMANDS[] =
    "commands:\n"
    "  TEXT             say TEXT in the current room (//TEXT says /TEXT)\n"
    "  /join ROOM [KEY] join ROOM (with its key, if it has one) and make it the\n"
    "                   current room\n"
    "  /leave ROOM      leave ROOM\n"
    "  /msg NICK TEXT   send a direct message\n"
    "  /nick NEW        change your nick\n"
    "  /mode [+i|-i] [+k KEY|-k] [+t|-t]\n"
    "                   show or (operators) set the current room's modes:\n"
    "                   invite-only, key, topic lock\n"
    "  /invite NICK     let NICK join the current room once (operators)\n"
    "  /kick NICK [REASON]\n"
    "                   remove NICK from the current room (operators)\n"
    "  /op NICK         make NICK an operator of the current room (operators)\n"
    "  /register SECRET register your nick: from then on it needs SECRET\n"
    "                   (give it next time with --secret-file F)\n"
    "  /unregister      give your registered nick up\n"
    "  /quit [REASON]   leave the chat\n"
    "  /help            this list\n";

/* --help: the usage and the commands on stdout. 0 when it was all written. */
static int print_help(void)
{
    if (printf("%s\n\n"
               "Chat on a lanchat server: stdin lines are sent, events are printed.\n\n"
               "options:\n"
               "  --tls-fingerprint HEX  connect with TLS, accepting only the certificate\n"
               "                         whose SHA-256 is HEX (the server's tls_sha256)\n"
               "  --secret-file F        the first line of F is the secret of your registered\n"
               "                         nick (see /register), sent with hello\n"
               "  -h, --help             show this help and exit\n\n"
               "%s\n"
               "Exit status: 0 after end of input or /quit; 1 when the connection fails or\n"
               "the server ends it; 2 for bad arguments or a certificate that is not the\n"
               "pinned one.\n",
               USAGE, COMMANDS) < 0)
        return 0;
    return fflush(stdout) == 0;
}

static const char TLS_HINT[] =
    "the server accepts TLS only: run again with --tls-fingerprint HEX (the tls_sha256 it "
    "prints at start and puts in its beacons)";

/* Print text on the current line exactly as it was sent, except what would
 * break the line or drive the terminal: LF shows as \n, other control
 * characters as \xNN. A backslash is printed as it is (one stays one). */
static void put_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");

    for (; *p != '\0'; p++) {
        if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

static void print_ok(struct session *s, const lc_event *ev)
{
    size_t i;

    if (ev->re_is_int && ev->re_int == s->join_id)
        s->join_id = 0; /* the pending /join went through */
    if (strcmp(ev->cmd, "join") == 0 && ev->room != NULL) {
        printf("* joined %s (", ev->room);
        for (i = 0; i < ev->n_members; i++)
            printf("%s%s", i > 0 ? ", " : "", ev->members[i].nick);
        printf(")");
        if (ev->topic != NULL && ev->topic[0] != '\0') {
            printf(" topic: ");
            put_text(ev->topic);
        }
    } else if (strcmp(ev->cmd, "leave") == 0) {
        printf("* left %s", ev->room != NULL ? ev->room : "?");
    } else if (strcmp(ev->cmd, "nick") == 0) {
        printf("* you are now %s", ev->nick != NULL ? ev->nick : "?");
    } else if (strcmp(ev->cmd, "mode") == 0 && ev->has_modes) {
        printf("* modes of %s:%s%s%s%s", ev->room != NULL ? ev->room : "?",
               ev->invite_only ? " invite-only" : "", ev->has_key ? " key" : "",
               ev->invite_only || ev->has_key ? "" : " public",
               ev->topic_lock ? " topic-locked" : "");
    } else if (strcmp(ev->cmd, "invite") == 0 || strcmp(ev->cmd, "kick") == 0 ||
               strcmp(ev->cmd, "op") == 0) {
        printf("* %s %s in %s", strcmp(ev->cmd, "invite") == 0 ? "invited"
                                : strcmp(ev->cmd, "kick") == 0 ? "kicked"
                                                               : "made operator",
               ev->nick != NULL ? ev->nick : "?", ev->room != NULL ? ev->room : "?");
    } else if (strcmp(ev->cmd, "register") == 0 || strcmp(ev->cmd, "unregister") == 0) {
        printf("* %s %s", strcmp(ev->cmd, "register") == 0 ? "registered" : "unregistered",
               ev->nick != NULL ? ev->nick : "?");
    } else if (strcmp(ev->cmd, "say") == 0 || strcmp(ev->cmd, "dm") == 0) {
        return; /* the text is already on screen */
    } else {
        printf("* ok %s", ev->cmd);
    }
    putchar('\n');
}

/* Print one event on one line; answer the server's ping. */
static void handle_event(struct session *s, const lc_event *ev)
{
    switch (ev->kind) {
    case LC_EV_WELCOME:
        printf("* connected to %s as %s", ev->name != NULL ? ev->name : "lanchat",
               ev->nick);
        if (ev->motd != NULL && ev->motd[0] != '\0') {
            printf(" - ");
            put_text(ev->motd);
        }
        putchar('\n');
        break;
    case LC_EV_OK:
        print_ok(s, ev);
        break;
    case LC_EV_ERROR:
        if (s->join_id != 0 && ev->re_is_int && ev->re_int == s->join_id)
            strcpy(s->room, s->prev_room); /* the /join failed: back to where we were */
        printf("! %s: ", ev->code);
        put_text(ev->message);
        putchar('\n');
        break;
    case LC_EV_BYE:
        printf("* bye (%s) ", ev->reason);
        put_text(ev->message);
        putchar('\n');
        if (strcmp(ev->reason, "tls_required") == 0)
            fprintf(stderr, "lanchat-c: %s\n", TLS_HINT);
        s->done = 1;
        s->bye_quit = strcmp(ev->reason, "quit") == 0;
        break;
    case LC_EV_JOIN:
        printf("* %s joined %s\n", ev->nick, ev->room);
        break;
    case LC_EV_LEAVE:
        if (ev->kicked_by != NULL)
            printf("* %s was kicked from %s by %s\n", ev->nick, ev->room, ev->kicked_by);
        else
            printf("* %s left %s\n", ev->nick, ev->room);
        break;
    case LC_EV_MODE:
        printf("* %s set the modes of %s:%s%s%s%s\n", ev->by, ev->room,
               ev->invite_only ? " invite-only" : "", ev->has_key ? " key" : "",
               ev->invite_only || ev->has_key ? "" : " public",
               ev->topic_lock ? " topic-locked" : "");
        break;
    case LC_EV_INVITE:
        printf("* %s invited you to %s\n", ev->by, ev->room);
        break;
    case LC_EV_MESSAGE:
        printf("[%s] <%s> ", ev->room, ev->from);
        put_text(ev->text);
        putchar('\n');
        break;
    case LC_EV_DIRECT:
        printf("[dm] <%s -> %s> ", ev->from, ev->to);
        put_text(ev->text);
        putchar('\n');
        break;
    case LC_EV_NICK:
        printf("* %s is now %s\n", ev->old_nick, ev->new_nick);
        break;
    case LC_EV_PRESENCE:
        printf("* %s is %s", ev->nick, ev->status);
        if (ev->text != NULL) {
            printf(" (");
            put_text(ev->text);
            putchar(')');
        }
        putchar('\n');
        break;
    case LC_EV_TOPIC:
        printf("* %s set the topic of %s: ", ev->by, ev->room);
        put_text(ev->topic);
        putchar('\n');
        break;
    case LC_EV_QUIT:
        printf("* %s quit (", ev->nick);
        put_text(ev->reason);
        printf(")\n");
        break;
    case LC_EV_PING:
        if (lc_pong(s->client) != LC_OK)
            fprintf(stderr, "lanchat-c: cannot answer ping\n");
        break;
    case LC_EV_UNKNOWN:
        printf("? ");
        put_text(ev->raw);
        putchar('\n');
        break;
    }
    if (fflush(stdout) != 0)
        s->done = 1;
}

/* Print every event already available. LC_OK while the session goes on. */
static lc_status drain_events(struct session *s)
{
    for (;;) {
        lc_event ev;
        lc_status rc = lc_read_event(s->client, 0, &ev);

        if (rc == LC_OK) {
            handle_event(s, &ev);
            lc_event_free(&ev);
            continue;
        }
        if (rc == LC_ERR_TIMEOUT)
            return LC_OK;
        if (rc == LC_ERR_LINE_TOO_LONG || rc == LC_ERR_PROTOCOL) {
            fprintf(stderr, "lanchat-c: skipped a server line: %s\n", lc_strerror(rc));
            continue;
        }
        return rc;
    }
}

static void send_request(struct session *s, const lc_request *req)
{
    long long id = 0;
    lc_status rc = lc_send(s->client, req, &id);

    if (rc != LC_OK) {
        fprintf(stderr, "lanchat-c: %s failed: %s\n", lc_request_type_name(req->type),
                lc_strerror(rc));
        return;
    }
    /* Lines typed after /join go to the new room at once: the server handles
     * requests in order, so they arrive after the join. */
    if (req->type == LC_REQ_JOIN && strlen(req->room) < sizeof s->room) {
        strcpy(s->prev_room, s->room);
        strcpy(s->room, req->room);
        s->join_id = id;
    }
}

/* Split "WORD REST" in place: returns REST (or NULL when there is no WORD). */
static char *split_word(char *s, char **word)
{
    char *space;

    while (*s == ' ')
        s++;
    if (*s == '\0')
        return NULL;
    *word = s;
    space = strchr(s, ' ');
    if (space == NULL)
        return s + strlen(s);
    *space = '\0';
    return space + 1;
}

/* The fields of a mode request from "+i -i +k KEY -k +t -t" (none: read the
 * modes), into req. 0 for anything else. Modifies s. */
static int parse_mode(char *s, lc_request *req)
{
    char *word = NULL;

    req->invite_only = LC_MODE_KEEP;
    req->topic_lock = LC_MODE_KEEP;
    while ((s = split_word(s, &word)) != NULL) {
        if (strcmp(word, "+i") == 0 || strcmp(word, "-i") == 0) {
            req->invite_only = word[0] == '+' ? LC_MODE_ON : LC_MODE_OFF;
        } else if (strcmp(word, "+t") == 0 || strcmp(word, "-t") == 0) {
            req->topic_lock = word[0] == '+' ? LC_MODE_ON : LC_MODE_OFF;
        } else if (strcmp(word, "-k") == 0) {
            req->clear_key = 1;
            req->key = NULL;
        } else if (strcmp(word, "+k") == 0) {
            s = split_word(s, &word);
            if (s == NULL)
                return 0; /* +k needs its KEY */
            req->key = word;
            req->clear_key = 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* The name of the command in line ("/join ROOM" -> "join"), in name. */
static void command_name(const char *line, char *name, size_t size)
{
    size_t len = strcspn(line + 1, " ");

    if (len >= size)
        len = size - 1;
    memcpy(name, line + 1, len);
    name[len] = '\0';
}

/* Returns 1 when the user asked to quit (the reason, if any, in *quit_reason). */
static int handle_input_line(struct session *s, char *line, char **quit_reason)
{
    lc_request req;
    char *arg = NULL;
    char *rest;
    char name[33];

    memset(&req, 0, sizeof req);
    if (line[0] == '\0')
        return 0;
    if (line[0] != '/' || line[1] == '/') {
        req.type = LC_REQ_SAY;
        req.room = s->room;
        req.text = line[0] == '/' ? line + 1 : line;
        send_request(s, &req);
        return 0;
    }
    command_name(line, name, sizeof name);
    if (strcmp(name, "quit") == 0) {
        rest = line + 5;
        while (*rest == ' ')
            rest++;
        *quit_reason = *rest != '\0' ? rest : NULL;
        return 1;
    }
    if (strcmp(name, "help") == 0) {
        fputs(COMMANDS, stderr);
        return 0;
    }
    if (strcmp(name, "join") == 0) {
        rest = split_word(line + 5, &arg);
        if (rest == NULL) {
            fputs("lanchat-c: usage: /join ROOM [KEY]\n", stderr);
            return 0;
        }
        while (*rest == ' ')
            rest++;
        req.type = LC_REQ_JOIN;
        req.room = arg;
        req.key = *rest != '\0' ? rest : NULL; /* the rest of the line, as the Python CLI */
    } else if (strcmp(name, "mode") == 0) {
        if (!parse_mode(line + 5, &req)) {
            fputs("lanchat-c: " MODE_USAGE "\n", stderr);
            return 0;
        }
        req.type = LC_REQ_MODE;
        req.room = s->room;
    } else if (strcmp(name, "invite") == 0 || strcmp(name, "op") == 0) {
        if (split_word(line + 1 + strlen(name), &arg) == NULL) {
            fprintf(stderr, "lanchat-c: usage: /%s NICK\n", name);
            return 0;
        }
        req.type = strcmp(name, "op") == 0 ? LC_REQ_OP : LC_REQ_INVITE;
        req.room = s->room;
        req.nick = arg;
    } else if (strcmp(name, "kick") == 0) {
        rest = split_word(line + 5, &arg);
        if (rest == NULL) {
            fputs("lanchat-c: usage: /kick NICK [REASON]\n", stderr);
            return 0;
        }
        while (*rest == ' ')
            rest++;
        req.type = LC_REQ_KICK;
        req.room = s->room;
        req.nick = arg;
        req.reason = *rest != '\0' ? rest : NULL;
    } else if (strcmp(name, "register") == 0) {
        rest = line + 9;
        while (*rest == ' ')
            rest++;
        if (*rest == '\0') {
            fputs("lanchat-c: usage: /register SECRET\n", stderr);
            return 0;
        }
        req.type = LC_REQ_REGISTER;
        req.secret = rest;
    } else if (strcmp(name, "unregister") == 0) {
        req.type = LC_REQ_UNREGISTER;
    } else if (strcmp(name, "leave") == 0) {
        if (split_word(line + 6, &arg) == NULL) {
            fputs("lanchat-c: usage: /leave ROOM\n", stderr);
            return 0;
        }
        req.type = LC_REQ_LEAVE;
        req.room = arg;
    } else if (strcmp(name, "nick") == 0) {
        if (split_word(line + 5, &arg) == NULL) {
            fputs("lanchat-c: usage: /nick NEW\n", stderr);
            return 0;
        }
        req.type = LC_REQ_NICK;
        req.nick = arg;
    } else if (strcmp(name, "msg") == 0) {
        rest = split_word(line + 4, &arg);
        if (rest == NULL || rest[0] == '\0') {
            fputs("lanchat-c: usage: /msg NICK TEXT\n", stderr);
            return 0;
        }
        req.type = LC_REQ_DM;
        req.to = arg;
        req.text = rest;
    } else {
        fprintf(stderr, "lanchat-c: unknown command /%s (/help lists the commands)\n", name);
        return 0;
    }
    send_request(s, &req);
    return 0;
}

/* Read what stdin has and act on complete lines. Returns 1 on EOF or /quit
 * (with the /quit reason, pointing into in, in *quit_reason), -1 on a read
 * error, 0 otherwise. */
static int handle_input(struct session *s, struct input *in, char **quit_reason)
{
    ssize_t got = read(STDIN_FILENO, in->buf + in->len, sizeof in->buf - in->len);
    size_t start = 0;
    size_t i;

    if (got < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (got == 0)
        return 1; /* a last line without LF is dropped, like the protocol does */
    in->len += (size_t)got;
    for (i = 0; i < in->len; i++) {
        if (in->buf[i] != '\n')
            continue;
        in->buf[i] = '\0';
        if (i > start && in->buf[i - 1] == '\r')
            in->buf[i - 1] = '\0';
        if (in->overlong)
            in->overlong = 0;
        else if (handle_input_line(s, in->buf + start, quit_reason))
            return 1;
        start = i + 1;
    }
    memmove(in->buf, in->buf + start, in->len - start);
    in->len -= start;
    if (in->len == sizeof in->buf) {
        fputs("lanchat-c: input line too long, ignored\n", stderr);
        in->len = 0;
        in->overlong = 1;
    }
    return 0;
}

/* Send quit (reason may be NULL), print what arrives up to the bye. */
static int finish(struct session *s, const char *reason)
{
    lc_event bye;
    lc_status rc = lc_quit(s->client, reason, &bye);

    /* Events queued while waiting come first; after the bye the socket
     * closes, so the drain ends with LC_ERR_CLOSED, which is expected. */
    (void)drain_events(s);
    if (bye.kind == LC_EV_BYE)
        handle_event(s, &bye);
    lc_event_free(&bye);
    if (rc != LC_OK) {
        fprintf(stderr, "lanchat-c: quit: %s\n", lc_strerror(rc));
        return 1;
    }
    return 0;
}

static int run(struct session *s)
{
    struct input *in = calloc(1, sizeof *in);
    int status = 1;

    if (in == NULL) {
        fputs("lanchat-c: out of memory\n", stderr);
        return 1;
    }
    for (;;) {
        struct pollfd fds[2];
        lc_status rc = drain_events(s);
        int n;

        if (s->done) {
            status = s->bye_quit ? 0 : 1;
            break;
        }
        if (rc != LC_OK) {
            fprintf(stderr, "lanchat-c: %s\n", lc_strerror(rc));
            break;
        }
        fds[0].fd = lc_fd(s->client);
        fds[0].events = POLLIN;
        fds[1].fd = STDIN_FILENO;
        fds[1].events = POLLIN;
        fds[0].revents = fds[1].revents = 0;
        /* drain_events read until nothing was left, OpenSSL's decrypted bytes
         * included; should anything still be buffered, poll must not block,
         * since the socket would not wake it for those bytes. */
        n = poll(fds, 2, lc_pending(s->client) ? 0 : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("lanchat-c: poll");
            break;
        }
        if (fds[1].revents != 0) {
            char *quit_reason = NULL;
            int r = handle_input(s, in, &quit_reason);

            if (r < 0) {
                perror("lanchat-c: stdin");
                break;
            }
            if (r > 0) {
                status = finish(s, quit_reason);
                break;
            }
        }
    }
    free(in);
    return status;
}

static int valid_port(const char *s)
{
    char *end;
    long port;

    errno = 0;
    port = strtol(s, &end, 10);
    return errno == 0 && *s != '\0' && *end == '\0' && port > 0 && port <= 65535;
}

struct options {
    const char *fingerprint; /* NULL: plain TCP */
    const char *secret_file; /* NULL: no secret sent with hello */
    const char *host;
    const char *port;
    const char *nick;
};

enum parsed { ARGS_RUN, ARGS_HELP, ARGS_BAD };

/* One line on stderr for bad arguments: why, and the usage. Returns ARGS_BAD. */
static enum parsed bad_args(const char *why, const char *what)
{
    fprintf(stderr, "lanchat-c: %s%s; " USAGE " (--help for more)\n", why,
            what != NULL ? what : "");
    return ARGS_BAD;
}

/* [--tls-fingerprint HEX | --tls-fingerprint=HEX] [--secret-file F |
 * --secret-file=F] HOST PORT NICK, options
 * anywhere before "--"; -h or --help alone asks for help. ARGS_BAD after
 * printing one line saying why. */
static enum parsed parse_args(int argc, char **argv, struct options *o)
{
    const char *positional[3];
    size_t n = 0;
    int options_done = 0;
    int i;

    memset(o, 0, sizeof *o);
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = 1;
        } else if (!options_done && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            return ARGS_HELP;
        } else if (!options_done && strcmp(arg, "--tls-fingerprint") == 0) {
            if (i + 1 >= argc)
                return bad_args("--tls-fingerprint needs a value", NULL);
            o->fingerprint = argv[++i];
        } else if (!options_done && strncmp(arg, "--tls-fingerprint=", 18) == 0) {
            o->fingerprint = arg + 18;
        } else if (!options_done && strcmp(arg, "--secret-file") == 0) {
            if (i + 1 >= argc)
                return bad_args("--secret-file needs a value", NULL);
            o->secret_file = argv[++i];
        } else if (!options_done && strncmp(arg, "--secret-file=", 14) == 0) {
            o->secret_file = arg + 14;
        } else if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            return bad_args("unknown option ", arg);
        } else if (n < 3) {
            positional[n++] = arg;
        } else {
            return bad_args("unexpected argument ", arg);
        }
    }
    if (n != 3)
        return bad_args("expected HOST PORT NICK", NULL);
    if (!valid_port(positional[1]))
        return bad_args("invalid port ", positional[1]);
    if (positional[2][0] == '\0')
        return bad_args("empty nick", NULL);
    if (o->fingerprint != NULL && !lc_fingerprint_valid(o->fingerprint))
        return bad_args("--tls-fingerprint wants 64 hex digits (the server's tls_sha256)", NULL);
    o->host = positional[0];
    o->port = positional[1];
    o->nick = positional[2];
    return ARGS_RUN;
}

/* The first line of path, without its line ending, into secret. 0 after
 * printing one line (with the usage) when it cannot be read or is empty. */
static int read_secret(const char *path, char *secret, size_t size)
{
    FILE *f = fopen(path, "r");
    const char *why = NULL;
    int got;

    if (f == NULL) {
        fprintf(stderr, "lanchat-c: cannot read secret file %s: %s; " USAGE " (--help for more)\n",
                path, strerror(errno));
        return 0;
    }
    got = fgets(secret, (int)size, f) != NULL;
    if (!got)
        why = ferror(f) ? "read error" : "it is empty";
    if (fclose(f) != 0 && why == NULL)
        why = strerror(errno);
    if (why == NULL) {
        secret[strcspn(secret, "\r\n")] = '\0';
        if (secret[0] == '\0')
            why = "its first line is empty";
    }
    if (why != NULL) {
        fprintf(stderr, "lanchat-c: cannot read secret file %s: %s; " USAGE " (--help for more)\n",
                path, why);
        return 0;
    }
    return 1;
}

/* Connect, in plain or TLS. Returns the exit status on failure, -1 on success. */
static int open_connection(const struct options *o, lc_client **client)
{
    lc_tls_info info;
    lc_status rc;

    memset(&info, 0, sizeof info);
    if (o->fingerprint == NULL)
        rc = lc_connect(o->host, o->port, client);
    else
        rc = lc_connect_tls(o->host, o->port, o->fingerprint, client, &info);
    if (rc == LC_OK)
        return -1;
    if (rc == LC_ERR_FINGERPRINT) {
        /* One line, and exit 2: a wrong pin is the user's to fix, never retried. */
        fprintf(stderr,
                "lanchat-c: %s:%s: certificate fingerprint mismatch: pinned %s, server has %s\n",
                o->host, o->port, info.pinned,
                info.presented[0] != '\0' ? info.presented : "no certificate");
        return 2;
    }
    if (rc == LC_ERR_TLS && info.detail[0] != '\0')
        fprintf(stderr, "lanchat-c: %s:%s: TLS handshake failed: %s\n", o->host, o->port,
                info.detail);
    else
        fprintf(stderr, "lanchat-c: %s:%s: %s\n", o->host, o->port, lc_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    struct options opts;
    struct session s;
    lc_event welcome;
    lc_status rc;
    int status;
    char secret[SECRET_MAX];

    switch (parse_args(argc, argv, &opts)) {
    case ARGS_RUN:
        break;
    case ARGS_HELP:
        return print_help() ? 0 : 1;
    case ARGS_BAD:
        return 2;
    }
    if (opts.secret_file != NULL && !read_secret(opts.secret_file, secret, sizeof secret))
        return 2;
    memset(&s, 0, sizeof s);
    strcpy(s.room, "lobby");
    status = open_connection(&opts, &s.client);
    if (status >= 0)
        return status;
    rc = lc_hello_secret(s.client, opts.nick, NULL, opts.secret_file != NULL ? secret : NULL,
                         &welcome);
    memset(secret, 0, sizeof secret);
    if (rc == LC_OK) {
        if (welcome.n_rooms > 0 && strlen(welcome.rooms[0]) < sizeof s.room)
            strcpy(s.room, welcome.rooms[0]);
        handle_event(&s, &welcome);
        status = run(&s);
    } else {
        /* Before a bye, the server may have sent an error without re (it is
         * queued): tls_required comes that way, on the first byte. */
        (void)drain_events(&s);
        if (!s.done && (welcome.kind == LC_EV_ERROR || welcome.kind == LC_EV_BYE))
            handle_event(&s, &welcome);
        fprintf(stderr, "lanchat-c: hello: %s\n", lc_strerror(rc));
        status = 1;
    }
    lc_event_free(&welcome);
    lc_close(s.client);
    return status;
}
