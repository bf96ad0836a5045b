/* protobuf-c hands proto3 strings over as C strings: a `body` of
 * "Hi\0 secret" unpacks as "Hi", which would pass validation and be sent
 * cut short while the caller hears OK. This walks a request's wire bytes
 * (after protobuf-c accepted them) and finds any string field, at any
 * depth of the message's own fields, whose bytes hold a NUL. Pure; any
 * thread. */
#ifndef COMMSGATE_RPC_WIRE_STRINGS_H
#define COMMSGATE_RPC_WIRE_STRINGS_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* 1: a string field holds a NUL (its name, dotted for nested fields, in
 * field); 0: none does; -1: bytes that are not a message of this type. */
int wire_strings_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                     char *field, size_t cap);

#endif
