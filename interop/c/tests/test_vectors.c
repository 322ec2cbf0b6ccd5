/*
 * test_vectors.c - the shared vectors in interop/vectors against the C codec.
 *
 * requests.jsonl: building each `request` with lc_encode_request gives back
 * an object equal to it. server.jsonl and server_future.jsonl: every line
 * parses with lc_parse_event into the kind its `type` (or `expect`) names.
 * A few hand-written cases cover what the parser and encoder must refuse.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"
#include "lanchat.h"

#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*vector_fn)(struct checks *t, const cJSON *vector);

static const char *string_of(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Report one named check, with a detail line when it fails. */
static void expect(struct checks *t, int ok, const char *file, const char *name,
                   const char *detail)
{
    char what[512];

    snprintf(what, sizeof what, "%s %s: %s", file, name != NULL ? name : "?", detail);
    check_at(t, ok, what, __FILE__, __LINE__);
}

/* Run fn on every line of dir/file. A missing or unreadable file fails. */
static void for_each_vector(struct checks *t, const char *dir, const char *file, vector_fn fn)
{
    char path[4096];
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int count = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, file);
    f = fopen(path, "r");
    if (!CHECK(t, f != NULL)) {
        printf("  cannot open %s (set LANCHAT_VECTORS_DIR)\n", path);
        return;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *vector = cJSON_ParseWithLength(line, (size_t)n);

        if (vector == NULL) {
            expect(t, 0, file, line, "not JSON");
            continue;
        }
        fn(t, vector);
        cJSON_Delete(vector);
        count++;
    }
    CHECK(t, !ferror(f));
    free(line);
    CHECK(t, fclose(f) == 0);
    expect(t, count > 0, file, "(file)", "has vectors");
}

/* The exact digits of the integer id in a raw request line: cJSON keeps only
 * a double, which cannot hold every i64/u64. */
static int raw_id_digits(const char *line, char *out, size_t size)
{
    const char *p = line;

    while ((p = strstr(p, "\"id\"")) != NULL) {
        const char *q = p + 4;
        size_t n = 0;

        p = q;
        if (q - 5 >= line && q[-5] == '\\')
            continue; /* "id" inside a string value */
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q++ != ':')
            continue;
        while (*q == ' ' || *q == '\t')
            q++;
        while ((n == 0 && q[n] == '-') || (q[n] >= '0' && q[n] <= '9'))
            n++;
        if (n == 0 || n >= size)
            return 0;
        memcpy(out, q, n);
        out[n] = '\0';
        return 1;
    }
    return 0;
}

/* Turn a canonical request object into an lc_request (strings borrowed). */
static int request_from_json(const cJSON *obj, const char *raw_line, lc_request *req,
                             char *digits, size_t digits_size)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    const cJSON *num;

    memset(req, 0, sizeof *req);
    if (lc_request_type_from_name(string_of(obj, "type"), &req->type) != LC_OK)
        return 0;
    if (cJSON_IsString(id)) {
        req->id_str = id->valuestring;
    } else if (cJSON_IsNumber(id)) {
        cJSON *check;
        int same;

        if (!raw_id_digits(raw_line, digits, digits_size))
            return 0;
        check = cJSON_Parse(digits);
        same = check != NULL && cJSON_Compare(check, id, 1);
        cJSON_Delete(check);
        if (!same)
            return 0;
        req->id_int = digits;
    }
    req->nick = string_of(obj, "nick");
    req->client = string_of(obj, "client");
    req->password = string_of(obj, "password");
    req->room = string_of(obj, "room");
    req->text = string_of(obj, "text");
    req->to = string_of(obj, "to");
    req->status = string_of(obj, "status");
    req->topic = string_of(obj, "topic");
    req->before = string_of(obj, "before");
    req->after = string_of(obj, "after");
    req->reason = string_of(obj, "reason");
    req->secret = string_of(obj, "secret");
    req->key = string_of(obj, "key");
    /* "key": null (mode) removes the key. */
    req->clear_key = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "key"));
    num = cJSON_GetObjectItemCaseSensitive(obj, "invite_only");
    if (cJSON_IsBool(num))
        req->invite_only = cJSON_IsTrue(num) ? LC_MODE_ON : LC_MODE_OFF;
    num = cJSON_GetObjectItemCaseSensitive(obj, "topic_lock");
    if (cJSON_IsBool(num))
        req->topic_lock = cJSON_IsTrue(num) ? LC_MODE_ON : LC_MODE_OFF;
    num = cJSON_GetObjectItemCaseSensitive(obj, "autojoin");
    if (cJSON_IsBool(num))
        req->autojoin = cJSON_IsTrue(num) ? LC_MODE_ON : LC_MODE_OFF;
    num = cJSON_GetObjectItemCaseSensitive(obj, "protocol");
    if (cJSON_IsNumber(num))
        req->protocol = num->valueint;
    num = cJSON_GetObjectItemCaseSensitive(obj, "limit");
    if (cJSON_IsNumber(num))
        req->limit = num->valueint;
    return 1;
}

static void request_vector(struct checks *t, const cJSON *vector)
{
    const char *name = string_of(vector, "name");
    const char *raw_line = string_of(vector, "line");
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(vector, "request");
    lc_request req;
    char digits[64];
    char *line = NULL;
    cJSON *got = NULL;
    lc_status rc;

    if (!cJSON_IsObject(want) || raw_line == NULL ||
        !request_from_json(want, raw_line, &req, digits, sizeof digits)) {
        expect(t, 0, "requests.jsonl", name, "vector not understood");
        return;
    }
    rc = lc_encode_request(&req, &line, NULL);
    if (rc == LC_OK)
        got = cJSON_Parse(line);
    expect(t, rc == LC_OK && got != NULL && cJSON_Compare(got, want, 1), "requests.jsonl", name,
           line != NULL ? line : lc_strerror(rc));
    cJSON_Delete(got);
    free(line);
}

/* Spot checks that fields land where the header says. */
static void check_fields(struct checks *t, const char *name, const lc_event *ev)
{
    if (strcmp(name, "welcome") == 0) {
        expect(t, ev->re_is_int && ev->re_int == 1 && strcmp(ev->re, "1") == 0 &&
                      ev->protocol == 1 && strcmp(ev->nick, "ann") == 0 &&
                      strcmp(ev->name, "office") == 0 && ev->n_rooms == 1 &&
                      strcmp(ev->rooms[0], "lobby") == 0 && ev->has_limits &&
                      ev->limits.max_line == 16384 && ev->limits.max_text == 4096 &&
                      ev->limits.ping_interval_s == 60,
               "server.jsonl", name, "welcome fields");
    } else if (strcmp(name, "welcome_with_budgets") == 0) {
        expect(t, ev->has_limits && ev->limits.event_burst == 200 &&
                      ev->limits.events_per_sec == 2 &&
                      ev->limits.reply_bytes_burst == 8388608 &&
                      ev->limits.reply_bytes_per_sec == 1048576,
               "server.jsonl", name, "budget limits");
    } else if (strcmp(name, "error_rate_limited_retry_after") == 0) {
        expect(t, strcmp(ev->code, "rate_limited") == 0 && ev->has_retry_after &&
                      ev->retry_after_ms == 500,
               "server.jsonl", name, "retry_after_ms");
    } else if (strcmp(name, "error_rate_limited") == 0) {
        expect(t, !ev->has_retry_after, "server.jsonl", name, "no retry_after_ms");
    } else if (strcmp(name, "ok_join") == 0) {
        expect(t, strcmp(ev->cmd, "join") == 0 && strcmp(ev->room, "rust") == 0 &&
                      ev->n_members == 2 && ev->members[0].text == NULL &&
                      strcmp(ev->members[1].nick, "bob") == 0 &&
                      strcmp(ev->members[1].text, "lunch") == 0,
               "server.jsonl", name, "members");
    } else if (strcmp(name, "ok_rooms") == 0) {
        expect(t, ev->n_room_list == 2 && strcmp(ev->room_list[1].name, "rust") == 0 &&
                      ev->room_list[1].members == 2 && ev->n_rooms == 0,
               "server.jsonl", name, "room list");
        expect(t, ev->next == NULL, "server.jsonl", name, "no next on the last page");
    } else if (strcmp(name, "ok_rooms_page") == 0) {
        expect(t, ev->n_room_list == 2 && strcmp(ev->room_list[0].name, "sales") == 0 &&
                      ev->next != NULL && strcmp(ev->next, "support") == 0,
               "server.jsonl", name, "a page and its next");
    } else if (strcmp(name, "welcome_with_rooms_page") == 0) {
        expect(t, ev->has_limits && ev->limits.rooms_page == 500, "server.jsonl", name,
               "rooms_page limit");
    } else if (strcmp(name, "ok_history") == 0) {
        expect(t, ev->n_messages == 2 && ev->messages[1].kind == LC_EV_MESSAGE &&
                      strcmp(ev->messages[1].text, "yes\nit is great") == 0 &&
                      ev->messages[1].ts == 1763769601456LL,
               "server.jsonl", name, "messages");
    } else if (strcmp(name, "ok_say") == 0) {
        expect(t, ev->has_ts && ev->ts == 1763769602789LL &&
                      strcmp(ev->id, "019aa8dc-52e5-7538-92ae-5fea0b73a011") == 0,
               "server.jsonl", name, "id and ts");
    } else if (strcmp(name, "ok_dm") == 0) {
        expect(t, !ev->has_away && ev->away_text == NULL, "server.jsonl", name, "not away");
    } else if (strcmp(name, "ok_dm_away") == 0) {
        expect(t, ev->has_away && ev->away && strcmp(ev->away_text, "lunch") == 0 &&
                      strcmp(ev->to, "bob") == 0,
               "server.jsonl", name, "away and away_text");
    } else if (strcmp(name, "ok_dm_away_no_text") == 0) {
        expect(t, ev->has_away && ev->away && ev->away_text == NULL, "server.jsonl", name,
               "away without text");
    } else if (strcmp(name, "ok_ping_string_re") == 0) {
        expect(t, !ev->re_is_int && strcmp(ev->re, "p-1") == 0, "server.jsonl", name, "re");
    } else if (strcmp(name, "ok_ping_u64_re") == 0) {
        expect(t, !ev->re_is_int && ev->re != NULL, "server.jsonl", name, "re");
    } else if (strcmp(name, "error_with_re") == 0) {
        expect(t, strcmp(ev->code, "not_in_room") == 0 && ev->re_int == 8, "server.jsonl",
               name, "code and re");
    } else if (strcmp(name, "event_nick") == 0) {
        expect(t, strcmp(ev->old_nick, "ann") == 0 && strcmp(ev->new_nick, "annie") == 0,
               "server.jsonl", name, "old and new");
    } else if (strcmp(name, "event_direct") == 0) {
        expect(t, strcmp(ev->from, "bob") == 0 && strcmp(ev->to, "ann") == 0 &&
                      strcmp(ev->text, "sure, call me") == 0,
               "server.jsonl", name, "direct fields");
    } else if (strcmp(name, "error_tls_required") == 0) {
        /* Sent on connect to a plain client of a --require-tls server: no re. */
        expect(t, strcmp(ev->code, "tls_required") == 0 && ev->re == NULL &&
                      ev->message != NULL,
               "server.jsonl", name, "code, no re");
    } else if (strcmp(name, "bye_tls_required") == 0) {
        expect(t, strcmp(ev->reason, "tls_required") == 0 && ev->re == NULL, "server.jsonl",
               name, "reason");
    } else if (strcmp(name, "ok_join_with_operator") == 0) {
        expect(t, ev->n_members == 2 && ev->members[0].op == 1 && ev->members[1].op == 0,
               "server.jsonl", name, "operator flag");
    } else if (strcmp(name, "ok_mode") == 0 || strcmp(name, "event_mode") == 0) {
        expect(t, ev->has_modes && ev->invite_only && ev->has_key && !ev->topic_lock &&
                      strcmp(ev->room, "ops") == 0,
               "server.jsonl", name, "modes");
    } else if (strcmp(name, "event_invite") == 0) {
        expect(t, ev->kind == LC_EV_INVITE && strcmp(ev->by, "ann") == 0, "server.jsonl", name,
               "invite fields");
    } else if (strcmp(name, "event_leave_kicked") == 0) {
        expect(t, ev->kind == LC_EV_LEAVE && strcmp(ev->kicked_by, "ann") == 0 &&
                      strcmp(ev->reason, "spam") == 0,
               "server.jsonl", name, "kicked_by and reason");
    } else if (strcmp(name, "event_leave") == 0) {
        expect(t, ev->kicked_by == NULL, "server.jsonl", name, "no kicked_by");
    } else if (strcmp(name, "event_topic") == 0) {
        expect(t, strcmp(ev->by, "bob") == 0 && strcmp(ev->topic, "Rust 1.95 is out") == 0,
               "server.jsonl", name, "topic fields");
    }
}

static void parse_vector(struct checks *t, const cJSON *vector, const char *file,
                         const char *want_kind)
{
    const char *name = string_of(vector, "name");
    const char *line = string_of(vector, "line");
    lc_event ev;
    lc_status rc;
    char detail[256];

    if (line == NULL || want_kind == NULL) {
        expect(t, 0, file, name, "vector not understood");
        return;
    }
    rc = lc_parse_event(line, strlen(line), &ev);
    snprintf(detail, sizeof detail, "want kind %s, got %s (%s)", want_kind,
             rc == LC_OK ? lc_event_kind_name(ev.kind) : "nothing", lc_strerror(rc));
    expect(t, rc == LC_OK && strcmp(lc_event_kind_name(ev.kind), want_kind) == 0 &&
                  ev.raw != NULL && strcmp(ev.raw, line) == 0,
           file, name, detail);
    if (rc == LC_OK && strcmp(file, "server.jsonl") == 0)
        check_fields(t, name, &ev);
    lc_event_free(&ev);
}

static void server_vector(struct checks *t, const cJSON *vector)
{
    const char *line = string_of(vector, "line");
    cJSON *frame = line != NULL ? cJSON_Parse(line) : NULL;

    parse_vector(t, vector, "server.jsonl", string_of(frame, "type"));
    cJSON_Delete(frame);
}

static void future_vector(struct checks *t, const cJSON *vector)
{
    const char *want = string_of(vector, "expect");

    if (want != NULL && strcmp(want, "ignore") == 0)
        want = "unknown";
    parse_vector(t, vector, "server_future.jsonl", want);
}

static lc_status parse_only(const char *line)
{
    lc_event ev;
    lc_status rc = lc_parse_event(line, strlen(line), &ev);

    lc_event_free(&ev);
    return rc;
}

static lc_status encode_only(const lc_request *req)
{
    char *line = NULL;
    lc_status rc = lc_encode_request(req, &line, NULL);

    free(line);
    return rc;
}

static void refusals(struct checks *t)
{
    lc_request req;

    CHECK(t, parse_only("{\"type\":\"ping\"") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("[1,2]") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"cmd\":\"ping\"}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":7}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":\"message\",\"id\":\"x\",\"ts\":1,\"room\":\"r\","
                        "\"from\":\"f\"}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":\"message\",\"id\":\"x\",\"ts\":1.5,\"room\":\"r\","
                        "\"from\":\"f\",\"text\":\"t\"}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":\"join\",\"room\":\"r\",\"nick\":5}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":\"ok\",\"cmd\":\"ping\",\"re\":true}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":\"ping\",\"x\":\"\xc3\x28\"}") == LC_ERR_PROTOCOL);
    CHECK(t, parse_only("{\"type\":\"ok\",\"cmd\":\"ping\",\"re\":null}") == LC_OK);

    memset(&req, 0, sizeof req);
    req.type = LC_REQ_SAY;
    req.room = "lobby";
    CHECK(t, encode_only(&req) == LC_ERR_INVALID_ARG); /* no text */
    req.text = "hi";
    CHECK(t, encode_only(&req) == LC_OK);
    req.id_int = "01";
    CHECK(t, encode_only(&req) == LC_ERR_INVALID_ARG);
    req.id_int = "18446744073709551616";
    CHECK(t, encode_only(&req) == LC_ERR_INVALID_ARG);
    req.id_int = "-9223372036854775809";
    CHECK(t, encode_only(&req) == LC_ERR_INVALID_ARG);
    req.id_int = "-9223372036854775808";
    CHECK(t, encode_only(&req) == LC_OK);
    req.id_int = "4x";
    CHECK(t, encode_only(&req) == LC_ERR_INVALID_ARG);
}

int main(void)
{
    struct checks t = {0, 0};
    const char *dir = getenv("LANCHAT_VECTORS_DIR");

    if (dir == NULL || dir[0] == '\0')
        dir = "../vectors";
    for_each_vector(&t, dir, "requests.jsonl", request_vector);
    for_each_vector(&t, dir, "server.jsonl", server_vector);
    for_each_vector(&t, dir, "server_future.jsonl", future_vector);
    refusals(&t);
    return finish_checks(&t, "vectors");
}
