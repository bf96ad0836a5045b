/* The policy rules through commsgate's own C client. Run by
 * c_client_test.py against a stack it started (address as argv[1]).
 * Prints one line per check and "N passed, N failed"; exits non-zero on any
 * failure. */
#include <stdio.h>
#include <string.h>

#include "commsgate/v1/messaging.pb-c.h"
#include "commsgate_client.h"

static int passed, failed;

#define CHECK(cond, what)                                                                  \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            printf("FAIL %s (line %d): code %d msg '%s' twilio %d reason '%s'\n", what,    \
                   __LINE__, st.code, st.message, st.twilio_code, st.reason);              \
        }                                                                                  \
    } while (0)

static grpc_status_code sms(struct cgc_client *c, const char *to, const char *body,
                            const char *key, Commsgate__V1__SendSMSResponse **out,
                            struct cgc_status *st)
{
    Commsgate__V1__SendSMSRequest req = COMMSGATE__V1__SEND_SMSREQUEST__INIT;
    req.to = (char *)to;
    req.body = (char *)body;
    req.idempotency_key = (char *)(key ? key : "");
    return cgc_call(c, "SendSMS", "c-client-test", &req.base,
                    &commsgate__v1__send_smsresponse__descriptor, 10000,
                    (ProtobufCMessage **)out, st);
}

int main(int argc, char **argv)
{
    struct cgc_client *c;
    struct cgc_status st;
    Commsgate__V1__SendSMSResponse *r = NULL, *r2 = NULL;

    if (argc != 2 || cgc_client_new(argv[1], &c)) {
        fprintf(stderr, "usage: cg-client-check HOST:PORT\n");
        return 2;
    }

    sms(c, "+14155550100", "hello from C", NULL, &r, &st);
    CHECK(st.code == GRPC_STATUS_OK && r && strncmp(r->sid, "SM", 2) == 0 && r->segments == 1,
          "SendSMS accepted with a SID");
    protobuf_c_message_free_unpacked((ProtobufCMessage *)r, NULL);

    sms(c, "4155550100", "x", NULL, &r, &st);
    CHECK(st.code == GRPC_STATUS_INVALID_ARGUMENT && strncmp(st.message, "to:", 3) == 0,
          "bad number is INVALID_ARGUMENT naming the field");

    sms(c, "+15005550004", "x", NULL, &r, &st);
    CHECK(st.code == GRPC_STATUS_FAILED_PRECONDITION && st.twilio_code == 21610 &&
              strcmp(st.reason, "OPTED_OUT") == 0,
          "Twilio 21610 is FAILED_PRECONDITION with the code and reason");
    sms(c, "+15005550004", "x", NULL, &r, &st);
    CHECK(st.code == GRPC_STATUS_FAILED_PRECONDITION && st.twilio_code == 0 &&
              strcmp(st.reason, "OPTED_OUT") == 0,
          "an opted-out number is refused by commsgate itself");

    sms(c, "+14155550101", "once", "c-key-1", &r, &st);
    sms(c, "+14155550101", "once", "c-key-1", &r2, &st);
    CHECK(r && r2 && strcmp(r->sid, r2->sid) == 0, "an idempotent repeat gets the first answer");
    protobuf_c_message_free_unpacked((ProtobufCMessage *)r, NULL);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)r2, NULL);

    Commsgate__V1__StartVerificationRequest v = COMMSGATE__V1__START_VERIFICATION_REQUEST__INIT;
    v.to = "+14155550170";
    ProtobufCMessage *vr = NULL;
    for (int i = 0; i < 3; i++) {
        cgc_call(c, "StartVerification", NULL, &v.base,
                 &commsgate__v1__start_verification_response__descriptor, 10000, &vr, &st);
        CHECK(st.code == GRPC_STATUS_OK, "verification sent");
        protobuf_c_message_free_unpacked(vr, NULL);
        vr = NULL;
    }
    cgc_call(c, "StartVerification", NULL, &v.base,
             &commsgate__v1__start_verification_response__descriptor, 10000, &vr, &st);
    CHECK(st.code == GRPC_STATUS_RESOURCE_EXHAUSTED &&
              strcmp(st.reason, "VERIFY_SEND_LIMIT") == 0 && st.retry_after_ms > 500000 &&
              strstr(st.message, "retry in "),
          "the 4th verification is refused with a machine-readable wait");

    Commsgate__V1__SendWhatsAppRequest w = COMMSGATE__V1__SEND_WHATS_APP_REQUEST__INIT;
    w.to = "+14155550150";
    w.body = "hi";
    ProtobufCMessage *wr = NULL;
    cgc_call(c, "SendWhatsApp", NULL, &w.base, &commsgate__v1__send_whats_app_response__descriptor,
             10000, &wr, &st);
    CHECK(st.code == GRPC_STATUS_FAILED_PRECONDITION &&
              strcmp(st.reason, "WHATSAPP_WINDOW_CLOSED") == 0,
          "free-form WhatsApp outside the window is refused");

    cgc_client_free(&c);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
