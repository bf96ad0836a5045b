/* Only the framing of protobuf's wire format is read here (a tag, then a
 * varint, a fixed 4 or 8 bytes, or a length and that many bytes); the
 * values themselves were already decoded by protobuf-c. */
#include "rpc/wire_strings.h"

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 8

enum { WIRE_VARINT = 0, WIRE_64 = 1, WIRE_LEN = 2, WIRE_32 = 5 };

/* Reads a varint at *p (below end); 0 on success. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                char *field, size_t cap, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    while (p < end) {
        uint64_t tag, n;
        if (varint(&p, end, &tag))
            return -1;
        unsigned wire = (unsigned)(tag & 7);
        const ProtobufCFieldDescriptor *fd =
            tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3))
                                   : NULL;
        switch (wire) {
        case WIRE_VARINT:
            if (varint(&p, end, &n))
                return -1;
            break;
        case WIRE_64:
        case WIRE_32: {
            size_t w = wire == WIRE_64 ? 8 : 4;
            if ((size_t)(end - p) < w)
                return -1;
            p += w;
            break;
        }
        case WIRE_LEN:
            if (varint(&p, end, &n) || n > (uint64_t)(end - p))
                return -1;
            if (fd && fd->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t)n)) {
                snprintf(field, cap, "%s", fd->name);
                return 1;
            }
            if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                char inner[128];
                int rc = walk(fd->descriptor, p, p + n, inner, sizeof(inner), depth + 1);
                if (rc == 1)
                    snprintf(field, cap, "%s.%s", fd->name, inner);
                if (rc)
                    return rc;
            }
            p += n;
            break;
        default: /* groups: not in proto3, and protobuf-c refuses them */
            return -1;
        }
    }
    return 0;
}

int wire_strings_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                     char *field, size_t cap)
{
    if (cap)
        field[0] = '\0';
    return walk(desc, buf, buf + len, field, cap, 0);
}
