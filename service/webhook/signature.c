/* Twilio webhook signatures with OpenSSL's HMAC (EVP_MAC), streamed, so no
 * copy of the request is built. */
#include "webhook/signature.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int cmp_param(const void *x, const void *y)
{
    const struct signature_param *a = x, *b = y;
    int c = cmp_bytes(a->name, a->nlen, b->name, b->nlen);
    return c ? c : cmp_bytes(a->value, a->vlen, b->value, b->vlen);
}

int signature_compute(const char *token, const char *url, struct signature_param *params,
                      size_t n, int dedupe, char out[SIGNATURE_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    int rc = CG_ESYS;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA1", 0),
                      OSSL_PARAM_construct_end()};

    if (!ctx || !EVP_MAC_init(ctx, (const unsigned char *)token, strlen(token), p))
        goto fail;
    if (n)
        qsort(params, n, sizeof(*params), cmp_param);
    EVP_MAC_update(ctx, (const unsigned char *)url, strlen(url));
    for (size_t i = 0; i < n; i++) {
        if (dedupe && i > 0 && cmp_param(&params[i], &params[i - 1]) == 0)
            continue;
        EVP_MAC_update(ctx, (const unsigned char *)params[i].name, params[i].nlen);
        EVP_MAC_update(ctx, (const unsigned char *)params[i].value, params[i].vlen);
    }
    if (!EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) || maclen != SHA_DIGEST_LENGTH)
        goto fail;
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    rc = CG_OK;
fail:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    return rc;
}

/* The URL with its port removed (if it has one) and with the scheme's
 * default port added (if it has none); either may equal the original. */
static void port_variants(const char *url, char *without, char *with, size_t len)
{
    snprintf(without, len, "%s", url);
    snprintf(with, len, "%s", url);
    const char *scheme_end = strstr(url, "://");
    if (!scheme_end)
        return;
    const char *host = scheme_end + 3;
    size_t hostlen = strcspn(host, "/?#");
    const char *colon = memchr(host, ':', hostlen);
    const char *rest = host + hostlen;
    if (colon) {
        snprintf(without, len, "%.*s%s", (int)(colon - url), url, rest);
    } else {
        int https = strncmp(url, "https", 5) == 0;
        snprintf(with, len, "%.*s:%d%s", (int)(rest - url), url, https ? 443 : 80, rest);
    }
}

static int matches(const char *token, const char *url, struct signature_param *params, size_t n,
                   int dedupe, const char *header)
{
    char sig[SIGNATURE_LEN + 1];
    if (signature_compute(token, url, params, n, dedupe, sig))
        return 0;
    return strlen(header) == SIGNATURE_LEN && CRYPTO_memcmp(sig, header, SIGNATURE_LEN) == 0;
}

int signature_valid(const char *token, const char *url, struct signature_param *params, size_t n,
                    const char *header)
{
    char without[2048], with[2048];
    int dup = 0;

    if (!header || !*token || strlen(url) >= sizeof(without) - 8)
        return 0;
    if (n)
        qsort(params, n, sizeof(*params), cmp_param);
    for (size_t i = 1; i < n && !dup; i++)
        dup = cmp_param(&params[i], &params[i - 1]) == 0;
    port_variants(url, without, with, sizeof(without));
    const char *urls[] = {url, without, with};
    int ok = 0;
    for (int u = 0; u < 3; u++)
        for (int d = 0; d <= dup; d++)
            ok |= matches(token, urls[u], params, n, d, header);
    return ok;
}

int signature_body_hash_ok(const char *url, const char *body, size_t len)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char hex[SHA256_DIGEST_LENGTH * 2 + 1];
    const char *q = strchr(url, '?');
    const char *p = q ? strstr(q, "bodySHA256=") : NULL;

    if (!p || (p[-1] != '?' && p[-1] != '&'))
        return 0;
    p += strlen("bodySHA256=");
    SHA256((const unsigned char *)body, len, digest);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    size_t plen = strcspn(p, "&#");
    return plen == SHA256_DIGEST_LENGTH * 2 && CRYPTO_memcmp(hex, p, plen) == 0;
}
