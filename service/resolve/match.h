/* Finding a request Twilio may have acted on in Twilio's own lists: what the
 * request was (read back from the form it sent), the list query, and
 * whether a page of the list holds it. Pure: no I/O, any thread. */
#ifndef COMMSGATE_RESOLVE_MATCH_H
#define COMMSGATE_RESOLVE_MATCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Twilio's date_created has whole seconds, and Twilio's clock is not Redis's:
 * a resource made up to this long outside the window still matches. */
#define MATCH_SKEW_MS 60000
/* Entries per page asked for. */
#define MATCH_PAGE_SIZE 100

enum match_list { MATCH_MESSAGES, MATCH_CALLS, MATCH_ATTEMPTS /* Verify's attempts */ };

struct match_send {
    enum match_list list;
    char to[320];
    char from[320];      /* "" when sent through a messaging service */
    char service[64];    /* MessagingServiceSid, or ""; for attempts the Verify
                            service, which the caller fills in */
    char channel[16];    /* attempts: the Channel sent */
    char *body;          /* the Body sent ("" for none); NULL: not compared (a
                            template, whose body Twilio renders); owned */
    int64_t t0_ms, t1_ms; /* unix ms: claimed, and last possibly received */
};

/* Reads the request back from its form, for list `api` ("Messages",
 * "Calls" or "Attempts"). CG_EINVAL if the api is unknown or the form
 * names no recipient, CG_ENOMEM. */
int match_send_parse(struct match_send *s, const char *api, const char *form, int64_t t0_ms,
                     int64_t t1_ms);
void match_send_clear(struct match_send *s);

/* The list query for s into out (To, From when there is one, PageSize;
 * for attempts the service, ChannelData.To, Channel and DateCreatedAfter);
 * CG_EINVAL if it does not fit. */
int match_query(const struct match_send *s, char *out, size_t cap);

enum match_verdict {
    MATCH_FOUND, /* *sid and *status (borrowed from page) */
    MATCH_NEXT,  /* not on this page; read *next (borrowed): a path, or a full URL
                    that twilio_request checks is on the same API's base */
    MATCH_END,   /* not in the list: no more pages, or the rest is older */
    MATCH_BAD,   /* not a page of this list */
};

/* Looks for s on one page of its list (newest first). */
enum match_verdict match_page(const struct match_send *s, const json_t *page, const char **sid,
                              const char **status, const char **next);

/* Twilio's RFC 2822 date ("Tue, 01 Dec 2026 22:53:14 +0000", the 2010
 * API) or ISO 8601 one ("2026-12-01T22:53:14Z", Verify) as unix ms; -1 if
 * it is neither. */
int64_t match_date_ms(const char *date);

#endif
