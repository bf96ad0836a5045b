/* libyaml builds the document; this walks it. The shape is small and fixed,
 * so every node is checked for the type and the keys it may have. */
#include "auth/callers.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/error.h"

enum {
#define X(name) RPC_##name,
    CALLERS_RPC_NAMES
#undef X
        RPC_COUNT
};
static const char *const rpc_names[] = {
#define X(name) #name,
    CALLERS_RPC_NAMES
#undef X
};

struct callers {
    struct caller c[CALLERS_MAX];
    size_t n;
};

struct walk {
    yaml_document_t *doc;
    char *err;
    size_t errlen;
};

static const char *scalar(struct walk *w, yaml_node_t *n)
{
    (void)w;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int fail(struct walk *w, const char *fmt, const char *a, const char *b)
{
    snprintf(w->err, w->errlen, fmt, a, b);
    return CG_ECONFIG;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= CALLER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
              s[i] == '-'))
            return 0;
    return 1;
}

static int hex_to_bytes(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
            sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

static const struct {
    const char *name;
    long long window_ms;
} quotas[CALLER_QUOTA_COUNT] = {
    [CALLER_QUOTA_MESSAGES_PER_SECOND] = {"messages_per_second", 1000},
    [CALLER_QUOTA_MESSAGES_PER_DAY] = {"messages_per_day", 86400000},
    [CALLER_QUOTA_VERIFICATIONS_PER_HOUR] = {"verifications_per_hour", 3600000},
};

const char *caller_quota_name(enum caller_quota q)
{
    return quotas[q].name;
}

long long caller_quota_window_ms(enum caller_quota q)
{
    return quotas[q].window_ms;
}

static int read_quotas(struct walk *w, struct caller *c, yaml_node_t *n)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(w, "caller %s: quotas must be a mapping%s", c->name, "");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(w, yaml_document_get_node(w->doc, p->key));
        const char *v = scalar(w, yaml_document_get_node(w->doc, p->value));
        int found = -1;
        for (int q = 0; k && q < CALLER_QUOTA_COUNT; q++)
            if (strcmp(k, quotas[q].name) == 0)
                found = q;
        if (found < 0)
            return fail(w, "caller %s: unknown quota %s (messages_per_second, messages_per_day, "
                           "verifications_per_hour)",
                        c->name, k ? k : "(not a string)");
        char *end;
        long n_ = v ? strtol(v, &end, 10) : 0;
        if (!v || !*v || *end || n_ < 1 || n_ > 100000000)
            return fail(w, "caller %s: quota %s must be a whole number from 1 to 100000000",
                        c->name, k);
        c->quota[found] = n_;
    }
    return CG_OK;
}

static int read_rpcs(struct walk *w, struct caller *c, yaml_node_t *n)
{
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return fail(w, "caller %s: rpcs must be a list of RPC names%s", c->name, "");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const char *v = scalar(w, yaml_document_get_node(w->doc, *it));
        int found = 0;
        if (!v)
            return fail(w, "caller %s: rpcs must be a list of RPC names%s", c->name, "");
        if (strcmp(v, "*") == 0) {
            c->rpcs = (1u << RPC_COUNT) - 1;
            continue;
        }
        for (int r = 0; r < RPC_COUNT; r++)
            if (strcmp(v, rpc_names[r]) == 0) {
                c->rpcs |= 1u << r;
                found = 1;
            }
        if (!found)
            return fail(w, "caller %s: unknown RPC %s (SendSMS, SendWhatsApp, PlaceCall, "
                           "StartVerification, CheckVerification, GetMessage or *)",
                        c->name, v);
    }
    return CG_OK;
}

static int read_caller(struct walk *w, yaml_node_t *n, struct caller *c)
{
    int ways = 0, have_rpcs = 0, rc;
    if (n->type != YAML_MAPPING_NODE)
        return fail(w, "each entry of callers must be a mapping%s%s", "", "");
    /* The name first, so every later error can say which caller. */
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(w, yaml_document_get_node(w->doc, p->key));
        const char *v = scalar(w, yaml_document_get_node(w->doc, p->value));
        if (k && strcmp(k, "name") == 0) {
            if (!v || !valid_name(v))
                return fail(w, "caller name %s: 1 to 32 of a-z 0-9 _ -%s", v ? v : "(none)", "");
            snprintf(c->name, sizeof(c->name), "%s", v);
        }
    }
    if (!c->name[0])
        return fail(w, "a caller has no name%s%s", "", "");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(w, yaml_document_get_node(w->doc, p->key));
        yaml_node_t *vn = yaml_document_get_node(w->doc, p->value);
        const char *v = scalar(w, vn);
        if (!k)
            return fail(w, "caller %s: keys must be strings%s", c->name, "");
        if (strcmp(k, "name") == 0)
            continue;
        if (strcmp(k, "rpcs") == 0) {
            if ((rc = read_rpcs(w, c, vn)))
                return rc;
            have_rpcs = 1;
        } else if (strcmp(k, "client_cert_san") == 0 || strcmp(k, "client_cert_subject") == 0) {
            if (!v || !*v || strlen(v) >= sizeof(c->match))
                return fail(w, "caller %s: %s must be a non-empty string", c->name, k);
            c->by = strcmp(k, "client_cert_san") == 0 ? CALLER_BY_SAN : CALLER_BY_SUBJECT;
            snprintf(c->match, sizeof(c->match), "%s", v);
            ways++;
        } else if (strcmp(k, "quotas") == 0) {
            if ((rc = read_quotas(w, c, vn)))
                return rc;
        } else if (strcmp(k, "token_sha256") == 0) {
            /* Only the hash is kept, in the file too: a token never in clear. */
            if (!v || hex_to_bytes(v, c->token_sha256, sizeof(c->token_sha256)))
                return fail(w, "caller %s: token_sha256 must be 64 hex digits (sha256sum of "
                               "the token)%s",
                            c->name, "");
            c->by = CALLER_BY_TOKEN;
            snprintf(c->match, sizeof(c->match), "%s", v);
            ways++;
        } else {
            return fail(w, "caller %s: unknown key %s", c->name, k);
        }
    }
    if (ways != 1)
        return fail(w, "caller %s: exactly one of client_cert_san, client_cert_subject or "
                       "token_sha256%s",
                    c->name, "");
    if (!have_rpcs)
        return fail(w, "caller %s: rpcs is required (a list, or [\"*\"])%s", c->name, "");
    return CG_OK;
}

int callers_load(const char *path, struct callers **out, char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    yaml_parser_t parser;
    yaml_document_t doc;
    struct callers *cs = NULL;
    struct walk w = {.doc = &doc, .err = errbuf, .errlen = errlen};
    int rc = CG_ECONFIG, have_doc = 0;
    char why[400];

    if (!f) {
        snprintf(errbuf, errlen, "config: COMMSGATE_CALLERS_FILE: cannot read %s", path);
        return CG_ECONFIG;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(errbuf, errlen, "config: %s: line %zu: %s", path,
                 (size_t)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "not YAML or JSON");
        goto done;
    }
    have_doc = 1;
    w.err = why;
    w.errlen = sizeof(why);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *list = NULL;
    if (root && root->type == YAML_MAPPING_NODE)
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
             p++) {
            const char *k = scalar(&w, yaml_document_get_node(&doc, p->key));
            if (k && strcmp(k, "callers") == 0)
                list = yaml_document_get_node(&doc, p->value);
            else {
                snprintf(why, sizeof(why), "unknown top-level key %s (only callers)",
                         k ? k : "(not a string)");
                goto bad;
            }
        }
    if (!list || list->type != YAML_SEQUENCE_NODE) {
        snprintf(why, sizeof(why), "expected a top-level callers: list");
        goto bad;
    }
    cs = calloc(1, sizeof(*cs));
    if (!cs) {
        rc = CG_ENOMEM;
        goto done;
    }
    for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top;
         it++) {
        if (cs->n == CALLERS_MAX) {
            snprintf(why, sizeof(why), "more than %d callers", CALLERS_MAX);
            goto bad;
        }
        struct caller *c = &cs->c[cs->n];
        if (read_caller(&w, yaml_document_get_node(&doc, *it), c))
            goto bad;
        for (size_t i = 0; i < cs->n; i++) {
            if (strcmp(cs->c[i].name, c->name) == 0) {
                snprintf(why, sizeof(why), "caller %s is named twice", c->name);
                goto bad;
            }
            if (cs->c[i].by == c->by && strcmp(cs->c[i].match, c->match) == 0) {
                snprintf(why, sizeof(why), "callers %s and %s are recognised the same way",
                         cs->c[i].name, c->name);
                goto bad;
            }
        }
        cs->n++;
    }
    *out = cs;
    cs = NULL;
    rc = CG_OK;
    goto done;
bad:
    snprintf(errbuf, errlen, "config: %s: %s", path, why);
done:
    free(cs);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

size_t callers_count(const struct callers *c)
{
    return c ? c->n : 0;
}

const struct caller *callers_at(const struct callers *c, size_t i)
{
    return c && i < c->n ? &c->c[i] : NULL;
}

const struct caller *callers_match(const struct callers *cs, const struct caller_identity *id)
{
    if (!cs)
        return NULL;
    if (id->subject) {
        for (size_t i = 0; i < cs->n; i++) {
            const struct caller *c = &cs->c[i];
            if (c->by == CALLER_BY_SUBJECT && strcmp(c->match, id->subject) == 0)
                return c;
            if (c->by == CALLER_BY_SAN)
                for (size_t k = 0; k < id->nsans; k++)
                    if (strcmp(c->match, id->sans[k]) == 0)
                        return c;
        }
    }
    if (id->bearer && *id->bearer) {
        unsigned char d[SHA256_DIGEST_LENGTH];
        const struct caller *found = NULL;
        SHA256((const unsigned char *)id->bearer, strlen(id->bearer), d);
        /* Every token caller is compared, found or not, in constant time. */
        for (size_t i = 0; i < cs->n; i++)
            if (cs->c[i].by == CALLER_BY_TOKEN &&
                CRYPTO_memcmp(cs->c[i].token_sha256, d, sizeof(d)) == 0)
                found = &cs->c[i];
        return found;
    }
    return NULL;
}

int caller_may(const struct caller *c, const char *rpc)
{
    for (int r = 0; r < RPC_COUNT; r++)
        if (strcmp(rpc, rpc_names[r]) == 0)
            return (c->rpcs >> r) & 1;
    return 0;
}

void callers_free(struct callers **c)
{
    free(*c);
    *c = NULL;
}
