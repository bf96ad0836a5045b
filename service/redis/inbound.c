/* Inbound keywords and inbound.lua. */
#include "redis/inbound.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/error.h"
#include "redis/keys.h"
#include "redis/message_status.h"
#include "redis/policy.h"

static const char *const stop_words[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
                                         "QUIT", "OPTOUT", "REVOKE", NULL};
static const char *const start_words[] = {"START", "YES", "UNSTOP", NULL};
static const char *const help_words[] = {"HELP", "INFO", NULL};

static int in_list(const char *word, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(word, list[i]) == 0)
            return 1;
    return 0;
}

enum inbound_keyword inbound_keyword(const char *body, size_t n, const char *opt_out_type)
{
    char word[16];
    if (opt_out_type && *opt_out_type) {
        if (strcasecmp(opt_out_type, "STOP") == 0)
            return INBOUND_STOP;
        if (strcasecmp(opt_out_type, "START") == 0)
            return INBOUND_START;
        if (strcasecmp(opt_out_type, "HELP") == 0)
            return INBOUND_HELP;
    }
    if (!body)
        return INBOUND_NONE;
    while (n && isspace((unsigned char)*body)) {
        body++;
        n--;
    }
    while (n && isspace((unsigned char)body[n - 1]))
        n--;
    if (n == 0 || n >= sizeof(word) || memchr(body, 0, n))
        return INBOUND_NONE; /* "STOP\0please ..." is not the word STOP */
    for (size_t i = 0; i < n; i++)
        word[i] = (char)toupper((unsigned char)body[i]);
    word[n] = '\0';
    if (in_list(word, stop_words))
        return INBOUND_STOP;
    if (in_list(word, start_words))
        return INBOUND_START;
    if (in_list(word, help_words))
        return INBOUND_HELP;
    return INBOUND_NONE;
}

const char *inbound_keyword_name(enum inbound_keyword k)
{
    static const char *const names[] = {"", "stop", "start", "help"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "";
}

int inbound_apply(struct redis_ctx *r, const struct config *cfg, const char *number,
                  const char *event_key, enum inbound_keyword kw, int whatsapp,
                  policy_reply_fn *fn, void *privdata)
{
    char optout[KEYS_MAX], window[KEYS_MAX], optout_ttl[24], keep[16];

    if (keys_make(optout, sizeof(optout), KEYS_OPTOUT, number, NULL) ||
        keys_make(window, sizeof(window), KEYS_WINDOW, number, NULL))
        return CG_EINVAL;
    snprintf(optout_ttl, sizeof(optout_ttl), "%lld", (long long)cfg->optout_ttl_days * 86400);
    snprintf(keep, sizeof(keep), "%d", MESSAGE_STATUS_KEEP_S);
    const char *keys[] = {event_key, optout, window};
    /* The opt-out action: STOP and START only; HELP is only recorded. */
    const char *action = kw == INBOUND_HELP ? "" : inbound_keyword_name(kw);
    const char *args[] = {action, whatsapp ? "1" : "0", optout_ttl, keep, keep};
    return policy_eval(r, POLICY_INBOUND, 3, keys, 5, args, fn, privdata);
}
