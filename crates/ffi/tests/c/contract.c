/*
 * The C ABI's contract, from C, against a real daemon: usage
 *   contract <socket> <registered-project> <its-token> <value-limit>
 * Prints one line per failed check and ends with "N passed, N failed"; exits non-zero on a failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securestore.h"

static int passed, failed;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (cond) {                                             \
            passed++;                                           \
        } else {                                                \
            failed++;                                           \
            printf("FAILED line %d: %s: ", __LINE__, #cond);    \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
        }                                                       \
    } while (0)

#define PROJECT "@c/contract"
#define WHEN_UNLOCKED 5

static const char *msg(const char *m) { return m ? m : "(no message)"; }

/* Sets `value` (a C string) under key in service; returns the result code. */
static securestore_result set(securestore_client *c, const char *key, const char *value,
                              const char *service, char **err) {
    return securestore_set(c, key, (const uint8_t *)value, strlen(value), service, WHEN_UNLOCKED, err);
}

/* Reads key: returns a malloc'd copy of the value, or NULL when absent or on error (*code set). */
static char *get(securestore_client *c, const char *key, const char *service, securestore_result *code) {
    uint8_t *value = NULL;
    size_t len = 0;
    char *err = NULL;
    *code = securestore_get(c, key, service, &value, &len, &err);
    securestore_string_free(err);
    if (*code != SECURESTORE_OK || value == NULL) return NULL;
    char *copy = malloc(len + 1);
    memcpy(copy, value, len + 1);
    securestore_value_free(value, len);
    return copy;
}

struct worker {
    securestore_client *client;
    int id;
    int failures;
};

/* Each of 8 threads writes, reads back and deletes its own keys through the one shared handle. */
static void *work(void *arg) {
    struct worker *w = arg;
    for (int round = 0; round < 40; round++) {
        char key[64], value[64];
        snprintf(key, sizeof key, "thread%d_key%d", w->id, round % 5);
        snprintf(value, sizeof value, "value of thread %d round %d", w->id, round);
        if (set(w->client, key, value, "threads", NULL) != SECURESTORE_OK) w->failures++;
        securestore_result code;
        char *back = get(w->client, key, "threads", &code);
        if (back == NULL || strcmp(back, value) != 0) w->failures++;
        free(back);
        if (round % 3 == 0) {
            if (securestore_delete(w->client, key, "threads", NULL) != SECURESTORE_OK) w->failures++;
            back = get(w->client, key, "threads", &code);
            if (back != NULL || code != SECURESTORE_OK) w->failures++;
            free(back);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: contract <socket> <registered-project> <token> <value-limit>\n");
        return 2;
    }
    const char *socket = argv[1], *registered = argv[2], *token = argv[3];
    size_t limit = (size_t)strtoul(argv[4], NULL, 10);
    securestore_client *client = NULL;
    char *err = NULL;
    securestore_result code;

    /* Connecting. */
    code = securestore_connect(socket, PROJECT, NULL, &client, &err);
    CHECK(code == SECURESTORE_OK && client != NULL && err == NULL, "connect: %d %s", code, msg(err));
    if (client == NULL) goto done;
    CHECK(securestore_max_value_bytes(client) == limit, "limit %u", securestore_max_value_bytes(client));

    /* Round trip, missing item, overwrite, delete, delete of a missing item. */
    CHECK(set(client, "token", "s3cr3t", NULL, &err) == SECURESTORE_OK, "set: %s", msg(err));
    char *v = get(client, "token", NULL, &code);
    CHECK(v && strcmp(v, "s3cr3t") == 0, "get: %s", v ? v : "(null)");
    free(v);
    v = get(client, "never_set", NULL, &code);
    CHECK(v == NULL && code == SECURESTORE_OK, "missing item: code %d", code);
    CHECK(set(client, "token", "second", NULL, NULL) == SECURESTORE_OK, "overwrite");
    v = get(client, "token", NULL, &code);
    CHECK(v && strcmp(v, "second") == 0, "overwritten: %s", v ? v : "(null)");
    free(v);
    CHECK(securestore_delete(client, "token", NULL, NULL) == SECURESTORE_OK, "delete");
    v = get(client, "token", NULL, &code);
    CHECK(v == NULL && code == SECURESTORE_OK, "deleted item still there");
    free(v);
    CHECK(securestore_delete(client, "token", NULL, NULL) == SECURESTORE_OK, "delete missing");

    /* Services are separate namespaces; the default service is one of them. */
    CHECK(set(client, "k", "in a", "svc.a", NULL) == SECURESTORE_OK, "set a");
    CHECK(set(client, "k", "in b", "svc.b", NULL) == SECURESTORE_OK, "set b");
    v = get(client, "k", "svc.a", &code);
    CHECK(v && strcmp(v, "in a") == 0, "a: %s", v ? v : "(null)");
    free(v);
    v = get(client, "k", "svc.b", &code);
    CHECK(v && strcmp(v, "in b") == 0, "b: %s", v ? v : "(null)");
    free(v);
    v = get(client, "k", NULL, &code);
    CHECK(v == NULL && code == SECURESTORE_OK, "default service sees another service's item");
    free(v);

    /* Multi-byte UTF-8 and an empty value come back byte for byte. */
    const char *utf8 = "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x94\x90";
    CHECK(set(client, "utf8", utf8, NULL, &err) == SECURESTORE_OK, "set utf8: %s", msg(err));
    v = get(client, "utf8", NULL, &code);
    CHECK(v && strcmp(v, utf8) == 0 && strlen(v) == 25, "utf8 back: %s", v ? v : "(null)");
    free(v);
    CHECK(set(client, "empty", "", NULL, NULL) == SECURESTORE_OK, "set empty");
    v = get(client, "empty", NULL, &code);
    CHECK(v && v[0] == '\0', "empty value back");
    free(v);

    /* Invalid input: each its own code, with Expo's wording for keys. */
    code = set(client, "bad key!", "x", NULL, &err);
    CHECK(code == SECURESTORE_INVALID_KEY && err &&
              strncmp(err, "Invalid key provided to SecureStore", 35) == 0,
          "invalid key: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = set(client, "", "x", NULL, NULL);
    CHECK(code == SECURESTORE_INVALID_KEY, "empty key: %d", code);
    code = securestore_delete(client, "k", "", &err);
    CHECK(code == SECURESTORE_INVALID_SERVICE && err, "empty service: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = securestore_set(client, "k", (const uint8_t *)"x", 1, NULL, 7, &err);
    CHECK(code == SECURESTORE_INVALID_ARGUMENT, "accessible 7: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = securestore_set(client, "k", (const uint8_t *)"\xff\xfe", 2, NULL, WHEN_UNLOCKED, NULL);
    CHECK(code == SECURESTORE_INVALID_ARGUMENT, "non-UTF-8 value: %d", code);
    code = securestore_get(client, NULL, NULL, NULL, NULL, NULL);
    CHECK(code == SECURESTORE_INVALID_ARGUMENT, "null arguments: %d", code);

    /* The value limit: the limit itself passes, one byte more is refused and named. */
    char *big = malloc(limit + 2);
    memset(big, 'v', limit + 1);
    big[limit + 1] = '\0';
    code = securestore_set(client, "big", (const uint8_t *)big, limit, NULL, WHEN_UNLOCKED, &err);
    CHECK(code == SECURESTORE_OK, "value at the limit: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = securestore_set(client, "big", (const uint8_t *)big, limit + 1, NULL, WHEN_UNLOCKED, &err);
    char limit_text[32];
    snprintf(limit_text, sizeof limit_text, "%zu", limit);
    CHECK(code == SECURESTORE_VALUE_TOO_LARGE && err && strstr(err, limit_text),
          "over the limit: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    free(big);

    /* Connection errors: bad project, nobody listening, registered project without its token. */
    securestore_client *other = NULL;
    code = securestore_connect(socket, "bad project!", NULL, &other, &err);
    CHECK(code == SECURESTORE_INVALID_PROJECT && other == NULL, "bad project: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = securestore_connect("/nonexistent/securestore.sock", PROJECT, NULL, &other, &err);
    CHECK(code == SECURESTORE_UNREACHABLE && err, "unreachable: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = securestore_connect(socket, registered, NULL, &other, &err);
    CHECK(code == SECURESTORE_REFUSED && other == NULL, "no token: %d %s", code, msg(err));
    securestore_string_free(err);
    err = NULL;
    code = securestore_connect(socket, registered, "wrong-token", &other, NULL);
    CHECK(code == SECURESTORE_REFUSED, "wrong token: %d", code);
    code = securestore_connect(socket, registered, token, &other, &err);
    CHECK(code == SECURESTORE_OK && other, "with token: %d %s", code, msg(err));
    if (other) {
        /* Another project sees none of this project's items. */
        v = get(other, "utf8", NULL, &code);
        CHECK(v == NULL && code == SECURESTORE_OK, "another project sees an item");
        free(v);
        securestore_client_free(other);
    }

    /* Eight threads share one handle. */
    pthread_t threads[8];
    struct worker workers[8];
    for (int i = 0; i < 8; i++) {
        workers[i] = (struct worker){client, i, 0};
        pthread_create(&threads[i], NULL, work, &workers[i]);
    }
    int thread_failures = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        thread_failures += workers[i].failures;
    }
    CHECK(thread_failures == 0, "%d failures across 8 threads", thread_failures);

    securestore_client_free(client);
    securestore_client_free(NULL);
    securestore_string_free(NULL);
    securestore_value_free(NULL, 0);

done:
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
