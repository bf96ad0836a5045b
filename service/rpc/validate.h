/* Checks of request fields shared by the RPC families. Each returns 0, or -1
 * with a message naming the field written into msg (for INVALID_ARGUMENT). */
#ifndef COMMSGATE_RPC_VALIDATE_H
#define COMMSGATE_RPC_VALIDATE_H

#include <stddef.h>

/* Valid UTF-8 (protobuf-c does not check proto3 strings). */
int validate_utf8(const char *field, const char *value, char *msg, size_t len);
/* Non-empty E.164. */
int validate_e164(const char *field, const char *value, char *msg, size_t len);
/* Empty, or 1..128 characters of [A-Za-z0-9._:-] (it becomes part of a Redis key). */
int validate_idempotency_key(const char *value, char *msg, size_t len);
/* A Twilio SID: two letters `prefix` and 32 hex digits. */
int validate_sid(const char *field, const char *value, const char *prefix, char *msg, size_t len);

#endif
