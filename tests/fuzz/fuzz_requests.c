/* Every request message, unpacked as the server does and checked for NULs
 * hidden in its strings; the first byte picks the message. */
#include <stdint.h>

#include "commsgate/v1/messaging.pb-c.h"
#include "rpc/wire_strings.h"

static const ProtobufCMessageDescriptor *const descs[] = {
    &commsgate__v1__send_smsrequest__descriptor,
    &commsgate__v1__send_whats_app_request__descriptor,
    &commsgate__v1__place_call_request__descriptor,
    &commsgate__v1__start_verification_request__descriptor,
    &commsgate__v1__check_verification_request__descriptor,
    &commsgate__v1__get_message_request__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char field[128];
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = descs[data[0] % (sizeof(descs) / sizeof(descs[0]))];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (m) {
        wire_strings_nul(d, data + 1, size - 1, field, sizeof(field));
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}
