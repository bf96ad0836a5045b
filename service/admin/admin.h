/* The admin listener: GET /metrics, /healthz and /readyz on
 * COMMSGATE_ADMIN_ADDR (loopback by default), apart from the webhook port,
 * which faces the internet and serves Twilio's webhooks alone. Runs on the
 * home worker's loop (app.h). */
#ifndef COMMSGATE_ADMIN_ADMIN_H
#define COMMSGATE_ADMIN_ADMIN_H

#include <stddef.h>

struct admin_ctx;
struct app;

/* Binds COMMSGATE_ADMIN_ADDR; on failure writes why into errbuf. */
int admin_new(struct app *app, char *errbuf, size_t errlen, struct admin_ctx **out);
/* Home loop thread (or before it runs). Clears *a; NULL is a no-op. */
void admin_free(struct admin_ctx **a);

#endif
