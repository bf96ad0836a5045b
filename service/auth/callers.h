/* The callers file (COMMSGATE_CALLERS_FILE, YAML or JSON, read with
 * libyaml): which services may call commsgate, how each is recognised, and
 * the RPCs each may use. Loaded once at startup and read-only after, so any
 * thread may match against it.
 *
 *   callers:
 *     - name: billing                      # [a-z0-9_-], 1-32: logs, metrics, idempotency scope
 *       client_cert_san: billing.internal  # or client_cert_subject: "CN=billing,O=Example"
 *                                          # or token_sha256: <64 hex digits>
 *       rpcs: [SendSMS, GetMessage]        # or ["*"]
 *       quotas: {messages_per_second: 10, messages_per_day: 50000, verifications_per_hour: 100}
 *
 * Unknown keys are errors: a typo must not open or close access silently. */
#ifndef COMMSGATE_AUTH_CALLERS_H
#define COMMSGATE_AUTH_CALLERS_H

#include <stddef.h>

#define CALLERS_MAX 256
#define CALLER_NAME_MAX 33

struct callers;

enum caller_by { CALLER_BY_SAN, CALLER_BY_SUBJECT, CALLER_BY_TOKEN };

/* A caller's own quotas (its `quotas:` mapping), each at most N in a
 * sliding window, across every replica (redis/caller_quota.c). */
enum caller_quota {
    CALLER_QUOTA_MESSAGES_PER_SECOND, /* SendSMS and SendWhatsApp */
    CALLER_QUOTA_MESSAGES_PER_DAY,
    CALLER_QUOTA_VERIFICATIONS_PER_HOUR, /* StartVerification */
    CALLER_QUOTA_COUNT
};

struct caller {
    char name[CALLER_NAME_MAX];
    enum caller_by by;
    char match[256];              /* the SAN or subject; for a token, its SHA-256 in hex */
    unsigned char token_sha256[32];
    unsigned rpcs;                /* bit per CALLERS_RPC_* */
    long quota[CALLER_QUOTA_COUNT]; /* 0: none */
};

/* messages_per_second, ...: the key in the file, and the quota's window. */
const char *caller_quota_name(enum caller_quota q);
long long caller_quota_window_ms(enum caller_quota q);

/* The RPCs a caller may be allowed, by name. */
#define CALLERS_RPC_NAMES                                                                          \
    X(SendSMS) X(SendWhatsApp) X(PlaceCall) X(StartVerification) X(CheckVerification) X(GetMessage)

/* What a call presents: its client certificate's subject and SANs (from the
 * TLS handshake; none over plaintext) and its bearer token, if any. */
struct caller_identity {
    const char *subject;          /* NULL: no client certificate */
    const char *const *sans;
    size_t nsans;
    const char *bearer;           /* the token after "Bearer ", NULL if none */
};

/* CG_OK, CG_ECONFIG with why in errbuf (the file, the caller, the key). */
int callers_load(const char *path, struct callers **out, char *errbuf, size_t errlen);
size_t callers_count(const struct callers *c);
const struct caller *callers_at(const struct callers *c, size_t i);
/* The caller this identity is, or NULL. A client certificate is tried
 * before a token; tokens are compared in constant time. */
const struct caller *callers_match(const struct callers *c, const struct caller_identity *id);
/* Whether caller may use the RPC named rpc ("SendSMS"). */
int caller_may(const struct caller *caller, const char *rpc);
void callers_free(struct callers **c);

#endif
