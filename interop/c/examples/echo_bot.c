/*
 * echo_bot HOST PORT [NICK [ROOM...]] - answers "!ping" with "pong".
 *
 * A message "!ping" in a room gets "pong" in that room; a direct "!ping"
 * gets a direct "pong". The bot sits in lobby plus any ROOMs given and runs
 * until the server closes the connection.
 */
#include "lanchat.h"

#include <stdio.h>
#include <string.h>

static int is_ping(const lc_event *ev)
{
    return strcmp(ev->text, "!ping") == 0;
}

/* Answer one event; returns the status of the answer (LC_OK if none was due). */
static lc_status answer(lc_client *bot, const lc_event *ev)
{
    if (ev->kind == LC_EV_MESSAGE && is_ping(ev))
        return lc_say(bot, ev->room, "pong", NULL);
    if (ev->kind == LC_EV_DIRECT && is_ping(ev))
        return lc_dm(bot, ev->from, "pong", NULL);
    if (ev->kind == LC_EV_PING)
        return lc_pong(bot);
    return LC_OK;
}

int main(int argc, char **argv)
{
    const char *nick = argc > 3 ? argv[3] : "echo_bot";
    lc_client *bot;
    lc_status rc;
    int i;

    if (argc < 3) {
        fputs("usage: echo_bot HOST PORT [NICK [ROOM...]]\n", stderr);
        return 2;
    }
    rc = lc_connect(argv[1], argv[2], &bot);
    if (rc != LC_OK) {
        fprintf(stderr, "echo_bot: connect: %s\n", lc_strerror(rc));
        return 1;
    }
    rc = lc_hello(bot, nick, NULL, NULL);
    for (i = 4; rc == LC_OK && i < argc; i++)
        rc = lc_join(bot, argv[i], NULL);
    if (rc != LC_OK) {
        fprintf(stderr, "echo_bot: %s %s\n", lc_strerror(rc), lc_server_code(bot));
        lc_close(bot);
        return 1;
    }
    for (;;) {
        lc_event ev;

        rc = lc_read_event(bot, -1, &ev);
        if (rc == LC_ERR_LINE_TOO_LONG || rc == LC_ERR_PROTOCOL)
            continue; /* only that line is lost */
        if (rc != LC_OK)
            break;
        rc = answer(bot, &ev);
        lc_event_free(&ev);
        /* A refused answer (rate_limited, ...) is not fatal; a dead socket is. */
        if (rc == LC_ERR_SERVER)
            fprintf(stderr, "echo_bot: answer refused: %s\n", lc_server_code(bot));
        else if (rc != LC_OK)
            break;
    }
    lc_close(bot);
    return rc == LC_ERR_CLOSED ? 0 : 1;
}
