/* yajl calls back once per token; `field` is where the value of the
 * top-level key just read goes, or NULL. */
#include "twilio/answer.h"

#include <string.h>
#include <yajl/yajl_parse.h>

#include "core/error.h"

struct reader {
    struct twilio_answer *out;
    int depth;      /* 1: inside the top-level object */
    char *field;    /* the string member to fill, or NULL */
    size_t cap;
    int cut_ok;     /* a too-long value is cut rather than dropped */
    int want_code;  /* the next value is "code" */
};

#define FIELD(name, member, cut)                                                                   \
    {name, sizeof(name) - 1, offsetof(struct twilio_answer, member),                               \
     sizeof(((struct twilio_answer *)0)->member), cut}

static const struct {
    const char *name;
    size_t len, offset, cap;
    int cut_ok;
} fields[] = {
    FIELD("sid", sid, 0),
    FIELD("status", status, 0),
    FIELD("channel", channel, 0),
    FIELD("message", message, 1),
};

static void value_seen(struct reader *r)
{
    r->field = NULL;
    r->want_code = 0;
}

static int on_key(void *ctx, const unsigned char *key, size_t len)
{
    struct reader *r = ctx;
    value_seen(r);
    if (r->depth != 1)
        return 1;
    if (len == 4 && memcmp(key, "code", 4) == 0) {
        r->want_code = 1;
        return 1;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].len == len && memcmp(fields[i].name, key, len) == 0) {
            r->field = (char *)r->out + fields[i].offset;
            r->cap = fields[i].cap;
            r->cut_ok = fields[i].cut_ok;
        }
    }
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct reader *r = ctx;
    if (r->field) {
        /* A value with a NUL in it (\u0000) is not what any field holds. */
        if (memchr(s, 0, len))
            r->field[0] = '\0';
        else if (len < r->cap || r->cut_ok) {
            size_t n = len < r->cap ? len : r->cap - 1;
            memcpy(r->field, s, n);
            r->field[n] = '\0';
        } else
            r->field[0] = '\0'; /* later duplicates win, as in jansson */
    }
    value_seen(r);
    return 1;
}

static int on_integer(void *ctx, long long v)
{
    struct reader *r = ctx;
    if (r->want_code)
        r->out->code = v > 0 && v < 1000000 ? (int)v : 0;
    else if (r->field)
        r->field[0] = '\0';
    value_seen(r);
    return 1;
}

/* null, booleans and non-integer numbers: a field they land on is absent. */
static int on_other(struct reader *r)
{
    if (r->want_code)
        r->out->code = 0;
    else if (r->field)
        r->field[0] = '\0';
    value_seen(r);
    return 1;
}

static int on_null(void *ctx)
{
    return on_other(ctx);
}

static int on_boolean(void *ctx, int b)
{
    (void)b;
    return on_other(ctx);
}

static int on_double(void *ctx, double d)
{
    (void)d;
    return on_other(ctx);
}

static int on_open(void *ctx)
{
    struct reader *r = ctx;
    if (r->depth == 1)
        on_other(r); /* an object or array as the field's value */
    r->depth++;
    return 1;
}

static int on_start_map(void *ctx)
{
    struct reader *r = ctx;
    if (r->depth == 0)
        r->out->is_object = 1;
    return on_open(ctx);
}

static int on_start_array(void *ctx)
{
    struct reader *r = ctx;
    if (r->depth == 0)
        return 0; /* not an object: stop here */
    return on_open(ctx);
}

static int on_close(void *ctx)
{
    struct reader *r = ctx;
    r->depth--;
    value_seen(r);
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_close,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_close,
};

int twilio_answer_parse(const char *body, size_t len, struct twilio_answer *out)
{
    struct reader r = {.out = out};
    yajl_handle h;
    int ok;

    memset(out, 0, sizeof(*out));
    h = yajl_alloc(&callbacks, NULL, &r);
    if (!h)
        return CG_ENOMEM;
    ok = yajl_parse(h, (const unsigned char *)body, len) == yajl_status_ok &&
         yajl_complete_parse(h) == yajl_status_ok && out->is_object;
    yajl_free(h);
    if (!ok) {
        /* Fields read before the error are not an answer. */
        memset(out, 0, sizeof(*out));
        return CG_EINVAL;
    }
    return CG_OK;
}
