/* commsctl: commsgate from the shell, on libcommsgate.
 *
 * Exit codes: 0 success, 2 invalid input (usage or INVALID_ARGUMENT),
 * 3 refused by policy (FAILED_PRECONDITION, RESOURCE_EXHAUSTED,
 * PERMISSION_DENIED, NOT_FOUND, ABORTED), 4 unavailable (UNAVAILABLE,
 * DEADLINE_EXCEEDED), 5 outcome unknown (UNKNOWN: it may have been sent; retry
 * only with the same idempotency key), 1 anything else. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commsgate_client.h"

enum {
    EXIT_OK = 0,
    EXIT_OTHER = 1,
    EXIT_INVALID = 2,
    EXIT_REFUSED = 3,
    EXIT_UNAVAILABLE = 4,
    EXIT_OUTCOME_UNKNOWN = 5
};

static struct {
    const char *addr;
    long timeout_ms;
    int json;
    const char *caller;
} opt = {"127.0.0.1:50051", 10000, 0, NULL};

static const char *const top_usage =
    "Usage: commsctl [--addr HOST:PORT] [--timeout SECONDS] [--json] [--caller NAME] COMMAND\n"
    "\n"
    "Commands:\n"
    "  sms send        --to NUMBER --body TEXT [--from SENDER] [--idempotency-key KEY]\n"
    "  whatsapp send   --to NUMBER (--body TEXT [--media-url URL]... |\n"
    "                  --content-sid HX... [--var NAME=VALUE]...) [--idempotency-key KEY]\n"
    "  call            --to NUMBER (--url URL | --twiml XML | --say TEXT [--voice V]\n"
    "                  [--language L]) [--from NUMBER] [--idempotency-key KEY]\n"
    "  verify start    --to NUMBER|EMAIL [--channel sms|call|email|whatsapp] [--locale L]\n"
    "  verify check    --to NUMBER|EMAIL --code CODE\n"
    "  message get     SID\n"
    "  health\n"
    "\n"
    "Options:\n"
    "  --addr      commsgate's gRPC address (default 127.0.0.1:50051, or $COMMSGATE_TARGET)\n"
    "  --timeout   seconds to wait for an answer (default 10)\n"
    "  --json      print the answer, or the error, as one JSON object\n"
    "  --caller    sent as commsgate-caller (scopes idempotency keys)\n"
    "\n"
    "Exit codes: 0 success, 2 invalid input, 3 refused by policy, 4 unavailable, 1 other.\n"
    "Run 'commsctl COMMAND --help' for a command's options.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "commsctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(try commsctl --help)\n");
    return EXIT_INVALID;
}

static int exit_for(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK:
        return EXIT_OK;
    case GRPC_STATUS_INVALID_ARGUMENT:
        return EXIT_INVALID;
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_ABORTED:
        return EXIT_REFUSED;
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return EXIT_UNAVAILABLE;
    case GRPC_STATUS_UNKNOWN:
        return EXIT_OUTCOME_UNKNOWN;
    default:
        return EXIT_OTHER;
    }
}

static const char *const code_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};

/* Prints the outcome (obj on success, the error otherwise); takes obj. */
static int report(const struct cgc_status *st, json_t *obj)
{
    if (st->code != GRPC_STATUS_OK) {
        json_decref(obj);
        const char *name = st->code >= 0 && st->code <= 16 ? code_names[st->code] : "UNKNOWN";
        if (opt.json) {
            json_t *e = json_pack("{s:s, s:s}", "error", name, "message", st->message);
            if (st->twilio_code)
                json_object_set_new(e, "twilio_error_code", json_integer(st->twilio_code));
            if (st->reason[0])
                json_object_set_new(e, "reason", json_string(st->reason));
            if (st->retry_after_ms >= 0)
                json_object_set_new(e, "retry_after_ms", json_integer(st->retry_after_ms));
            json_dumpf(e, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            putchar('\n');
            json_decref(e);
        } else {
            fprintf(stderr, "commsctl: %s: %s", name, st->message);
            if (st->twilio_code)
                fprintf(stderr, " (Twilio %d)", st->twilio_code);
            if (st->retry_after_ms >= 0)
                fprintf(stderr, " (retry after %lld ms)", (long long)st->retry_after_ms);
            fputc('\n', stderr);
        }
        return exit_for(st->code);
    }
    if (opt.json) {
        json_dumpf(obj, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v)
        {
            if (json_is_string(v))
                printf("%s: %s\n", key, json_string_value(v));
            else if (json_is_boolean(v))
                printf("%s: %s\n", key, json_is_true(v) ? "true" : "false");
            else
                printf("%s: %lld\n", key, (long long)json_integer_value(v));
        }
    }
    json_decref(obj);
    return EXIT_OK;
}

/* Parses a command's options; `help` is printed for --help. Returns -1 to
 * exit 0 (help shown), -2 on a usage error, else 0. */
static int parse(int argc, char **argv, const struct option *longopts, const char *help,
                 int (*each)(int c, const char *arg, void *data), void *data)
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return -1;
        }
        if (c == '?' || each(c, optarg, data))
            return -2;
    }
    return 0;
}

/* --- sms send --- */

struct sms_args {
    Commsgate__V1__SendSMSRequest req;
};

static int sms_opt(int c, const char *arg, void *data)
{
    Commsgate__V1__SendSMSRequest *r = data;
    switch (c) {
    case 't': r->to = (char *)arg; break;
    case 'b': r->body = (char *)arg; break;
    case 'f': r->sender = (char *)arg; break;
    case 'k': r->idempotency_key = (char *)arg; break;
    default: return -1;
    }
    return 0;
}

static int cmd_sms(struct cgc_client *cl, int argc, char **argv)
{
    static const struct option o[] = {{"to", 1, 0, 't'}, {"body", 1, 0, 'b'},
                                      {"from", 1, 0, 'f'}, {"idempotency-key", 1, 0, 'k'},
                                      {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    Commsgate__V1__SendSMSRequest r = COMMSGATE__V1__SEND_SMSREQUEST__INIT;
    Commsgate__V1__SendSMSResponse *resp = NULL;
    struct cgc_status st;
    int p = parse(argc, argv, o,
                  "Usage: commsctl sms send --to NUMBER --body TEXT [--from SENDER] "
                  "[--idempotency-key KEY]\nSends one SMS; prints sid, status, segments, encoding.\n",
                  sms_opt, &r);
    if (p == -1)
        return EXIT_OK;
    if (p == -2 || !*r.to || !*r.body)
        return usage_error("sms send needs --to and --body%s", "");
    cgc_send_sms(cl, &r, opt.timeout_ms, &resp, &st);
    json_t *obj = NULL;
    if (resp) {
        obj = json_pack("{s:s, s:s, s:i, s:s}", "sid", resp->sid, "status", resp->status,
                        "segments", (int)resp->segments, "encoding",
                        resp->encoding == COMMSGATE__V1__ENCODING__ENCODING_UCS2 ? "UCS2" : "GSM7");
        commsgate__v1__send_smsresponse__free_unpacked(resp, NULL);
    }
    return report(&st, obj);
}

/* --- whatsapp send --- */

struct wa_args {
    Commsgate__V1__SendWhatsAppRequest req;
    char *media[10];
    Commsgate__V1__SendWhatsAppRequest__ContentVariablesEntry vars[20], *varp[20];
};

static int wa_opt(int c, const char *arg, void *data)
{
    struct wa_args *a = data;
    switch (c) {
    case 't': a->req.to = (char *)arg; break;
    case 'b': a->req.body = (char *)arg; break;
    case 'c': a->req.content_sid = (char *)arg; break;
    case 'k': a->req.idempotency_key = (char *)arg; break;
    case 'm':
        if (a->req.n_media_urls == 10)
            return -1;
        a->media[a->req.n_media_urls++] = (char *)arg;
        break;
    case 'v': {
        char *eq = strchr(arg, '=');
        if (!eq || a->req.n_content_variables == 20)
            return -1;
        size_t i = a->req.n_content_variables++;
        commsgate__v1__send_whats_app_request__content_variables_entry__init(&a->vars[i]);
        a->vars[i].key = strndup(arg, (size_t)(eq - arg));
        a->vars[i].value = eq + 1;
        a->varp[i] = &a->vars[i];
        break;
    }
    default: return -1;
    }
    return 0;
}

static int cmd_whatsapp(struct cgc_client *cl, int argc, char **argv)
{
    static const struct option o[] = {
        {"to", 1, 0, 't'},          {"body", 1, 0, 'b'},        {"content-sid", 1, 0, 'c'},
        {"var", 1, 0, 'v'},         {"media-url", 1, 0, 'm'},   {"idempotency-key", 1, 0, 'k'},
        {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    struct wa_args a;
    Commsgate__V1__SendWhatsAppResponse *resp = NULL;
    struct cgc_status st;
    int rc;

    memset(&a, 0, sizeof(a));
    commsgate__v1__send_whats_app_request__init(&a.req);
    a.req.media_urls = a.media;
    a.req.content_variables = a.varp;
    int p = parse(argc, argv, o,
                  "Usage: commsctl whatsapp send --to NUMBER (--body TEXT [--media-url URL]... |\n"
                  "         --content-sid HX... [--var NAME=VALUE]...) [--idempotency-key KEY]\n"
                  "Free-form only inside the 24-hour window; a template any time.\n",
                  wa_opt, &a);
    if (p == -1) {
        rc = EXIT_OK;
        goto done;
    }
    if (p == -2 || !*a.req.to) {
        rc = usage_error("whatsapp send needs --to, and --body, --media-url or --content-sid%s", "");
        goto done;
    }
    cgc_send_whatsapp(cl, &a.req, opt.timeout_ms, &resp, &st);
    json_t *obj = NULL;
    if (resp) {
        obj = json_pack("{s:s, s:s, s:b}", "sid", resp->sid, "status", resp->status, "template",
                        resp->template_);
        commsgate__v1__send_whats_app_response__free_unpacked(resp, NULL);
    }
    rc = report(&st, obj);
done:
    for (size_t i = 0; i < a.req.n_content_variables; i++)
        free(a.vars[i].key);
    return rc;
}

/* --- call --- */

struct call_args {
    Commsgate__V1__PlaceCallRequest req;
    Commsgate__V1__Say say;
};

static int call_opt(int c, const char *arg, void *data)
{
    struct call_args *a = data;
    switch (c) {
    case 't': a->req.to = (char *)arg; break;
    case 'f': a->req.caller_id = (char *)arg; break;
    case 'k': a->req.idempotency_key = (char *)arg; break;
    case 'u':
        a->req.instructions_case = COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_URL;
        a->req.url = (char *)arg;
        break;
    case 'x':
        a->req.instructions_case = COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_TWIML;
        a->req.twiml = (char *)arg;
        break;
    case 's':
        a->req.instructions_case = COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_SAY;
        a->say.text = (char *)arg;
        a->req.say = &a->say;
        break;
    case 'V': a->say.voice = (char *)arg; break;
    case 'L': a->say.language = (char *)arg; break;
    default: return -1;
    }
    return 0;
}

static int cmd_call(struct cgc_client *cl, int argc, char **argv)
{
    static const struct option o[] = {
        {"to", 1, 0, 't'},    {"from", 1, 0, 'f'},     {"url", 1, 0, 'u'},
        {"twiml", 1, 0, 'x'}, {"say", 1, 0, 's'},      {"voice", 1, 0, 'V'},
        {"language", 1, 0, 'L'}, {"idempotency-key", 1, 0, 'k'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    struct call_args a;
    Commsgate__V1__PlaceCallResponse *resp = NULL;
    struct cgc_status st;

    commsgate__v1__place_call_request__init(&a.req);
    commsgate__v1__say__init(&a.say);
    int p = parse(argc, argv, o,
                  "Usage: commsctl call --to NUMBER (--url URL | --twiml XML | --say TEXT\n"
                  "         [--voice V] [--language L]) [--from NUMBER] [--idempotency-key KEY]\n",
                  call_opt, &a);
    if (p == -1)
        return EXIT_OK;
    if (p == -2 || !*a.req.to || !a.req.instructions_case)
        return usage_error("call needs --to and one of --url, --twiml, --say%s", "");
    cgc_place_call(cl, &a.req, opt.timeout_ms, &resp, &st);
    json_t *obj = NULL;
    if (resp) {
        obj = json_pack("{s:s, s:s}", "sid", resp->sid, "status", resp->status);
        commsgate__v1__place_call_response__free_unpacked(resp, NULL);
    }
    return report(&st, obj);
}

/* --- verify --- */

struct verify_args {
    const char *to, *code, *channel, *locale;
};

static int verify_opt(int c, const char *arg, void *data)
{
    struct verify_args *a = data;
    switch (c) {
    case 't': a->to = arg; break;
    case 'c': a->code = arg; break;
    case 'C': a->channel = arg; break;
    case 'l': a->locale = arg; break;
    default: return -1;
    }
    return 0;
}

static const char *channel_name(int ch)
{
    static const char *const names[] = {"unspecified", "sms", "call", "email", "whatsapp"};
    return ch >= 0 && ch <= 4 ? names[ch] : "unknown";
}

static int cmd_verify(struct cgc_client *cl, int argc, char **argv)
{
    static const struct option o[] = {{"to", 1, 0, 't'},      {"code", 1, 0, 'c'},
                                      {"channel", 1, 0, 'C'}, {"locale", 1, 0, 'l'},
                                      {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    struct verify_args a = {"", "", "sms", ""};
    struct cgc_status st;
    json_t *obj = NULL;

    if (argc < 2 || (strcmp(argv[1], "start") && strcmp(argv[1], "check"))) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs("Usage: commsctl verify start --to NUMBER|EMAIL [--channel sms|call|email|"
                  "whatsapp] [--locale L]\n       commsctl verify check --to NUMBER|EMAIL "
                  "--code CODE\n",
                  stdout);
            return EXIT_OK;
        }
        return usage_error("verify needs start or check%s", "");
    }
    int start = strcmp(argv[1], "start") == 0;
    int p = parse(argc - 1, argv + 1, o,
                  start ? "Usage: commsctl verify start --to NUMBER|EMAIL [--channel sms|call|"
                          "email|whatsapp] [--locale L]\n"
                        : "Usage: commsctl verify check --to NUMBER|EMAIL --code CODE\n"
                          "Prints valid: true only for a right code; a wrong one is not an "
                          "error (exit 0, valid: false).\n",
                  verify_opt, &a);
    if (p == -1)
        return EXIT_OK;
    if (p == -2 || !*a.to || (!start && !*a.code))
        return usage_error(start ? "verify start needs --to%s" : "verify check needs --to and --code%s", "");
    if (start) {
        Commsgate__V1__StartVerificationRequest r = COMMSGATE__V1__START_VERIFICATION_REQUEST__INIT;
        Commsgate__V1__StartVerificationResponse *resp = NULL;
        int ch = 0;
        for (int i = 1; i <= 4; i++)
            if (strcmp(a.channel, channel_name(i)) == 0)
                ch = i;
        if (!ch)
            return usage_error("unknown --channel %s", a.channel);
        r.to = (char *)a.to;
        r.channel = ch;
        r.locale = (char *)a.locale;
        cgc_start_verification(cl, &r, opt.timeout_ms, &resp, &st);
        if (resp) {
            obj = json_pack("{s:s, s:s, s:s}", "sid", resp->sid, "status", resp->status,
                            "channel", channel_name(resp->channel));
            commsgate__v1__start_verification_response__free_unpacked(resp, NULL);
        }
    } else {
        Commsgate__V1__CheckVerificationRequest r = COMMSGATE__V1__CHECK_VERIFICATION_REQUEST__INIT;
        Commsgate__V1__CheckVerificationResponse *resp = NULL;
        r.to = (char *)a.to;
        r.code = (char *)a.code;
        cgc_check_verification(cl, &r, opt.timeout_ms, &resp, &st);
        if (resp) {
            obj = json_pack("{s:b, s:s}", "valid", resp->valid, "status", resp->status);
            commsgate__v1__check_verification_response__free_unpacked(resp, NULL);
        }
    }
    return report(&st, obj);
}

/* --- message get, health --- */

static int cmd_message(struct cgc_client *cl, int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
                      (argc >= 3 && !strcmp(argv[2], "--help")))) {
        fputs("Usage: commsctl message get SID\nPrints the latest delivery status.\n", stdout);
        return EXIT_OK;
    }
    if (argc != 3 || strcmp(argv[1], "get"))
        return usage_error("usage: commsctl message get SID%s", "");
    Commsgate__V1__GetMessageRequest r = COMMSGATE__V1__GET_MESSAGE_REQUEST__INIT;
    Commsgate__V1__GetMessageResponse *resp = NULL;
    struct cgc_status st;
    json_t *obj = NULL;
    r.sid = argv[2];
    cgc_get_message(cl, &r, opt.timeout_ms, &resp, &st);
    if (resp) {
        /* proto3's JSON form of a Timestamp: RFC 3339, UTC. */
        char when[40] = "";
        if (resp->updated_at) {
            time_t secs = (time_t)resp->updated_at->seconds;
            struct tm tm;
            gmtime_r(&secs, &tm);
            size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(resp->updated_at->nanos / 1000000));
        }
        obj = json_pack("{s:s, s:s, s:i, s:s}", "sid", resp->sid, "status", resp->status,
                        "error_code", (int)resp->error_code, "updated_at", when);
        commsgate__v1__get_message_response__free_unpacked(resp, NULL);
    }
    return report(&st, obj);
}

static int cmd_health(struct cgc_client *cl, int argc, char **argv)
{
    static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    struct cgc_status st;
    int serving;

    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs("Usage: commsctl health\nExit 0 when SERVING, 4 otherwise.\n", stdout);
        return EXIT_OK;
    }
    cgc_health(cl, opt.timeout_ms, &serving, &st);
    if (st.code != GRPC_STATUS_OK)
        return report(&st, NULL);
    report(&st, json_pack("{s:s}", "status", names[serving >= 0 && serving <= 3 ? serving : 0]));
    return serving == 1 ? EXIT_OK : EXIT_UNAVAILABLE;
}

int main(int argc, char **argv)
{
    static const struct option o[] = {{"addr", 1, 0, 'a'}, {"timeout", 1, 0, 't'},
                                      {"json", 0, 0, 'j'}, {"caller", 1, 0, 'c'},
                                      {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    struct cgc_client *cl;
    int c, rc;

    if (getenv("COMMSGATE_TARGET"))
        opt.addr = getenv("COMMSGATE_TARGET");
    /* '+': stop at the command, whose own options follow it. */
    while ((c = getopt_long(argc, argv, "+h", o, NULL)) != -1) {
        switch (c) {
        case 'a': opt.addr = optarg; break;
        case 't': {
            char *end;
            double s = strtod(optarg, &end);
            if (*end || s <= 0)
                return usage_error("--timeout takes a positive number of seconds, not %s", optarg);
            opt.timeout_ms = (long)(s * 1000);
            break;
        }
        case 'j': opt.json = 1; break;
        case 'c': opt.caller = optarg; break;
        case 'h': fputs(top_usage, stdout); return EXIT_OK;
        default: return usage_error("unknown option%s", "");
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1)
        return usage_error("a command is needed%s", "");
    const char *cmd = argv[0];
    int sub = (!strcmp(cmd, "sms") || !strcmp(cmd, "whatsapp"));
    if (sub && (argc < 2 || strcmp(argv[1], "send"))) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            printf("Usage: commsctl %s send ... (commsctl %s send --help)\n", cmd, cmd);
            return EXIT_OK;
        }
        return usage_error("%s needs the subcommand send", cmd);
    }
    if (strcmp(cmd, "sms") && strcmp(cmd, "whatsapp") && strcmp(cmd, "call") &&
        strcmp(cmd, "verify") && strcmp(cmd, "message") && strcmp(cmd, "health"))
        return usage_error("unknown command %s", cmd);
    if (cgc_client_new(opt.addr, &cl)) {
        fprintf(stderr, "commsctl: cannot create a channel to %s\n", opt.addr);
        return EXIT_UNAVAILABLE;
    }
    cgc_set_caller(cl, opt.caller);
    if (!strcmp(cmd, "sms"))
        rc = cmd_sms(cl, argc - 1, argv + 1);
    else if (!strcmp(cmd, "whatsapp"))
        rc = cmd_whatsapp(cl, argc - 1, argv + 1);
    else if (!strcmp(cmd, "call"))
        rc = cmd_call(cl, argc, argv);
    else if (!strcmp(cmd, "verify"))
        rc = cmd_verify(cl, argc, argv);
    else if (!strcmp(cmd, "message"))
        rc = cmd_message(cl, argc, argv);
    else
        rc = cmd_health(cl, argc, argv);
    cgc_client_free(&cl);
    return rc;
}
