#include "rpc/grpc_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"

#define MAX_PEM (1 << 20)

struct stamp {
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct grpc_tls {
    pthread_mutex_t lock; /* gRPC's handshakes call the fetcher on any of its threads */
    char cert_file[512], key_file[512], ca_file[512];
    enum grpc_tls_mode mode;
    struct stamp seen[3];   /* cert, key, CA: as last loaded (or tried) */
    unsigned long loads;
};

static int stamp_of(const char *path, struct stamp *out)
{
    struct stat st;
    if (!*path) {
        memset(out, 0, sizeof(*out));
        return 0;
    }
    if (stat(path, &st))
        return -1;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime = st.st_mtim;
    return 0;
}

static int same(const struct stamp *a, const struct stamp *b)
{
    return a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The whole file, NUL-terminated; NULL if unreadable or too large. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (!f)
        return NULL;
    buf = malloc(MAX_PEM + 1);
    if (buf)
        n = fread(buf, 1, MAX_PEM + 1, f);
    fclose(f);
    if (!buf || n > MAX_PEM || n == 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The key belongs to the certificate: gRPC would only find out at the first
 * handshake, and refuse every client. */
static int key_matches(const char *cert_pem, const char *key_pem)
{
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int ok = x && k && X509_check_private_key(x, k) == 1;
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    return ok;
}

/* Reads the three files into a new gRPC config; NULL and why on failure. */
static grpc_ssl_server_certificate_config *load(struct grpc_tls *t, const char **why)
{
    char *cert = slurp(t->cert_file), *key = slurp(t->key_file);
    char *ca = t->mode == GRPC_TLS_MUTUAL ? slurp(t->ca_file) : NULL;
    grpc_ssl_server_certificate_config *cfg = NULL;

    if (!cert || !key)
        *why = "the certificate or key file cannot be read";
    else if (t->mode == GRPC_TLS_MUTUAL && !ca)
        *why = "the client CA file cannot be read";
    else if (!key_matches(cert, key))
        *why = "the key does not match the certificate (or either is not PEM)";
    else {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        /* gRPC copies what it is given. gRPC 1.51 insists on root
         * certificates in every config (an assertion, not an error); with
         * no client certificate asked for they verify nothing, so the
         * server's own chain stands in. */
        cfg = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1);
        if (!cfg)
            *why = "gRPC refused the certificates";
    }
    if (key)
        OPENSSL_cleanse(key, strlen(key));
    free(cert);
    free(key);
    free(ca);
    return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch(void *arg,
                                                       grpc_ssl_server_certificate_config **out)
{
    struct grpc_tls *t = arg;
    struct stamp now[3];
    const char *why = NULL;
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;

    pthread_mutex_lock(&t->lock);
    if (stamp_of(t->cert_file, &now[0]) || stamp_of(t->key_file, &now[1]) ||
        stamp_of(t->ca_file, &now[2])) {
        /* Mid-rotation, a file may be missing for a moment: keep serving. */
        st = t->loads ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED
                      : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    } else if (!t->loads || !same(&now[0], &t->seen[0]) || !same(&now[1], &t->seen[1]) ||
               !same(&now[2], &t->seen[2])) {
        memcpy(t->seen, now, sizeof(now));
        *out = load(t, &why);
        if (*out) {
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
            if (t->loads++)
                log_event(LOG_LEVEL_INFO, "grpc_tls_reloaded",
                          json_pack("{s:s}", "cert_file", t->cert_file));
        } else {
            st = t->loads ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED
                          : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
            log_event(LOG_LEVEL_ERROR, "grpc_tls_reload_failed",
                      json_pack("{s:s, s:s}", "msg", why, "kept",
                                t->loads ? "the previous certificates" : "nothing"));
        }
    }
    pthread_mutex_unlock(&t->lock);
    return st;
}

int grpc_tls_new(const struct config *cfg, char *errbuf, size_t errlen, struct grpc_tls **out)
{
    struct grpc_tls *t;
    const char *why = NULL;

    *out = NULL;
    if (!cfg->grpc_tls_cert_file[0] && !cfg->grpc_tls_key_file[0]) {
        if (cfg->grpc_tls_client_ca_file[0]) {
            snprintf(errbuf, errlen, "config: COMMSGATE_GRPC_TLS_CLIENT_CA_FILE needs "
                                     "COMMSGATE_GRPC_TLS_CERT_FILE and _KEY_FILE");
            return CG_ECONFIG;
        }
        return CG_OK;
    }
    if (!cfg->grpc_tls_cert_file[0] || !cfg->grpc_tls_key_file[0]) {
        snprintf(errbuf, errlen, "config: COMMSGATE_GRPC_TLS_CERT_FILE and "
                                 "COMMSGATE_GRPC_TLS_KEY_FILE go together");
        return CG_ECONFIG;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return CG_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    snprintf(t->cert_file, sizeof(t->cert_file), "%s", cfg->grpc_tls_cert_file);
    snprintf(t->key_file, sizeof(t->key_file), "%s", cfg->grpc_tls_key_file);
    snprintf(t->ca_file, sizeof(t->ca_file), "%s", cfg->grpc_tls_client_ca_file);
    t->mode = t->ca_file[0] ? GRPC_TLS_MUTUAL : GRPC_TLS_ON;
    /* Checked now, so a bad file stops startup with its reason. */
    grpc_ssl_server_certificate_config *c = load(t, &why);
    if (!c) {
        snprintf(errbuf, errlen, "config: gRPC TLS: %s", why);
        grpc_tls_free(&t);
        return CG_ECONFIG;
    }
    grpc_ssl_server_certificate_config_destroy(c);
    *out = t;
    return CG_OK;
}

enum grpc_tls_mode grpc_tls_mode(const struct grpc_tls *t)
{
    return t ? t->mode : GRPC_TLS_OFF;
}

grpc_server_credentials *grpc_tls_credentials(struct grpc_tls *t)
{
    if (!t)
        return grpc_insecure_server_credentials_create();
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            t->mode == GRPC_TLS_MUTUAL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            fetch, t);
    return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

unsigned long grpc_tls_loads(struct grpc_tls *t)
{
    unsigned long n;
    pthread_mutex_lock(&t->lock);
    n = t->loads;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void grpc_tls_free(struct grpc_tls **tp)
{
    struct grpc_tls *t = *tp;
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t);
    *tp = NULL;
}
