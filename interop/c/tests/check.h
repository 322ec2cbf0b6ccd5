/* check.h - the tiny assertion counter shared by the C client's tests. */
#ifndef LANCHAT_TEST_CHECK_H
#define LANCHAT_TEST_CHECK_H

#include <stdio.h>

struct checks {
    int passed;
    int failed;
};

/* Count one check; print it when it fails. Returns ok, for early exits. */
static inline int check_at(struct checks *t, int ok, const char *what, const char *file,
                           int line)
{
    if (ok) {
        t->passed++;
    } else {
        t->failed++;
        printf("FAIL %s:%d: %s\n", file, line, what);
        fflush(stdout);
    }
    return ok;
}

#define CHECK(t, cond) check_at((t), (cond) ? 1 : 0, #cond, __FILE__, __LINE__)

/* The summary line tests/run.sh adds up. */
static inline int finish_checks(const struct checks *t, const char *suite)
{
    printf("c %s: %d passed, %d failed\n", suite, t->passed, t->failed);
    return t->failed == 0 ? 0 : 1;
}

#endif
